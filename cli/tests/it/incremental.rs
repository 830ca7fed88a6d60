//! Incremental semantics: one streamed input per silver table (the others read whole),
//! `--full-refresh`, and streams whose log no longer holds what a table needs. Every
//! incremental result is compared with a from-scratch run over the same files.

use crate::kit::Fixture;

/// Orders enriched with their customer's name: `bronze.orders` is streamed, the customer
/// dimension (`silver.customers`) is read whole at its latest version.
const SHOP: &str = r#"
[[bronze]]
name = "customers"
source = { kind = "files", path = "data/customers/*.csv" }

[[bronze]]
name = "orders"
source = { kind = "files", path = "data/orders/*.csv" }

[[silver]]
name = "customers"
from = "bronze.customers"
columns = { customer_id = "bigint", name = "string", updated_at = "timestamp" }
keys = ["customer_id"]
sequence_by = "updated_at"

[[silver]]
name = "orders"
sql = "sql/silver/orders.sql"
stream = "bronze.orders"
columns = { order_id = "bigint", customer_id = "bigint", customer_name = "string", amount = "decimal(10,2)" }
keys = ["order_id"]
"#;

const ORDERS_SQL: &str = "\
SELECT o.order_id, o.customer_id, c.name AS customer_name, o.amount
FROM bronze.orders AS o
LEFT JOIN silver.customers AS c ON CAST(o.customer_id AS BIGINT) = c.customer_id
";

const ENRICHED: &str =
    "SELECT order_id, customer_id, customer_name, amount FROM silver.orders ORDER BY order_id";

fn shop() -> Fixture {
    let f = Fixture::with_config(SHOP);
    f.write("sql/silver/orders.sql", ORDERS_SQL);
    f
}

