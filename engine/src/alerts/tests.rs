use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::Action;
use crate::runner::StepOutcome;
use crate::step::{ExpectationOutcome, StepReport};
use crate::table::TableId;

/// What the receiver saw: each request's head (lower-cased) and body.
type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A real HTTP receiver on a free loopback port answering each request with the next
/// status of `statuses` (the last one repeats); `None` never answers.
async fn receiver(statuses: Vec<Option<u16>>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let got = conn.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..got]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < head_end + length {
                let got = conn.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..got]);
            }
            let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
            log.lock().unwrap().push((head, body));
            let status = statuses[n.min(statuses.len() - 1)];
            n += 1;
            match status {
                Some(code) => {
                    let answer = format!(
                        "HTTP/1.1 {code} X\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    conn.write_all(answer.as_bytes()).await.unwrap();
                }
                // Hold the connection open, answering nothing.
                None => {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        drop(conn);
                    });
                }
            }
        }
    });
    (url, seen)
}

fn alert(url: &str) -> AlertConfig {
    AlertConfig {
        name: "oncall".into(),
        url: url.into(),
        on: vec![AlertEvent::Failure, AlertEvent::ExpectationFailed],
        headers: vec![("X-Team".into(), "data".into())],
        headers_env: vec![("Authorization".into(), "HOOK_TOKEN".into())],
        retries: 2,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_millis(500),
    }
}

fn summary(failed: bool, failing_rows: u64) -> RunSummary {
    let now = Utc::now();
    let step = |t: &str, status, error: Option<&str>| StepOutcome {
        table: TableId::parse(t).unwrap(),
        status,
        started_at: now,
        ended_at: now,
        attempts: 1,
        report: StepReport {
            expectations: vec![ExpectationOutcome {
                table: t.into(),
                rule: "amount_positive".into(),
                action: Action::Quarantine,
                passed: 10,
                failed: failing_rows,
            }],
            ..StepReport::default()
        },
        error: error.map(str::to_string),
    };
    let mut steps = vec![step("silver.orders", StepStatus::Succeeded, None)];
    if failed {
        steps.push(step(
            "gold.kpis",
            StepStatus::Failed,
            Some("division by zero"),
        ));
    }
    RunSummary {
        run_id: "r-1".into(),
        started_at: now,
        ended_at: now,
        steps,
    }
}

#[test]
fn a_run_raises_the_events_each_alert_asked_for() {
    let alerts = [alert("http://h/"), {
        let mut a = alert("http://h/");
        a.name = "chat".into();
        a.on = vec![AlertEvent::Success];
        a
    }];
    let sent = bodies(&alerts, "retail", &summary(true, 2), "schedule:nightly");
    let events: Vec<(&str, &str)> = sent
        .iter()
        .map(|(a, b)| (a.name.as_str(), b.event.as_str()))
        .collect();
    assert_eq!(
        events,
        [("oncall", "failure"), ("oncall", "expectation_failed")]
    );
    let body = &sent[0].1;
    assert_eq!(body.schedule.as_deref(), Some("nightly"));
    assert_eq!(body.status, "failed");
    assert_eq!(
        body.failed_steps,
        [FailedStep {
            table: "gold.kpis".into(),
            status: "failed".into(),
            error: Some("division by zero".into())
        }]
    );
    assert_eq!(body.failed_expectations.len(), 2);

    let sent = bodies(&alerts, "retail", &summary(false, 0), "cli");
    let events: Vec<(&str, &str)> = sent
        .iter()
        .map(|(a, b)| (a.name.as_str(), b.event.as_str()))
        .collect();
    assert_eq!(events, [("chat", "success")]);
    assert_eq!(sent[0].1.schedule, None);
}

#[tokio::test]
async fn a_refused_alert_is_retried_with_its_headers_and_body() {
    let (url, seen) = receiver(vec![Some(503), Some(200)]).await;
    let a = alert(&url);
    let (_, body) = bodies(std::slice::from_ref(&a), "retail", &summary(true, 0), "ana")
        .pop()
        .unwrap();
    let env = |k: &str| (k == "HOOK_TOKEN").then(|| "Bearer s3cret".to_string());
    let (attempts, ok) = deliver(&reqwest::Client::new(), &a, &body, &env).await;
    assert_eq!((attempts, ok), (2, true));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (head, json) = &seen[1];
    assert!(head.starts_with("post /hook http/1.1"), "{head}");
    assert!(head.contains("authorization: bearer s3cret"), "{head}");
    assert!(head.contains("x-team: data"), "{head}");
    assert_eq!(json["event"], "failure");
    assert_eq!(json["run_id"], "r-1");
    assert_eq!(json["started_by"], "ana");
    assert_eq!(json["failed_steps"][0]["table"], "gold.kpis");
}

#[tokio::test]
async fn an_alert_is_given_up_after_its_retries_and_a_4xx_is_not_retried() {
    let (url, seen) = receiver(vec![Some(500)]).await;
    let a = alert(&url);
    let (_, body) = bodies(std::slice::from_ref(&a), "retail", &summary(true, 0), "ana")
        .pop()
        .unwrap();
    let none = |_: &str| None;
    let (attempts, ok) = deliver(&reqwest::Client::new(), &a, &body, &none).await;
    assert_eq!((attempts, ok), (3, false), "one attempt and two retries");
    assert_eq!(seen.lock().unwrap().len(), 3);

    let (url, seen) = receiver(vec![Some(404)]).await;
    let a = alert(&url);
    let (attempts, ok) = deliver(&reqwest::Client::new(), &a, &body, &none).await;
    assert_eq!((attempts, ok), (1, false));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_webhook_that_never_answers_delays_nothing() {
    let (url, seen) = receiver(vec![None]).await;
    let mut a = alert(&url);
    a.retries = 0;
    a.timeout = Duration::from_millis(200);
    let (alerter, delivery) = Alerter::start(vec![a], "retail");
    let clock = std::time::Instant::now();
    for _ in 0..(QUEUE + 10) {
        alerter.notify(&summary(true, 0), "cli");
    }
    assert!(
        clock.elapsed() < Duration::from_millis(100),
        "notify queued {} alerts in {:?}",
        QUEUE + 10,
        clock.elapsed()
    );
    drop(alerter);
    // The queue is bounded: flushing gives up on what is left.
    delivery.flush(Duration::from_millis(700)).await;
    let got = seen.lock().unwrap().len();
    assert!(
        (1..QUEUE).contains(&got),
        "{got} requests reached the receiver"
    );
}
