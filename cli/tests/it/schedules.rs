//! Selections by tag and exclusion, `--fail-fast`, `[[schedule]]` entries, `assay schedule`,
//! and two `assay serve` processes on one lake firing each tick once.

use std::process::Stdio;
use std::time::Duration;

use crate::kit::{Fixture, root_bearer as bearer};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const NIGHTLY: &str = r#"
[[schedule]]
name = "nightly"
cron = "0 30 2 * * *"
timezone = "Europe/Madrid"
select = "silver+"
"#;

#[test]
fn assay_schedule_prints_next_fire_times_and_a_bad_selection_names_its_line() {
    let f = Fixture::example();
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write("assay.toml", &format!("{toml}{NIGHTLY}"));
    let out = f.assay(&["schedule", "--count", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for expected in [
        "nightly",
        "0 30 2 * * *",
        "Europe/Madrid",
        "silver+",
        "once",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    let fires = text.matches("T02:30:00+0").count();
    assert_eq!(fires, 2, "two fire times at 02:30 Madrid time:\n{text}");

    let line = toml.lines().count() + 3;
    let bad = NIGHTLY.replace("silver+", "gold.nope");
    f.write("assay.toml", &format!("{toml}{bad}"));
    let out = f.assay(&["ls"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "line {line}: schedule `nightly`: selection `gold.nope` matches no step"
        )),
        "{}",
        stderr(&out)
    );
}

const TAGGED: &str = r#"
[run]
parallelism = 1

[[bronze]]
name = "a"
source = { kind = "files", path = "data/a/*.csv" }
tags = ["first"]

[[bronze]]
name = "b"
source = { kind = "files", path = "data/b/*.csv" }
tags = ["first", "slow"]

[[bronze]]
name = "c"
source = { kind = "files", path = "data/c/*.csv" }
"#;

#[tokio::test]
async fn select_by_tag_exclude_and_fail_fast() {
    let f = Fixture::with_config(TAGGED);
    for t in ["a", "b", "c"] {
        f.write(&format!("data/{t}/1.csv"), "id\n1\n");
    }
    f.run_ok(&["--select", "tag:first", "--exclude", "tag:slow"]);
    assert_eq!(f.version("bronze.a").await, Some(0));
    assert_eq!(f.version("bronze.b").await, None, "excluded");
    assert_eq!(f.version("bronze.c").await, None, "not tagged");

    let out = f.assay(&["run", "--select", "tag:nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("selection `tag:nope` matches no step"),
        "{}",
        stderr(&out)
    );

    // bronze.a runs first (same layer: by name) and fails; --fail-fast starts nothing else.
    f.write("data/a/2.csv", "id\n2,broken\n");
    let out = f.assay(&["run", "--fail-fast"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("failed bronze.a"), "{err}");
    for t in ["bronze.b", "bronze.c"] {
        assert!(
            err.contains(&format!(
                "skipped {t}: not started: bronze.a failed (--fail-fast)"
            )),
            "{err}"
        );
    }
    assert_eq!(f.version("bronze.b").await, None);
    // Without it, the independent steps run. Without a terminal, one plain line per event.
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let events: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest))
        .filter(|l| l.starts_with("started ") || l.starts_with("succeeded "))
        .collect();
    assert!(events.contains(&"started bronze.b"), "{err}");
    let done = "succeeded bronze.b rows_in=1 rows_written=1 rows_rejected=0 duration_ms=";
    assert!(events.iter().any(|e| e.starts_with(done)), "{err}");
    assert_eq!(f.version("bronze.b").await, Some(0));
    assert_eq!(f.version("bronze.c").await, Some(0));
}

fn schedules(port: u16, bearer: &str) -> serde_json::Value {
    let (status, body) = assay_testkit::http(
        port,
        "GET",
        "/api/v1/schedules",
        &[("Authorization", bearer)],
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn two_servers_on_one_lake_run_each_tick_once_and_share_pauses() {
    let f = Fixture::example();
    f.run_ok(&[]);
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write(
        "assay.toml",
        &format!(
            "{toml}\n[[schedule]]\nname = \"often\"\ncron = \"*/3 * * * * *\"\nselect = \"gold\"\n"
        ),
    );
    let runs_before = f
        .count("(SELECT * FROM _system.runs WHERE kind = 'run')")
        .await;
    let (a, b) = (
        f.serve_as_root(Stdio::null()),
        f.serve_as_root(Stdio::null()),
    );
    let (bearer_a, bearer_b) = (bearer(a.port), bearer(b.port));
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Pause through one server: the other sees it, from the lake.
    let (status, body) = assay_testkit::http_with_body(
        a.port,
        "PATCH",
        "/api/v1/schedules/often",
        &[
            ("Authorization", &bearer_a),
            ("Content-Type", "application/json"),
        ],
        r#"{"paused": true}"#,
    );
    assert_eq!(status, 200, "{body}");
    let seen_by_b = schedules(b.port, &bearer_b);
    assert_eq!(seen_by_b[0]["paused"], true, "{seen_by_b}");
    assert_eq!(seen_by_b[0]["paused_by"], "root");
    assert!(seen_by_b[0]["next_fire_at"].is_string(), "{seen_by_b}");
    // Let a run that started before the pause end.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        schedules(a.port, &bearer_a)[0]["last"],
        schedules(b.port, &bearer_b)[0]["last"],
        "one record of the last tick"
    );
    // No token, a bad body.
    let (status, _) = assay_testkit::http(a.port, "GET", "/api/v1/schedules", &[]);
    assert_eq!(status, 401);
    let (status, body) = assay_testkit::http_with_body(
        a.port,
        "PATCH",
        "/api/v1/schedules/often",
        &[
            ("Authorization", &bearer_a),
            ("Content-Type", "application/json"),
        ],
        r#"{"paused": "yes"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = assay_testkit::http_with_body(
        a.port,
        "PATCH",
        "/api/v1/schedules/nope",
        &[
            ("Authorization", &bearer_a),
            ("Content-Type", "application/json"),
        ],
        r#"{"paused": false}"#,
    );
    assert_eq!(status, 404);
    assert!(a.stop().success());
    assert!(b.stop().success());

    let dir = f.path().join("lakehouse/_scheduler/ticks/often");
    let claims: Vec<serde_json::Value> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let runs = f
        .count("(SELECT * FROM _system.runs WHERE kind = 'run')")
        .await
        - runs_before;
    let started = claims.iter().filter(|c| c["outcome"] == "started").count();
    assert!(started >= 2, "ticks run in 8 s: {claims:?}");
    assert!(
        claims.iter().any(|c| c["outcome"] == "paused"),
        "a tick while paused: {claims:?}"
    );
    assert_eq!(runs, started as i64, "one run per tick across both servers");
    let by: std::collections::BTreeSet<&str> = claims
        .iter()
        .map(|c| c["claimed_by"].as_str().unwrap())
        .collect();
    assert!(!by.is_empty() && by.len() <= 2, "{by:?}");
}

#[test]
fn run_reports_as_json_and_logs_as_json_lines() {
    let f = Fixture::with_config(TAGGED);
    for t in ["a", "b", "c"] {
        f.write(&format!("data/{t}/1.csv"), "id\n1\n2\n");
    }
    f.write("data/c/2.csv", "id\n3,broken\n");
    let out = f
        .command(&["run", "--output", "json", "--log-format", "json"])
        .env("ASSAY_LOG", "info")
        .output()
        .unwrap();
    assert!(!out.status.success(), "bronze.c fails");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["status"], "failed");
    assert!(report["run_id"].as_str().unwrap().len() == 36);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let a = steps.iter().find(|s| s["table"] == "bronze.a").unwrap();
    assert_eq!(
        (&a["layer"], &a["status"], &a["rows_written"], &a["version"]),
        (
            &serde_json::json!("bronze"),
            &serde_json::json!("succeeded"),
            &serde_json::json!(2),
            &serde_json::json!(0)
        )
    );
    let c = steps.iter().find(|s| s["table"] == "bronze.c").unwrap();
    assert_eq!(c["status"], "failed");
    assert!(
        c["error"]
            .as_str()
            .unwrap()
            .contains("line 2: expected 1 fields, found 2"),
        "{c}"
    );
    // Every log line on stderr is a JSON object; the plain error lines follow them.
    let err = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"].is_string()),
        "{err}"
    );
}

/// A real HTTP receiver on a free port: answers 503 first, then 200; returns its URL and
/// the bodies it got.
fn webhook() -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let mut conn = conn.unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let status = if n == 0 { "503 Busy" } else { "200 OK" };
            write!(
                conn,
                "HTTP/1.1 {status}\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let _ = tx.send(serde_json::from_slice(&body).unwrap());
        }
    });
    (url, rx)
}