/// The query's result over a fresh lake built in one run from the same files.
async fn from_scratch(f: &Fixture, sql: &str) -> String {
    f.rebuilt().table(sql).await
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn an_order_joins_a_customer_that_arrived_in_an_earlier_run() {
    let f = shop();
    f.write(
        "data/customers/c1.csv",
        "customer_id,name,updated_at\n1,Ada,2026-11-01T00:00:00Z\n2,Bo,2026-11-01T00:00:00Z\n",
    );
    f.write("data/orders/o0.csv", "order_id,customer_id,amount\n");
    f.run_ok(&[]);
    assert_eq!(f.count("silver.customers").await, 2);

    f.write(
        "data/orders/o1.csv",
        "order_id,customer_id,amount\n10,1,5.00\n11,2,7.50\n12,3,1.25\n",
    );
    f.run_ok(&[]);
    assert_eq!(
        f.table(ENRICHED).await,
        "\
+----------+-------------+---------------+--------+
| order_id | customer_id | customer_name | amount |
+----------+-------------+---------------+--------+
| 10       | 1           | Ada           | 5.00   |
| 11       | 2           | Bo            | 7.50   |
| 12       | 3           |               | 1.25   |
+----------+-------------+---------------+--------+",
        "the customers of run 1 are joined in run 2"
    );
    assert_eq!(f.table(ENRICHED).await, from_scratch(&f, ENRICHED).await);
}

#[tokio::test]
async fn a_later_dimension_change_rewrites_old_rows_only_on_a_full_refresh() {
    let f = shop();
    f.write(
        "data/customers/c1.csv",
        "customer_id,name,updated_at\n1,Ada,2026-11-01T00:00:00Z\n",
    );
    f.write(
        "data/orders/o1.csv",
        "order_id,customer_id,amount\n10,1,5.00\n",
    );
    f.run_ok(&[]);
    let orders_version = f.version("silver.orders").await;

    // Ada renames herself; nothing new arrives on the stream.
    f.write(
        "data/customers/c2.csv",
        "customer_id,name,updated_at\n1,Ada L.,2026-11-02T00:00:00Z\n",
    );
    let out = f.run_ok(&[]);
    assert!(
        out.lines()
            .any(|l| l.contains("silver.orders") && l.contains("up_to_date")),
        "{out}"
    );
    assert_eq!(f.version("silver.orders").await, orders_version);
    assert!(f.table(ENRICHED).await.contains("| Ada           |"));

    // A new order joins the dimension as it is now; the old row keeps its name.
    f.write(
        "data/orders/o2.csv",
        "order_id,customer_id,amount\n11,1,2.00\n",
    );
    f.run_ok(&[]);
    assert_eq!(
        f.table(ENRICHED).await,
        "\
+----------+-------------+---------------+--------+
| order_id | customer_id | customer_name | amount |
+----------+-------------+---------------+--------+
| 10       | 1           | Ada           | 5.00   |
| 11       | 1           | Ada L.        | 2.00   |
+----------+-------------+---------------+--------+"
    );

    // The user asks for it: one commit replaces the table, equal to a rebuild.
    let before = f.version("silver.orders").await.unwrap();
    f.run_ok(&["--full-refresh", "--select", "silver.orders"]);
    assert_eq!(f.version("silver.orders").await, Some(before + 1));
    assert_eq!(f.table(ENRICHED).await, from_scratch(&f, ENRICHED).await);
    assert!(
        f.table(ENRICHED)
            .await
            .contains("| 10       | 1           | Ada L.")
    );
    // The cursor restarted at the stream's latest version: the next run has nothing to do.
    let out = f.run_ok(&["--select", "silver.orders"]);
    assert!(out.contains("up_to_date"), "{out}");
}

#[tokio::test]
async fn a_full_refresh_rebuilds_every_layer_in_one_commit_each_and_equals_a_fresh_run() {
    let f = shop();
    f.write(
        "data/customers/c1.csv",
        "customer_id,name,updated_at\n1,Ada,2026-11-01T00:00:00Z\n2,Bo,2026-11-01T00:00:00Z\n",
    );
    f.write(
        "data/orders/o1.csv",
        "order_id,customer_id,amount\n10,1,5.00\n",
    );
    f.run_ok(&[]);
    f.write(
        "data/orders/o2.csv",
        "order_id,customer_id,amount\n11,2,7.50\n10,1,6.00\n",
    );
    f.run_ok(&[]);
    // A source file disappears: a full refresh keeps only what is still present.
    std::fs::remove_file(f.path().join("data/orders/o1.csv")).unwrap();
    let tables = [
        "bronze.customers",
        "bronze.orders",
        "silver.customers",
        "silver.orders",
    ];
    let mut before = Vec::new();
    for t in tables {
        before.push(f.version(t).await.unwrap());
    }
    f.run_ok(&["--full-refresh"]);
    for (t, v) in tables.iter().zip(before) {
        assert_eq!(f.version(t).await, Some(v + 1), "{t}: one commit");
    }
    assert_eq!(f.count("bronze.orders").await, 2);
    assert_eq!(f.table(ENRICHED).await, from_scratch(&f, ENRICHED).await);
    let customers = "SELECT customer_id, name, updated_at FROM silver.customers ORDER BY 1";
    assert_eq!(f.table(customers).await, from_scratch(&f, customers).await);
    // Cursors restarted: nothing is new afterwards.
    let out = f.run_ok(&[]);
    assert_eq!(out.matches("up_to_date").count(), 4, "{out}");
}

#[tokio::test]
async fn a_rewritten_stream_asks_for_a_full_refresh_of_the_consumer() {
    let f = shop();
    f.write(
        "data/customers/c1.csv",
        "customer_id,name,updated_at\n1,Ada,2026-11-01T00:00:00Z\n",
    );
    f.write(
        "data/orders/o1.csv",
        "order_id,customer_id,amount\n10,1,5.00\n",
    );
    f.run_ok(&[]);
    f.run_ok(&["--full-refresh", "--select", "bronze.orders"]);
    let silver = f.version("silver.orders").await;
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("silver.orders: cannot read bronze.orders incrementally")
            && err.contains("`assay run --full-refresh --select silver.orders`"),
        "{err}"
    );
    assert_eq!(f.version("silver.orders").await, silver, "nothing written");
    f.run_ok(&["--full-refresh", "--select", "silver.orders"]);
    assert_eq!(f.table(ENRICHED).await, from_scratch(&f, ENRICHED).await);
    f.run_ok(&[]);
}

#[tokio::test]
async fn a_stream_whose_commits_were_cleaned_up_asks_for_a_full_refresh() {
    let f = shop();
    f.write(
        "data/customers/c1.csv",
        "customer_id,name,updated_at\n1,Ada,2026-11-01T00:00:00Z\n",
    );
    f.write(
        "data/orders/o1.csv",
        "order_id,customer_id,amount\n10,1,5.00\n",
    );
    f.run_ok(&[]);
    for i in 2..=3 {
        f.write(
            &format!("data/orders/o{i}.csv"),
            &format!("order_id,customer_id,amount\n{i}0,1,1.00\n"),
        );
        f.run_ok(&["--select", "bronze.orders"]);
    }
    // Log cleanup: a checkpoint at version 2, then the commits before it are removed.
    let id = assay_engine::TableId::parse("bronze.orders").unwrap();
    let table = f.lake().open(&id).await.unwrap().unwrap();
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .unwrap();
    let log = f.path().join("lakehouse/bronze/orders/_delta_log");
    for v in 0..2 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("silver.orders: cannot read bronze.orders incrementally: commit 1 is no longer in its log")
            && err.contains("--full-refresh --select silver.orders"),
        "{err}"
    );
    f.run_ok(&["--full-refresh", "--select", "silver.orders"]);
    assert_eq!(f.count("silver.orders").await, 3);
}

