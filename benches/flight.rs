//! Flight SQL read throughput: DoGet of a 5M-row table over loopback beside the same read
//! in-process, and the latency of an aggregate query over Flight.
//!
//! `cargo bench -p assay-flight --bench flight` (`ASSAY_BENCH_ROWS` to change the size).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use assay_engine::auth::{AccessPolicy, LocalUser, Role, Secret};
use assay_engine::delta::{CommitInfo, WriteMode, write_frame};
use assay_engine::query::{QueryLimits, QueryService};
use assay_engine::service::{Core, LakeService};
use assay_engine::session::LakeCatalog;
use assay_engine::{Lake, TableId};
use assay_flight::AssayFlightSql;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use tonic::transport::Channel;

/// Bytes of Arrow data a batch holds (its slices, not shared buffer capacity).
fn batch_bytes(b: &RecordBatch) -> usize {
    b.columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}

fn bytes(batches: &[RecordBatch]) -> usize {
    batches.iter().map(batch_bytes).sum()
}

async fn flight_query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> (u64, usize) {
    let info = client.execute(sql.to_string(), None).await.unwrap();
    let mut rows = 0u64;
    let mut size = 0usize;
    for ep in info.endpoint {
        let mut stream = client.do_get(ep.ticket.unwrap()).await.unwrap();
        while let Some(batch) = stream.try_next().await.unwrap() {
            rows += batch.num_rows() as u64;
            size += batch_bytes(&batch);
        }
    }
    (rows, size)
}

fn report(what: &str, rows: u64, size: usize, t: Duration) {
    let s = t.as_secs_f64();
    println!(
        "  {what:<28} {rows} rows in {s:.2} s: {:.2} M rows/s, {:.0} MB/s",
        rows as f64 / s / 1e6,
        size as f64 / s / 1e6
    );
}

fn main() {
    let rows: u64 = std::env::var("ASSAY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let ctx = SessionContext::new();
        let df = ctx
            .sql(&format!(
                "SELECT value AS id, value % 1000 AS k, CAST(value % 10007 AS DOUBLE) * 1.5 AS amount, \
                 concat('customer-', CAST(value % 50000 AS VARCHAR)) AS name FROM range({rows})"
            ))
            .await
            .unwrap();
        let t = Instant::now();
        let id = TableId::parse("gold.big").unwrap();
        write_frame(&lake, &id, df, WriteMode::Overwrite, &[], &CommitInfo::new(vec![], "bench"))
            .await
            .unwrap();
        eprintln!("wrote gold.big ({rows} rows) in {:.1}s", t.elapsed().as_secs_f64());

        let catalog = LakeCatalog::load(lake.clone()).await.unwrap();
        let query = QueryService::new(catalog, QueryLimits::default()).unwrap();
        let admin = assay_engine::auth::Principal::local("bench", Role::Admin);
        let policy = Arc::new(AccessPolicy::new(
            vec![LocalUser { name: "bench".into(), password: Secret::new("pw"), role: Role::Admin }],
            Duration::from_secs(3600),
        ));
        let core: Arc<dyn LakeService> =
            Arc::new(Core::new(query.clone(), policy, Duration::from_secs(1)));
        let service = AssayFlightSql::new(core, false).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(assay_flight::serve(listener, service, Default::default(), None, std::future::pending()));
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut client = FlightSqlServiceClient::new(channel);
        client.handshake("bench", "pw").await.unwrap();

        println!("flight sql read, gold.big = {rows} rows (id bigint, k bigint, amount double, name utf8)");
        for _ in 0..2 {
            let t = Instant::now();
            let df = query.plan(&admin, "SELECT * FROM gold.big", None).await.unwrap();
            let batches: Vec<RecordBatch> =
                query.execute(&admin, df).await.unwrap().try_collect().await.unwrap();
            let n = batches.iter().map(|b| b.num_rows() as u64).sum();
            report("in-process scan", n, bytes(&batches), t.elapsed());
            drop(batches);

            let t = Instant::now();
            let (n, size) = flight_query(&mut client, "SELECT * FROM gold.big").await;
            report("Flight DoGet", n, size, t.elapsed());
        }
        let agg = "SELECT k, COUNT(*) AS n, SUM(amount) AS total, AVG(amount) AS mean, \
                   MIN(name) AS first FROM gold.big WHERE amount > 100 GROUP BY k ORDER BY total DESC LIMIT 10";
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let (n, _) = flight_query(&mut client, agg).await;
            assert_eq!(n, 10);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "  aggregate over Flight        median {:.0} ms (min {:.0}, max {:.0}) over 5 runs",
            times[2], times[0], times[4]
        );
    });
}
