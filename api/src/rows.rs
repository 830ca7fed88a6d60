//! `GET /tables/{t}/rows` (filters pushed into the scan, cached) and
//! `POST /tables/{t}/rows` (admin: validated JSON rows appended in one commit, then exactly
//! the affected cache keys deleted).

use std::future::Future;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use assay_engine::TableId;
use assay_engine::delta::{self, CommitInfo, WriteMode, write_frame};
use assay_engine::query::QueryError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::common::{Column, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::{Expr, SessionContext, lit};
use futures::TryStreamExt;
use serde_json::{Map, Value};
use sha2::Digest;

use crate::cache::{Entry, rows_key, rows_query_of};
use crate::catalog::visible_table;
use crate::error::{ApiError, Result};
use crate::format::{Format, stream_response};
use crate::params::{Op, RowsQuery};
use crate::{Caller, Gateway};

const JSON: &str = "application/json";

fn etag(key: &str, stamp: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{key}\n{stamp}").as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn matches_etag(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t == tag || t.strip_prefix("W/") == Some(tag)
        })
}

fn respond(entry: Entry, key: &str, cache: &'static str) -> Response {
    let tag = etag(key, &entry.stamp);
    let mut res = (StatusCode::OK, entry.body).into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert("x-cache", HeaderValue::from_static(cache));
    res
}

/// Answers from the cache when `key` holds an entry computed at `stamp`, with 304 when the
/// client's `If-None-Match` names the current ETag, or computes, stores and returns.
pub(crate) async fn cached_or<F, Fut>(
    gw: &Gateway,
    table: &str,
    key: &str,
    stamp: &str,
    headers: &HeaderMap,
    compute: F,
) -> Result<Response>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Entry>>,
{
    let tag = etag(key, stamp);
    if matches_etag(headers, &tag) {
        return Ok(not_modified(&tag));
    }
    if let Some(entry) = gw.cache.get(table, key, stamp).await {
        return Ok(respond(entry, key, "hit"));
    }
    let entry = compute().await?;
    gw.cache.put(table, key, entry.clone()).await;
    Ok(respond(entry, key, "miss"))
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Applies filters, order, columns and paging to a scan; unknown columns and values that do
/// not fit the column's type are 400s naming the parameter.
fn apply(mut df: DataFrame, q: &RowsQuery) -> Result<DataFrame> {
    let schema = df.schema().clone();
    let known = || {
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let field = |param: &str, name: &str| -> Result<DataType> {
        schema
            .fields()
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.data_type().clone())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`{param}`: unknown column `{name}` (columns: {})",
                    known()
                ))
            })
    };
    let df_err = |e| ApiError::from(QueryError::from_datafusion(e));
    for f in &q.filters {
        let ty = field(&f.param, &f.column)?;
        let c = Expr::Column(Column::from_name(&f.column));
        let typed = |v: &str| -> Result<Expr> {
            ScalarValue::try_from_string(v.to_string(), &ty)
                .map(lit)
                .map_err(|_| {
                    ApiError::BadRequest(format!("`{}`: `{v}` is not a valid {ty}", f.param))
                })
        };
        let e = match f.op {
            Op::Eq => c.eq(typed(&f.value)?),
            Op::Ne => c.not_eq(typed(&f.value)?),
            Op::Gt => c.gt(typed(&f.value)?),
            Op::Gte => c.gt_eq(typed(&f.value)?),
            Op::Lt => c.lt(typed(&f.value)?),
            Op::Lte => c.lt_eq(typed(&f.value)?),
            Op::Like => {
                if !is_text(&ty) {
                    return Err(ApiError::BadRequest(format!(
                        "`{}`: `like` needs a text column; `{}` is {ty}",
                        f.param, f.column
                    )));
                }
                c.like(lit(f.value.clone()))
            }
            Op::In => {
                let list = f
                    .values()
                    .into_iter()
                    .map(typed)
                    .collect::<Result<Vec<_>>>()?;
                c.in_list(list, false)
            }
        };
        df = df.filter(e).map_err(df_err)?;
    }
    if !q.order_by.is_empty() {
        let mut sort = Vec::new();
        for o in &q.order_by {
            field("order_by", &o.column)?;
            sort.push(Expr::Column(Column::from_name(&o.column)).sort(!o.desc, o.desc));
        }
        df = df.sort(sort).map_err(df_err)?;
    }
    if let Some(cols) = &q.columns {
        for c in cols {
            field("columns", c)?;
        }
        let names: Vec<&str> = cols.iter().map(String::as_str).collect();
        df = df.select_columns(&names).map_err(df_err)?;
    }
    df.limit(q.offset, Some(q.limit)).map_err(df_err)
}

