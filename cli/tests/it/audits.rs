//! Audits before publish: a gold model's new version is written, audited, then published.
//! A failing `fail` audit leaves readers on the previous version (and no file behind); a
//! `warn` audit publishes and records. Outcomes land in `_system.expectations`.

use crate::kit::Fixture;

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
columns = { customer_id = "bigint", name = "string" }
keys = ["customer_id"]

[[silver]]
name = "orders"
from = "bronze.orders"
columns = { order_id = "bigint", customer_id = "bigint", status = "string", day = "date", amount = "decimal(10,2)", updated_at = "timestamp" }

[[gold]]
name = "order_facts"
partition_by = ["day"]
expect = { positive = "amount > 0" }
unique = ["order_id"]
not_null = ["customer_id"]
accepted_values = { status = ["new", "shipped"] }
relationships = { customer_id = "silver.customers.customer_id" }
row_count = { min = 1, max = 100 }
"#;

const FACTS: &str = "SELECT order_id, customer_id, status, day, amount FROM silver.orders";

const HEADER: &str = "order_id,customer_id,status,day,amount,updated_at\n";

fn shop(config: &str) -> Fixture {
    let f = Fixture::with_config(config);
    f.write("sql/gold/order_facts.sql", FACTS);
    f.write("data/customers/c.csv", "customer_id,name\n1,Ada\n2,Bo\n");
    f
}

fn orders(f: &Fixture, name: &str, rows: &str) {
    f.write(
        &format!("data/orders/{name}.csv"),
        &format!("{HEADER}{rows}"),
    );
}

async fn outcomes(f: &Fixture) -> String {
    f.table(
        "SELECT rule, action, passed, failed FROM _system.expectations \
         WHERE \"table\" = 'gold.order_facts' AND run_id = \
         (SELECT MAX(run_id) FROM _system.expectations) ORDER BY rule",
    )
    .await
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Data files under a table's directory (partition folders included).
fn data_files(f: &Fixture, table: &str) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| {
                    let e = e.unwrap();
                    let p = e.path();
                    if p.is_dir() && e.file_name() != "_delta_log" {
                        walk(&p)
                    } else {
                        usize::from(p.extension().is_some_and(|x| x == "parquet"))
                    }
                })
                .sum()
            })
            .unwrap_or(0)
    }
    walk(&f.path().join("lakehouse").join(table.replace('.', "/")))
}

#[tokio::test]
async fn a_passing_version_is_published_with_every_outcome_recorded() {
    let f = shop(SHOP);
    orders(
        &f,
        "o1",
        "10,1,new,2026-11-01,5.00,2026-11-01T08:00:00Z\n11,2,shipped,2026-11-02,7.50,2026-11-01T09:00:00Z\n12,1,new,,1.25,2026-11-01T10:00:00Z\n",
    );
    f.run_ok(&[]);
    assert_eq!(
        f.table("SELECT order_id, day FROM gold.order_facts ORDER BY order_id")
            .await,
        "\
+----------+------------+
| order_id | day        |
+----------+------------+
| 10       | 2026-11-01 |
| 11       | 2026-11-02 |
| 12       |            |
+----------+------------+",
        "the audited files are the published ones, NULL partition included"
    );
    assert_eq!(
        outcomes(&f).await,
        "\
+----------------------------+--------+--------+--------+
| rule                       | action | passed | failed |
+----------------------------+--------+--------+--------+
| accepted_values(status)    | fail   | 3      | 0      |
| not_null(customer_id)      | fail   | 3      | 0      |
| positive                   | fail   | 3      | 0      |
| relationships(customer_id) | fail   | 3      | 0      |
| row_count                  | fail   | 1      | 0      |
| unique(order_id)           | fail   | 3      | 0      |
+----------------------------+--------+--------+--------+"
    );
}

#[tokio::test]
async fn a_failing_audit_keeps_the_previous_version_and_names_the_check_and_rows() {
    let f = shop(SHOP);
    orders(&f, "o1", "10,1,new,2026-11-01,5.00,2026-11-01T08:00:00Z\n");
    f.run_ok(&[]);
    let version = f.version("gold.order_facts").await;
    let files = data_files(&f, "gold.order_facts");
    // A duplicate order, an unknown status, a customer who does not exist, a NULL amount.
    orders(
        &f,
        "o2",
        "10,1,new,2026-11-03,6.00,2026-11-02T08:00:00Z\n\
         13,2,lost,2026-11-03,2.00,2026-11-02T08:00:00Z\n\
         14,9,new,2026-11-03,,2026-11-02T08:00:00Z\n",
    );
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    for part in [
        "gold.order_facts: audit failed:",
        "`positive` failed: 1 row(s)",
        "`unique(order_id)` failed: 2 row(s) share a value",
        "`accepted_values(status)` failed: 1 row(s)",
        "`relationships(customer_id)` failed: 1 row(s) have no match in silver.customers.customer_id",
        "gold.order_facts left at its previous version",
    ] {
        assert!(err.contains(part), "{part}\n{err}");
    }
    assert_eq!(
        f.version("gold.order_facts").await,
        version,
        "nothing published"
    );
    assert_eq!(f.count("gold.order_facts").await, 1);
    assert_eq!(
        data_files(&f, "gold.order_facts"),
        files,
        "the staged files are gone"
    );
    assert_eq!(
        outcomes(&f).await,
        "\
+----------------------------+--------+--------+--------+
| rule                       | action | passed | failed |
+----------------------------+--------+--------+--------+
| accepted_values(status)    | fail   | 3      | 1      |
| not_null(customer_id)      | fail   | 4      | 0      |
| positive                   | fail   | 3      | 1      |
| relationships(customer_id) | fail   | 3      | 1      |
| row_count                  | fail   | 1      | 0      |
| unique(order_id)           | fail   | 2      | 2      |
+----------------------------+--------+--------+--------+"
    );
    let status = f
        .table(
            "SELECT status FROM _system.runs WHERE step = 'gold.order_facts' \
             ORDER BY started_at DESC LIMIT 1",
        )
        .await;
    assert!(status.contains("failed"), "{status}");
}