/// Orders with updates, one silver table MERGEd by key and one append-only log, and one
/// gold model per incremental strategy.
const SALES: &str = r#"
[[bronze]]
name = "orders"
source = { kind = "files", path = "data/orders/*.csv" }

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

[[gold]]
name = "order_facts"
incremental = { strategy = "merge", unique_key = ["order_id"] }

[[gold]]
name = "daily"
partition_by = ["order_date"]
incremental = { strategy = "partitions" }

[[gold]]
name = "big_events"
incremental = { strategy = "append" }
"#;

const GOLD: [(&str, &str); 3] = [
    (
        "order_facts",
        "SELECT order_id, order_date, amount, amount * 2 AS double_amount FROM silver.orders",
    ),
    (
        "daily",
        "SELECT order_date, COUNT(*) AS orders, SUM(amount) AS revenue FROM silver.orders GROUP BY order_date",
    ),
    (
        "big_events",
        "SELECT order_id, amount, updated_at FROM silver.order_log WHERE amount >= 10",
    ),
];

const GOLD_READS: [&str; 3] = [
    "SELECT * FROM gold.order_facts ORDER BY order_id",
    "SELECT * FROM gold.daily ORDER BY order_date",
    "SELECT * FROM gold.big_events ORDER BY order_id, updated_at",
];

fn sales() -> Fixture {
    let f = Fixture::with_config(SALES);
    for (name, sql) in GOLD {
        f.write(&format!("sql/gold/{name}.sql"), sql);
    }
    f
}

async fn step_written(f: &Fixture, step: &str) -> String {
    f.table(&format!(
        "SELECT status, rows_written FROM _system.runs WHERE step = '{step}' ORDER BY started_at DESC LIMIT 1"
    ))
    .await
}

#[tokio::test]
async fn incremental_gold_equals_a_full_rebuild_after_every_run() {
    let f = sales();
    let batches = [
        "order_id,order_date,amount,updated_at\n\
         1,2026-11-01,10.00,2026-11-01T08:00:00Z\n\
         2,2026-11-01,5.00,2026-11-01T09:00:00Z\n\
         3,2026-11-02,20.00,2026-11-02T08:00:00Z\n\
         4,2026-11-03,7.00,2026-11-03T08:00:00Z\n",
        // A new day, and order 2 moves from 11-01 to 11-04 with a new amount.
        "order_id,order_date,amount,updated_at\n\
         5,2026-11-04,30.00,2026-11-04T08:00:00Z\n\
         2,2026-11-04,15.00,2026-11-04T09:00:00Z\n",
        // A late event for order 5 that is older than what silver holds, a duplicate, and
        // another order on an existing day.
        "order_id,order_date,amount,updated_at\n\
         5,2026-11-02,99.00,2026-11-03T00:00:00Z\n\
         6,2026-11-02,12.50,2026-11-05T08:00:00Z\n\
         6,2026-11-02,12.50,2026-11-05T08:00:00Z\n",
    ];
    for (i, batch) in batches.iter().enumerate() {
        f.write(&format!("data/orders/b{i}.csv"), batch);
        f.run_ok(&[]);
        let fresh = f.rebuilt();
        for sql in GOLD_READS {
            assert_eq!(f.table(sql).await, fresh.table(sql).await, "run {i}: {sql}");
        }
    }
    // Run 2 touched days 11-01 and 11-04 only; run 3 touched 11-02 only: one row each
    // recomputed, the other days untouched.
    assert_eq!(
        f.table("SELECT order_date, orders, revenue FROM gold.daily ORDER BY order_date")
            .await,
        "\
+------------+--------+---------+
| order_date | orders | revenue |
+------------+--------+---------+
| 2026-11-01 | 1      | 10.00   |
| 2026-11-02 | 2      | 32.50   |
| 2026-11-03 | 1      | 7.00    |
| 2026-11-04 | 2      | 45.00   |
+------------+--------+---------+"
    );
    assert!(
        step_written(&f, "gold.daily")
            .await
            .contains("| succeeded | 1            |"),
        "{}",
        step_written(&f, "gold.daily").await
    );
    // The merge saw only the changed orders (6 inserted; 5 unchanged: its late event lost).
    assert!(
        step_written(&f, "gold.order_facts")
            .await
            .contains("| succeeded | 1            |"),
        "{}",
        step_written(&f, "gold.order_facts").await
    );
    // Every run appended only the new events of the log.
    assert_eq!(f.count("gold.big_events").await, 7);

    // Nothing new: every incremental model is up to date and commits nothing.
    let versions = [
        f.version("gold.order_facts").await,
        f.version("gold.daily").await,
        f.version("gold.big_events").await,
    ];
    let out = f.run_ok(&[]);
    assert_eq!(out.matches("up_to_date").count(), 6, "{out}");
    assert_eq!(f.version("gold.order_facts").await, versions[0]);
    assert_eq!(f.version("gold.daily").await, versions[1]);
    assert_eq!(f.version("gold.big_events").await, versions[2]);

    // A full refresh recomputes each in one commit, to the same rows.
    f.run_ok(&["--full-refresh", "--select", "gold"]);
    assert_eq!(f.version("gold.daily").await, versions[1].map(|v| v + 1));
    let fresh = f.rebuilt();
    for sql in GOLD_READS {
        assert_eq!(f.table(sql).await, fresh.table(sql).await, "{sql}");
    }
}

