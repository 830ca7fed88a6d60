//! `kind = "postgres"`: a PostgreSQL table or query -> bronze, streamed with
//! `COPY (SELECT ...) TO STDOUT` (CSV) into typed Arrow batches, never a whole table in
//! memory. Each column is rendered by the server in a form Arrow parses exactly (integers,
//! floats, numeric with its precision and scale, booleans, dates, timestamps with and without
//! time zone); UUID, JSON/JSONB, arrays and every other type arrive as text (arrays as JSON),
//! the last with a warning. With `incremental`, the rows read and the new watermark come from
//! one REPEATABLE READ snapshot, and the watermark with the keys seen at it is stored as a
//! table property in the same commit as the rows: rows at the watermark committed later are
//! read next time, rows already read are not read again.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use assay_engine::config::DatabaseSource;
use assay_engine::step::{StepContext, StepReport};
use tokio_postgres::types::Type;

use crate::database::{Cursor, finish};
use crate::error::{BronzeError, Result};
use crate::formats::Chunk;
use crate::ingest::BronzeStep;

mod copy;

use copy::{copy_into, ranges, read_range, written_and_read};

/// Rows per Arrow batch.
const BATCH_ROWS: usize = 65_536;

/// The null marker of the COPY output (an empty field is an empty string).
const NULL: &str = "\\N";

fn err(source: &DatabaseSource, message: impl Into<String>) -> BronzeError {
    crate::database::error("PostgreSQL", source, message)
}

/// A driver error's text without the connection string's password (the driver does not
/// print it; this makes sure).
fn db_message(e: &tokio_postgres::Error, url: &str) -> String {
    let text = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut t = e.to_string();
            let mut s = std::error::Error::source(e);
            while let Some(inner) = s {
                t = format!("{t}: {inner}");
                s = inner.source();
            }
            t
        }
    };
    crate::database::masked(text, url)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// How one column is read: the SQL that renders it and the Arrow type it parses into.
struct Column {
    name: String,
    expr: String,
    arrow: DataType,
    /// The server's type name, for casting watermark literals.
    pg_type: String,
}

/// `rendered` for finite values of `c`, `c`'s own text otherwise.
fn finite(c: &str, rendered: &str) -> String {
    format!("CASE WHEN isfinite({c}) THEN {rendered} ELSE {c}::text END")
}