/// Record batches as a JSON array of objects (nulls written out).
pub(crate) fn json_rows(batches: &[RecordBatch]) -> Result<String> {
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    for b in batches {
        w.write(b).map_err(ApiError::internal)?;
    }
    w.finish().map_err(ApiError::internal)?;
    let buf = w.into_inner();
    if buf.is_empty() {
        return Ok("[]".into());
    }
    String::from_utf8(buf).map_err(ApiError::internal)
}

/// The table's version and the filtered, ordered, paged scan for `q`.
async fn plan_rows(
    gw: &Gateway,
    caller: &Caller,
    id: &TableId,
    q: &RowsQuery,
) -> Result<(i64, DataFrame)> {
    let lake = gw.query.catalog().lake();
    let table = lake
        .open(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("table {id} not found")))?;
    let version = delta::version(&table);
    let ctx = gw.query.session(&caller.0)?;
    let df = delta::scan(id, &table, &ctx, None).await?;
    Ok((version, apply(df, q)?))
}

async fn compute_rows(gw: &Gateway, caller: &Caller, id: &TableId, q: &RowsQuery) -> Result<Entry> {
    let (version, df) = plan_rows(gw, caller, id, q).await?;
    let stream = gw.query.execute(df).await?;
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(|e| ApiError::from(QueryError::from_datafusion(e)))?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let body = format!(
        "{{\"table\":{},\"version\":{version},\"limit\":{},\"offset\":{},\"count\":{rows},\"rows\":{}}}",
        Value::from(id.to_string()),
        q.limit,
        q.offset,
        json_rows(&batches)?
    );
    Ok(Entry {
        stamp: version.to_string(),
        content_type: JSON.into(),
        body,
    })
}

/// `GET /api/v1/tables/{table}/rows?col=v&col[op]=v&columns=&order_by=&limit=&offset=`.
pub(crate) async fn get_rows(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(raw): Path<String>,
    RawQuery(qs): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let id = visible_table(&caller, &raw)?;
    let q = RowsQuery::parse(qs.as_deref().unwrap_or(""), gw.max_rows)?;
    let lake = gw.query.catalog().lake();
    let version = lake
        .latest_version(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("table {id} not found")))?;
    let table = id.to_string();
    let key = rows_key(&table, &q.normalized);
    let format = Format::negotiate(&headers)?;
    if format == Format::Json {
        return cached_or(&gw, &table, &key, &version.to_string(), &headers, || {
            compute_rows(&gw, &caller, &id, &q)
        })
        .await;
    }
    // CSV, Arrow and Parquet stream from the scan, uncached; the ETag still answers 304.
    let tag = etag(&format!("{key}#{}", format.name()), &version.to_string());
    if matches_etag(&headers, &tag) {
        return Ok(not_modified(&tag));
    }
    let (version, df) = plan_rows(&gw, &caller, &id, &q).await?;
    let tag = etag(&format!("{key}#{}", format.name()), &version.to_string());
    let stream = gw.query.execute(df).await?;
    let mut extra = vec![("x-cache", HeaderValue::from_static("bypass"))];
    if let Ok(v) = HeaderValue::from_str(&tag) {
        extra.push(("etag", v));
    }
    stream_response(format, stream, None, extra).await
}

fn not_modified(tag: &str) -> Response {
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(tag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// Checks every row against the table's schema: 400 naming the row (0-based) and field.
fn validate(schema: &Schema, rows: &[Map<String, Value>]) -> Result<()> {
    let bad = |i: usize, msg: String| ApiError::BadRequest(format!("row {i}: {msg}"));
    for (i, row) in rows.iter().enumerate() {
        for name in row.keys() {
            if schema.field_with_name(name).is_err() {
                let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(bad(
                    i,
                    format!("unknown field `{name}` (columns: {})", cols.join(", ")),
                ));
            }
        }
        for f in schema.fields() {
            let name = f.name();
            let v = row.get(name).unwrap_or(&Value::Null);
            if v.is_null() {
                if !f.is_nullable() {
                    return Err(bad(i, format!("field `{name}` is required")));
                }
                continue;
            }
            let ty = f.data_type();
            let ok = match ty {
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => v
                    .as_i64()
                    .is_some_and(|n| ScalarValue::try_from_string(n.to_string(), ty).is_ok()),
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => v
                    .as_u64()
                    .is_some_and(|n| ScalarValue::try_from_string(n.to_string(), ty).is_ok()),
                DataType::Float16 | DataType::Float32 | DataType::Float64 => v.is_number(),
                DataType::Boolean => v.is_boolean(),
                t if is_text(t) => v.is_string(),
                DataType::Decimal128(..)
                | DataType::Decimal256(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..) => {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n)
                            if matches!(
                                ty,
                                DataType::Decimal128(..) | DataType::Decimal256(..)
                            ) =>
                        {
                            n.to_string()
                        }
                        _ => String::new(),
                    };
                    !text.is_empty()
                        && ScalarValue::try_from_string(text, ty).is_ok_and(|s| !s.is_null())
                }
                _ => true, // nested and other types: the decoder decides
            };
            if !ok {
                return Err(bad(i, format!("field `{name}`: {v} is not a valid {ty}")));
            }
        }
    }
    Ok(())
}

