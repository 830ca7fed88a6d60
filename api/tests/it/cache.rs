//! The cache: hits and misses, exact invalidation on insert, job commits, Redis outages.

use std::sync::Arc;
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
    // Keys carry the lake: `assay:<12 hex digits>:rows:<table>:<query>`.
    let key = |q: &str| s.gateway.cache.rows_key("gold.products", q);
    assert!(
        key("category=C").starts_with("assay:")
            && key("category=C").ends_with(":rows:gold.products:category=C")
    );

    let (status, cache, body) = s.get(C, &reader).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{body}");
    let mut ids = column(&body, "product_id");
    ids.sort();
    assert_eq!(ids, ["30", "31"]);
    assert_eq!(s.get(C, &reader).await.1, "hit");
    assert_eq!(redis.cli(&["EXISTS", &key("category=C")]), "1");
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
    assert_eq!(redis.cli(&["EXISTS", &key("category=C")]), "0");
    assert_eq!(redis.cli(&["EXISTS", &key("limit=50")]), "0");
    assert_eq!(redis.cli(&["EXISTS", &key("category=A")]), "1");
    let (_, cache, body) = s.get(C, &reader).await;
    assert_eq!(cache, "miss");
    let mut ids = column(&body, "product_id");
    ids.sort();
    assert_eq!(ids, ["30", "31", "32"]);
    assert!(column(&body, "name").contains(&"Latte glass".to_string()));
    assert_eq!(s.get(A, &reader).await.1, "hit");
    assert_eq!(s.get(all, &reader).await.2["count"], 5);
}

/// Polls `path` until the gateway answers afresh (a miss) after a commit it did not make
/// itself, which must happen within its refresh interval (plus the time to answer).
async fn fresh_within_the_refresh_bound(s: &Server, path: &str, token: &str) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let (status, cache, body) = s.get(path, token).await;
        assert_eq!(status, 200, "{body}");
        if cache == "miss" {
            return body;
        }
        assert!(
            started.elapsed() < crate::kit::REFRESH * 3,
            "still a stale hit after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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
        let body = fresh_within_the_refresh_bound(&s, path, &reader).await;
        assert_eq!(
            column(&body, "product_id"),
            ["20", "21"],
            "cache {}",
            s.gateway.cache.kind()
        );
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
    let (status, cache, _) = s.get(C, &reader).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    // After the first error Redis is left alone for a while: requests do not wait on it.
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let (status, cache, body) = s.get(C, &reader).await;
        assert_eq!((status, cache.as_str()), (200, "miss"), "{body}");
        assert_eq!(column(&body, "product_id"), ["30", "31"]);
    }
    let took = started.elapsed();
    assert!(
        took < assay_api::cache::PAUSE_AFTER_ERROR,
        "three uncached answers took {took:?}"
    );
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
    fresh_within_the_refresh_bound(&s, C, &reader).await;
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
    let body = fresh_within_the_refresh_bound(&s, "/api/v1/catalog?layer=gold", &admin).await;
    assert_eq!(body["tables"][0]["rows"], 5);
    assert_eq!(body["tables"][0]["version"], 1);
}

