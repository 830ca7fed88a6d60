//! The web console in a real browser: Debian's headless Chromium driven by `playwright-core`
//! (`tests/browser/console.mjs`) against a real `assay serve` on the example lake. Screenshots
//! of every page are kept in `target/console-screenshots/`.

use std::path::Path;
use std::process::Stdio;

use crate::kit::{Fixture, root_bearer};

#[test]
fn the_console_signs_in_browses_filters_queries_and_hides_what_a_role_may_not_see() {
    let f = Fixture::example();
    f.run_ok(&[]);
    // A second run with a broken model fails: the console shows the failed step and its error.
    f.write(
        "sql/gold/broken.sql",
        "SELECT no_such_column FROM silver.orders",
    );
    let failed = f.assay(&["run"]);
    assert!(!failed.status.success(), "the broken model fails the run");
    // A schedule for the Schedules page (02:00: it does not fire during the test).
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write(
        "assay.toml",
        &format!(
            "{toml}\n[[schedule]]\nname = \"nightly\"\ncron = \"0 2 * * *\"\nselect = \"gold\"\n"
        ),
    );
    let served = f.serve_as_root(Stdio::null());
    let port = served.port;
    // A reader, made by the admin through the API.
    let bearer = root_bearer(port);
    let (status, body) = assay_testkit::http_with_body(
        port,
        "POST",
        "/api/v1/users",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        r#"{"username":"ana","password":"reader-pass-1","role":"reader"}"#,
    );
    assert_eq!(status, 201, "{body}");
    // The DAG the lineage page draws, over REST.
    let (status, body) = assay_testkit::http(
        port,
        "GET",
        "/api/v1/lineage",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200, "{body}");
    let dag: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dag["nodes"].as_array().unwrap().len(), 9, "{body}");
    assert_eq!(dag["nodes"][0]["layer"], "bronze", "upstream first: {body}");
    let edge = serde_json::json!({"from": "silver.orders", "to": "gold.daily_revenue"});
    assert!(dag["edges"].as_array().unwrap().contains(&edge), "{body}");

    let report = browser("console.mjs", &[&format!("http://127.0.0.1:{port}")]);
    assert!(report.contains("ok - a reader sees no silver"), "{report}");

    // The page itself: embedded, no token needed, a strict CSP.
    let (status, html) = assay_testkit::http(port, "GET", "/", &[]);
    assert_eq!(status, 200);
    assert!(html.contains("/console/app.js"), "{html}");
}

/// `console/vendor/` holds exactly the files of the versions `console/package-lock.json` pins
/// (`scripts/setup.sh` installs them into `console/node_modules`; `scripts/console-vendor.sh`
/// copies them).
#[test]
fn vendored_files_are_the_pinned_ones() {
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console");
    let pinned = std::fs::read(console.join("node_modules/chart.js/dist/chart.umd.min.js"))
        .expect("console/node_modules installed (scripts/setup.sh runs npm ci there)");
    let vendored = std::fs::read(console.join("vendor/chart.umd.min.js")).unwrap();
    assert!(
        pinned == vendored,
        "console/vendor/chart.umd.min.js differs from the pinned chart.js: run scripts/console-vendor.sh"
    );
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(console.join("package-lock.json")).unwrap())
            .unwrap();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(console.join("node_modules/chart.js/package.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        lock["packages"]["node_modules/chart.js"]["version"], manifest["version"],
        "console/node_modules is not what the lock file pins: npm ci in console/"
    );
}

/// An HTTP API whose second page waits until `/release` is asked: its bronze step stays
/// running, having written the first page, for as long as the test needs.
struct GatedFeed {
    base: String,
}

