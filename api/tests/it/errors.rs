//! One table from error kind to HTTP status: the gateway over a fake core that fails every
//! call with one kind, for each kind and on several routes. Internal details never reach
//! the client.

use std::sync::Arc;
use std::time::Duration;

use assay_api::{Cache, Gateway};
use assay_engine::ErrorKind;
use assay_testkit::{FAKE_TOKEN, Failing, KINDS};

fn expected(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::NotFound => (404, "not_found"),
        ErrorKind::Invalid => (400, "bad_request"),
        ErrorKind::Forbidden => (403, "forbidden"),
        ErrorKind::Unauthenticated => (401, "unauthenticated"),
        ErrorKind::Conflict => (409, "conflict"),
        ErrorKind::Busy => (429, "busy"),
        ErrorKind::Unavailable => (503, "unavailable"),
        ErrorKind::Timeout => (504, "timeout"),
        ErrorKind::TooLarge => (422, "too_many_rows"),
        ErrorKind::Internal => (500, "internal"),
    }
}

#[tokio::test]
async fn every_error_kind_maps_to_one_status_on_every_route() {
    let client = reqwest::Client::new();
    for kind in KINDS {
        let gw = Gateway::new(
            Arc::new(Failing { kind }),
            Cache::memory(10, Duration::from_secs(60)),
            100,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(assay_api::serve(listener, gw, None, std::future::pending()));
        for (method, path, body) in [
            ("GET", "/api/v1/catalog", None),
            ("GET", "/api/v1/tables/gold.x", None),
            ("GET", "/api/v1/tables/gold.x/rows?a=1", None),
            (
                "POST",
                "/api/v1/query",
                Some(serde_json::json!({"sql": "SELECT 1"})),
            ),
            ("GET", "/api/v1/runs", None),
            ("GET", "/api/v1/schedules", None),
            (
                "PATCH",
                "/api/v1/schedules/nightly",
                Some(serde_json::json!({"paused": true})),
            ),
            ("GET", "/api/v1/users", None),
            ("GET", "/api/v1/api-keys", None),
        ] {
            let mut req = client
                .request(method.parse().unwrap(), format!("http://{addr}{path}"))
                .bearer_auth(FAKE_TOKEN);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap();
            let (want, code) = expected(kind);
            assert_eq!(
                (status, body["code"].as_str()),
                (want, Some(code)),
                "{kind:?} {method} {path}: {body}"
            );
            assert!(
                !body.to_string().contains("secret"),
                "{kind:?} {path}: {body}"
            );
        }
        server.abort();
    }
}
