//! REST gateway load: `GET /tables/gold.products/rows?category=C&limit=100` under
//! concurrent clients, cached (in-process and Redis) and uncached, beside `redis-benchmark`
//! GET against the same `redis-server`.
//!
//! `cargo bench -p assay-api --bench rest` (`ASSAY_BENCH_ROWS`, `ASSAY_BENCH_CLIENTS`,
//! `ASSAY_BENCH_SECONDS` to change the table size, concurrency and duration). The load
//! generator runs in the same process as the gateway, so both share the machine's cores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use assay_api::{Cache, Gateway};
use assay_engine::Lake;
use assay_engine::TableId;
use assay_engine::auth::{AccessPolicy, LocalUser, Principal, Role, Secret};
use assay_engine::delta::{CommitInfo, WriteMode, write_frame};
use assay_engine::query::{QueryLimits, QueryService};
use assay_engine::session::LakeCatalog;
use datafusion::prelude::SessionContext;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Outcome {
    requests: usize,
    errors: usize,
    latencies: Vec<f64>,
    elapsed: f64,
}

/// `clients` tasks, each sending requests back to back for `seconds`.
async fn load(url: &str, token: &str, clients: u64, seconds: u64) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.to_string();
        let token = token.to_string();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                let res = client.get(&url).bearer_auth(&token).send().await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut out = Outcome {
        requests: 0,
        errors: 0,
        latencies: Vec::new(),
        elapsed: 0.0,
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        out.requests += lat.len();
        out.errors += errors;
        out.latencies.extend(lat);
    }
    out.elapsed = started.elapsed().as_secs_f64();
    out.latencies.sort_by(f64::total_cmp);
    out
}

fn report(what: &str, o: &Outcome) {
    let pct = |p: f64| {
        let i = ((o.latencies.len() as f64 - 1.0) * p).round() as usize;
        o.latencies.get(i).copied().unwrap_or(f64::NAN)
    };
    println!(
        "  {what:<26} {:>8.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests, {} errors)",
        o.requests as f64 / o.elapsed,
        pct(0.50),
        pct(0.99),
        o.requests,
        o.errors
    );
}

async fn gateway(lake: &Lake, cache: Cache) -> (String, String) {
    let catalog = LakeCatalog::load(lake.clone()).await.unwrap();
    let policy = Arc::new(
        AccessPolicy::new(
            vec![LocalUser {
                name: "bench".into(),
                password: Secret::new("pw"),
                role: Role::Reader,
            }],
            Duration::from_secs(3600),
        )
        .with_secret(b"bench secret bench secret bench secret"),
    );
    let token = policy
        .issue_token(&Principal {
            name: "bench".into(),
            role: Role::Reader,
        })
        .unwrap();
    let core = assay_engine::service::Core::new(
        QueryService::new(catalog, QueryLimits::default()),
        policy,
        Duration::from_secs(1),
    );
    let gw = Gateway::new(std::sync::Arc::new(core), cache, 10_000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(assay_api::serve(listener, gw, std::future::pending()));
    (
        format!("http://{addr}/api/v1/tables/gold.products/rows?category=C&limit=100"),
        token,
    )
}

fn main() {
    let rows = env_or("ASSAY_BENCH_ROWS", 1_000_000);
    let clients = env_or("ASSAY_BENCH_CLIENTS", 32);
    let seconds = env_or("ASSAY_BENCH_SECONDS", 10);
    let mut redis = assay_testkit::Redis::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let df = SessionContext::new()
            .sql(&format!(
                "SELECT value AS product_id, concat('product-', CAST(value AS VARCHAR)) AS name, \
                 chr(CAST(65 + value % 5 AS INT)) AS category, \
                 CAST(value % 10000 AS DECIMAL(10,2)) / 100 AS price FROM range({rows})"
            ))
            .await
            .unwrap();
        let id = TableId::parse("gold.products").unwrap();
        write_frame(
            &lake,
            &id,
            df,
            WriteMode::Overwrite,
            &[],
            &CommitInfo::new(vec![], "bench"),
        )
        .await
        .unwrap();
        println!(
            "REST GET rows?category=C&limit=100 on gold.products ({rows} rows, 5 categories), \
             {clients} concurrent clients, {seconds} s each"
        );
        let cases = [
            (
                "uncached (every GET scans)",
                Cache::memory(0, Duration::from_secs(600)),
            ),
            (
                "cached, in-process",
                Cache::memory(10_000, Duration::from_secs(600)),
            ),
            (
                "cached, Redis",
                Cache::redis(&redis.url(), Duration::from_secs(600)).unwrap(),
            ),
        ];
        for (what, cache) in cases {
            let (url, token) = gateway(&lake, cache).await;
            // Warm up (and fill the cache).
            load(&url, &token, 2, 1).await;
            let o = load(&url, &token, clients, seconds).await;
            report(what, &o);
        }
    });
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
            "200000",
            "-c",
            &clients.to_string(),
            "-d",
            "5000",
            "--csv",
        ])
        .output();
    match out {
        Ok(o) => println!(
            "  redis-benchmark GET (5 KB values, {clients} clients):\n{}",
            String::from_utf8_lossy(&o.stdout)
        ),
        Err(e) => println!("  redis-benchmark not available: {e}"),
    }
    redis.kill();
}