#[test]
fn a_failed_run_alerts_its_webhook_with_retries() {
    let (url, bodies) = webhook();
    let f = Fixture::with_config(&format!(
        "{TAGGED}\n[[alert]]\nname = \"oncall\"\nurl = \"{url}\"\nbackoff = \"10ms\"\n"
    ));
    for t in ["a", "b", "c"] {
        f.write(&format!("data/{t}/1.csv"), "id\n1\n");
    }
    f.write("data/b/2.csv", "id\n3,broken\n");
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let wait = Duration::from_secs(10);
    let first = bodies.recv_timeout(wait).expect("the refused attempt");
    let second = bodies.recv_timeout(wait).expect("the retry");
    assert_eq!(first, second, "the retry sends the same body");
    assert_eq!(second["event"], "failure");
    assert_eq!(second["alert"], "oncall");
    assert_eq!(second["started_by"], "cli");
    assert_eq!(second["status"], "failed");
    assert_eq!(second["failed_steps"][0]["table"], "bronze.b");
    assert!(
        second["failed_steps"][0]["error"]
            .as_str()
            .unwrap()
            .contains("expected 1 fields, found 2"),
        "{second}"
    );
    assert!(
        bodies.recv_timeout(Duration::from_millis(300)).is_err(),
        "sent once"
    );
}

