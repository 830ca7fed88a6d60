//! `kind = "mysql"`: a MySQL or MariaDB table or query -> bronze, rows streamed over the
//! text protocol into typed Arrow batches (never a whole table in memory): integers
//! (unsigned ones one size wider), floats, `decimal(p,s)` as Decimal128, `tinyint(1)` as
//! boolean, dates, `datetime` and `timestamp` (read in UTC), text, JSON as text; any other
//! type as text with a warning. With `incremental`, the rows and the new watermark come from
//! one consistent snapshot, as for PostgreSQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use assay_engine::config::DatabaseSource;
use assay_engine::step::{StepContext, StepReport};
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;

use crate::database::{Cursor, finish};
use crate::error::{BronzeError, Result};
use crate::formats::{Chunk, Reject};
use crate::ingest::BronzeStep;

/// Rows per Arrow batch.
const BATCH_ROWS: usize = 65_536;

fn err(source: &DatabaseSource, message: impl Into<String>) -> BronzeError {
    crate::database::error("MySQL/MariaDB", source, message)
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A driver error's text without the URL's password.
fn db_message(e: &mysql_async::Error, url: &str) -> String {
    let text = match e {
        mysql_async::Error::Server(s) => s.message.clone(),
        other => other.to_string(),
    };
    crate::database::masked(text, url)
}

/// The Arrow type a column's text is cast to; `false` for types read as text with a warning.
fn arrow_type(c: &mysql_async::Column) -> (DataType, bool) {
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    match c.column_type() {
        ColumnType::MYSQL_TYPE_TINY if c.column_length() == 1 => (DataType::Boolean, true),
        ColumnType::MYSQL_TYPE_TINY => (
            if unsigned {
                DataType::Int16
            } else {
                DataType::Int8
            },
            true,
        ),
        ColumnType::MYSQL_TYPE_SHORT | ColumnType::MYSQL_TYPE_YEAR => (
            if unsigned {
                DataType::Int32
            } else {
                DataType::Int16
            },
            true,
        ),
        ColumnType::MYSQL_TYPE_INT24 | ColumnType::MYSQL_TYPE_LONG => (
            if unsigned {
                DataType::Int64
            } else {
                DataType::Int32
            },
            true,
        ),
        ColumnType::MYSQL_TYPE_LONGLONG => (
            if unsigned {
                DataType::Decimal128(20, 0)
            } else {
                DataType::Int64
            },
            true,
        ),
        ColumnType::MYSQL_TYPE_FLOAT => (DataType::Float32, true),
        ColumnType::MYSQL_TYPE_DOUBLE => (DataType::Float64, true),
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            let scale = u32::from(c.decimals());
            // The display length counts the sign (unless unsigned) and the point.
            let precision = c.column_length() - u32::from(scale > 0) - u32::from(!unsigned);
            if (1..=38).contains(&precision) {
                (DataType::Decimal128(precision as u8, scale as i8), true)
            } else {
                (DataType::Utf8, true)
            }
        }
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => (DataType::Date32, true),
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => {
            (DataType::Timestamp(TimeUnit::Microsecond, None), true)
        }
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB
        | ColumnType::MYSQL_TYPE_JSON
        | ColumnType::MYSQL_TYPE_ENUM
        | ColumnType::MYSQL_TYPE_SET => (DataType::Utf8, true),
        _ => (DataType::Utf8, false),
    }
}

/// Casts a batch of text columns to their types. A row with a value that does not fit its
/// type (e.g. a zero date) is a reject naming the column and the value, never a NULL;
/// `first_row` numbers the rows of the source (1-based).
fn typed(
    source: &DatabaseSource,
    schema: &Arc<Schema>,
    builders: &mut [StringBuilder],
    first_row: u64,
) -> Result<Option<Chunk>> {
    let text: Vec<ArrayRef> = builders
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let n = text.first().map_or(0, |c| c.len());
    if n == 0 {
        return Ok(None);
    }
    let mut columns = Vec::with_capacity(text.len());
    let mut keep = vec![true; n];
    let mut why: Vec<Option<String>> = vec![None; n];
    for (array, field) in text.iter().zip(schema.fields()) {
        let cast = arrow::compute::cast(array, field.data_type())
            .map_err(|e| err(source, format!("column `{}`: {e}", field.name())))?;
        let strings = array.as_string::<i32>();
        for i in 0..n {
            if array.is_valid(i) && cast.is_null(i) && keep[i] {
                keep[i] = false;
                why[i] = Some(format!(
                    "column `{}`: `{}` does not fit {}",
                    field.name(),
                    strings.value(i),
                    field.data_type()
                ));
            }
        }
        columns.push(cast);
    }
    let batch = RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| err(source, e.to_string()))?;
    let mut rejects = Vec::new();
    for (i, reason) in why.into_iter().enumerate() {
        if let Some(reason) = reason {
            let raw: Vec<serde_json::Value> = text
                .iter()
                .map(|c| {
                    let c = c.as_string::<i32>();
                    if c.is_valid(i) {
                        serde_json::Value::from(c.value(i))
                    } else {
                        serde_json::Value::Null
                    }
                })
                .collect();
            rejects.push(Reject {
                line: Some(first_row + i as u64),
                raw: Some(serde_json::Value::Array(raw).to_string()),
                reason,
            });
        }
    }
    let batch = if rejects.is_empty() {
        batch
    } else {
        let mask = arrow::array::BooleanArray::from(keep);
        arrow::compute::filter_record_batch(&batch, &mask)
            .map_err(|e| err(source, e.to_string()))?
    };
    Ok(Some(Chunk {
        batch: (batch.num_rows() > 0).then_some(batch),
        rejects,
        records: n as u64,
    }))
}

