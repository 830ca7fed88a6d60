//! Table lifecycle on every backend: compaction and Z-order (data unchanged, increments
//! still exact), vacuum (and its refusal), restore, verify, clones to a second store, the
//! maintenance settings (checkpoints, log cleanup, automatic compaction) and partitioned
//! bronze and silver tables whose filtered reads skip files. Reading older versions is in
//! `travel.rs`.

use std::process::Output;

use crate::kit::{Backend, Fixture, digest_at, succeeded};

const PROJECT: &str = r#"
[project]
name = "lifecycle"

[run]
retries = 0

[[bronze]]
name = "events"
source = { kind = "files", path = "data/*.csv" }

[[silver]]
name = "events"
from = "bronze.events"
columns = { id = "bigint", kind = "string", seq = "bigint", amount = "double" }
keys = ["id"]
sequence_by = "seq"

[[gold]]
name = "kinds"
sql = "sql/gold/kinds.sql"
"#;

const KINDS: &str =
    "SELECT kind, COUNT(*) AS n, SUM(amount) AS amount FROM silver.events GROUP BY kind\n";

/// The CSV of batch `i`: 10 new ids, and an update of an id of the batch before.
fn batch(i: usize) -> String {
    let mut csv = String::from("id,kind,seq,amount\n");
    for j in 0..10 {
        let id = i * 10 + j;
        csv.push_str(&format!("{id},{},1,{}.5\n", ["a", "b", "c"][id % 3], id));
    }
    if i > 0 {
        csv.push_str(&format!("{},z,2,99.0\n", (i - 1) * 10));
    }
    csv
}