fn big_csv(rows: usize) -> String {
    let mut csv = String::from("id,name,amount\n");
    for i in 0..rows {
        csv.push_str(&format!("{i},name-{i},{}.25\n", i % 977));
    }
    csv
}

fn run_status(port: u16, auth: &[(&str, &str)], run_id: &str) -> serde_json::Value {
    let (status, body) = assay_testkit::http(port, "GET", &format!("/api/v1/runs/{run_id}"), auth);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_server_killed_mid_run_is_taken_over_after_its_lease_lapses_and_its_run_marked_abandoned()
{
    let f = Fixture::with_config(
        r#"
[serve]
run_lease_ttl = "2s"

[[bronze]]
name = "big"
source = { kind = "files", path = "data/big/*.csv" }
"#,
    );
    for part in 0..4 {
        f.write(&format!("data/big/{part}.csv"), &big_csv(300_000));
    }
    let mut a = f.serve_as_root(Stdio::null());
    let b = f.serve_as_root(Stdio::null());
    let bearer_a = bearer(a.port);
    let bearer = bearer(b.port);
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let auth_a = [
        ("Authorization", bearer_a.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, body) =
        assay_testkit::http_with_body(a.port, "POST", "/api/v1/runs", &auth_a, "{}");
    assert_eq!(status, 202, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = first["run_id"].as_str().unwrap().to_string();
    // The other server sees the run in the lake as `running`, then the holder dies.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) =
            assay_testkit::http(b.port, "GET", &format!("/api/v1/runs/{first}"), &auth);
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no running row");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(run_status(b.port, &auth, &first)["status"], "running");
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    // Its lease holds until it lapses; then the other server runs.
    let (status, body) = assay_testkit::http_with_body(b.port, "POST", "/api/v1/runs", &auth, "{}");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains(&first), "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let second = loop {
        let (status, body) =
            assay_testkit::http_with_body(b.port, "POST", "/api/v1/runs", &auth, "{}");
        if status == 202 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            break v["run_id"].as_str().unwrap().to_string();
        }
        assert_eq!(status, 409, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never lapsed: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while run_status(b.port, &auth, &second)["status"] == "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the second run did not end"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(run_status(b.port, &auth, &second)["status"], "succeeded");
    let dead = run_status(b.port, &auth, &first);
    assert_eq!(dead["status"], "abandoned", "{dead}");
    let why = dead["error"].as_str().unwrap();
    assert!(why.contains("stopped before recording its end"), "{why}");
    assert!(why.contains(&second), "{why}");
    // Exactly once: the killed run's partial work is neither lost nor doubled.
    assert_eq!(f.count("bronze.big").await, 1_200_000);
    b.stop();
}

#[test]
fn on_a_terminal_running_steps_show_live_bars_with_rows_and_bytes() {
    let f = Fixture::with_config(
        r#"
[[bronze]]
name = "big"
source = { kind = "files", path = "data/big/*.csv" }
"#,
    );
    f.write("data/big/1.csv", &big_csv(400_000));
    // `script` gives the command a pseudo-terminal; its output is what the terminal showed.
    let cmd = f.command(&["run"]);
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // The bar: table, elapsed, rows and bytes so far (bytes only ever show on a bar).
    assert!(screen.contains("bronze.big"), "{screen}");
    assert!(
        screen.contains(" rows  ") && screen.contains("iB"),
        "a live bar with rows and bytes:\n{screen}"
    );
    // Then the step's line, the end and the summary table.
    assert!(
        screen.contains("ok     bronze.big (400,000 rows, "),
        "{screen}"
    );
    assert!(screen.contains("] done"), "{screen}");
    assert!(screen.contains("rows written"), "{screen}");
}
