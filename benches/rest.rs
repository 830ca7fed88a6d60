//! REST gateway load: a cached `GET /tables/gold.products/rows` whose JSON body is about
//! 1 KB, under 32 concurrent connections from `wrk` (a separate process), cached in-process,
//! in Redis, and uncached — beside `redis-benchmark` GET of a value of the same size against
//! the same `redis-server`, in the same run.
//!
//! `cargo bench -p assay-api --bench rest` (`ASSAY_BENCH_CLIENTS`, `ASSAY_BENCH_SECONDS` to
//! change concurrency and duration; `ASSAY_BENCH_CASES=in-process` runs only the cases
//! whose name contains one of the comma-separated words). Needs `wrk` and `redis-benchmark`
//! (`scripts/bench-setup.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use assay_api::{Cache, Gateway};
use assay_engine::Lake;
use assay_engine::TableId;
use assay_engine::auth::{AccessPolicy, LocalUser, Principal, Role, Secret};
use assay_engine::delta::{CommitInfo, WriteMode, write_frame};
use assay_engine::query::{QueryLimits, QueryService};
use assay_engine::session::LakeCatalog;
use assay_testkit::env_or;
use datafusion::prelude::SessionContext;

/// Requests per second and p99 in ms.
struct Outcome {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn millis(s: &str) -> f64 {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| c.is_alphabetic()).unwrap_or(s.len()));
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

/// `wrk` with `clients` connections on 2 threads for `seconds`.
fn wrk(url: &str, token: &str, clients: u64, seconds: u64) -> Outcome {
    let out = std::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{clients}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {token}"),
            url,
        ])
        .output()
        .expect("wrk (apt install wrk; scripts/bench-setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
            .unwrap_or_default()
    };
    let non_2xx = field("Non-2xx or 3xx responses:");
    assert!(non_2xx.is_empty(), "errors under load: {non_2xx}\n{text}");
    Outcome {
        rps: field("Requests/sec:").trim().parse().unwrap_or(f64::NAN),
        p50_ms: millis(&field("50%")),
        p99_ms: millis(&field("99%")),
    }
}

async fn gateway(lake: &Lake, cache: Cache) -> (String, String) {
    let catalog = LakeCatalog::load(lake.clone()).await.unwrap();
    let policy = Arc::new(
        AccessPolicy::new(
            vec![LocalUser {
                name: "bench".into(),
                password: Secret::new("bench-password"),
                role: Role::Reader,
            }],
            Duration::from_secs(3600),
        )
        .with_secret(b"bench secret bench secret bench secret"),
    );
    let token = policy
        .issue_token(&Principal::local("bench", Role::Reader))
        .unwrap();
    let core = assay_engine::service::Core::new(
        // One user drives every connection: caps above the client count, so the uncached
        // case measures scans, not 429s.
        QueryService::new(
            catalog,
            QueryLimits {
                max_concurrent: 256,
                max_concurrent_per_user: 256,
                ..QueryLimits::default()
            },
        )
        .unwrap(),
        policy,
        Duration::from_secs(1),
    );
    let cache = cache.with_prefix(assay_api::cache::lake_prefix(lake.root().as_str()));
    let gw = Gateway::new(Arc::new(core), cache, 10_000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(assay_api::serve(listener, gw, None, std::future::pending()));
    (
        format!("http://{addr}/api/v1/tables/gold.products/rows?category=C&limit=12"),
        token,
    )
}

fn main() {
    let clients = env_or("ASSAY_BENCH_CLIENTS", 32);
    let seconds = env_or("ASSAY_BENCH_SECONDS", 10);
    let mut redis = assay_testkit::Redis::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let body_size = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let df = SessionContext::new()
            .sql(
                "SELECT value AS product_id, concat('product-', CAST(value AS VARCHAR)) AS name, \
                 chr(CAST(65 + value % 5 AS INT)) AS category, \
                 CAST(value % 10000 AS DECIMAL(10,2)) / 100 AS price FROM range(100000)",
            )
            .await
            .unwrap();
        let id = TableId::parse("gold.products").unwrap();
        write_frame(&lake, &id, df, WriteMode::Overwrite, &[], &CommitInfo::new(vec![], "bench"))
            .await
            .unwrap();
        let cases = [
            ("cached, in-process", Cache::memory(10_000, Duration::from_secs(600))),
            ("cached, Redis", Cache::redis(&redis.url(), Duration::from_secs(600)).unwrap()),
            ("uncached (every GET scans)", Cache::memory(0, Duration::from_secs(600))),
        ];
        let only = std::env::var("ASSAY_BENCH_CASES").unwrap_or_default();
        let mut size = 0;
        let mut results = Vec::new();
        for (what, cache) in cases {
            if !only.is_empty() && !only.split(',').any(|c| what.contains(c)) {
                continue;
            }
            let (url, token) = gateway(&lake, cache).await;
            let body = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            size = body.len();
            // Warm up (and fill the cache), then measure from another process.
            let _ = tokio::task::spawn_blocking({
                let (url, token) = (url.clone(), token.clone());
                move || wrk(&url, &token, 2, 1)
            })
            .await;
            let o = tokio::task::spawn_blocking(move || wrk(&url, &token, clients, seconds))
                .await
                .unwrap();
            results.push((what, o));
        }
        println!(
            "REST GET rows?category=C&limit=12 ({size}-byte JSON body), wrk: {clients} connections, \
             2 threads, {seconds} s each; machine: {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for (what, o) in &results {
            println!(
                "  {what:<28} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
                o.rps, o.p50_ms, o.p99_ms
            );
        }
        (size, results)
    });
    let (size, results) = body_size;
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &port,
            "-t",
            "get",
            "-n",
            "1000000",
            "-c",
            &clients.to_string(),
            "-d",
            &size.to_string(),
            "--csv",
        ])
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let row: Vec<f64> = text
        .lines()
        .find(|l| l.starts_with("\"GET\""))
        .map(|l| {
            l.split(',')
                .skip(1)
                .map(|v| v.trim_matches('"').parse().unwrap_or(f64::NAN))
                .collect()
        })
        .unwrap_or_default();
    let (rps, p50, p99) = (
        row.first().copied().unwrap_or(f64::NAN),
        row.get(3).copied().unwrap_or(f64::NAN),
        row.get(5).copied().unwrap_or(f64::NAN),
    );
    println!(
        "  {:<28} {rps:>9.0} req/s   p50 {p50:>6.2} ms   p99 {p99:>6.2} ms",
        format!("redis-benchmark GET {size} B")
    );
    for (what, o) in &results {
        println!("  {what}: {:.2}x redis-benchmark", o.rps / rps);
    }
    redis.kill();
}