#[tokio::test]
async fn an_incremental_model_whose_columns_change_asks_for_a_full_refresh() {
    let f = sales();
    f.write(
        "data/orders/b0.csv",
        "order_id,order_date,amount,updated_at\n1,2026-11-01,10.00,2026-11-01T08:00:00Z\n",
    );
    f.run_ok(&[]);
    f.write(
        "sql/gold/order_facts.sql",
        "SELECT order_id, order_date, amount, amount * 3 AS triple FROM silver.orders",
    );
    f.write(
        "data/orders/b1.csv",
        "order_id,order_date,amount,updated_at\n2,2026-11-02,20.00,2026-11-02T08:00:00Z\n",
    );
    let version = f.version("gold.order_facts").await;
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gold.order_facts: the model's output changed (column `triple` is new, column `double_amount` is gone)")
            && err.contains("`assay run --full-refresh --select gold.order_facts`"),
        "{err}"
    );
    assert_eq!(f.version("gold.order_facts").await, version);
    f.run_ok(&["--full-refresh", "--select", "gold.order_facts"]);
    assert_eq!(
        f.table("SELECT order_id, triple FROM gold.order_facts ORDER BY 1")
            .await,
        "\
+----------+--------+
| order_id | triple |
+----------+--------+
| 1        | 30.00  |
| 2        | 60.00  |
+----------+--------+"
    );
}

#[tokio::test]
async fn an_append_model_over_a_rewritten_stream_asks_for_a_full_refresh() {
    let f = sales();
    f.write(
        "data/orders/b0.csv",
        "order_id,order_date,amount,updated_at\n1,2026-11-01,10.00,2026-11-01T08:00:00Z\n",
    );
    f.run_ok(&[]);
    f.run_ok(&["--full-refresh", "--select", "silver.order_log"]);
    let out = f.assay(&["run", "--select", "gold"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gold.big_events: cannot read silver.order_log incrementally: its commit 1 removed or rewrote rows, which strategy `append` cannot apply")
            && err.contains("--full-refresh --select gold.big_events"),
        "{err}"
    );
    // The partitions model follows a rewritten stream (its rows cancel out: nothing changed).
    f.run_ok(&["--full-refresh", "--select", "silver.orders"]);
    f.run_ok(&["--select", "gold.daily"]);
    let fresh = f.rebuilt();
    assert_eq!(
        f.table(GOLD_READS[1]).await,
        fresh.table(GOLD_READS[1]).await
    );
}

#[tokio::test]
async fn a_crash_before_an_incremental_commit_is_completed_exactly_by_the_rerun() {
    let f = sales();
    f.write(
        "data/orders/b0.csv",
        "order_id,order_date,amount,updated_at\n\
         1,2026-11-01,10.00,2026-11-01T08:00:00Z\n\
         2,2026-11-01,15.00,2026-11-01T09:00:00Z\n",
    );
    f.run_ok(&[]);
    let rounds = [
        (
            "b1",
            "2,2026-11-02,16.00,2026-11-02T09:00:00Z\n3,2026-11-02,30.00,2026-11-02T10:00:00Z\n",
            vec![
                "before_commit:gold.daily",
                "before_commit:gold.order_facts",
                "before_commit:gold.big_events",
            ],
        ),
        (
            "b2",
            "1,2026-11-03,11.00,2026-11-03T09:00:00Z\n4,2026-11-01,40.00,2026-11-03T10:00:00Z\n",
            vec![
                "before_commit:silver.orders",
                "before_commit:silver.order_log",
            ],
        ),
    ];
    for (name, rows, faults) in rounds {
        f.write(
            &format!("data/orders/{name}.csv"),
            &format!("order_id,order_date,amount,updated_at\n{rows}"),
        );
        let mut args = vec!["run"];
        for fault in &faults {
            args.extend(["--inject-fault", fault]);
        }
        let out = f.assay(&args);
        assert!(!out.status.success(), "{name}: the faults fired");
        f.run_ok(&[]);
        let fresh = f.rebuilt();
        for sql in GOLD_READS {
            assert_eq!(f.table(sql).await, fresh.table(sql).await, "{name}: {sql}");
        }
    }
}
