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

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = repo.join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = std::process::Command::new("node")
        .arg(repo.join("tests/browser/console.mjs"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(&shots)
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
