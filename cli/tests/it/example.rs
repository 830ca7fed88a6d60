//! The bundled example end to end: counts, gold numbers, reruns, increments, other readers.

use crate::kit::{Backend, Fixture};

const TABLES: [(&str, i64); 10] = [
    ("bronze.customers", 5),
    ("bronze.products", 6),
    ("bronze.orders", 13),
    ("bronze.orders__rejected", 1),
    ("silver.customers", 5),
    ("silver.products", 6),
    ("silver.orders", 8),
    ("silver.orders__quarantine", 3),
    ("gold.daily_revenue", 7),
    ("gold.products", 6),
];

crate::on_every_backend!(
    the_example_run_builds_every_layer_with_exact_counts,
    a_rerun_commits_nothing,
    a_new_file_with_an_update_flows_through_every_layer,
);

async fn the_example_run_builds_every_layer_with_exact_counts(backend: Backend) {
    let f = Fixture::example_on(backend).await;
    let out = f.run_ok(&[]);
    for header in [
        "step",
        "layer",
        "rows in",
        "rows written",
        "rows rejected",
        "duration",
        "version",
    ] {
        assert!(out.contains(header), "summary lacks `{header}`:\n{out}");
    }
    for (table, rows) in TABLES {
        assert_eq!(f.count(table).await, rows, "{table}");
    }
    assert_eq!(
        f.table("SELECT order_date, category, orders, units, revenue FROM gold.daily_revenue ORDER BY order_date, category")
            .await,
        "\
+------------+----------+--------+-------+---------+
| order_date | category | orders | units | revenue |
+------------+----------+--------+-------+---------+
| 2026-11-01 | A        | 2      | 7     | 65.00   |
| 2026-11-01 | B        | 1      | 1     | 89.00   |
| 2026-11-01 | C        | 1      | 3     | 29.70   |
| 2026-11-02 | B        | 1      | 1     | 35.00   |
| 2026-11-02 | C        | 1      | 3     | 59.70   |
| 2026-11-03 | B        | 1      | 1     | 89.00   |
| 2026-11-03 | C        | 1      | 2     | 39.80   |
+------------+----------+--------+-------+---------+"
    );
    // The later update of order 1003 wins; the exact duplicate 1002 is kept once.
    assert_eq!(
        f.table("SELECT order_id, quantity, amount, status FROM silver.orders WHERE order_id IN (1002, 1003) ORDER BY order_id").await,
        "\
+----------+----------+--------+---------+
| order_id | quantity | amount | status  |
+----------+----------+--------+---------+
| 1002     | 1        | 89.00  | placed  |
| 1003     | 3        | 29.70  | shipped |
+----------+----------+--------+---------+"
    );
    assert_eq!(
        f.table("SELECT order_id, _failed_rules, _reason FROM silver.orders__quarantine ORDER BY order_id").await,
        "\
+----------+-----------------+------------------------------------+
| order_id | _failed_rules   | _reason                            |
+----------+-----------------+------------------------------------+
| 1008     | amount_positive | failed expectations                |
| 1009     | has_customer    | failed expectations                |
| 1010     |                 | quantity: cannot cast 'two' to int |
+----------+-----------------+------------------------------------+"
    );
    assert_eq!(
        f.table("SELECT _line, _raw, _reason FROM bronze.orders__rejected").await,
        "\
+-------+--------------------------------------------------------------------+----------------------------+
| _line | _raw                                                               | _reason                    |
+-------+--------------------------------------------------------------------+----------------------------+
| 4     | 1007,2,10,1,24.50,2026-11-02,2026-11-02T13:10:00Z,placed,GIFT-WRAP | expected 8 fields, found 9 |
+-------+--------------------------------------------------------------------+----------------------------+"
    );
    assert_eq!(
        f.table("SELECT \"table\", rule, action, passed, failed FROM _system.expectations ORDER BY \"table\", rule").await,
        "\
+------------------+--------------------+------------+--------+--------+
| table            | rule               | action     | passed | failed |
+------------------+--------------------+------------+--------+--------+
| silver.customers | valid_email        | warn       | 4      | 1      |
| silver.orders    | amount_positive    | quarantine | 11     | 1      |
| silver.orders    | has_customer       | quarantine | 11     | 1      |
| silver.products  | price_not_negative | fail       | 6      | 0      |
+------------------+--------------------+------------+--------+--------+"
    );
    // Lineage on every bronze row.
    assert_eq!(
        f.count(
            "bronze.orders WHERE _ingested_at IS NULL OR _source_file IS NULL OR _batch_id IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        f.table("SELECT kind, status, COUNT(*) AS n, SUM(rows_written) AS written FROM _system.runs GROUP BY kind, status ORDER BY kind").await,
        "\
+------+-----------+---+---------+
| kind | status    | n | written |
+------+-----------+---+---------+
| run  | succeeded | 1 | 56      |
| step | succeeded | 8 | 56      |
+------+-----------+---+---------+"
    );
}

async fn a_rerun_commits_nothing(backend: Backend) {
    let f = Fixture::example_on(backend).await;
    f.run_ok(&[]);
    let mut before = Vec::new();
    for (table, _) in TABLES {
        before.push(f.version(table).await);
    }
    let out = f.run_ok(&[]);
    assert_eq!(out.matches("up_to_date").count(), 8, "{out}");
    for ((table, rows), version) in TABLES.iter().zip(before) {
        assert_eq!(f.version(table).await, version, "{table} got a new version");
        assert_eq!(f.count(table).await, *rows, "{table}");
    }
}

async fn a_new_file_with_an_update_flows_through_every_layer(backend: Backend) {
    let f = Fixture::example_on(backend).await;
    f.run_ok(&[]);
    f.add_source(
        "examples/retail/orders/orders_2026-11-04.csv",
        "order_id,customer_id,product_id,quantity,amount,order_date,updated_at,status\n\
         1005,4,21,2,70.00,2026-11-02,2026-11-04T08:00:00Z,shipped\n\
         1013,3,10,1,24.50,2026-11-04,2026-11-04T09:30:00Z,placed\n",
    )
    .await;
    f.run_ok(&[]);
    assert_eq!(f.version("bronze.orders").await, Some(1));
    assert_eq!(f.count("bronze.orders").await, 15);
    assert_eq!(
        f.count("bronze.orders WHERE _source_file LIKE '%orders_2026-11-04.csv'")
            .await,
        2
    );
    let step = f
        .table("SELECT rows_in, rows_written FROM _system.runs WHERE step = 'bronze.orders' ORDER BY started_at DESC LIMIT 1")
        .await;
    assert!(
        step.contains("| 2       | 2            |"),
        "only the new file is read:\n{step}"
    );
    assert_eq!(f.count("silver.orders").await, 9);
    assert_eq!(
        f.table(
            "SELECT order_id, quantity, amount, status FROM silver.orders WHERE order_id = 1005"
        )
        .await,
        "\
+----------+----------+--------+---------+
| order_id | quantity | amount | status  |
+----------+----------+--------+---------+
| 1005     | 2        | 70.00  | shipped |
+----------+----------+--------+---------+"
    );
    // Only 1005 changed: the merge updates one row and inserts one, other rows untouched.
    let silver = f
        .table("SELECT rows_in, rows_written FROM _system.runs WHERE step = 'silver.orders' ORDER BY started_at DESC LIMIT 1")
        .await;
    assert!(silver.contains("| 2       | 2            |"), "{silver}");
    assert_eq!(
        f.table("SELECT revenue FROM gold.daily_revenue WHERE order_date = DATE '2026-11-02' AND category = 'B'").await,
        "\
+---------+
| revenue |
+---------+
| 70.00   |
+---------+"
    );
    assert_eq!(f.count("gold.daily_revenue").await, 8);
    // Untouched upstreams: products did not change, so gold.products was not rebuilt.
    assert_eq!(f.version("gold.products").await, Some(0));
}

#[tokio::test]
async fn an_independent_reader_sees_the_same_rows() {
    let f = Fixture::example();
    f.run_ok(&[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/read_tables.py");
    let tables: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(f.path().join("lakehouse"))
        .args(&tables)
        .output()
        .expect("python3 runs (scripts/setup.sh installs deltalake)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for (table, rows) in TABLES {
        assert_eq!(seen[table]["rows"], rows, "python deltalake reads {table}");
    }
    assert_eq!(seen["gold.daily_revenue"]["revenue_total"], "407.20");
}

#[tokio::test]
async fn ls_prints_the_dag_and_runs_prints_history() {
    let f = Fixture::example();
    let out = f.assay(&["ls"]);
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        ls.contains("gold.daily_revenue ┆ gold   ┆ silver.orders, silver.products"),
        "{ls}"
    );
    assert!(
        ls.contains("silver.orders      ┆ silver ┆ bronze.orders"),
        "{ls}"
    );
    f.run_ok(&[]);
    let out = f.assay(&["runs"]);
    let runs = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(runs.matches("succeeded").count(), 9, "{runs}");
}

#[tokio::test]
async fn lake_flag_and_env_override_the_root_and_select_limits_the_run() {
    let f = Fixture::example();
    let other = tempfile::tempdir().unwrap();
    let url = format!("file://{}", other.path().display());
    let out = f.assay(&["--lake", &url, "run", "--select", "+silver.products"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("silver.products") && !stdout.contains("gold.products"),
        "{stdout}"
    );
    assert!(other.path().join("silver/products/_delta_log").is_dir());
    assert!(!f.path().join("lakehouse").exists());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_assay"))
        .args([
            "--project",
            f.path().to_str().unwrap(),
            "run",
            "--select",
            "bronze.customers",
        ])
        .env("ASSAY_LAKE", other.path().join("env-lake"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        other
            .path()
            .join("env-lake/bronze/customers/_delta_log")
            .is_dir()
    );
}
