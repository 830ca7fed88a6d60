//! arrow-flight's own Flight SQL client against the server.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo,
};
use assay_engine::query::QueryLimits;

use crate::kit::{ADMIN, READER, Server, append, fetch, pretty, products, query};

fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// `Code: message` for a Tonic status, the error text otherwise.
fn err_text(e: arrow_flight::error::FlightError) -> String {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn handshake_and_tokens_are_required() {
    let server = Server::start(QueryLimits::default()).await;
    let mut c = server.client().await;
    let err = c.handshake("admin", "wrong").await.unwrap_err().to_string();
    assert!(err.contains("invalid user name or password"), "{err}");
    let err = err_text(query(&mut c, "SELECT 1").await.unwrap_err());
    assert!(err.contains("Unauthenticated"), "{err}");
    c.set_token("forged".into());
    let err = err_text(query(&mut c, "SELECT 1").await.unwrap_err());
    assert!(err.contains("Unauthenticated"), "{err}");
}

#[tokio::test]
async fn statements_stream_gold_rows_as_plain_utf8() {
    let server = Server::start(QueryLimits::default()).await;
    let mut c = server.login(ADMIN).await;
    let batches = query(
        &mut c,
        "SELECT product_id, name, price FROM gold.products ORDER BY product_id",
    )
    .await
    .unwrap();
    assert_eq!(
        pretty(&batches),
        "\
+------------+----------------+-------+
| product_id | name           | price |
+------------+----------------+-------+
| 10         | Espresso beans | 24.50 |
| 20         | Burr grinder   | 89.00 |
| 30         | Ceramic mug    | 9.90  |
| 31         | Travel tumbler | 19.90 |
+------------+----------------+-------+"
    );
    assert_eq!(batches[0].schema().field(1).data_type(), &DataType::Utf8);
}

#[tokio::test]
async fn a_commit_is_visible_to_the_next_query() {
    let server = Server::start(QueryLimits::default()).await;
    let mut c = server.login(ADMIN).await;
    let count = "SELECT COUNT(*) AS n FROM gold.products";
    assert!(pretty(&query(&mut c, count).await.unwrap()).contains("| 4 |"));
    append(
        &server.lake,
        "gold.products",
        products(&[40], &["Scale"], &["A"], &[4500]),
    )
    .await;
    assert!(pretty(&query(&mut c, count).await.unwrap()).contains("| 5 |"));
}

#[tokio::test]
async fn roles_hide_layers_and_bad_statements_get_clear_codes() {
    let server = Server::start(QueryLimits::default()).await;
    let mut reader = server.login(READER).await;
    assert_eq!(
        query(&mut reader, "SELECT * FROM gold.products")
            .await
            .unwrap()[0]
            .num_rows(),
        4
    );
    let err = err_text(
        query(&mut reader, "SELECT * FROM silver.orders")
            .await
            .unwrap_err(),
    );
    assert!(err.contains("NotFound"), "{err}");
    let info = reader
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = pretty(&fetch(&mut reader, info).await.unwrap());
    assert!(
        schemas.contains("gold") && !schemas.contains("silver"),
        "{schemas}"
    );

    let mut admin = server.login(ADMIN).await;
    assert_eq!(
        query(&mut admin, "SELECT * FROM silver.orders")
            .await
            .unwrap()[0]
            .num_rows(),
        2
    );
    // Deep enough to overflow the planner's stack without the depth limit.
    let deep = format!("SELECT {}", vec!["1"; 2000].join("+"));
    for (sql, code) in [
        (
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
            "PermissionDenied",
        ),
        (
            "COPY (SELECT 1) TO '/tmp/assay-copy.csv'",
            "PermissionDenied",
        ),
        (
            "INSERT INTO gold.products VALUES (1, 'x', 'A', 1.0)",
            "PermissionDenied",
        ),
        (
            "SELECT * INTO stolen FROM gold.products",
            "PermissionDenied",
        ),
        (
            "WITH a AS (SELECT 1) INSERT INTO gold.products SELECT * FROM gold.products",
            "PermissionDenied",
        ),
        (
            "SET datafusion.execution.batch_size = 1",
            "PermissionDenied",
        ),
        ("SELEC 1", "InvalidArgument"),
        ("SELECT nope FROM gold.products", "InvalidArgument"),
        (&deep, "InvalidArgument"),
        ("SELECT * FROM gold.nope", "NotFound"),
        ("SELECT * FROM '/etc/passwd'", "NotFound"),
    ] {
        let err = err_text(query(&mut admin, sql).await.unwrap_err());
        assert!(err.contains(code), "{sql:.80}: {err}");
    }
}

#[tokio::test]
async fn prepared_statements_bind_parameters() {
    let server = Server::start(QueryLimits::default()).await;
    let mut c = server.login(ADMIN).await;
    let mut stmt = c
        .prepare(
            "SELECT name FROM gold.products WHERE category = $1 ORDER BY name".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        stmt.parameter_schema().unwrap().field(0).data_type(),
        &DataType::Utf8
    );
    let params = RecordBatch::try_from_iter(vec![(
        "$1",
        Arc::new(StringArray::from(vec!["C"])) as ArrayRef,
    )])
    .unwrap();
    stmt.set_parameters(params).unwrap();
    let info = stmt.execute().await.unwrap();
    assert_eq!(
        pretty(&fetch(&mut c, info).await.unwrap()),
        "\
+----------------+
| name           |
+----------------+
| Ceramic mug    |
| Travel tumbler |
+----------------+"
    );
    stmt.close().await.unwrap();
}

#[tokio::test]
async fn metadata_commands_answer() {
    let server = Server::start(QueryLimits::default()).await;
    let mut c = server.login(ADMIN).await;
    let info = c.get_catalogs().await.unwrap();
    assert!(pretty(&fetch(&mut c, info).await.unwrap()).contains("assay"));

    for (catalog, pattern, include_schema) in [
        (None, None, false),
        (Some("assay".to_string()), Some("gold".to_string()), true),
        (None, Some("%".to_string()), true),
    ] {
        let info = c
            .get_tables(CommandGetTables {
                catalog,
                db_schema_filter_pattern: pattern,
                table_name_filter_pattern: Some("prod%".into()),
                table_types: vec![],
                include_schema,
            })
            .await
            .unwrap();
        let batches = fetch(&mut c, info).await.unwrap();
        assert_eq!(row_count(&batches), 1, "one table matches prod%");
        assert_eq!(
            batches[0].schema().fields().len(),
            if include_schema { 5 } else { 4 }
        );
    }
    let info = c.get_table_types().await.unwrap();
    assert!(pretty(&fetch(&mut c, info).await.unwrap()).contains("TABLE"));
    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let info_text = pretty(&fetch(&mut c, info).await.unwrap());
    assert!(info_text.contains("Assay"), "{info_text}");
    let info = c
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    assert!(pretty(&fetch(&mut c, info).await.unwrap()).contains("VARCHAR"));
    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("gold".into()),
            table: "products".into(),
        })
        .await
        .unwrap();
    assert_eq!(row_count(&fetch(&mut c, info).await.unwrap()), 0);
    let info = c
        .get_exported_keys(CommandGetExportedKeys {
            catalog: None,
            db_schema: Some("gold".into()),
            table: "products".into(),
        })
        .await
        .unwrap();
    assert_eq!(row_count(&fetch(&mut c, info).await.unwrap()), 0);
    let info = c
        .get_imported_keys(CommandGetImportedKeys {
            catalog: None,
            db_schema: Some("gold".into()),
            table: "products".into(),
        })
        .await
        .unwrap();
    assert_eq!(row_count(&fetch(&mut c, info).await.unwrap()), 0);
    let info = c
        .get_cross_reference(CommandGetCrossReference {
            pk_catalog: None,
            pk_db_schema: Some("gold".into()),
            pk_table: "products".into(),
            fk_catalog: None,
            fk_db_schema: Some("gold".into()),
            fk_table: "products".into(),
        })
        .await
        .unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(schema.field(2).name(), "pk_table_name");
    assert_eq!(row_count(&fetch(&mut c, info).await.unwrap()), 0);
}