/// A table with a decimal, a date, a timestamp and a nullable text column.
async fn events_table(s: &Server) {
    use arrow::array::{
        ArrayRef, Date32Array, Decimal128Array, StringArray, TimestampMicrosecondArray,
    };
    let batch = arrow::array::RecordBatch::try_from_iter_with_nullable(vec![
        (
            "id",
            Arc::new(arrow::array::Int64Array::from(vec![1])) as ArrayRef,
            false,
        ),
        (
            "price",
            Arc::new(
                Decimal128Array::from(vec![500])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ) as ArrayRef,
            true,
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![20_393])) as ArrayRef,
            true,
        ), // 2025-11-01
        (
            "at",
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_761_984_000_000_000]).with_timezone("UTC"),
            ) as ArrayRef,
            true,
        ),
        (
            "note",
            Arc::new(StringArray::from(vec![Some("first")])) as ArrayRef,
            true,
        ),
    ])
    .unwrap();
    append(&s.lake, "gold.events", batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_invalidates_by_the_typed_value_not_its_text() {
    let redis = Redis::start();
    let s = Server::with_redis(&redis.url()).await;
    events_table(&s).await;
    let reader = s.token(READER).await;
    let admin = s.token(ADMIN).await;
    let base = "/api/v1/tables/gold.events/rows?";
    // (query, touched by the row appended below)
    let queries = [
        ("price=10.5", true),
        ("price=10.50", true),
        ("price[gte]=10", true),
        ("price[lt]=10", false),
        ("price[in]=3,10.5", true),
        ("price[in]=3,4", false),
        ("day=2026-11-02", true),
        ("day[gt]=2026-11-02", false),
        ("at=2026-11-02T10:00:00Z", true),
        ("at[lt]=2026-11-01T00:00:00Z", false),
        ("note[like]=fir%25", false),
        ("note=first", false),
        ("id=2", true),
    ];
    for (q, _) in queries {
        let path = format!("{base}{q}");
        assert_eq!(s.get(&path, &reader).await.1, "miss", "{q}");
        assert_eq!(s.get(&path, &reader).await.1, "hit", "{q}");
    }
    // The decimal as a string, the timestamp with an offset, the note NULL.
    let res = s
        .call(
            Method::POST,
            "/api/v1/tables/gold.events/rows",
            Some(&admin),
            Some(json!([{"id": 2, "price": "10.50", "day": "2026-11-02", "at": "2026-11-02T12:00:00+02:00", "note": null}])),
        )
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    for (q, touched) in queries {
        let (_, cache, body) = s.get(&format!("{base}{q}"), &reader).await;
        let want = if touched { "miss" } else { "hit" };
        assert_eq!(cache, want, "{q}: {body}");
        if touched {
            assert!(
                column(&body, "id").contains(&"2".to_string()),
                "{q}: {body}"
            );
        }
    }
    // A number sent as a JSON number touches the same keys.
    let res = s
        .call(
            Method::POST,
            "/api/v1/tables/gold.events/rows",
            Some(&admin),
            Some(json!([{"id": 3, "price": 10.5, "day": "2026-10-01", "at": "2026-10-01T00:00:00Z", "note": "x"}])),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(s.get(&format!("{base}price=10.5"), &reader).await.1, "miss");
    assert_eq!(
        s.get(&format!("{base}day=2026-11-02"), &reader).await.1,
        "hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_see_each_others_commits_at_once_and_never_each_others_lakes() {
    let redis = Redis::start();
    let a = Server::with_redis(&redis.url()).await;
    let b = Server::with_redis(&redis.url()).await;
    let reader = a.token(READER).await;
    let admin = a.token(ADMIN).await;
    let reader_b = b.token(READER).await;
    // Different lakes (two temp dirs): different key namespaces, no shared entries.
    assert_ne!(a.gateway.cache.prefix(), b.gateway.cache.prefix());
    assert_eq!(a.get(C, &reader).await.1, "miss");
    assert_eq!(b.get(C, &reader_b).await.1, "miss");
    let res = a
        .call(
            Method::POST,
            "/api/v1/tables/gold.products/rows",
            Some(&admin),
            Some(json!([{"product_id": 77, "name": "Only in A", "category": "C", "price": 1}])),
        )
        .await;
    assert_eq!(res.status(), 201);
    let (_, _, body) = b.get(C, &reader_b).await;
    assert!(
        !column(&body, "product_id").contains(&"77".to_string()),
        "{body}"
    );

    // A replica of A (same lake, same Redis) learns A's commit from the announcement, well
    // before its own refresh would.
    let replica = Server::replica_of(&a, &redis.url(), std::time::Duration::from_secs(60)).await;
    let token = replica.token(READER).await;
    assert_eq!(a.get(A, &reader).await.1, "miss");
    assert_eq!(
        replica.get(A, &token).await.1,
        "hit",
        "the replica shares A's entries"
    );
    let res = a
        .call(
            Method::POST,
            "/api/v1/tables/gold.products/rows",
            Some(&admin),
            Some(json!([{"product_id": 78, "name": "Announced", "category": "C", "price": 1}])),
        )
        .await;
    assert_eq!(res.status(), 201);
    let (_, _, body) = replica.get(C, &token).await;
    assert!(
        column(&body, "product_id").contains(&"78".to_string()),
        "{body}"
    );
    // The untouched key was re-stamped by A; the replica knows the new version from the
    // announcement (its own refresh is a minute away), so it is still a hit there.
    let started = std::time::Instant::now();
    loop {
        let (_, cache, _) = replica.get(A, &token).await;
        if cache == "hit" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{cache}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
