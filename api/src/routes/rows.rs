//! `GET /tables/{t}/rows` (filters pushed into the scan, cached) and
//! `POST /tables/{t}/rows` (admin: JSON rows appended in one commit, then exactly the cache
//! keys the rows touch deleted).

use arrow::array::RecordBatch;
use assay_engine::TableId;
use assay_engine::service::{Appended, ServiceError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde_json::{Map, Value};

use super::cached::{cached_or, etag, matches_etag, not_modified};
use super::table_id;
use crate::cache::Entry;
use crate::error::{ApiError, ErrorBody, Result};
use crate::format::{Format, stream_response};
use crate::params::RowsQuery;
use crate::{Caller, Gateway};

const JSON: &str = "application/json";

/// The documented parameters of `GET /rows`; any other `col=v` or `col[op]=v` is a filter.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct RowsParams {
    /// Columns to return, comma-separated (default: all).
    columns: Option<String>,
    /// Sort keys, comma-separated; `-col` or `col.desc` for descending.
    order_by: Option<String>,
    /// Rows to return (default 100, at most `[query] max_rows` or 10,000).
    limit: Option<u64>,
    /// Rows to skip.
    offset: Option<u64>,
    /// Read this older version of the table (time travel).
    version: Option<u64>,
    /// Read the version that was current at this time (RFC 3339, e.g. `2026-11-30T10:00:00Z`).
    as_of: Option<String>,
}

/// A page of rows.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RowsPage {
    /// `layer.name`.
    table: String,
    /// The version read.
    version: i64,
    /// The limit applied.
    limit: usize,
    /// The offset applied.
    offset: usize,
    /// Rows in this page.
    count: usize,
    /// The rows, one object per row (NULLs written out).
    #[schema(value_type = Vec<Object>)]
    rows: Vec<Value>,
}

/// What an append answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Written {
    /// `layer.name`.
    table: String,
    /// The version the commit made.
    version: i64,
    /// Rows appended.
    rows_written: usize,
}

/// Record batches as a JSON array of objects (nulls written out).
fn json_rows(batches: &[RecordBatch]) -> Result<String> {
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

async fn compute(
    gw: &Gateway,
    caller: &Caller,
    id: &TableId,
    q: &RowsQuery,
    key: &str,
    latest: i64,
) -> Result<Entry> {
    let rows = gw.core.rows(&caller.0, id, &q.request).await?;
    let batches: Vec<RecordBatch> = rows
        .stream
        .try_collect()
        .await
        .map_err(|e| ApiError::Service(ServiceError::from(e)))?;
    let count: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let body = format!(
        "{{\"table\":{},\"version\":{},\"limit\":{},\"offset\":{},\"count\":{count},\"rows\":{}}}",
        Value::from(id.to_string()),
        rows.version,
        q.request.limit,
        q.request.offset,
        json_rows(&batches)?
    );
    if q.request.at.is_some() {
        // An older version read (time travel) is valid while the table's latest version is
        // the one the request was stamped with.
        return Ok(Entry::new(key, latest.to_string(), JSON, body));
    }
    // A newer version than the one this request was stamped with is news to the core.
    gw.core.observe(id, rows.version);
    Ok(Entry::new(key, rows.version.to_string(), JSON, body))
}

/// Rows of a table: `col=v` (equality), `col[op]=v` with `ne`, `gt`, `gte`, `lt`, `lte`,
/// `like`, `in` (comma-separated); typed by the column and pushed into the scan. JSON is
/// cached; CSV, Arrow IPC and Parquet (by `Accept`) stream uncached with an ETag.
#[utoipa::path(
    get,
    path = "/api/v1/tables/{table}/rows",
    tag = "tables",
    params(
        ("table" = String, Path, description = "`layer.name`, e.g. `gold.products`"),
        RowsParams,
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The rows (JSON); or CSV, Arrow IPC stream, Parquet by `Accept`",
         content(
            (RowsPage = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"),
            (Vec<u8> = "application/vnd.apache.parquet"),
        )),
        (status = 304, description = "`If-None-Match` names the current ETag"),
        (status = 400, description = "A bad parameter: unknown column, value not of the column's type, bad operator", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 404, description = "No such table, or outside the caller's role", body = ErrorBody),
        (status = 406, description = "No supported type in `Accept`", body = ErrorBody),
    )
)]
pub(crate) async fn get_rows(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(raw): Path<String>,
    RawQuery(qs): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let id = table_id(&raw)?;
    let q = RowsQuery::parse(qs.as_deref().unwrap_or(""), gw.max_rows)?;
    let version = gw.core.version(&caller.0, &id).await?;
    let table = id.to_string();
    let key = gw.cache.rows_key(&table, &q.normalized);
    let format = Format::negotiate(&headers)?;
    if format == Format::Json {
        return cached_or(&gw, &table, &key, &version.to_string(), &headers, || {
            compute(&gw, &caller, &id, &q, &key, version)
        })
        .await;
    }
    // CSV, Arrow and Parquet stream from the scan, uncached; the ETag still answers 304.
    let tagged = format!("{key}#{}", format.name());
    let tag = etag(&tagged, &version.to_string());
    if matches_etag(&headers, &tag) {
        return Ok(not_modified(&tag));
    }
    let rows = gw.core.rows(&caller.0, &id, &q.request).await?;
    let read = if q.request.at.is_some() {
        version
    } else {
        rows.version
    };
    let tag = etag(&tagged, &read.to_string());
    let mut extra = vec![("x-cache", HeaderValue::from_static("bypass"))];
    if let Ok(v) = HeaderValue::from_str(&tag) {
        extra.push(("etag", v));
    }
    stream_response(format, rows.stream, None, extra).await
}