/// A project on `backend` that ran `runs` times, one new source file each time.
pub(crate) fn project(backend: &Backend, extra: &str, runs: usize) -> Fixture {
    let f = Fixture::with_config_on(backend, &format!("{extra}\n{PROJECT}"));
    f.write("sql/gold/kinds.sql", KINDS);
    for i in 0..runs {
        f.write(&format!("data/b{i:03}.csv"), &batch(i));
        f.run_ok(&[]);
    }
    f
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn failed_with(out: &Output, wanted: &str) {
    assert!(!out.status.success(), "expected a failure:\n{}", text(out));
    let all = text(out);
    assert!(all.contains(wanted), "expected `{wanted}` in:\n{all}");
}

async fn optimize_and_vacuum_keep_the_data_and_increments_exact(backend: Backend) {
    let f = project(&backend, "", 8);
    let before = f.digest("bronze.events", None);
    let silver_before = f.digest("silver.events", None);
    assert_eq!(before["files"], 8);
    let v = f.version("bronze.events").await.unwrap();

    let out = f.assay(&["optimize", "--select", "bronze.events"]);
    succeeded(&out);
    assert!(
        text(&out).contains("bronze.events: 8 files"),
        "{}",
        text(&out)
    );
    let after = f.digest("bronze.events", None);
    assert_eq!(after["files"], 1, "{after}");
    assert_eq!(after["digest"], before["digest"]);
    assert_eq!(after["rows"], before["rows"]);
    assert_eq!(f.version("bronze.events").await, Some(v + 1));
    // Once compacted, nothing to do and no commit.
    let out = f.assay(&["optimize", "--select", "bronze.events"]);
    succeeded(&out);
    assert!(text(&out).contains("nothing to compact"), "{}", text(&out));
    assert_eq!(f.version("bronze.events").await, Some(v + 1));

    // Silver Z-ordered by a column; same rows.
    let out = f.assay(&[
        "optimize",
        "--select",
        "silver.events",
        "--zorder-by",
        "kind,amount",
    ]);
    succeeded(&out);
    assert!(
        text(&out).contains("Z-ordered by kind, amount"),
        "{}",
        text(&out)
    );
    assert_eq!(
        f.digest("silver.events", None)["digest"],
        silver_before["digest"]
    );
    let out = f.assay(&[
        "optimize",
        "--select",
        "silver.events",
        "--zorder-by",
        "nope",
    ]);
    failed_with(&out, "`nope` is not a column");

    // A vacuum shorter than the minimum is refused and deletes nothing.
    let out = f.assay(&["vacuum", "--retain", "0s"]);
    failed_with(&out, "vacuum_min_retain");
    assert!(text(&out).contains("--force"));
    assert_eq!(f.digest("bronze.events", Some(v))["rows"], before["rows"]);
    // A dry run lists the compacted files and deletes none.
    let out = f.assay(&[
        "vacuum",
        "--select",
        "bronze.events",
        "--retain",
        "0s",
        "--force",
        "--dry-run",
    ]);
    succeeded(&out);
    assert!(
        text(&out).contains("bronze.events: would delete 8 files"),
        "{}",
        text(&out)
    );
    assert_eq!(
        f.digest("bronze.events", Some(v))["digest"],
        before["digest"]
    );
    let out = f.assay(&["vacuum", "--retain", "0s", "--force"]);
    succeeded(&out);
    assert!(
        text(&out).contains("bronze.events: deleted 8 files"),
        "{}",
        text(&out)
    );
    let out = f.assay(&["verify"]);
    succeeded(&out);
    assert!(
        text(&out).contains("bronze.events: version"),
        "{}",
        text(&out)
    );

    // More input after compaction and vacuum: the increment equals a full rebuild.
    for i in 8..10 {
        f.write(&format!("data/b{i:03}.csv"), &batch(i));
    }
    f.run_ok(&[]);
    let rebuilt = f.rebuilt_with(PROJECT);
    for t in ["silver.events", "gold.kinds"] {
        let sql = format!("SELECT * FROM {t} ORDER BY 1, 2");
        assert_eq!(f.table(&sql).await, rebuilt.table(&sql).await, "{t}");
    }
}

async fn restore_and_verify_name_what_is_wrong(backend: Backend) {
    let f = project(&backend, "", 4);
    let at1 = f.digest("bronze.events", Some(1));
    let latest = f.version("bronze.events").await.unwrap();
    assert_eq!(latest, 3);

    let out = f.assay(&["restore", "bronze.events", "--version", "99"]);
    failed_with(
        &out,
        "table bronze.events: there is no version 99 (the latest is 3)",
    );
    let out = f.assay(&["restore", "bronze.events"]);
    failed_with(&out, "--version N");
    let out = f.assay(&[
        "restore",
        "bronze.events",
        "--timestamp",
        "2001-01-01T00:00:00Z",
    ]);
    failed_with(
        &out,
        "no version was committed at or before 2001-01-01T00:00:00+00:00",
    );
    assert_eq!(f.version("bronze.events").await, Some(3));

    let out = f.assay(&["restore", "bronze.events", "--version", "1"]);
    succeeded(&out);
    assert!(
        text(&out).contains("restored version 1 as version 4"),
        "{}",
        text(&out)
    );
    let now = f.digest("bronze.events", None);
    assert_eq!(now["digest"], at1["digest"]);
    assert_eq!(now["version"], 4);
    // The versions in between stay readable.
    assert_eq!(f.digest("bronze.events", Some(3))["rows"], 43);
    // By time: the version current now is the restore itself.
    let stamp = chrono::Utc::now().to_rfc3339();
    let out = f.assay(&["restore", "bronze.events", "--timestamp", &stamp]);
    succeeded(&out);
    assert!(
        text(&out).contains("already at version 4"),
        "{}",
        text(&out)
    );

    let out = f.assay(&["verify", "--select", "bronze.events"]);
    succeeded(&out);
    // A data file lost behind Assay's back is named.
    let table = f
        .lake()
        .open(&assay_engine::TableId::parse("bronze.events").unwrap())
        .await
        .unwrap()
        .unwrap();
    let victim = table
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .next()
        .unwrap()
        .path()
        .to_string();
    f.delete_lake_file(&format!("bronze/events/{victim}")).await;
    let out = f.assay(&["verify"]);
    failed_with(
        &out,
        &format!("table bronze.events: file {victim}: missing"),
    );
}

async fn clones_copy_every_version_incrementally(backend: Backend) {
    let f = project(&Backend::Local, "", 3);
    let dir = tempfile::tempdir().unwrap();
    let target = backend.new_root("backup", dir.path());
    // The target's store settings come from the project.
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write("assay.toml", &format!("{toml}\n{}", backend.toml()));

    let out = f.assay(&["clone", "--to", &target]);
    succeeded(&out);
    for t in [
        "bronze.events",
        "silver.events",
        "gold.kinds",
        "_system.runs",
    ] {
        let ours = f.digest(t, None);
        let theirs = digest_at(&backend, &target, t, None);
        assert_eq!(theirs["digest"], ours["digest"], "{t}");
        assert_eq!(theirs["version"], ours["version"], "{t}");
    }
    // Every version is there, not only the latest.
    assert_eq!(
        digest_at(&backend, &target, "bronze.events", Some(0))["digest"],
        f.digest("bronze.events", Some(0))["digest"]
    );

    // Again after one more run: only what is new is copied.
    f.write("data/b003.csv", &batch(3));
    f.run_ok(&[]);
    let out = f.assay(&["clone", "--to", &target, "--select", "bronze.events"]);
    succeeded(&out);
    assert!(
        text(&out).contains("1 files copied") && text(&out).contains("3 there already"),
        "{}",
        text(&out)
    );
    assert_eq!(
        digest_at(&backend, &target, "bronze.events", None)["digest"],
        f.digest("bronze.events", None)["digest"]
    );

    // A target holding something else is refused, and nothing is written there.
    let other = backend.new_root("other", dir.path());
    let other_lake = backend.lake(&other, dir.path());
    let (store, root) = other_lake.store().unwrap();
    object_store::ObjectStoreExt::put(
        store.as_ref(),
        &root.clone().join("notes.txt"),
        "mine".into(),
    )
    .await
    .unwrap();
    let out = f.assay(&["clone", "--to", &other]);
    failed_with(&out, "is not empty");
    let held: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(Some(&root)))
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
}

