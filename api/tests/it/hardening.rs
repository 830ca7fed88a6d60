//! Hostile requests by a reader: each gets a 4xx naming the limit or rule, and the server
//! keeps answering everyone else.

use std::time::{Duration, Instant};

use assay_api::cache::Cache;
use assay_engine::config::ServeLimits;
use assay_engine::query::QueryLimits;
use reqwest::Method;
use serde_json::json;

use crate::kit::{ADMIN, READER, Server};

async fn query(s: &Server, token: &str, sql: &str) -> (u16, serde_json::Value) {
    s.json(
        Method::POST,
        "/api/v1/query",
        Some(token),
        Some(json!({ "sql": sql })),
    )
    .await
}

async fn healthy(s: &Server) {
    let res = s.call(Method::GET, "/health", None, None).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn deep_long_and_wide_requests_are_400s_naming_the_limit() {
    let s = Server::start().await;
    let t = s.token(READER).await;
    // About 600 filters in a 6 KB URL.
    let filters: Vec<String> = (0..600).map(|i| format!("price[gte]={i}")).collect();
    let (status, body) = s
        .json(
            Method::GET,
            &format!("/api/v1/tables/gold.products/rows?{}", filters.join("&")),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("[query] max_filters"),
        "{body}"
    );
    let sum = format!("SELECT {}", vec!["1"; 2000].join("+"));
    let (status, body) = query(&s, &t, &sum).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("[query] max_depth")
    );
    let long = format!("SELECT '{}'", "x".repeat(100_000));
    let (status, body) = query(&s, &t, &long).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("[query] max_sql_bytes")
    );
    let nested = format!("SELECT {}1{}", "(".repeat(3000), ")".repeat(3000));
    let (status, _) = query(&s, &t, &nested).await;
    assert_eq!(status, 400);
    // A query under the limits still runs.
    let (status, body) = query(&s, &t, &format!("SELECT {} AS n", vec!["1"; 100].join("+"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["n"], 100);
    healthy(&s).await;
}

#[tokio::test]
async fn only_plans_that_read_pass_whatever_the_first_keyword() {
    let s = Server::start().await;
    let t = s.token(ADMIN).await;
    for sql in [
        "SELECT * INTO stolen FROM gold.products",
        "WITH a AS (SELECT 1) INSERT INTO gold.products SELECT * FROM gold.products",
        "SET datafusion.execution.batch_size = 1",
        "CREATE VIEW v AS SELECT 1",
        "EXPLAIN INSERT INTO gold.products SELECT * FROM gold.products",
        "DROP TABLE gold.products",
    ] {
        let (status, body) = query(&s, &t, sql).await;
        assert_eq!(status, 403, "{sql}: {body}");
        assert_eq!(body["code"], "forbidden", "{sql}");
    }
    let (status, body) = query(
        &s,
        &t,
        "WITH c AS (SELECT category FROM gold.products) SELECT count(*) AS n FROM c \
         WHERE category IN (SELECT category FROM gold.products)",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = query(&s, &t, "EXPLAIN SELECT * FROM gold.products").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn growing_functions_are_charged_to_the_query_memory() {
    let limits = QueryLimits {
        memory_bytes: 64 << 20,
        server_memory_bytes: 128 << 20,
        ..QueryLimits::default()
    };
    let s = Server::start_with(Cache::memory(100, Duration::from_secs(60)), limits).await;
    let t = s.token(READER).await;
    for sql in [
        "SELECT repeat('x', 400000000) AS x",
        "SELECT length(repeat(name, 100000000)) FROM gold.products",
        "SELECT lpad('a', 400000000)",
        "SELECT range(1, 100000000)",
    ] {
        let (status, body) = query(&s, &t, sql).await;
        assert_eq!(status, 422, "{sql}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("[query] memory_mb"),
            "{sql}: {body}"
        );
    }
    let (status, body) = query(&s, &t, "SELECT repeat('ab', 3) AS x").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["x"], "ababab");
    healthy(&s).await;
}

#[tokio::test]
async fn busy_servers_answer_429_and_stay_responsive() {
    let limits = QueryLimits {
        max_concurrent: 2,
        max_concurrent_per_user: 1,
        timeout: Duration::from_secs(3),
        ..QueryLimits::default()
    };
    let s = Server::start_with(Cache::memory(100, Duration::from_secs(60)), limits).await;
    let reader = s.token(READER).await;
    let admin = s.token(ADMIN).await;
    let heavy = "SELECT count(*) FROM generate_series(1, 100000000000)";
    let slow = {
        let (c, url, t) = (s.client.clone(), s.url("/api/v1/query"), reader.clone());
        tokio::spawn(async move {
            let res = c
                .post(url)
                .bearer_auth(t)
                .json(&json!({ "sql": heavy }))
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The same user is over its cap; the health check does not wait for the heavy query.
    let started = Instant::now();
    healthy(&s).await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let res = s
        .call(
            Method::POST,
            "/api/v1/query",
            Some(&reader),
            Some(json!({"sql": "SELECT 1"})),
        )
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "busy");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("[query] max_concurrent_per_user")
    );
    // Another user still gets in.
    let (status, _) = query(&s, &admin, "SELECT 1").await;
    assert_eq!(status, 200);
    // The heavy query is stopped by its timeout, and its slot comes back.
    assert_eq!(slow.await.unwrap(), 504);
    let (status, _) = query(&s, &reader, "SELECT 1").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::serving(ServeLimits {
        max_connections: 4,
        header_timeout: Duration::from_millis(500),
        max_body_bytes: 1 << 20,
        ..ServeLimits::default()
    })
    .await;
    // Slowloris: a request line, then headers one byte at a time, never finished.
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if slow.write_all(b"X").await.is_err() {
                break;
            }
            let mut chunk = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the slow client was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Connections past the cap are closed at once; the held ones keep working.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut chunk = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut chunk))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "over the cap: {}",
        String::from_utf8_lossy(&chunk[..n])
    );
    held[0]
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = held[0].read(&mut chunk).await.unwrap();
    assert!(String::from_utf8_lossy(&chunk[..n]).starts_with("HTTP/1.1 200"));
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    healthy(&s).await;

    // A body over `max_body_mb` is 413.
    let t = s.token(ADMIN).await;
    let big = vec![
        json!({"product_id": 1, "name": "x".repeat(1000), "category": "A", "price": 1.0});
        2000
    ];
    let res = s
        .call(
            Method::POST,
            "/api/v1/tables/gold.products/rows",
            Some(&t),
            Some(json!(big)),
        )
        .await;
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn logins_are_throttled_per_client_and_unknown_users_cost_the_same() {
    let s = Server::start().await;
    let login = |user: &'static str, pw: &'static str| {
        let (c, url) = (s.client.clone(), s.url("/api/v1/login"));
        async move {
            let started = Instant::now();
            let res = c
                .post(url)
                .json(&json!({"username": user, "password": pw}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), started.elapsed())
        }
    };
    // As slow for an unknown name as for a known one (one password hash check each).
    let (status, known) = login(READER.0, "wrong-password").await;
    assert_eq!(status, 401);
    let (status, unknown) = login("nobody-at-all", "wrong-password").await;
    assert_eq!(status, 401);
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (0.2..5.0).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}"
    );
    // The 30 logins a minute of this address run out; the 31st is 429.
    let mut codes = Vec::new();
    for _ in 0..30 {
        codes.push(login("nobody-at-all", "wrong-password").await.0);
    }
    assert!(codes.contains(&429), "{codes:?}");
    let res = s
        .client
        .post(s.url("/api/v1/login"))
        .json(&json!({"username": READER.0, "password": READER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
}