/// The Arrow type of a column and the SQL that renders it; `None` for the types read as
/// text with a warning.
fn plan(name: &str, ty: &Type, typmod: i32) -> (String, DataType, bool) {
    let c = quote_ident(name);
    match *ty {
        Type::INT2 => (c, DataType::Int16, true),
        Type::INT4 => (c, DataType::Int32, true),
        Type::INT8 | Type::OID => (c, DataType::Int64, true),
        Type::FLOAT4 => (c, DataType::Float32, true),
        Type::FLOAT8 => (c, DataType::Float64, true),
        Type::NUMERIC => {
            // typmod = ((precision << 16) | scale) + 4; -1 when unconstrained.
            let (p, s) = (((typmod - 4) >> 16) & 0xffff, (typmod - 4) & 0xffff);
            if typmod >= 4 && (1..=38).contains(&p) {
                (c, DataType::Decimal128(p as u8, s as i8), true)
            } else {
                // Unconstrained (or wider than 38 digits): kept exactly, as text.
                (format!("{c}::text"), DataType::Utf8, true)
            }
        }
        Type::BOOL => (
            format!("CASE WHEN {c} THEN 'true' WHEN NOT {c} THEN 'false' END"),
            DataType::Boolean,
            true,
        ),
        // `to_char` of `infinity` is NULL: infinite values travel as their text, which does
        // not parse, so the row is a reject rather than a silent NULL.
        Type::DATE => (
            finite(&c, &format!("to_char({c}, 'YYYY-MM-DD')")),
            DataType::Date32,
            true,
        ),
        Type::TIMESTAMP => (
            finite(&c, &format!("to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Type::TIMESTAMPTZ => (
            finite(
                &c,
                &format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
            ),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UUID
        | Type::JSON
        | Type::JSONB
        | Type::CHAR => (format!("{c}::text"), DataType::Utf8, true),
        _ if matches!(ty.kind(), tokio_postgres::types::Kind::Array(_)) => {
            (format!("to_json({c})::text"), DataType::Utf8, true)
        }
        _ => (format!("{c}::text"), DataType::Utf8, false),
    }
}

/// One run of a PostgreSQL source: every new row into one commit with the new cursor.
pub(crate) async fn ingest(
    step: &BronzeStep,
    ctx: &StepContext,
    source: &DatabaseSource,
) -> Result<StepReport> {
    let url = crate::database::url("PostgreSQL", source)?;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            err(
                source,
                format!(
                    "cannot connect to PostgreSQL (the URL in `{}`): {}",
                    source.url_env,
                    db_message(&e, &url)
                ),
            )
        })?;
    let conn_task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    let result = read(step, ctx, source, &client, &url).await;
    drop(client);
    let _ = conn_task.await;
    result
}

async fn read(
    step: &BronzeStep,
    ctx: &StepContext,
    source: &DatabaseSource,
    client: &tokio_postgres::Client,
    url: &str,
) -> Result<StepReport> {
    let db = |e: tokio_postgres::Error| err(source, db_message(&e, url));
    let from = crate::database::relation(source, quote_ident);
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
             SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 3",
        )
        .await
        .map_err(db)?;
    let probe = client
        .prepare(&format!("SELECT * FROM {from} LIMIT 0"))
        .await
        .map_err(db)?;
    // Numeric precision and scale are only known for a table's columns.
    let mut typmods = std::collections::HashMap::new();
    if source.table.is_some() {
        let rows = client
            .query(
                "SELECT attname::text, atttypmod FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
                &[&from],
            )
            .await
            .map_err(db)?;
        for r in rows {
            typmods.insert(r.get::<_, String>(0), r.get::<_, i32>(1));
        }
    }
    let mut columns = Vec::new();
    for c in probe.columns() {
        let typmod = typmods.get(c.name()).copied().unwrap_or(-1);
        let (expr, arrow, known) = plan(c.name(), c.type_(), typmod);
        if !known {
            tracing::warn!(table = %step.id(), column = c.name(), r#type = %c.type_(), "column type read as text");
        }
        columns.push(Column {
            name: c.name().to_string(),
            expr,
            arrow,
            pg_type: c.type_().name().to_string(),
        });
    }
    let target = step.target(ctx).await?;
    let old = Cursor::last(ctx, &target);
    // The rows past the cursor, and what tells rows at the watermark apart.
    let (filter, key_expr) = match &source.incremental {
        None => (None, String::new()),
        Some(inc) => {
            let col = columns
                .iter()
                .find(|c| c.name == inc.column)
                .ok_or_else(|| {
                    err(
                        source,
                        format!("incremental column `{}` is not in the source", inc.column),
                    )
                })?;
            let key_expr = match &inc.key {
                Some(k) => {
                    if !columns.iter().any(|c| &c.name == k) {
                        return Err(err(
                            source,
                            format!("incremental key `{k}` is not in the source"),
                        ));
                    }
                    format!("{}::text", quote_ident(k))
                }
                None => "md5(row_to_json(src_row)::text)".to_string(),
            };
            let w = quote_ident(&col.name);
            let filter = match &old.watermark {
                None => None,
                Some(v) => {
                    let lit = format!("{}::{}", quote_literal(v), col.pg_type);
                    let seen = old
                        .seen
                        .iter()
                        .map(|s| quote_literal(s))
                        .collect::<Vec<_>>()
                        .join(",");
                    let seen = format!("ARRAY[{seen}]::text[]");
                    Some(format!(
                        "{w} > {lit} OR ({w} = {lit} AND NOT ({key_expr} = ANY({seen})))"
                    ))
                }
            };
            (filter, key_expr)
        }
    };
    let select = columns
        .iter()
        .map(|c| c.expr.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let rows_where = |extra: Option<String>| {
        let conds: Vec<String> = filter
            .iter()
            .cloned()
            .chain(extra)
            .map(|c| format!("({c})"))
            .collect();
        if conds.is_empty() {
            format!("(SELECT * FROM {from}) AS src_row")
        } else {
            format!(
                "(SELECT * FROM {from}) AS src_row WHERE {}",
                conds.join(" AND ")
            )
        }
    };
    let rows_of = rows_where(None);
    let copy_of = |rows: &str| {
        format!("COPY (SELECT {select} FROM {rows}) TO STDOUT WITH (FORMAT csv, NULL '{NULL}')")
    };
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.arrow.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let mut sink = step.sink(ctx, &target)?;
    let name = format!("postgres:{}", source.table.as_deref().unwrap_or("query"));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let writer = async {
        while let Some(chunk) = rx.recv().await {
            sink.chunk(&name, chunk).await?;
        }
        Ok::<_, BronzeError>(())
    };
    match &source.parallel {
        None => {
            let copy = copy_of(&rows_of);
            let reader = async {
                let r = copy_into(client, &copy, &schema, source, url, &tx).await;
                drop(tx);
                r
            };
            let (read, written) = tokio::join!(reader, writer);
            written?;
            read?;
        }
        Some(par) => {
            let col = columns
                .iter()
                .find(|c| c.name == par.column)
                .filter(|c| matches!(c.arrow, DataType::Int16 | DataType::Int32 | DataType::Int64))
                .ok_or_else(|| {
                    err(
                        source,
                        format!(
                            "parallel column `{}` is not an integer column of the source",
                            par.column
                        ),
                    )
                })?;
            let c = quote_ident(&col.name);
            // Every range reads the snapshot of this transaction.
            let snapshot: String = client
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(db)?
                .get(0);
            let bounds = client
                .query_one(
                    &format!("SELECT min({c})::bigint, max({c})::bigint FROM {rows_of}"),
                    &[],
                )
                .await
                .map_err(db)?;
            let conds = ranges(&c, bounds.get(0), bounds.get(1), par.ranges);
            let mut readers = tokio::task::JoinSet::new();
            for cond in conds {
                let copy = copy_of(&rows_where(Some(cond)));
                let (tx, schema, source, url, snapshot) = (
                    tx.clone(),
                    Arc::clone(&schema),
                    source.clone(),
                    url.to_string(),
                    snapshot.clone(),
                );
                readers.spawn(async move {
                    read_range(&url, &snapshot, &copy, &schema, &source, &tx).await
                });
            }
            drop(tx);
            written_and_read(writer, &mut readers).await?;
        }
    }
    // The new cursor, from the same snapshot as the rows.
    let next = match &source.incremental {
        None => Cursor::default(),
        Some(inc) => {
            let w = quote_ident(&inc.column);
            let row = client
                .query_opt(
                    &format!(
                        "WITH f AS (SELECT {w} AS w, {key_expr} AS k FROM {rows_of}) \
                         SELECT max(w)::text, array_agg(k) FILTER (WHERE w = (SELECT max(w) FROM f)) \
                         FROM f HAVING count(*) > 0"
                    ),
                    &[],
                )
                .await
                .map_err(db)?;
            match row {
                None => old.clone(),
                Some(r) => {
                    let keys: Option<Vec<String>> = r.get(1);
                    old.after(r.get(0), keys.unwrap_or_default())
                }
            }
        }
    };
    client.batch_execute("COMMIT").await.map_err(db)?;
    finish(step, ctx, sink, &target, &old, &next).await
}