crate::on_every_backend!(
    optimize_and_vacuum_keep_the_data_and_increments_exact,
    restore_and_verify_name_what_is_wrong,
    clones_copy_every_version_incrementally,
);

#[tokio::test]
async fn an_unreachable_clone_target_is_a_clear_error() {
    let f = project(&Backend::Local, "", 1);
    let port = assay_testkit::free_port();
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write(
        "assay.toml",
        &toml.replace(
            "[project]",
            &format!(
                "[lake.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nallow_http = true\nregion = \"us-east-1\"\n\
                 access_key_id = \"k\"\nsecret_access_key = \"s\"\n\n[project]"
            ),
        ),
    );
    let out = f
        .command(&["clone", "--to", "s3://nowhere/backup"])
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    failed_with(&out, "clone target s3://nowhere/backup");
}

#[tokio::test]
async fn settings_become_table_properties_checkpoints_and_automatic_compaction() {
    let f = project(
        &Backend::Local,
        "[maintenance]\ncheckpoint_interval = 2\nlog_retention = \"1s\"\nauto = true\nsmall_files = 3\n",
        1,
    );
    for i in 1..6 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        f.write(&format!("data/b{i:03}.csv"), &batch(i));
        let out = f.assay(&["run"]);
        succeeded(&out);
        if i == 3 {
            assert!(
                text(&out).contains("maintenance: bronze.events: compacted 4 files into 1"),
                "{}",
                text(&out)
            );
        }
    }
    let log = f.lake_files("bronze/events/_delta_log").await;
    assert!(log.iter().any(|n| n.contains(".checkpoint.")), "{log:?}");
    // Commits older than the retention and covered by a checkpoint are gone.
    assert!(
        !log.iter().any(|n| n == "00000000000000000000.json"),
        "{log:?}"
    );
    let d = f.digest("bronze.events", None);
    assert_eq!(d["rows"], 10 + 11 * 5);
    assert!(d["files"].as_u64().unwrap() <= 3, "{d}");
    // A version whose commit was cleaned up cannot be read, and says so.
    let out = f.assay(&["restore", "bronze.events", "--version", "0"]);
    failed_with(&out, "version 0 can no longer be read");
    // Bad settings name the key.
    let f = Fixture::with_config("[maintenance]\ncheckpoint_interval = 0\n");
    failed_with(
        &f.assay(&["ls"]),
        "`maintenance.checkpoint_interval`: at least 1",
    );
    let f = Fixture::with_config(
        "[[bronze]]\nname = \"e\"\nsource = { kind = \"files\", path = \"*.csv\" }\nmaintenance = { vacuum_min_retain = \"1h\" }\n",
    );
    failed_with(&f.assay(&["ls"]), "set it in `[maintenance]`");
}

