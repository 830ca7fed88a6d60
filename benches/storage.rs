#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The object-store path's overhead: CSV -> bronze ingest rows/s and query latency with the
//! lake on local disk, on S3 (moto_server) and on Azure (Azurite), each emulator started on
//! a free loopback port by the test kit.
//!
//! `cargo bench -p assay --bench storage` (default 1,000,000 rows; `ASSAY_BENCH_ROWS` to
//! change; `ASSAY_BENCH_BACKENDS=local,s3` to pick backends). The source CSV is on local
//! disk for every backend, so the difference is the lake's writes and reads.

use std::io::Write;
use std::time::{Duration, Instant};

use assay_engine::config::Project;
use assay_engine::session::LakeCatalog;
use assay_engine::step::{Faults, StepContext};
use assay_testkit::Backend;

fn generate(path: &std::path::Path, rows: u64) -> u64 {
    let file = std::fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(w, "order_id,customer_id,amount,order_date,status").unwrap();
    for i in 0..rows {
        writeln!(
            w,
            "{},{},{}.{:02},2026-11-{:02},{}",
            1_000_000 + i,
            i % 50_000,
            i % 500,
            i % 100,
            1 + i % 28,
            ["placed", "shipped", "delivered", "returned"][(i % 4) as usize]
        )
        .unwrap();
    }
    w.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

const QUERIES: [(&str, &str); 2] = [
    ("count", "SELECT COUNT(*) FROM bronze.orders"),
    (
        "group by",
        "SELECT status, COUNT(*), SUM(CAST(amount AS DOUBLE)) FROM bronze.orders \
         GROUP BY status ORDER BY status",
    ),
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn bench(kind: &str, dir: &std::path::Path, rows: u64, bytes: u64) {
    let backend = Backend::start(kind);
    let root = match &backend {
        Backend::Local => format!("file://{}/lake-{kind}", dir.display()),
        _ => backend.new_root(&format!("bench-{kind}"), dir),
    };
    let lake = backend.lake(&root, dir);
    let project = Project::load(dir).unwrap();
    let step = assay_bronze::steps(&project).pop().unwrap();
    let ctx = StepContext {
        catalog: LakeCatalog::load(lake.clone()).await.unwrap(),
        lake: lake.clone(),
        run_id: format!("bench-{kind}"),
        full_refresh: false,
        faults: Faults::default(),
    };
    let t = Instant::now();
    let report = step.run(&ctx).await.unwrap();
    let ingest = t.elapsed().as_secs_f64();
    assert_eq!(report.rows_written, rows);
    println!(
        "{kind:<6} ingest {rows} rows ({:.1} MB): {ingest:.2} s, {:.0} rows/s",
        bytes as f64 / 1e6,
        rows as f64 / ingest
    );
    let catalog = LakeCatalog::load(lake).await.unwrap();
    for (name, sql) in QUERIES {
        let mut times = Vec::new();
        for _ in 0..11 {
            let session = catalog.session();
            let t = Instant::now();
            let batches = session.sql(sql).await.unwrap().collect().await.unwrap();
            times.push(t.elapsed());
            assert!(!batches.is_empty());
        }
        let min = *times.iter().min().unwrap();
        let max = *times.iter().max().unwrap();
        println!(
            "{kind:<6} query {name:<8}: median {:.1} ms (min {:.1}, max {:.1}) over {} runs",
            median(times.clone()).as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            times.len()
        );
    }
}

fn main() {
    let rows: u64 = std::env::var("ASSAY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let backends =
        std::env::var("ASSAY_BENCH_BACKENDS").unwrap_or_else(|_| "local,s3,azure".into());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let bytes = generate(&dir.path().join("data/orders.csv"), rows);
    std::fs::write(
        dir.path().join("assay.toml"),
        "[[bronze]]\nname = \"orders\"\nsource = { kind = \"files\", path = \"data/*.csv\" }\n",
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for kind in backends.split(',') {
        runtime.block_on(bench(kind.trim(), dir.path(), rows, bytes));
    }
}