fn parse_rows(body: &[u8]) -> Result<Vec<Map<String, Value>>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body: invalid JSON: {e}")))?;
    let expected =
        || ApiError::bad_request("body: expected a JSON array of rows or {\"rows\": [...]}");
    let list = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("rows") {
            Some(Value::Array(a)) => a,
            _ => return Err(expected()),
        },
        _ => return Err(expected()),
    };
    if list.is_empty() {
        return Err(ApiError::bad_request("body: no rows"));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Value::Object(o) => Ok(o),
            other => Err(ApiError::bad_request(format!(
                "row {i}: expected a JSON object, got {other}"
            ))),
        })
        .collect()
}

/// Admins: appends a JSON array of rows (or `{"rows": [...]}`), checked against the table's
/// schema, in one commit.
#[utoipa::path(
    post,
    path = "/api/v1/tables/{table}/rows",
    tag = "tables",
    params(("table" = String, Path, description = "`layer.name`")),
    request_body(content = Vec<Object>, description = "Rows: objects from column name to value"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Appended", body = Written),
        (status = 400, description = "Unknown field, missing required field or wrong type (names row and field)", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
    )
)]
pub(crate) async fn post_rows(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let id = table_id(&raw)?;
    let rows = parse_rows(&body)?;
    let appended = gw.core.append(&caller.0, &id, &rows).await?;
    invalidate(&gw, &id, &appended).await;
    gw.cache.announce(&id.to_string(), appended.version).await;
    Ok((
        StatusCode::CREATED,
        Json(Written {
            table: id.to_string(),
            version: appended.version,
            rows_written: appended.rows.num_rows(),
        }),
    )
        .into_response())
}

/// After an append: deletes the table's keys whose request the new rows can change — asked
/// of the request's own typed filter, run over the rows as appended — and keeps the others,
/// re-stamped with the new version (when no other commit came in between).
async fn invalidate(gw: &Gateway, id: &TableId, appended: &Appended) {
    let table = id.to_string();
    let keys = gw.cache.keys(&table).await;
    let (mut affected, mut kept) = (Vec::new(), Vec::new());
    for key in keys {
        let request = gw
            .cache
            .rows_query_of(&key, &table)
            .and_then(|qs| RowsQuery::parse(&qs, usize::MAX).ok());
        let touched = match request {
            Some(q) => q.request.touched_by(&appended.rows).await.unwrap_or(true),
            None => true,
        };
        if touched {
            affected.push(key);
        } else {
            kept.push(key);
        }
    }
    tracing::debug!(table = %table, deleted = affected.len(), kept = kept.len(), "cache invalidation");
    gw.cache.delete(&table, &affected).await;
    if appended.version == appended.before + 1 {
        let (from, to) = (appended.before.to_string(), appended.version.to_string());
        gw.cache.restamp(&table, &kept, &from, &to).await;
    } else {
        gw.cache.delete(&table, &kept).await;
    }
}