impl GatedFeed {
    fn start() -> GatedFeed {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let open = std::sync::Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let open = std::sync::Arc::clone(&open);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut head = String::new();
                    if reader.read_line(&mut head).is_err() {
                        return;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("");
                    let body = if path.starts_with("/release") {
                        open.store(true, Ordering::SeqCst);
                        "[]".to_string()
                    } else if path.split(['?', '&']).any(|kv| kv == "page=1") {
                        r#"[{"id":1,"name":"a"},{"id":2,"name":"b"},{"id":3,"name":"c"}]"#
                            .to_string()
                    } else {
                        while !open.load(Ordering::SeqCst) {
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        "[]".to_string()
                    };
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        GatedFeed { base }
    }
}

/// A run started from the console shows its steps while it runs: finished ones as they will
/// be recorded, the running one with the rows written so far, the ones not started yet; the
/// page follows the run to its end.
#[test]
fn a_running_run_shows_its_steps_as_they_go() {
    let f = Fixture::example();
    let feed = GatedFeed::start();
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write(
        "assay.toml",
        &format!(
            "{toml}\n[[bronze]]\nname = \"feed\"\nsource = {{ kind = \"http\", url = \"{}/feed\", pagination = {{ kind = \"page\" }}, timeout = \"120s\" }}\n",
            feed.base
        ),
    );
    f.write(
        "sql/gold/feed_count.sql",
        "SELECT count(*) AS n FROM bronze.feed",
    );
    let served = f.serve_as_root(Stdio::null());
    let port = served.port;
    let bearer = root_bearer(port);
    let auth = [("Authorization", bearer.as_str())];
    let (status, body) = assay_testkit::http_with_body(
        port,
        "POST",
        "/api/v1/runs",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(status, 202, "{body}");
    let run_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/runs/{run_id}");

    // Every step but the feed and its consumer finishes; the feed has written its first page.
    let live = poll(
        port,
        &path,
        &auth,
        "the run never got to the gated page",
        |v| {
            let steps = v["steps"].as_array().unwrap();
            let feed_step = steps.iter().find(|s| s["step"] == "bronze.feed");
            let finished = steps.iter().filter(|s| s["status"] != "running").count();
            finished == 8 && feed_step.is_some_and(|s| s["rows_written"] == 3)
        },
    );
    assert_eq!(live["status"], "running", "{live}");
    assert_eq!(
        live["pending"],
        serde_json::json!(["gold.feed_count"]),
        "{live}"
    );
    let feed_step = live["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "bronze.feed")
        .unwrap()
        .clone();
    assert_eq!(feed_step["status"], "running", "{live}");
    assert_eq!(feed_step["layer"], "bronze", "{live}");
    assert_eq!(feed_step["kind"], "step", "{live}");
    assert!(
        feed_step["version"].is_null(),
        "nothing committed yet: {live}"
    );

    // Another server of the lake knows the run from `_system.runs` only: running, no steps.
    let other = f.serve_as_root(Stdio::null());
    let other_bearer = root_bearer(other.port);
    let (status, body) = assay_testkit::http(
        other.port,
        "GET",
        &path,
        &[("Authorization", &other_bearer)],
    );
    assert_eq!(status, 200, "{body}");
    let elsewhere: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(elsewhere["status"], "running", "{body}");
    assert_eq!(elsewhere["steps"], serde_json::json!([]), "{body}");
    assert!(elsewhere.get("pending").is_none(), "{body}");
    drop(other);

    // The console shows the same, then follows the run to its end once the feed is released.
    let report = browser(
        "progress.mjs",
        &[
            &format!("http://127.0.0.1:{port}"),
            &run_id,
            &format!("{}/release", feed.base),
        ],
    );
    assert!(
        report.contains("ok - the page follows the run to its end"),
        "{report}"
    );

    // Recorded: the steps that had finished are recorded exactly as they were shown live.
    let done = poll(port, &path, &auth, "the run did not end", |v| {
        v["status"] != "running"
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done.get("pending").is_none(), "{done}");
    let recorded = done["steps"].as_array().unwrap();
    assert_eq!(recorded.len(), 10, "{done}");
    for shown in live["steps"].as_array().unwrap() {
        if shown["status"] == "running" {
            continue;
        }
        let same = recorded
            .iter()
            .find(|r| r["step"] == shown["step"])
            .unwrap();
        assert_eq!(
            same, shown,
            "a finished step is shown live as it is recorded"
        );
    }
    let feed_done = recorded
        .iter()
        .find(|r| r["step"] == "bronze.feed")
        .unwrap();
    assert_eq!(feed_done["rows_written"], 3, "{done}");
    assert_eq!(feed_done["started_at"], feed_step["started_at"], "{done}");
}

/// `GET path` every 100 ms until `until` holds of its JSON (at most 2 minutes).
fn poll(
    port: u16,
    path: &str,
    auth: &[(&str, &str)],
    what: &str,
    until: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, body) = assay_testkit::http(port, "GET", path, auth);
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if until(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {body}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs `tests/browser/SCRIPT BASE SHOTS REST...` in Node.js (Chromium via playwright-core)
/// with the screenshots going to `target/console-screenshots/`; its output, which must end
/// well.
fn browser(script: &str, args: &[&str]) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = repo.join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let (base, rest) = args.split_first().expect("a base URL");
    let out = std::process::Command::new("node")
        .arg(repo.join("tests/browser").join(script))
        .arg(base)
        .arg(&shots)
        .args(rest)
        .current_dir(repo.join("tests/browser"))
        .output()
        .expect("node runs (scripts/setup.sh installs Node.js, Chromium and playwright-core)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{report}\nscreenshots: {}",
        shots.display()
    );
    report
}
