//! Telemetry: the spans of runs, steps, HTTP requests and Flight calls exported to a real
//! OTLP receiver, and `/metrics` checked by Prometheus' own `promtool`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use assay_testkit::{OtlpReceiver, ReceivedSpan};

use crate::kit::{Fixture, root_bearer as bearer};

const OFTEN: &str = r#"
[[schedule]]
name = "often"
cron = "*/2 * * * * *"
"#;

fn with_otlp(cmd: &mut Command, receiver: &OtlpReceiver) {
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_SDK_DISABLED");
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn attr<'a>(s: &'a ReceivedSpan, key: &str) -> &'a str {
    s.attributes.get(key).map_or("", String::as_str)
}

/// The steps of a run are its children in its trace, each naming its table.
fn assert_run_with_steps(spans: &[ReceivedSpan], user: &str) {
    let run = named(spans, "run")
        .into_iter()
        .find(|s| attr(s, "user") == user)
        .unwrap_or_else(|| panic!("a run span of {user} in {spans:#?}"));
    assert!(!attr(run, "run_id").is_empty(), "{run:?}");
    assert_eq!(run.service, "assay");
    let steps: Vec<_> = named(spans, "step")
        .into_iter()
        .filter(|s| s.parent_span_id == run.span_id)
        .collect();
    assert!(steps.len() >= 3, "steps under the run: {steps:#?}");
    for s in steps {
        assert_eq!(s.trace_id, run.trace_id);
        assert_eq!(attr(s, "run_id"), attr(run, "run_id"));
        assert!(attr(s, "table").contains('.'), "{s:?}");
    }
}

#[test]
fn runs_requests_and_flight_calls_are_traced_over_otlp_and_metrics_pass_promtool() {
    let receiver = OtlpReceiver::start();
    let f = Fixture::example();

    // `assay run`: its spans are flushed before it exits.
    let mut cmd = f.command(&["run"]);
    with_otlp(&mut cmd, &receiver);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = receiver.wait_for(Duration::from_secs(10), |s| !named(s, "run").is_empty());
    assert_run_with_steps(&spans, "cli");

    // `assay serve` with a schedule, an HTTP request and a Flight query.
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write("assay.toml", &format!("{toml}{OFTEN}"));
    let mut cmd = f.command(&["serve"]);
    with_otlp(&mut cmd, &receiver);
    cmd.env_remove("REDIS_URL")
        .env("ASSAY_ADMIN_USER", "root")
        .env("ASSAY_ADMIN_PASSWORD", "pw-123456")
        .stderr(Stdio::null());
    let served = assay_testkit::serve(cmd);
    let port = served.port;
    let bearer = bearer(port);
    let auth = [("Authorization", bearer.as_str())];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) =
            assay_testkit::http(port, "GET", "/api/v1/runs?status=succeeded&limit=10", &auth);
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        // The CLI's run, then one a tick started.
        if list["runs"].as_array().is_some_and(|r| r.len() >= 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled run: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let n = crate::kit::adbc_scalar(&served.flight, "SELECT COUNT(*) FROM gold.daily_revenue");
    assert!(n.parse::<u64>().is_ok_and(|n| n > 0), "{n}");

    let (status, metrics) = assay_testkit::http(port, "GET", "/metrics", &auth);
    assert_eq!(status, 200, "{metrics}");
    for name in [
        "assay_run_duration_seconds_bucket{status=\"succeeded\",le=",
        "assay_step_duration_seconds_bucket{",
        "assay_step_rows_written_total{",
        "assay_scheduler_lag_seconds_bucket{schedule=\"often\",le=",
        "assay_schedule_ticks_total{",
        "assay_schedule_next_fire_timestamp_seconds{schedule=\"often\"}",
        "assay_run_lease_held{holder=",
        "assay_flight_requests_total{method=\"DoGet\",status=\"ok\"}",
        "assay_flight_request_duration_seconds_bucket{method=\"DoGet\",le=",
        "assay_http_request_duration_seconds_bucket{",
    ] {
        assert!(metrics.contains(name), "{name} in\n{metrics}");
    }
    // Scheduled runs find nothing new: their steps are up to date.
    assert!(
        metrics.contains(
            "assay_step_rows_written_total{table=\"gold.daily_revenue\",status=\"up_to_date\"} 0"
        ),
        "rows written by table and status:\n{metrics}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let status = served.stop();
    assert!(status.success(), "{status:?}");
    let spans = receiver.wait_for(Duration::from_secs(10), |s| {
        !named(s, "flight").is_empty() && named(s, "run").len() >= 2
    });
    assert_run_with_steps(&spans, "schedule:often");
    let http = named(&spans, "http")
        .into_iter()
        .find(|s| attr(s, "route") == "/api/v1/runs")
        .unwrap_or_else(|| panic!("an http span of /api/v1/runs in {spans:#?}"));
    assert_eq!(attr(http, "user"), "root");
    assert_eq!(attr(http, "status"), "200");
    assert_eq!(attr(http, "method"), "GET");
    let flight: Vec<_> = named(&spans, "flight");
    assert!(
        flight.iter().any(|s| attr(s, "method") == "DoGet"
            && attr(s, "user") == "root"
            && attr(s, "status") == "ok"),
        "a DoGet span of root: {flight:#?}"
    );
}
