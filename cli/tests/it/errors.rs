//! Bad input: clear errors that name the file, line, key or rule, and nothing half-written.

use crate::kit::Fixture;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const ORDERS_FAIL: &str = r#"
[[bronze]]
name = "orders"
source = { kind = "files", path = "data/*.csv" }
on_error = "fail"
"#;

#[tokio::test]
async fn a_malformed_line_with_on_error_fail_names_file_and_line_and_writes_nothing() {
    let f = Fixture::with_config(ORDERS_FAIL);
    f.write("data/a.csv", "id,amount\n1,10\n2,20,oops\n3,30\n");
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("data/a.csv line 3: expected 2 fields, found 3"),
        "{err}"
    );
    assert_eq!(f.version("bronze.orders").await, None);
}

#[tokio::test]
async fn a_malformed_file_with_on_error_quarantine_keeps_going() {
    let f = Fixture::with_config(&ORDERS_FAIL.replace("\"fail\"", "\"quarantine\""));
    f.write("data/a.csv", "id,amount\n1,10\n2,20,oops\n3,30\n");
    f.write("data/b.csv", "id,id\n4,40\n");
    f.write("data/c.json.csv", "id,amount\n5,\"unterminated\n");
    f.run_ok(&[]);
    assert_eq!(f.count("bronze.orders").await, 2);
    assert_eq!(
        f.table("SELECT regexp_replace(_source_file, '.*/', '') AS file, _line, _reason FROM bronze.orders__rejected ORDER BY file").await,
        "\
+------------+-------+---------------------------------------------------------+
| file       | _line | _reason                                                 |
+------------+-------+---------------------------------------------------------+
| a.csv      | 3     | expected 2 fields, found 3                              |
| b.csv      |       | line 1: header: column `id` appears twice in the header |
| c.json.csv | 2     | unterminated quoted field                               |
+------------+-------+---------------------------------------------------------+"
    );
}

#[tokio::test]
async fn parquet_and_ndjson_sources_are_ingested() {
    let f = Fixture::with_config(
        "[[bronze]]\nname = \"events\"\nsource = { kind = \"files\", path = \"in/*\" }\n",
    );
    f.write("in/a.ndjson", "{\"id\": 1, \"kind\": \"click\"}\n{\"id\": 2, \"kind\": \"view\", \"extra\": {\"x\": 1}}\n");
    // A Parquet file written with arrow.
    let batch = arrow::array::RecordBatch::try_from_iter(vec![(
        "id",
        std::sync::Arc::new(arrow::array::Int64Array::from(vec![3, 4])) as arrow::array::ArrayRef,
    )])
    .unwrap();
    let file = std::fs::File::create(f.path().join("in/b.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let out = f.assay(&["run"]);
    // NDJSON keeps text, Parquet keeps Int64: the two files cannot share column `id`.
    let err = stderr(&out);
    if out.status.success() {
        assert_eq!(f.count("bronze.events").await, 4);
    } else {
        assert!(err.contains("bronze.events"), "{err}");
        assert_eq!(
            f.version("bronze.events").await,
            None,
            "nothing half-written"
        );
    }
}

#[tokio::test]
async fn failing_expectation_leaves_silver_unchanged_and_records_the_rule() {
    let f = Fixture::example();
    f.run_ok(&[]);
    let before = f.version("silver.products").await;
    f.write(
        "examples/retail/products/products_update.csv",
        "product_id,name,category,price\n40,Broken scale,A,-5.00\n",
    );
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("silver.products: expectation failed: rule `price_not_negative` failed for 1 row(s); silver left unchanged"),
        "{err}"
    );
    assert_eq!(f.version("silver.products").await, before);
    assert_eq!(f.count("silver.products").await, 6);
    assert_eq!(
        f.table("SELECT passed, failed FROM _system.expectations WHERE rule = 'price_not_negative' ORDER BY recorded_at DESC LIMIT 1").await,
        "\
+--------+--------+
| passed | failed |
+--------+--------+
| 0      | 1      |
+--------+--------+"
    );
    assert!(
        f.table("SELECT status, error FROM _system.runs WHERE step = 'gold.products' ORDER BY started_at DESC LIMIT 1")
            .await
            .contains("skipped"),
        "downstream of the failed step is skipped"
    );
}

#[test]
fn a_cycle_is_named() {
    let f = Fixture::with_config("");
    f.write("sql/gold/a.sql", "SELECT * FROM gold.b");
    f.write("sql/gold/b.sql", "SELECT * FROM gold.a");
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("dependency cycle: gold.a -> gold.b -> gold.a"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_table_reference_names_model_and_table() {
    let f = Fixture::with_config("");
    f.write("sql/gold/kpis.sql", "SELECT COUNT(*) FROM silver.nope");
    let out = f.assay(&["ls"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("gold.kpis references unknown table `silver.nope`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_config_key_names_key_and_line() {
    let f = Fixture::with_config("[lake]\nroot = \"./lake\"\nroto = \"typo\"\n");
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("assay.toml"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("unknown field `roto`"), "{err}");
}

#[test]
fn bad_sql_names_the_file() {
    let f = Fixture::with_config("");
    f.write("sql/gold/kpis.sql", "SELEC oops");
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sql/gold/kpis.sql: invalid SQL"),
        "{}",
        stderr(&out)
    );
}