#[tokio::test]
async fn partitioned_bronze_and_silver_reads_skip_other_partitions() {
    let toml = r#"
[[bronze]]
name = "sales"
source = { kind = "files", path = "data/*.csv" }
partition_by = ["region"]

[[silver]]
name = "sales"
from = "bronze.sales"
columns = { id = "bigint", region = "string", amount = "double" }
keys = ["id"]
partition_by = ["region"]
"#;
    let f = Fixture::with_config_on(&Backend::Local, toml);
    for (i, region) in ["EU", "US", "APAC"].iter().enumerate() {
        let mut csv = String::from("id,region,amount\n");
        for j in 0..5 {
            csv.push_str(&format!("{},{region},{j}.0\n", i * 5 + j));
        }
        f.write(&format!("data/{region}.csv"), &csv);
        f.run_ok(&[]);
    }
    for t in ["bronze.sales", "silver.sales"] {
        let d = f.digest(t, None);
        assert_eq!(d["partitions"], serde_json::json!(["region"]), "{t}");
        assert_eq!(d["rows"], 15, "{t}");
    }
    let silver_files = f.lake_files("silver/sales").await;
    assert!(
        silver_files.iter().any(|p| p.starts_with("region=EU/")),
        "{silver_files:?}"
    );
    // A filtered read plans only the files of its partition.
    let catalog = assay_engine::session::LakeCatalog::load(f.lake())
        .await
        .unwrap();
    let ctx = catalog.session();
    let files_scanned = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let df = ctx.sql(sql).await.unwrap();
            let plan = df.create_physical_plan().await.unwrap();
            let shown = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(true)
                .to_string();
            let files: Vec<String> = shown
                .split(|c: char| c == ',' || c == '[' || c == ']' || c.is_whitespace())
                .filter(|w| w.ends_with(".parquet"))
                .map(str::to_string)
                .collect();
            files
        }
    };
    let all = files_scanned("SELECT * FROM silver.sales").await;
    let eu = files_scanned("SELECT * FROM silver.sales WHERE region = 'EU'").await;
    assert!(all.len() >= 3, "{all:?}");
    assert!(!eu.is_empty() && eu.len() < all.len(), "{eu:?} of {all:?}");
    assert!(eu.iter().all(|p| p.contains("region=EU")), "{eu:?}");
    // A new column cannot widen a partitioned bronze table; the error says what to do.
    f.write("data/new.csv", "id,region,amount,note\n99,EU,1.0,x\n");
    let out = f.assay(&["run"]);
    failed_with(&out, "partitioned table keeps the columns");
}

