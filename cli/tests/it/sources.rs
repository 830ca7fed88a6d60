//! `kind = "http"` bronze sources against a real HTTP server in the test: every pagination
//! style, retries on 500 and 429 with `Retry-After`, bearer auth from the environment,
//! incremental runs by a watermark with records at the boundary, a crash between fetch and
//! commit, and bad answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::kit::{Fixture, succeeded as ok};

const TOKEN: &str = "s3cr3t-t0ken-value";

/// The API's records and how often it misbehaves.
#[derive(Default)]
struct Api {
    records: Mutex<Vec<Value>>,
    requests: AtomicU64,
    failures: AtomicU64,
    throttled: AtomicU64,
}

type Shared = Arc<Api>;
type Params = Query<HashMap<String, String>>;

fn param(q: &HashMap<String, String>, k: &str, default: u64) -> u64 {
    q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Records with `updated_at >= updated_since` (inclusive), ordered by (updated_at, id).
fn selected(api: &Api, q: &HashMap<String, String>) -> Vec<Value> {
    let mut all: Vec<Value> = api
        .records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            q.get("updated_since")
                .is_none_or(|s| r["updated_at"].as_str().unwrap() >= s.as_str())
        })
        .cloned()
        .collect();
    all.sort_by_key(|r| {
        (
            r["updated_at"].as_str().unwrap().to_string(),
            r["id"].as_u64(),
        )
    });
    all
}

/// Every 4th request fails with 500, and the 2nd is throttled with `Retry-After: 1`.
fn flaky(api: &Api) -> Option<Response> {
    let n = api.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 2 {
        api.throttled.fetch_add(1, Ordering::SeqCst);
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "slow down",
            )
                .into_response(),
        );
    }
    if n.is_multiple_of(4) {
        api.failures.fetch_add(1, Ordering::SeqCst);
        return Some((StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response());
    }
    None
}

async fn pages(State(api): State<Shared>, headers: HeaderMap, Query(q): Params) -> Response {
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    if let Some(r) = flaky(&api) {
        return r;
    }
    let (page, size) = (param(&q, "page", 1), param(&q, "per_page", 10));
    let rows: Vec<Value> = selected(&api, &q)
        .into_iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .collect();
    axum::Json(json!({"meta": {"page": page}, "data": rows})).into_response()
}

async fn cursor(State(api): State<Shared>, Query(q): Params) -> Response {
    if let Some(r) = flaky(&api) {
        return r;
    }
    let from = param(&q, "cursor", 0);
    let all = selected(&api, &q);
    let rows: Vec<Value> = all.iter().skip(from as usize).take(3).cloned().collect();
    let next = (from + 3 < all.len() as u64).then(|| (from + 3).to_string());
    axum::Json(json!({"items": rows, "next": next})).into_response()
}

async fn offset(State(api): State<Shared>, Query(q): Params) -> Response {
    let (from, limit) = (param(&q, "offset", 0), param(&q, "limit", 100));
    let rows: Vec<Value> = selected(&api, &q)
        .into_iter()
        .skip(from as usize)
        .take(limit as usize)
        .collect();
    axum::Json(Value::Array(rows)).into_response()
}

async fn link(State(api): State<Shared>, Query(q): Params) -> Response {
    let page = param(&q, "p", 0);
    let all = selected(&api, &q);
    let rows: Vec<Value> = all
        .iter()
        .skip((page * 4) as usize)
        .take(4)
        .cloned()
        .collect();
    let mut resp = axum::Json(Value::Array(rows)).into_response();
    if (page + 1) * 4 < all.len() as u64 {
        let next = format!("</link?p={}>; rel=\"next\"", page + 1);
        resp.headers_mut()
            .insert(header::LINK, next.parse().unwrap());
    }
    resp
}

async fn not_json() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html")],
        "<html>maintenance</html>",
    )
        .into_response()
}

/// Serves the API on a free loopback port from its own thread; returns its base URL.
fn serve(api: Shared) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/items", get(pages))
                .route("/cursor", get(cursor))
                .route("/offset", get(offset))
                .route("/link", get(link))
                .route("/maintenance", get(not_json))
                .with_state(api);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    base
}

fn record(id: u64, name: &str, at: &str) -> Value {
    json!({"id": id, "name": name, "updated_at": at, "tags": ["a", "b"]})
}

fn project(base: &str) -> String {
    format!(
        r#"
[[bronze]]
name = "items"
source = {{ kind = "http", url = "{base}/items", records = "/data", auth = {{ bearer_env = "ITEMS_TOKEN" }},
           pagination = {{ kind = "page", size_param = "per_page", size = 2 }},
           backoff = "50ms", incremental = {{ field = "updated_at", param = "updated_since" }} }}

[[bronze]]
name = "by_cursor"
source = {{ kind = "http", url = "{base}/cursor", records = "/items", backoff = "50ms",
           pagination = {{ kind = "cursor", pointer = "/next" }} }}

[[bronze]]
name = "by_offset"
source = {{ kind = "http", url = "{base}/offset", pagination = {{ kind = "offset", limit = 3 }} }}

[[bronze]]
name = "by_link"
source = {{ kind = "http", url = "{base}/link", pagination = {{ kind = "link" }}, rate = 50.0 }}
"#
    )
}

fn run(f: &Fixture, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    f.command(&args).env("ITEMS_TOKEN", TOKEN).output().unwrap()
}