#[tokio::test]
async fn a_warn_audit_publishes_and_records() {
    let f = shop(&SHOP.replace(
        "row_count = { min = 1, max = 100 }",
        "row_count = { max = 1 }\non_violation = \"warn\"",
    ));
    orders(
        &f,
        "o1",
        "10,1,new,2026-11-01,5.00,2026-11-01T08:00:00Z\n11,1,new,2026-11-01,5.00,2026-11-01T08:00:00Z\n",
    );
    f.run_ok(&[]);
    assert_eq!(f.count("gold.order_facts").await, 2, "published");
    let o = outcomes(&f).await;
    assert!(
        o.contains("| row_count                  | warn   | 0      | 1      |"),
        "{o}"
    );
}

/// Append and merge models are audited on the whole new version, not only on the rows a
/// run adds.
const INCREMENTAL: &str = r#"
[[bronze]]
name = "orders"
source = { kind = "files", path = "data/orders/*.csv" }

[[silver]]
name = "orders"
from = "bronze.orders"
columns = { order_id = "bigint", customer_id = "bigint", status = "string", day = "date", amount = "decimal(10,2)", updated_at = "timestamp" }

[[gold]]
name = "log"
incremental = { strategy = "append" }
unique = ["order_id"]

[[gold]]
name = "latest"
incremental = { strategy = "merge", unique_key = ["order_id"] }
row_count = { max = 2 }

[[gold]]
name = "daily"
partition_by = ["day"]
incremental = { strategy = "partitions" }
expect = { small = "revenue < 100" }
"#;

#[tokio::test]
async fn incremental_models_are_audited_on_the_whole_new_version() {
    let f = Fixture::with_config(INCREMENTAL);
    f.write(
        "sql/gold/log.sql",
        "SELECT order_id, amount FROM silver.orders",
    );
    f.write(
        "sql/gold/latest.sql",
        "SELECT order_id, amount FROM silver.orders",
    );
    f.write(
        "sql/gold/daily.sql",
        "SELECT day, SUM(amount) AS revenue FROM silver.orders GROUP BY day",
    );
    orders(
        &f,
        "o1",
        "10,1,new,2026-11-01,5.00,2026-11-01T08:00:00Z\n11,1,new,2026-11-02,50.00,2026-11-01T08:00:00Z\n",
    );
    f.run_ok(&[]);
    let versions = [
        f.version("gold.log").await,
        f.version("gold.latest").await,
        f.version("gold.daily").await,
    ];
    // Order 10 again (a duplicate in the log, not in this run's rows), a third order
    // (three rows in `latest`), and day 11-02 reaching 100.
    orders(
        &f,
        "o2",
        "10,1,new,2026-11-01,5.00,2026-11-02T08:00:00Z\n12,1,new,2026-11-02,50.00,2026-11-02T08:00:00Z\n",
    );
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gold.log: audit failed: `unique(order_id)` failed: 2 row(s) share a value"),
        "{err}"
    );
    assert!(
        err.contains("gold.latest: audit failed: `row_count` failed: 3 row(s), expected at most 2"),
        "{err}"
    );
    assert!(
        err.contains("gold.daily: audit failed: `small` failed: 1 row(s)"),
        "{err}"
    );
    assert_eq!(f.version("gold.log").await, versions[0]);
    assert_eq!(f.version("gold.latest").await, versions[1]);
    assert_eq!(f.version("gold.daily").await, versions[2]);
    assert_eq!(data_files(&f, "gold.log"), 1, "the staged append is gone");
}

#[tokio::test]
async fn freshness_checks_an_input_by_column_or_commit_time() {
    let stale = SHOP.replace(
        "row_count = { min = 1, max = 100 }",
        "freshness = [{ table = \"silver.orders\", max_age = \"1h\", column = \"updated_at\" },\n             { table = \"silver.orders\", max_age = \"1h\" }]",
    );
    let f = shop(&stale);
    orders(&f, "o1", "10,1,new,2026-11-01,5.00,2020-01-01T00:00:00Z\n");
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`freshness(silver.orders)` failed: last updated ")
            && err.contains("ago, more than 1h"),
        "{err}"
    );
    assert_eq!(f.version("gold.order_facts").await, None);
    let o = outcomes(&f).await;
    // The column is years old; the table's last commit is seconds old.
    assert!(
        o.contains("| freshness(silver.orders)   | fail   | 0      | 1      |"),
        "{o}"
    );
    assert!(
        o.contains("| freshness(silver.orders)   | fail   | 1      | 0      |"),
        "{o}"
    );
}

#[tokio::test]
async fn an_audit_on_a_missing_column_names_the_audit() {
    let f = shop(&SHOP.replace("not_null = [\"customer_id\"]", "not_null = [\"customer\"]"));
    orders(&f, "o1", "10,1,new,2026-11-01,5.00,2026-11-01T08:00:00Z\n");
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gold.order_facts: audit `not_null(customer)`: Error during planning: no column `customer` (the columns are: order_id, customer_id, status, day, amount)"),
        "{err}"
    );
    assert_eq!(f.version("gold.order_facts").await, None);
}
