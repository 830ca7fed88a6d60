//! `assay serve`: the example's gold tables over Flight SQL to the real ADBC driver, and a
//! clean stop on SIGTERM.

use std::process::Stdio;

use crate::kit::{Fixture, root_bearer as bearer};

/// A running `assay serve` on free ports, caching in-process, with the bootstrap admin.
fn start_serve(f: &Fixture) -> assay_testkit::Served {
    let served = f.serve_as_root(Stdio::piped());
    assert!(served.rest.starts_with("http://"), "{}", served.rest);
    assert_eq!(served.rest_note, "(cache: memory)");
    served
}

fn stop(served: assay_testkit::Served) {
    let status = served.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn serve_answers_flight_sql_and_stops_on_sigterm() {
    let f = Fixture::example();
    f.run_ok(&[]);
    let served = start_serve(&f);
    let (uri, port) = (served.flight.clone(), served.port);
    let answer =
        crate::kit::adbc_scalar(&uri, "SELECT SUM(revenue) AS total FROM gold.daily_revenue");
    assert_eq!(answer, "407.20");
    // The same users and the same lake over REST.
    let (status, body) = assay_testkit::http(port, "GET", "/health", &[]);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let bearer = bearer(port);
    let (status, body) = assay_testkit::http(
        port,
        "GET",
        "/api/v1/tables/gold.daily_revenue/rows?category=C&order_by=order_date",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200, "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows["count"], 3, "{body}");
    assert_eq!(rows["rows"][0]["order_date"], "2026-11-01", "{body}");
    stop(served);
}

#[test]
fn rest_triggers_runs_and_reports_them() {
    let f = Fixture::example();
    let served = start_serve(&f);
    let port = served.port;
    let bearer = bearer(port);
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    // A selection that names nothing is a 400 naming it; nothing starts.
    let (status, body) = assay_testkit::http_with_body(
        port,
        "POST",
        "/api/v1/runs",
        &auth,
        r#"{"select":"gold.nope"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("gold.nope"), "{body}");

    let (status, body) = assay_testkit::http_with_body(port, "POST", "/api/v1/runs", &auth, "{}");
    assert_eq!(status, 202, "{body}");
    let started: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = started["run_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/runs/{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let run = loop {
        let (status, body) = assay_testkit::http(port, "GET", &path, &auth);
        assert_eq!(status, 200, "{body}");
        let run: serde_json::Value = serde_json::from_str(&body).unwrap();
        if run["status"] != "running" {
            break run;
        }
        // While it runs, a second trigger is refused.
        let (status, _) = assay_testkit::http_with_body(port, "POST", "/api/v1/runs", &auth, "{}");
        assert_eq!(status, 409);
        assert!(std::time::Instant::now() < deadline, "run did not finish");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps = run["steps"].as_array().unwrap();
    let dag = String::from_utf8_lossy(&f.assay(&["ls"]).stdout).into_owned();
    assert!(!steps.is_empty());
    for s in steps {
        assert_eq!(s["status"], "succeeded", "{s}");
        assert!(dag.contains(s["step"].as_str().unwrap()), "{s}");
    }

    let (status, body) = assay_testkit::http(port, "GET", "/api/v1/runs?limit=5", &auth);
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["runs"][0]["run_id"], id.as_str(), "{body}");
    assert!(list["running"].is_null());
    // The run's gold is served at once.
    let (status, body) = assay_testkit::http(
        port,
        "GET",
        "/api/v1/tables/gold.daily_revenue/rows?category=C",
        &auth,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"count\":3"), "{body}");
    // The run shows in the metrics.
    let (status, body) = assay_testkit::http(port, "GET", "/metrics", &auth);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("assay_runs_total{status=\"succeeded\"} 1"),
        "{body}"
    );
    assert!(body.contains("assay_http_requests_total"), "{body}");

    // A full refresh of one model rebuilds it although nothing changed: one new version.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = rt.block_on(f.version("gold.daily_revenue")).unwrap();
    let (status, body) = assay_testkit::http_with_body(
        port,
        "POST",
        "/api/v1/runs",
        &auth,
        r#"{"select":"gold.daily_revenue","full_refresh":true}"#,
    );
    assert_eq!(status, 202, "{body}");
    let started: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(started["full_refresh"], true, "{body}");
    let path = format!("/api/v1/runs/{}", started["run_id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let run = loop {
        let (_, body) = assay_testkit::http(port, "GET", &path, &auth);
        let run: serde_json::Value = serde_json::from_str(&body).unwrap();
        if run["status"] != "running" {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "run did not finish");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(run["steps"][0]["status"], "succeeded", "{run}");
    assert_eq!(
        rt.block_on(f.version("gold.daily_revenue")),
        Some(before + 1)
    );
    stop(served);
}

#[test]
fn serve_without_users_is_a_clear_error() {
    let f = Fixture::example();
    let out = f.assay(&[
        "serve",
        "--flight-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("set ASSAY_ADMIN_USER and ASSAY_ADMIN_PASSWORD"),
        "{err}"
    );
}

#[test]
fn sigterm_lets_requests_in_flight_finish_and_cuts_off_a_stalled_stream_at_the_drain_timeout() {
    use std::io::{Read, Write};
    let f = Fixture::example();
    f.run_ok(&[]);
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write(
        "assay.toml",
        &format!("[serve]\ndrain_timeout = \"3s\"\n\n{toml}"),
    );
    let served = start_serve(&f);
    let port = served.port;
    let auth = bearer(port);
    // A query in flight when SIGTERM comes finishes with its full answer.
    let finishing = {
        let auth = auth.clone();
        std::thread::spawn(move || {
            assay_testkit::http_with_body(
                port,
                "POST",
                "/api/v1/query",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                r#"{"sql": "SELECT COUNT(*) AS n FROM (SELECT a.value FROM generate_series(1, 3000) a CROSS JOIN generate_series(1, 3000) b)"}"#,
            )
        })
    };
    // A client that asks for a large stream and never reads it holds its connection open.
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // 10,000 rows of 4 KB: far more than the socket buffers hold.
    let body =
        r#"{"sql": "SELECT value, repeat('x', 4000) AS pad FROM generate_series(1, 10000)"}"#;
    write!(
        stalled,
        "POST /api/v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 12];
    stalled.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let status = served.stop();
    let took = started.elapsed();
    assert!(status.success(), "exit 0 after draining: {status:?}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "the stalled stream held the exit for {took:?}"
    );
    let (code, answer) = finishing.join().unwrap();
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("9000000"), "{answer}");
}