#[tokio::test]
async fn http_sources_page_every_way_retry_and_load_incrementally_exactly_once() {
    let api: Shared = Arc::default();
    *api.records.lock().unwrap() = (1..=7)
        .map(|i| record(i, &format!("n{i}"), &format!("2026-11-0{i}T10:00:00Z")))
        .collect();
    let base = serve(Arc::clone(&api));
    let f = Fixture::with_config(&project(&base));

    ok(&run(&f, &[]));
    for t in ["items", "by_cursor", "by_offset", "by_link"] {
        assert_eq!(f.count(&format!("bronze.{t}")).await, 7, "bronze.{t}");
    }
    assert!(
        api.failures.load(Ordering::SeqCst) >= 1,
        "500s were retried"
    );
    assert_eq!(api.throttled.load(Ordering::SeqCst), 1, "a 429 was retried");
    assert_eq!(
        f.table("SELECT id, name, tags FROM bronze.items WHERE id = '3'")
            .await,
        "+----+------+-----------+\n| id | name | tags      |\n+----+------+-----------+\n| 3  | n3   | [\"a\",\"b\"] |\n+----+------+-----------+"
    );

    // Between runs: one record changes, one arrives with the watermark's own timestamp
    // (the boundary), and nothing else.
    {
        let mut records = api.records.lock().unwrap();
        records[1] = record(2, "n2 updated", "2026-11-08T10:00:00Z");
        records.push(record(8, "n8", "2026-11-07T10:00:00Z"));
    }
    // A crash between fetch and commit writes nothing; the rerun is exact.
    let out = run(
        &f,
        &[
            "--select",
            "bronze.items",
            "--inject-fault",
            "before_commit:bronze.items",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(f.count("bronze.items").await, 7);
    ok(&run(&f, &["--select", "bronze.items"]));
    assert_eq!(
        f.table("SELECT id, name, updated_at FROM bronze.items ORDER BY updated_at, id").await,
        f.table("SELECT * FROM (VALUES ('1','n1','2026-11-01T10:00:00Z'),('2','n2','2026-11-02T10:00:00Z'),('3','n3','2026-11-03T10:00:00Z'),('4','n4','2026-11-04T10:00:00Z'),('5','n5','2026-11-05T10:00:00Z'),('6','n6','2026-11-06T10:00:00Z'),('7','n7','2026-11-07T10:00:00Z'),('8','n8','2026-11-07T10:00:00Z'),('2','n2 updated','2026-11-08T10:00:00Z')) AS t(id, name, updated_at)").await,
        "the boundary record arrives once, the seen one at the boundary is not repeated"
    );
    // Nothing new: no commit.
    let version = f.version("bronze.items").await;
    ok(&run(&f, &["--select", "bronze.items"]));
    assert_eq!(f.version("bronze.items").await, version);

    // A full refresh refetches everything into one new version.
    ok(&run(&f, &["--select", "bronze.items", "--full-refresh"]));
    assert_eq!(f.count("bronze.items").await, 8);
}

#[test]
fn bad_answers_and_credentials_fail_clearly_without_the_secret() {
    let api: Shared = Arc::default();
    *api.records.lock().unwrap() = vec![record(1, "a", "2026-11-01T10:00:00Z")];
    let base = serve(Arc::clone(&api));
    let f = Fixture::with_config(&project(&base));
    let out = f
        .command(&["run", "--select", "bronze.items"])
        .env("ITEMS_TOKEN", "wrong-secret-value")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(err.contains(&format!("GET {base}/items")), "{err}");
    assert!(!err.contains("wrong-secret-value"), "{err}");

    let out = f
        .command(&["run", "--select", "bronze.items"])
        .env_remove("ITEMS_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable `ITEMS_TOKEN` is not set"),
        "{err}"
    );

    let g = Fixture::with_config(&format!(
        "[[bronze]]\nname = \"m\"\nsource = {{ kind = \"http\", url = \"{base}/maintenance\" }}\n"
    ));
    let out = g.assay(&["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the response is not JSON"), "{err}");
    assert!(err.contains("<html>maintenance"), "{err}");

    let dead = format!("http://127.0.0.1:{}", assay_testkit::free_port());
    let h = Fixture::with_config(&format!(
        "[[bronze]]\nname = \"d\"\nsource = {{ kind = \"http\", url = \"{dead}/x\", retries = 1, backoff = \"10ms\" }}\n"
    ));
    let out = h.assay(&["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot connect") && err.contains("after 2 attempts"),
        "{err}"
    );

    let bad = Fixture::with_config(
        "[[bronze]]\nname = \"b\"\nsource = { kind = \"http\", url = \"ftp://x/y\" }\n",
    );
    let out = bad.assay(&["ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: `bronze[0].source.url`: `ftp://x/y` is not an http(s) URL"),
        "{err}"
    );
}

#[tokio::test]
async fn a_source_that_gains_columns_fails_or_adds_them_as_configured() {
    let config = |mode: &str| {
        format!(
            "[[bronze]]\nname = \"t\"\nschema_evolution = \"{mode}\"\nsource = {{ kind = \"files\", path = \"data/*.csv\" }}\n"
        )
    };
    let f = Fixture::with_config(&config("fail"));
    f.write("data/1.csv", "id\n1\n");
    f.run_ok(&[]);
    f.write("data/2.csv", "id,extra\n2,x\n");
    let out = f.assay(&["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bronze.t: the source has new column(s) extra; nothing was written"),
        "{err}"
    );
    assert_eq!(f.count("bronze.t").await, 1);
    f.write("assay.toml", &config("add_columns"));
    f.run_ok(&[]);
    assert_eq!(f.count("bronze.t WHERE extra = 'x'").await, 1);
    assert_eq!(f.count("bronze.t WHERE extra IS NULL").await, 1);
}