#[tokio::test]
async fn a_maintain_schedule_compacts_the_selected_tables() {
    let f = project(
        &Backend::Local,
        "[maintenance]\nsmall_files = 2\n\n[[schedule]]\nname = \"tidy\"\ncron = \"*/2 * * * * *\"\ntask = \"maintain\"\nselect = \"bronze\"\n",
        4,
    );
    let id = assay_engine::TableId::parse("bronze.events").unwrap();
    let files = |f: &Fixture| {
        let lake = f.lake();
        let id = id.clone();
        async move {
            let t = lake.open(&id).await.unwrap().unwrap();
            assay_engine::lifecycle::file_stats(&id, &t, 1 << 27)
                .unwrap()
                .files
        }
    };
    assert_eq!(files(&f).await, 4);
    let silver_version = f.version("silver.events").await;
    let served = f.serve_as_root(std::process::Stdio::null());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while files(&f).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "bronze.events was not compacted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // Only the selection is maintained, and no step ran.
    assert_eq!(f.version("silver.events").await, silver_version);
    served.stop();
    assert_eq!(f.digest("bronze.events", None)["rows"], 10 + 11 * 3);
    // A maintain schedule rebuilds nothing.
    let bad = Fixture::with_config(
        "[[schedule]]\nname = \"x\"\ncron = \"0 3 * * *\"\ntask = \"maintain\"\nfull_refresh = true\n",
    );
    failed_with(&bad.assay(&["ls"]), "leave `full_refresh` out");
}

#[tokio::test]
async fn date_parts_partition_silver_and_gold() {
    let toml = r#"
[[bronze]]
name = "orders"
source = { kind = "files", path = "data/*.csv" }

[[silver]]
name = "orders"
from = "bronze.orders"
columns = { id = "bigint", order_ts = "timestamp", amount = "double" }
keys = ["id"]
partition_by = ["year(order_ts)", "month(order_ts)"]

[[gold]]
name = "daily"
partition_by = ["date(day)"]
"#;
    let f = Fixture::with_config_on(&Backend::Local, toml);
    f.write(
        "sql/gold/daily.sql",
        "SELECT date_trunc('day', order_ts) AS day, SUM(amount) AS amount FROM silver.orders GROUP BY 1\n",
    );
    f.write(
        "data/a.csv",
        "id,order_ts,amount\n1,2025-12-31T23:00:00Z,1.0\n2,2026-01-01T01:00:00Z,2.0\n3,2026-02-03T10:00:00Z,4.0\n",
    );
    f.run_ok(&[]);
    let d = f.digest("silver.orders", None);
    assert_eq!(
        d["partitions"],
        serde_json::json!(["order_ts_year", "order_ts_month"])
    );
    let files = f.lake_files("silver/orders").await;
    assert!(
        files
            .iter()
            .any(|p| p.starts_with("order_ts_year=2025/order_ts_month=12/")),
        "{files:?}"
    );
    assert_eq!(
        f.table("SELECT id, order_ts_year, order_ts_month FROM silver.orders ORDER BY id")
            .await,
        "\
+----+---------------+----------------+
| id | order_ts_year | order_ts_month |
+----+---------------+----------------+
| 1  | 2025          | 12             |
| 2  | 2026          | 1              |
| 3  | 2026          | 2              |
+----+---------------+----------------+"
    );
    assert_eq!(
        f.digest("gold.daily", None)["partitions"],
        serde_json::json!(["day_date"])
    );
    // Increments keep deriving them.
    f.write(
        "data/b.csv",
        "id,order_ts,amount\n4,2026-02-04T10:00:00Z,8.0\n1,2025-12-31T23:00:00Z,1.5\n",
    );
    f.run_ok(&[]);
    assert_eq!(f.count("silver.orders").await, 4);
    assert_eq!(
        f.table("SELECT SUM(amount) AS a FROM gold.daily WHERE day_date = DATE '2026-02-04'")
            .await,
        "\
+-----+
| a   |
+-----+
| 8.0 |
+-----+"
    );
    // Bronze keeps raw values: no derived parts there; an unknown part is named.
    let bad = Fixture::with_config(
        "[[bronze]]\nname = \"o\"\nsource = { kind = \"files\", path = \"*.csv\" }\npartition_by = [\"year(ts)\"]\n",
    );
    failed_with(
        &bad.assay(&["ls"]),
        "`bronze[0].partition_by`: bronze keeps its values",
    );
    let bad = Fixture::with_config(
        "[[gold]]\nname = \"g\"\nsql = \"g.sql\"\npartition_by = [\"week(ts)\"]\n",
    );
    bad.write("g.sql", "SELECT 1 AS x\n");
    failed_with(&bad.assay(&["ls"]), "`week` is not a date part");
}
