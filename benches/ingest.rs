#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! CSV -> bronze ingest benchmark: rows/s and peak memory (VmHWM) on generated data.
//!
//! `cargo bench --bench ingest` (default 5,000,000 rows; `ASSAY_BENCH_ROWS` to change).
//! The CSV is generated to a temp dir with a streaming writer first, so the peak memory
//! reported is the ingest's own plus a few MB of generator buffers.

use std::io::Write;
use std::time::Instant;

use assay_engine::Lake;
use assay_engine::config::Project;
use assay_engine::session::LakeCatalog;
use assay_engine::step::{Faults, StepContext};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn generate(path: &std::path::Path, rows: u64) -> u64 {
    let file = std::fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(
        w,
        "order_id,customer_id,product_id,quantity,amount,order_date,updated_at,status"
    )
    .unwrap();
    for i in 0..rows {
        let day = 1 + i % 28;
        writeln!(
            w,
            "{},{},{},{},{}.{:02},2026-11-{day:02},2026-11-{day:02}T{:02}:{:02}:00Z,{}",
            1_000_000 + i,
            i % 50_000,
            i % 2_000,
            1 + i % 9,
            i % 500,
            i % 100,
            i % 24,
            i % 60,
            ["placed", "shipped", "delivered", "returned"][(i % 4) as usize]
        )
        .unwrap();
    }
    w.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn main() {
    let rows: u64 = std::env::var("ASSAY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let t = Instant::now();
    let bytes = generate(&dir.path().join("data/orders.csv"), rows);
    eprintln!(
        "generated {rows} rows, {:.1} MB in {:.1}s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    std::fs::write(
        dir.path().join("assay.toml"),
        "[[bronze]]\nname = \"orders\"\nsource = { kind = \"files\", path = \"data/*.csv\" }\n",
    )
    .unwrap();
    let rss_before = peak_rss_mib();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let project = Project::load(dir.path()).unwrap();
        let lake = Lake::resolve("lakehouse", dir.path()).unwrap();
        let step = assay_bronze::steps(&project).pop().unwrap();
        let ctx = StepContext {
            catalog: LakeCatalog::load(lake.clone()).await.unwrap(),
            lake,
            run_id: "bench".into(),
            full_refresh: false,
            faults: Faults::default(),
        };
        let t = Instant::now();
        let report = step.run(&ctx).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.rows_written, rows);
        let rss = peak_rss_mib();
        println!("csv -> bronze ingest");
        println!("  rows            {rows}");
        println!("  input           {:.1} MB", bytes as f64 / 1e6);
        println!("  time            {secs:.2} s");
        println!(
            "  throughput      {:.0} rows/s, {:.1} MB/s",
            rows as f64 / secs,
            bytes as f64 / 1e6 / secs
        );
        println!("  peak RSS        {rss:.0} MiB (before ingest: {rss_before:.0} MiB)");
    });
}