fn parse_rows(body: &[u8]) -> Result<Vec<Map<String, Value>>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body: invalid JSON: {e}")))?;
    let list = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("rows") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(ApiError::BadRequest(
                    "body: expected a JSON array of rows or {\"rows\": [...]}".into(),
                ));
            }
        },
        _ => {
            return Err(ApiError::BadRequest(
                "body: expected a JSON array of rows or {\"rows\": [...]}".into(),
            ));
        }
    };
    if list.is_empty() {
        return Err(ApiError::BadRequest("body: no rows".into()));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Value::Object(o) => Ok(o),
            other => Err(ApiError::BadRequest(format!(
                "row {i}: expected a JSON object, got {other}"
            ))),
        })
        .collect()
}

/// `POST /api/v1/tables/{table}/rows` (admins): appends JSON rows in one commit.
pub(crate) async fn post_rows(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let id = visible_table(&caller, &raw)?;
    let rows = parse_rows(&body)?;
    let lake = gw.query.catalog().lake().clone();
    let table = lake
        .open(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("table {id} not found")))?;
    let before = delta::version(&table);
    let schema = delta::arrow_schema(&id, &table)?;
    validate(&schema, &rows)?;
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_strict_mode(true)
        .build_decoder()
        .map_err(ApiError::internal)?;
    decoder
        .serialize(&rows)
        .map_err(|e| ApiError::BadRequest(format!("rows: {e}")))?;
    let batch = decoder
        .flush()
        .map_err(|e| ApiError::BadRequest(format!("rows: {e}")))?
        .ok_or_else(|| ApiError::BadRequest("body: no rows".into()))?;
    let df = SessionContext::new()
        .read_batch(batch)
        .map_err(|e| ApiError::from(QueryError::from_datafusion(e)))?;
    let info = CommitInfo::new(Vec::new(), &uuid::Uuid::now_v7().to_string())
        .with("assay.api.user", caller.0.name.clone())
        .with("assay.api.rows", rows.len());
    let written = write_frame(&lake, &id, df, WriteMode::Append, &[], &info).await?;
    let after = delta::version(&written);
    invalidate(&gw, &id, &rows, before, after).await;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "table": id.to_string(),
            "version": after,
            "rows_written": rows.len(),
        })),
    )
        .into_response())
}

/// After an append of `rows` that moved the table from `before` to `after`: deletes the
/// table's unfiltered keys and those whose filters match an inserted row; the others stay,
/// re-stamped with the new version (when no other commit came in between).
async fn invalidate(
    gw: &Gateway,
    id: &TableId,
    rows: &[Map<String, Value>],
    before: i64,
    after: i64,
) {
    let table = id.to_string();
    let keys = gw.cache.keys(&table).await;
    let (mut affected, mut kept) = (Vec::new(), Vec::new());
    for key in keys {
        let query =
            rows_query_of(&key, &table).and_then(|qs| RowsQuery::parse(&qs, usize::MAX).ok());
        match query {
            Some(q) if !q.unfiltered() && !rows.iter().any(|r| q.affected_by(r)) => kept.push(key),
            _ => affected.push(key),
        }
    }
    tracing::debug!(table = %table, deleted = affected.len(), kept = kept.len(), "cache invalidation");
    gw.cache.delete(&table, &affected).await;
    if after == before + 1 {
        gw.cache
            .restamp(&table, &kept, &before.to_string(), &after.to_string())
            .await;
    } else {
        gw.cache.delete(&table, &kept).await;
    }
}
