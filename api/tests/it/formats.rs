//! Content negotiation (CSV, Arrow IPC, Parquet), streamed large responses, the OpenAPI
//! document against the router, and `/metrics`.

use std::time::Duration;

use arrow::array::RecordBatch;
use assay_api::Cache;
use assay_engine::query::QueryLimits;
use reqwest::Method;
use serde_json::json;

use crate::kit::{ADMIN, READER, Server};

async fn get_as(s: &Server, path: &str, token: &str, accept: &str) -> reqwest::Response {
    s.get_with(path, token, &[("Accept", accept)]).await
}

fn arrow_batches(bytes: &[u8]) -> Vec<RecordBatch> {
    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn parquet_batches(bytes: bytes::Bytes) -> Vec<RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

#[tokio::test]
async fn rows_in_csv_arrow_and_parquet() {
    let s = Server::start().await;
    let t = s.token(READER).await;
    let path = "/api/v1/tables/gold.products/rows?category[in]=A,C&order_by=product_id&columns=product_id,name";

    let res = get_as(&s, path, &t, "text/csv").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(res.headers()["x-cache"], "bypass");
    let tag = res.headers()["etag"].to_str().unwrap().to_string();
    let csv = res.text().await.unwrap();
    let (_, json) = {
        let (st, _, body) = s.get(path, &t).await;
        (st, body)
    };
    let ids = crate::kit::column(&json, "product_id");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("product_id,name"));
    let csv_ids: Vec<String> = lines
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(csv_ids, ids);
    assert!(!ids.is_empty());

    // The CSV ETag answers 304 and differs from the JSON one.
    let res = s
        .get_with(path, &t, &[("Accept", "text/csv"), ("If-None-Match", &tag)])
        .await;
    assert_eq!(res.status(), 304);

    let res = get_as(&s, path, &t, "application/vnd.apache.arrow.stream").await;
    assert_eq!(res.status(), 200);
    let batches = arrow_batches(&res.bytes().await.unwrap());
    assert_eq!(rows(&batches), ids.len());
    assert_eq!(batches[0].schema().field(0).name(), "product_id");

    let res = get_as(&s, path, &t, "application/vnd.apache.parquet").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.apache.parquet"
    );
    let batches = parquet_batches(res.bytes().await.unwrap());
    assert_eq!(rows(&batches), ids.len());

    // Preference order and q-values; unsupported types are a 406 naming the supported ones.
    let res = get_as(&s, path, &t, "application/xml;q=1, text/csv;q=0.5").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let res = get_as(&s, path, &t, "application/xml").await;
    assert_eq!(res.status(), 406);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("text/csv"),
        "{body}"
    );
    // An empty result is still a valid file with the columns.
    let res = get_as(
        &s,
        "/api/v1/tables/gold.products/rows?category=none",
        &t,
        "application/vnd.apache.parquet",
    )
    .await;
    let batches = parquet_batches(res.bytes().await.unwrap());
    assert_eq!(rows(&batches), 0);
}

#[tokio::test]
async fn large_query_results_stream() {
    let limits = QueryLimits {
        max_rows: Some(1_000_000),
        ..QueryLimits::default()
    };
    let s = Server::start_with(Cache::memory(10, Duration::from_secs(60)), limits).await;
    let t = s.token(ADMIN).await;
    let sql = json!({"sql": "SELECT value, value * 2 AS twice FROM range(300000) ORDER BY value", "limit": 250000});
    for accept in [
        "application/vnd.apache.arrow.stream",
        "application/vnd.apache.parquet",
        "text/csv",
        "application/json",
    ] {
        let res = reqwest::Client::new()
            .post(s.url("/api/v1/query"))
            .bearer_auth(&t)
            .header("Accept", accept)
            .json(&sql)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{accept}");
        // Streamed: chunked, no length known up front.
        assert!(res.headers().get("content-length").is_none(), "{accept}");
        let bytes = res.bytes().await.unwrap();
        let n = match accept {
            "text/csv" => {
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count()
                    - 1
            }
            "application/vnd.apache.parquet" => rows(&parquet_batches(bytes)),
            "application/json" => {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(v["truncated"], true);
                assert_eq!(v["count"], 250_000);
                assert_eq!(v["rows"][249_999]["twice"], 499_998);
                v["rows"].as_array().unwrap().len()
            }
            _ => rows(&arrow_batches(&bytes)),
        };
        assert_eq!(n, 250_000, "{accept}");
    }
    // Read-only rules hold for every format.
    let res = reqwest::Client::new()
        .post(s.url("/api/v1/query"))
        .bearer_auth(&t)
        .header("Accept", "text/csv")
        .json(&json!({"sql": "COPY (SELECT 1) TO '/tmp/x.csv'"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn openapi_document_matches_the_router() {
    let s = Server::start().await;
    let (status, _, doc) = s.get("/api/v1/openapi.json", "unused").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = assay_api::openapi::operations();
    assert_eq!(
        doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum::<usize>(),
        ops.len()
    );
    for o in ops {
        let path = o
            .path
            .replace("{table}", "gold.products")
            .replace('{', "x")
            .replace('}', "");
        let method = Method::from_bytes(o.method.as_bytes()).unwrap();
        let res = s.call(method, &path, None, None).await;
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_ne!(status, 405, "{} {} is not routed", o.method, o.path);
        assert!(
            !body.contains("no such endpoint"),
            "{} {} is not routed",
            o.method,
            o.path
        );
        if o.auth {
            assert_eq!(status, 401, "{} {} must need a token", o.method, o.path);
        } else {
            assert_ne!(status, 401, "{} {} must be open", o.method, o.path);
        }
    }
}

#[tokio::test]
async fn metrics_count_requests_and_cache_outcomes() {
    let s = Server::start().await;
    let reader = s.token(READER).await;
    let path = "/api/v1/tables/gold.products/rows?category=B";
    s.get(path, &reader).await;
    s.get(path, &reader).await;
    let (status, _) = {
        let res = s.call(Method::GET, "/metrics", Some(&reader), None).await;
        (res.status().as_u16(), ())
    };
    assert_eq!(status, 403, "readers do not see metrics");
    let admin = s.token(ADMIN).await;
    let res = s.call(Method::GET, "/metrics", Some(&admin), None).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"assay_http_requests_total{method="GET",route="/api/v1/tables/{table}/rows",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("assay_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("assay_cache_hits_total{cache=\"memory\"}"),
        "{text}"
    );
}