#[tokio::test]
async fn the_row_limit_is_enforced() {
    let limits = QueryLimits {
        max_rows: Some(2),
        ..QueryLimits::default()
    };
    let server = Server::start(limits).await;
    let mut c = server.login(ADMIN).await;
    let err = err_text(
        query(&mut c, "SELECT * FROM gold.products")
            .await
            .unwrap_err(),
    );
    assert!(err.contains("row limit of 2"), "{err}");
    assert_eq!(
        query(&mut c, "SELECT * FROM gold.products LIMIT 2")
            .await
            .unwrap()[0]
            .num_rows(),
        2
    );
}

#[tokio::test]
async fn the_timeout_and_the_memory_pool_are_enforced() {
    let limits = QueryLimits {
        timeout: std::time::Duration::from_nanos(1),
        ..QueryLimits::default()
    };
    let server = Server::start(limits).await;
    let mut c = server.login(ADMIN).await;
    let err = err_text(
        query(&mut c, "SELECT * FROM gold.products")
            .await
            .unwrap_err(),
    );
    assert!(
        err.starts_with("DeadlineExceeded: query timed out"),
        "{err}"
    );

    let limits = QueryLimits {
        memory_bytes: 1024,
        ..QueryLimits::default()
    };
    let server = Server::start(limits).await;
    let mut c = server.login(ADMIN).await;
    let err = err_text(
        query(
            &mut c,
            "SELECT name, COUNT(*) FROM gold.products GROUP BY name ORDER BY name",
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.starts_with("ResourceExhausted: query exceeded its memory limit"),
        "{err}"
    );
}