/// One run of a MySQL or MariaDB source: every new row into one commit with the new cursor.
pub(crate) async fn ingest(
    step: &BronzeStep,
    ctx: &StepContext,
    source: &DatabaseSource,
) -> Result<StepReport> {
    let url = crate::database::url("MySQL/MariaDB", source)?;
    let opts = mysql_async::Opts::from_url(&url).map_err(|_| {
        err(
            source,
            format!("the URL in `{}` is not a mysql:// URL", source.url_env),
        )
    })?;
    let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| {
        err(
            source,
            format!(
                "cannot connect (the URL in `{}`): {}",
                source.url_env,
                db_message(&e, &url)
            ),
        )
    })?;
    let result = read(step, ctx, source, &mut conn, &url).await;
    let _ = conn.disconnect().await;
    result
}

async fn read(
    step: &BronzeStep,
    ctx: &StepContext,
    source: &DatabaseSource,
    conn: &mut mysql_async::Conn,
    url: &str,
) -> Result<StepReport> {
    let db = |e: mysql_async::Error| err(source, db_message(&e, url));
    let from = crate::database::relation(source, quote_ident);
    for set in [
        "SET time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    ] {
        conn.query_drop(set).await.map_err(db)?;
    }
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(db)?;
    let probe = conn
        .query_iter(format!("SELECT * FROM {from} LIMIT 0"))
        .await
        .map_err(db)?;
    let probe_columns: Vec<mysql_async::Column> = probe.columns_ref().to_vec();
    probe.drop_result().await.map_err(db)?;
    let mut fields = Vec::new();
    for c in &probe_columns {
        let (t, known) = arrow_type(c);
        if !known {
            tracing::warn!(table = %step.id(), column = %c.name_str(), r#type = ?c.column_type(), "column type read as text");
        }
        fields.push(Field::new(c.name_str().as_ref(), t, true));
    }
    let names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
    let schema = Arc::new(Schema::new(fields));
    let target = step.target(ctx).await?;
    let old = Cursor::last(ctx, &target);
    let (cond, key_expr) = match &source.incremental {
        None => (None, String::new()),
        Some(inc) => {
            if !names.contains(&inc.column) {
                return Err(err(
                    source,
                    format!("incremental column `{}` is not in the source", inc.column),
                ));
            }
            let key_expr = match &inc.key {
                Some(k) if !names.contains(k) => {
                    return Err(err(
                        source,
                        format!("incremental key `{k}` is not in the source"),
                    ));
                }
                Some(k) => format!("CAST({} AS CHAR)", quote_ident(k)),
                None => format!(
                    "MD5(JSON_ARRAY({}))",
                    names
                        .iter()
                        .map(|n| quote_ident(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let w = quote_ident(&inc.column);
            let cond = old.watermark.as_ref().map(|v| {
                let lit = quote_literal(v);
                let seen = old
                    .seen
                    .iter()
                    .map(|s| quote_literal(s))
                    .collect::<Vec<_>>()
                    .join(",");
                if seen.is_empty() {
                    format!("{w} >= {lit}")
                } else {
                    format!("{w} > {lit} OR ({w} = {lit} AND {key_expr} NOT IN ({seen}))")
                }
            });
            (cond, key_expr)
        }
    };
    let base = format!("(SELECT * FROM {from}) AS src_row");
    let new_rows = match &cond {
        Some(c) => format!("{base} WHERE {c}"),
        None => base.clone(),
    };
    let mut sink = step.sink(ctx, &target)?;
    let name = format!("mysql:{}", source.table.as_deref().unwrap_or("query"));
    let mut builders: Vec<StringBuilder> = names.iter().map(|_| StringBuilder::new()).collect();
    let mut rows = 0usize;
    {
        let mut result = conn
            .query_iter(format!("SELECT * FROM {new_rows}"))
            .await
            .map_err(db)?;
        while let Some(row) = result.next().await.map_err(db)? {
            for (i, b) in builders.iter_mut().enumerate() {
                match row.as_ref(i) {
                    None | Some(mysql_async::Value::NULL) => b.append_null(),
                    Some(mysql_async::Value::Bytes(bytes)) => {
                        b.append_value(String::from_utf8_lossy(bytes))
                    }
                    Some(other) => b.append_value(other.as_sql(true).trim_matches('\'')),
                }
            }
            rows += 1;
            if rows.is_multiple_of(BATCH_ROWS) {
                let first = (rows - BATCH_ROWS) as u64 + 1;
                if let Some(chunk) = typed(source, &schema, &mut builders, first)? {
                    sink.chunk(&name, chunk).await?;
                }
            }
        }
    }
    let first = (rows - rows % BATCH_ROWS) as u64 + 1;
    if let Some(chunk) = typed(source, &schema, &mut builders, first)? {
        sink.chunk(&name, chunk).await?;
    }
    let next = match &source.incremental {
        None => Cursor::default(),
        Some(inc) => {
            let w = quote_ident(&inc.column);
            let max: Option<Option<String>> = conn
                .query_first(format!("SELECT CAST(MAX({w}) AS CHAR) FROM {new_rows}"))
                .await
                .map_err(db)?;
            match max.flatten() {
                None => old.clone(),
                Some(watermark) => {
                    let keys: Vec<String> = conn
                        .query(format!(
                            "SELECT {key_expr} FROM {base} WHERE {w} = {}",
                            quote_literal(&watermark)
                        ))
                        .await
                        .map_err(db)?;
                    old.after(Some(watermark), keys)
                }
            }
        }
    };
    conn.query_drop("COMMIT").await.map_err(db)?;
    finish(step, ctx, sink, &target, &old, &next).await
}
