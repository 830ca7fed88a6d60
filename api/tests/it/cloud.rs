//! The gateway serving tables stored on S3 (moto) and Azure Blob Storage (Azurite).

use std::time::Duration;

use assay_api::Cache;
use assay_engine::query::QueryLimits;
use assay_testkit::Backend;
use reqwest::Method;
use serde_json::json;

use crate::kit::{ADMIN, READER, Server, column};

async fn serves_a_lake_on(backend: Backend) {
    let s = Server::start_on(
        backend,
        Cache::memory(100, Duration::from_secs(60)),
        QueryLimits::default(),
    )
    .await;
    assert!(!s.lake.root().as_str().starts_with("file:"));
    let reader = s.token(READER).await;
    let path = "/api/v1/tables/gold.products/rows?category=C&order_by=product_id";
    let (status, cache, body) = s.get(path, &reader).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{body}");
    assert_eq!(column(&body, "product_id"), ["30", "31"]);
    assert_eq!(s.get(path, &reader).await.1, "hit");
    let admin = s.token(ADMIN).await;
    let res = s
        .call(
            Method::POST,
            "/api/v1/tables/gold.products/rows",
            Some(&admin),
            Some(json!([{"product_id": 32, "name": "Latte glass", "category": "C", "price": 7.5}])),
        )
        .await;
    assert_eq!(res.status(), 201);
    let (_, cache, body) = s.get(path, &reader).await;
    assert_eq!(cache, "miss");
    assert_eq!(column(&body, "product_id"), ["30", "31", "32"]);
    let (_, _, body) = s.get("/api/v1/catalog", &reader).await;
    assert_eq!(body["tables"][0]["rows"], 5, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_table_stored_on_s3() {
    serves_a_lake_on(Backend::start("s3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_table_stored_on_azure() {
    serves_a_lake_on(Backend::start("azure")).await;
}
