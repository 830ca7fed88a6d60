//! Catalog metadata commands: catalogs, schemas, tables, table types, SQL info, XDBC type
//! info, and the (empty) key commands. Every list is filtered by the caller's role.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, XdbcDataType};
use tonic::Status;

use crate::error::internal;

/// The table type every lake table reports.
pub(crate) const TABLE_TYPE: &str = "TABLE";

/// Server facts for GetSqlInfo.
pub(crate) fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Assay");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierCase, 3i32); // case-insensitive (folded to lower case)
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, 1i32); // case-sensitive
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, 2i32); // NULLs sorted at the end
    b.append(
        SqlInfo::SqlKeywords,
        &[
            "ABS",
            "AND",
            "ARRAY",
            "AS",
            "ASC",
            "BETWEEN",
            "BY",
            "CASE",
            "CAST",
            "COUNT",
            "CROSS",
            "DESC",
            "DISTINCT",
            "ELSE",
            "END",
            "EXCEPT",
            "EXISTS",
            "EXPLAIN",
            "FALSE",
            "FROM",
            "FULL",
            "GROUP",
            "HAVING",
            "IN",
            "INNER",
            "INTERSECT",
            "IS",
            "JOIN",
            "LEFT",
            "LIKE",
            "LIMIT",
            "NOT",
            "NULL",
            "OFFSET",
            "ON",
            "OR",
            "ORDER",
            "OUTER",
            "OVER",
            "PARTITION",
            "RIGHT",
            "SELECT",
            "THEN",
            "TRUE",
            "UNION",
            "USING",
            "VALUES",
            "WHEN",
            "WHERE",
            "WINDOW",
            "WITH",
        ][..],
    );
    b.append(SqlInfo::SqlMaxColumnNameLength, 1024i64);
    b.build().map_err(|e| internal("building SQL info", e))
}

fn xdbc(name: &str, ty: XdbcDataType, size: Option<i32>, prefix: Option<&str>) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type: ty,
        column_size: size,
        literal_prefix: prefix.map(Into::into),
        literal_suffix: prefix.map(Into::into),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(ty, XdbcDataType::XdbcVarchar),
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: ty,
        datetime_subcode: None,
        num_prec_radix: size.map(|_| 10),
        interval_precision: None,
    }
}

/// The SQL types queries can return, for GetXdbcTypeInfo.
pub(crate) fn xdbc_info() -> Result<XdbcTypeInfoData, Status> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    b.append(xdbc("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None));
    b.append(xdbc("TINYINT", XdbcDataType::XdbcTinyint, Some(3), None));
    b.append(xdbc("BIGINT", XdbcDataType::XdbcBigint, Some(19), None));
    b.append(xdbc("VARBINARY", XdbcDataType::XdbcVarbinary, None, None));
    b.append(xdbc("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")));
    b.append(xdbc("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), None));
    b.append(xdbc("INTEGER", XdbcDataType::XdbcInteger, Some(10), None));
    b.append(xdbc("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), None));
    b.append(xdbc("REAL", XdbcDataType::XdbcReal, Some(7), None));
    b.append(xdbc("DOUBLE", XdbcDataType::XdbcDouble, Some(15), None));
    b.append(xdbc("DATE", XdbcDataType::XdbcDate, None, Some("'")));
    b.append(xdbc(
        "TIMESTAMP",
        XdbcDataType::XdbcTimestamp,
        None,
        Some("'"),
    ));
    b.build()
        .map_err(|e| internal("building XDBC type info", e))
}

/// The result schema of GetPrimaryKeys (always empty: lake tables declare no keys).
pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The result schema of GetImportedKeys, GetExportedKeys and GetCrossReference.
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// An empty batch of a schema.
pub(crate) fn empty(schema: SchemaRef) -> RecordBatch {
    RecordBatch::new_empty(schema)
}
