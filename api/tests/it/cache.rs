//! The cache: hits and misses, exact invalidation on insert, job commits, Redis outages.

use std::sync::atomic::Ordering;

use assay_testkit::Redis;
use reqwest::Method;
use serde_json::json;

use crate::kit::{ADMIN, READER, Server, append, column, products};

const C: &str = "/api/v1/tables/gold.products/rows?category=C";
const A: &str = "/api/v1/tables/gold.products/rows?category=A";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_deletes_exactly_the_keys_it_affects() {
    let redis = Redis::start();
    let s = Server::with_redis(&redis.url()).await;
    let reader = s.token(READER).await;
    let admin = s.token(ADMIN).await;

    let (status, cache, body) = s.get(C, &reader).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{body}");
    let mut ids = column(&body, "product_id");
    ids.sort();
    assert_eq!(ids, ["30", "31"]);
    assert_eq!(s.get(C, &reader).await.1, "hit");
    assert_eq!(
        redis.cli(&["EXISTS", "assay:rows:gold.products:category=C"]),
        "1"
    );
    assert_eq!(s.get(A, &reader).await.1, "miss");
    assert_eq!(s.get(A, &reader).await.1, "hit");
    let all = "/api/v1/tables/gold.products/rows?limit=50";
    assert_eq!(s.get(all, &reader).await.1, "miss");

    let res = s
        .call(
            Method::POST,
            "/api/v1/tables/gold.products/rows",
            Some(&admin),
            Some(json!([{"product_id": 32, "name": "Latte glass", "category": "C", "price": 7.5}])),
        )
        .await;
    assert_eq!(res.status(), 201);
    let written: serde_json::Value = res.json().await.unwrap();
    assert_eq!(written["version"], 1);
    assert_eq!(written["rows_written"], 1);

    // The category=C key and the unfiltered key are gone; category=A stays.
    assert_eq!(
        redis.cli(&["EXISTS", "assay:rows:gold.products:category=C"]),
        "0"
    );
    assert_eq!(
        redis.cli(&["EXISTS", "assay:rows:gold.products:limit=50"]),
        "0"
    );
    assert_eq!(
        redis.cli(&["EXISTS", "assay:rows:gold.products:category=A"]),
        "1"
    );
    let (_, cache, body) = s.get(C, &reader).await;
    assert_eq!(cache, "miss");
    let mut ids = column(&body, "product_id");
    ids.sort();
    assert_eq!(ids, ["30", "31", "32"]);
    assert!(column(&body, "name").contains(&"Latte glass".to_string()));
    assert_eq!(s.get(A, &reader).await.1, "hit");
    assert_eq!(s.get(all, &reader).await.2["count"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_commit_makes_the_next_get_a_miss_with_fresh_data() {
    for redis in [Some(Redis::start()), None] {
        let s = match &redis {
            Some(r) => Server::with_redis(&r.url()).await,
            None => Server::start().await,
        };
        let reader = s.token(READER).await;
        let path = "/api/v1/tables/gold.products/rows?category=B&order_by=product_id";
        assert_eq!(s.get(path, &reader).await.1, "miss");
        assert_eq!(s.get(path, &reader).await.1, "hit");
        // Another writer (a job, another process) commits to the table.
        append(
            &s.lake,
            "gold.products",
            products(&[21], &["Scale"], &["B"], &[3500]),
        )
        .await;
        let (_, cache, body) = s.get(path, &reader).await;
        assert_eq!(cache, "miss", "cache {}", s.gateway.cache.kind());
        assert_eq!(column(&body, "product_id"), ["20", "21"]);
        assert_eq!(s.get(path, &reader).await.1, "hit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_costs_speed_not_errors() {
    let mut redis = Redis::start();
    let s = Server::with_redis(&redis.url()).await;
    let reader = s.token(READER).await;
    assert_eq!(s.get(C, &reader).await.1, "miss");
    assert_eq!(s.get(C, &reader).await.1, "hit");
    redis.kill();
    for _ in 0..3 {
        let (status, cache, body) = s.get(C, &reader).await;
        assert_eq!((status, cache.as_str()), (200, "miss"), "{body}");
        assert_eq!(column(&body, "product_id"), ["30", "31"]);
    }
    assert!(s.gateway.cache.stats.errors.load(Ordering::Relaxed) >= 3);
    redis.restart();
    // The connection manager reconnects; caching resumes.
    let mut hit = false;
    for _ in 0..50 {
        let (status, cache, _) = s.get(C, &reader).await;
        assert_eq!(status, 200);
        if cache == "hit" {
            hit = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(hit, "caching resumed after Redis came back");
}

#[tokio::test]
async fn etags_answer_if_none_match_with_304() {
    let s = Server::start().await;
    let reader = s.token(READER).await;
    let res = s.call(Method::GET, C, Some(&reader), None).await;
    let tag = res.headers()["etag"].to_str().unwrap().to_string();
    let res = s.get_with(C, &reader, &[("If-None-Match", &tag)]).await;
    assert_eq!(res.status(), 304);
    // After a commit the tag changes: the old one gets the full answer.
    append(
        &s.lake,
        "gold.products",
        products(&[33], &["Cup"], &["C"], &[500]),
    )
    .await;
    let res = s.get_with(C, &reader, &[("If-None-Match", &tag)]).await;
    assert_eq!(res.status(), 200);
    assert_ne!(res.headers()["etag"].to_str().unwrap(), tag);
}

#[tokio::test]
async fn the_catalog_is_cached_until_a_commit() {
    let s = Server::start().await;
    let admin = s.token(ADMIN).await;
    let (status, cache, body) = s.get("/api/v1/catalog?layer=gold", &admin).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{body}");
    assert_eq!(body["tables"][0]["rows"], 4);
    assert_eq!(s.get("/api/v1/catalog?layer=gold", &admin).await.1, "hit");
    append(
        &s.lake,
        "gold.products",
        products(&[40], &["Filter"], &["A"], &[450]),
    )
    .await;
    let (_, cache, body) = s.get("/api/v1/catalog?layer=gold", &admin).await;
    assert_eq!(cache, "miss");
    assert_eq!(body["tables"][0]["rows"], 5);
    assert_eq!(body["tables"][0]["version"], 1);
}
