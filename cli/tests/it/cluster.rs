//! Gold models on a Ballista cluster of Assay processes: a scheduler and two executors
//! (`assay cluster scheduler|executor`) started here on free loopback ports. The same models
//! must give the same rows in `ballista` mode as in `local` mode, with the lake on local disk,
//! on S3 (moto) and on Azure (Azurite; the example only), and a run whose executor is killed mid-query must end with the right
//! rows or a clear error, never a partial commit.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assay_testkit::free_port;

use crate::chaos::{Fingerprint, fingerprint, generate, medallion};
use crate::kit::{Backend, Fixture};

/// A scheduler and its executors, killed when dropped.
struct Cluster {
    scheduler: Child,
    address: String,
    executors: Vec<Executor>,
}

struct Executor {
    child: Child,
    work: tempfile::TempDir,
}

impl Executor {
    /// The jobs whose shuffle files the executor holds (one directory per job; DataFusion's
    /// spill directories beside them are not jobs).
    fn jobs(&self) -> Vec<String> {
        std::fs::read_dir(self.work.path())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with("datafusion-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the executor has run a task of any job.
    fn has_worked(&self) -> bool {
        !self.jobs().is_empty()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for e in &mut self.executors {
            let _ = e.child.kill();
            let _ = e.child.wait();
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

/// Waits until something listens on `port`.
fn listening(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// A scheduler (executors lost after 5 s of silence) and `n` executors of `f`'s lake,
    /// each running one task at a time and beating every second.
    fn start(f: &Fixture, n: usize) -> Cluster {
        let port = free_port();
        let scheduler = f
            .command(&[
                "cluster",
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--executor-timeout", "5s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        listening(port, "the scheduler");
        let mut cluster = Cluster {
            scheduler,
            address: format!("df://127.0.0.1:{port}"),
            executors: Vec::new(),
        };
        for _ in 0..n {
            cluster.add_executor(f);
        }
        cluster
    }

    fn add_executor(&mut self, f: &Fixture) {
        let work = tempfile::tempdir().unwrap();
        let flight = free_port();
        let grpc = free_port();
        let child = f
            .command(&["cluster", "executor", "--scheduler", &self.address])
            .args(["--flight-port", &flight.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--concurrent-tasks", "1", "--heartbeat", "1s"])
            .arg("--work-dir")
            .arg(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        listening(flight, "an executor");
        listening(grpc, "an executor");
        self.executors.push(Executor { child, work });
    }

    /// The `[engine]` section that sends every gold model to this cluster.
    fn toml(&self) -> String {
        format!(
            "\n[engine]\nmode = \"ballista\"\n\n[engine.ballista]\nscheduler = \"{}\"\n",
            self.address
        )
    }
}

/// Appends `text` to the project file.
fn append(f: &Fixture, text: &str) {
    let path = f.path().join("assay.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(path, format!("{toml}{text}")).unwrap();
}

/// Every gold table's rows, order aside.
async fn gold(f: &Fixture) -> Vec<(String, Fingerprint)> {
    let mut all = Vec::new();
    for name in f
        .lake()
        .table_names(assay_engine::Layer::Gold)
        .await
        .unwrap()
    {
        let batches = f.query(&format!("SELECT * FROM gold.{name}")).await;
        all.push((name, fingerprint(&batches)));
    }
    all
}

/// Two incremental models beside the example's: a MERGE by key over a stream-static join,
/// and revenue per day replaced by the partitions the new rows touch.
const INCREMENTAL: &str = r#"
[[gold]]
name = "big_orders"
incremental = { strategy = "merge", unique_key = ["order_id"] }
stream = "silver.orders"

[[gold]]
name = "revenue_by_day"
partition_by = ["order_date"]
incremental = { strategy = "partitions" }
"#;

/// New orders and a correction of one already loaded.
const MORE_ORDERS: &str =
    "order_id,customer_id,product_id,quantity,amount,order_date,updated_at,status
1001,1,10,3,73.50,2026-11-01,2026-11-04T09:00:00Z,corrected
1101,2,21,4,140.00,2026-11-04,2026-11-04T10:00:00Z,placed
1102,3,10,1,24.50,2026-11-04,2026-11-04T11:00:00Z,placed
";

async fn example_in_ballista_mode_equals_local_mode(backend: Backend) {
    let f = Fixture::example_on(backend).await;
    f.write(
        "sql/gold/big_orders.sql",
        "SELECT o.order_id, o.amount, c.country FROM silver.orders o \
         JOIN silver.customers c ON o.customer_id = c.customer_id WHERE o.amount >= 40",
    );
    f.write(
        "sql/gold/revenue_by_day.sql",
        "SELECT order_date, SUM(amount) AS revenue, COUNT(*) AS orders FROM silver.orders \
         GROUP BY order_date",
    );
    append(&f, INCREMENTAL);
    let cluster = Cluster::start(&f, 2);
    append(&f, &cluster.toml());
    f.run_ok(&[]);
    assert!(
        cluster.executors.iter().any(Executor::has_worked),
        "no executor ran a task"
    );
    // The incremental models now read only the changes, on the cluster.
    f.add_source("examples/retail/orders/orders_2026-11-04.csv", MORE_ORDERS)
        .await;
    f.run_ok(&[]);
    let on_cluster = gold(&f).await;
    assert_eq!(on_cluster.len(), 4, "{on_cluster:?}");
    assert_eq!(
        f.version("gold.big_orders").await,
        Some(1),
        "merged, not rebuilt"
    );
    let revenue = f
        .table("SELECT revenue FROM gold.revenue_by_day WHERE order_date = DATE '2026-11-04'")
        .await;
    assert!(revenue.contains("164.50"), "{revenue}");

    // The same models here, over the same silver tables.
    f.run_ok(&["--engine", "local", "--full-refresh", "--select", "gold"]);
    assert_eq!(gold(&f).await, on_cluster);

    // Without its cluster, a ballista run says where it could not go; the table stays.
    let before = f.version("gold.products").await;
    drop(cluster);
    let out = f.assay(&["run", "--full-refresh", "--select", "gold.products"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Ballista scheduler df://127.0.0.1:") && stderr.contains("cannot connect"),
        "{stderr}"
    );
    assert_eq!(f.version("gold.products").await, before);
}

crate::on_every_backend!(example_in_ballista_mode_equals_local_mode);

/// The 22 TPC-H queries (`tests/tpch/queries`, a copy of `../shared/tpch/queries`) as gold models `gold.q01` ... over the
/// silver tables.
fn tpch_models(f: &Fixture) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tpch/queries");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let sql = std::fs::read_to_string(&path).unwrap();
        f.write(&format!("sql/gold/{name}.sql"), &lake_query(&sql));
        n += 1;
    }
    assert_eq!(n, 22);
}

const TPCH_TABLES: [&str; 8] = [
    "lineitem", "orders", "customer", "partsupp", "supplier", "part", "nation", "region",
];

/// The query with each TPC-H table of a `FROM` list or `JOIN` named `silver.<table>`; a
/// column alias of the same name (`AS nation`, `GROUP BY nation`) stays.
fn lake_query(sql: &str) -> String {
    let mut out = String::new();
    let mut prev = String::new();
    let mut rest = sql.trim().trim_end_matches(';');
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_alphanumeric() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            let after = rest[end..].trim_start();
            let table = TPCH_TABLES.contains(&word.to_ascii_lowercase().as_str())
                && matches!(prev.to_ascii_lowercase().as_str(), "from" | "join" | ",")
                && !after.starts_with(['=', '.', '(']);
            if table {
                out.push_str("silver.");
            }
            out.push_str(word);
            prev = word.to_string();
            rest = &rest[end..];
        } else {
            if !c.is_whitespace() {
                prev = c.to_string();
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[test]
fn tpch_tables_are_named_in_the_lake_and_aliases_stay() {
    assert_eq!(
        lake_query(
            "SELECT nation, x FROM lineitem, nation n1 JOIN orders ON a = b GROUP BY nation;"
        ),
        "SELECT nation, x FROM silver.lineitem, silver.nation n1 JOIN silver.orders ON a = b GROUP BY nation"
    );
    assert_eq!(
        lake_query(
            "SELECT sum(CASE WHEN nation = 'BRAZIL' THEN 1 END) FROM (SELECT n_name AS nation FROM nation) AS all_nations"
        ),
        "SELECT sum(CASE WHEN nation = 'BRAZIL' THEN 1 END) FROM (SELECT n_name AS nation FROM silver.nation) AS all_nations"
    );
}

async fn tpch_models_on_the_cluster_equal_local_mode(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 0.1);
    let f = Fixture::with_config_on(&backend, &medallion(data.path()));
    tpch_models(&f);
    f.run_ok(&[]);
    let local = gold(&f).await;
    assert_eq!(local.len(), 22);
    let lineitem = f.count("silver.lineitem").await;
    assert!(lineitem > 500_000, "{lineitem}");

    let cluster = Cluster::start(&f, 2);
    append(&f, &cluster.toml());
    f.run_ok(&["--full-refresh", "--select", "gold"]);
    let on_cluster = gold(&f).await;
    for ((name, want), (_, got)) in local.iter().zip(&on_cluster) {
        assert_eq!(got, want, "gold.{name}");
    }
    assert!(cluster.executors.iter().all(Executor::has_worked));

    if matches!(backend, Backend::Local) {
        executor_killed_mid_query(&f, cluster, &local).await;
    }
}

/// A model whose query runs long enough on the cluster to lose an executor while it runs:
/// the scheduler runs the lost tasks again on the other one and the run succeeds with the
/// same rows as `local` says — or fails with a clear error and the previous version stays.
async fn executor_killed_mid_query(
    f: &Fixture,
    mut cluster: Cluster,
    local: &[(String, Fingerprint)],
) {
    let model = "q18";
    let before = f.version(&format!("gold.{model}")).await;
    let mut run = f
        .command(&["run", "--full-refresh", "--output", "json"])
        .args(["--select", &format!("gold.{model}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A job an executor did not hold before is this query's: its tasks are running there.
    let known: Vec<Vec<String>> = cluster.executors.iter().map(Executor::jobs).collect();
    let started = Instant::now();
    let victim = loop {
        let new = cluster
            .executors
            .iter()
            .zip(&known)
            .position(|(e, k)| e.jobs().iter().any(|j| !k.contains(j)));
        if let Some(i) = new {
            break i;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no task started"
        );
        assert!(run.try_wait().unwrap().is_none(), "the run ended first");
        std::thread::sleep(Duration::from_millis(10));
    };
    cluster.executors[victim].child.kill().unwrap();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("executor {victim} killed mid-query: {report}");
    if out.status.success() {
        let want = &local.iter().find(|(n, _)| n == model).unwrap().1;
        let batches = f.query(&format!("SELECT * FROM gold.{model}")).await;
        assert_eq!(&fingerprint(&batches), want);
        assert_eq!(
            f.version(&format!("gold.{model}")).await,
            before.map(|v| v + 1),
            "one commit"
        );
    } else {
        assert!(stderr.contains("on the Ballista cluster"), "{stderr}");
        assert_eq!(
            f.version(&format!("gold.{model}")).await,
            before,
            "{stderr}"
        );
    }
}

mod tpch {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_lake_and_an_executor_killed_mid_query() {
        super::tpch_models_on_the_cluster_equal_local_mode(crate::kit::Backend::start("local"))
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3_lake() {
        super::tpch_models_on_the_cluster_equal_local_mode(crate::kit::Backend::start("s3")).await
    }
}
