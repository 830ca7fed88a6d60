//! Crash safety: a failure between writing data files and committing them, then a rerun,
//! loses nothing and duplicates nothing.

use crate::kit::{Backend, Fixture};

crate::on_every_backend!(
    a_crash_before_the_bronze_commit_is_recovered_exactly,
    a_crash_on_an_existing_table_keeps_the_previous_version,
    a_crash_between_quarantine_and_silver_commits_does_not_double_quarantine,
);

async fn a_crash_before_the_bronze_commit_is_recovered_exactly(backend: Backend) {
    let f = Fixture::example_on(backend).await;
    let out = f.assay(&["run", "--inject-fault", "before_commit:bronze.orders"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("injected fault at before_commit:bronze.orders"),
        "{err}"
    );
    assert_eq!(f.version("bronze.orders").await, None, "no commit happened");
    // Data files were written before the fault: they exist but belong to no version.
    let orphans = f
        .lake_files("bronze/orders")
        .await
        .iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert!(orphans > 0, "the fault fired after data files were written");
    assert_eq!(
        f.version("bronze.customers").await,
        Some(0),
        "other steps still ran"
    );

    f.run_ok(&[]);
    assert_eq!(f.count("bronze.orders").await, 13);
    assert_eq!(
        f.count("bronze.orders__rejected").await,
        1,
        "rejects not doubled"
    );
    assert_eq!(f.count("silver.orders").await, 8);
    assert_eq!(
        f.count(
            "(SELECT order_id, _source_file FROM bronze.orders GROUP BY 1, 2 HAVING COUNT(*) > 1)"
        )
        .await,
        0,
        "no duplicates"
    );
}

async fn a_crash_on_an_existing_table_keeps_the_previous_version(backend: Backend) {
    let f = Fixture::example_on(backend).await;
    f.run_ok(&[]);
    f.add_source(
        "examples/retail/orders/orders_2026-11-05.csv",
        "order_id,customer_id,product_id,quantity,amount,order_date,updated_at,status\n\
         1014,1,30,1,9.90,2026-11-05,2026-11-05T10:00:00Z,placed\n",
    )
    .await;
    let out = f.assay(&["run", "--inject-fault", "before_commit:bronze.orders"]);
    assert!(!out.status.success());
    assert_eq!(f.version("bronze.orders").await, Some(0));
    assert_eq!(f.count("bronze.orders").await, 13);
    f.run_ok(&[]);
    assert_eq!(f.count("bronze.orders").await, 14);
    assert_eq!(f.count("silver.orders").await, 9);
}

async fn a_crash_between_quarantine_and_silver_commits_does_not_double_quarantine(
    backend: Backend,
) {
    let f = Fixture::example_on(backend).await;
    let out = f.assay(&["run", "--inject-fault", "before_commit:silver.orders"]);
    assert!(!out.status.success());
    assert_eq!(f.count("silver.orders__quarantine").await, 3);
    assert_eq!(f.version("silver.orders").await, None);
    f.run_ok(&[]);
    assert_eq!(f.count("silver.orders__quarantine").await, 3);
    assert_eq!(f.count("silver.orders").await, 8);
    assert_eq!(f.count("gold.daily_revenue").await, 7);
}

/// Every incremental path at once: a MERGEd and an append-only silver table, deletes and
/// history, and incremental gold models of each strategy with audits.
const PIPELINE: &str = r#"
[[bronze]]
name = "orders"
source = { kind = "files", path = "data/orders/*.csv" }

[[bronze]]
name = "events"
source = { kind = "files", path = "data/events/*.csv" }

[[silver]]
name = "orders"
from = "bronze.orders"
columns = { order_id = "bigint", order_date = "date", amount = "decimal(10,2)", updated_at = "timestamp" }
keys = ["order_id"]
sequence_by = "updated_at"

[[silver]]
name = "order_log"
from = "bronze.orders"
columns = { order_id = "bigint", order_date = "date", amount = "decimal(10,2)", updated_at = "timestamp" }

[[silver]]
name = "accounts"
from = "bronze.events"
columns = { id = "bigint", name = "string", seq = "bigint" }
keys = ["id"]
sequence_by = "seq"
apply_as_deletes = "op = 'D'"

[[silver]]
name = "account_history"
from = "bronze.events"
columns = { id = "bigint", name = "string", seq = "bigint" }
keys = ["id"]
sequence_by = "seq"
apply_as_deletes = "op = 'D'"
history = "scd2"

[[gold]]
name = "order_facts"
incremental = { strategy = "merge", unique_key = ["order_id"] }
unique = ["order_id"]

[[gold]]
name = "daily"
partition_by = ["order_date"]
incremental = { strategy = "partitions" }
not_null = ["revenue"]

[[gold]]
name = "big_events"
incremental = { strategy = "append" }
row_count = { min = 0 }

[[gold]]
name = "account_names"
not_null = ["name"]
"#;

const PIPELINE_MODELS: [(&str, &str); 4] = [
    (
        "order_facts",
        "SELECT order_id, order_date, amount FROM silver.orders",
    ),
    (
        "daily",
        "SELECT order_date, COUNT(*) AS orders, SUM(amount) AS revenue FROM silver.orders GROUP BY order_date",
    ),
    (
        "big_events",
        "SELECT order_id, amount, updated_at FROM silver.order_log WHERE amount >= 10",
    ),
    (
        "account_names",
        "SELECT id, name FROM silver.accounts WHERE name IS NOT NULL",
    ),
];

const PIPELINE_READS: [&str; 8] = [
    "SELECT * FROM silver.orders ORDER BY order_id",
    "SELECT * FROM silver.order_log ORDER BY order_id, updated_at",
    "SELECT * FROM silver.accounts ORDER BY id",
    "SELECT * FROM silver.account_history ORDER BY id, _valid_from",
    "SELECT * FROM gold.order_facts ORDER BY order_id",
    "SELECT * FROM gold.daily ORDER BY order_date",
    "SELECT * FROM gold.big_events ORDER BY order_id, updated_at",
    "SELECT * FROM gold.account_names ORDER BY id",
];

#[tokio::test]
async fn a_kill_9_at_any_point_is_completed_by_the_rerun_to_an_uninterrupted_result() {
    let f = Fixture::with_config(PIPELINE);
    for (name, sql) in PIPELINE_MODELS {
        f.write(&format!("sql/gold/{name}.sql"), sql);
    }
    let batches = [
        (
            "1,2026-11-01,10.00,2026-11-01T08:00:00Z\n2,2026-11-01,5.00,2026-11-01T09:00:00Z\n3,2026-11-02,20.00,2026-11-02T08:00:00Z\n",
            "1,Ada,10,I\n2,Bo,10,I\n3,Cy,10,I\n",
        ),
        (
            "2,2026-11-03,15.00,2026-11-03T09:00:00Z\n4,2026-11-03,40.00,2026-11-03T10:00:00Z\n",
            "1,Ada L,30,U\n2,,40,D\n3,Cy B,20,U\n",
        ),
        (
            "1,2026-11-04,11.00,2026-11-04T09:00:00Z\n5,2026-11-01,12.00,2026-11-04T10:00:00Z\n",
            "2,Bo again,60,I\n1,Ada X,20,U\n4,Di,50,D\n4,Di,30,I\n",
        ),
    ];
    let mut kills = 0;
    for (i, (orders, events)) in batches.iter().enumerate() {
        f.write(
            &format!("data/orders/b{i}.csv"),
            &format!("order_id,order_date,amount,updated_at\n{orders}"),
        );
        f.write(
            &format!("data/events/b{i}.csv"),
            &format!("id,name,seq,op\n{events}"),
        );
        // Killed at several points of a run, each kill on top of the previous ones.
        for ms in [30u64, 120, 300, 600, 1000] {
            if assay_testkit::kill_after(f.command(&["run"]), std::time::Duration::from_millis(ms))
            {
                kills += 1;
            }
        }
        f.run_ok(&[]);
        let fresh = f.rebuilt();
        for sql in PIPELINE_READS {
            assert_eq!(
                f.table(sql).await,
                fresh.table(sql).await,
                "batch {i}: {sql}"
            );
        }
    }
    assert!(kills >= 6, "runs were interrupted ({kills} kills)");
    // Each killed run left its `running` row; the next run marked it abandoned.
    let runs = |status: &str| format!("_system.runs WHERE kind = 'run' AND status = '{status}'");
    assert_eq!(f.count(&runs("running")).await, 0, "no run is left running");
    assert!(
        f.count(&runs("abandoned")).await >= 1,
        "killed runs are marked abandoned"
    );
    assert!(f.count(&runs("succeeded")).await >= 3);
}
