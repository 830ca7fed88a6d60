//! `POST /query`: read-only SQL for the caller's role, with a row limit.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::error::{ApiError, ErrorBody, Result};
use crate::format::{Format, stream_response};
use crate::{Caller, Gateway};

/// The body of `POST /query`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryBody {
    /// One read-only statement (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`).
    sql: String,
    /// Rows to return at most (default and maximum: the gateway's row limit).
    limit: Option<usize>,
}

/// A query's result (JSON).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct QueryResult {
    /// The result's columns: `{name, type}`.
    #[schema(value_type = Vec<Object>)]
    columns: Vec<serde_json::Value>,
    /// The rows, one object per row.
    #[schema(value_type = Vec<Object>)]
    rows: Vec<serde_json::Value>,
    /// Rows returned.
    count: usize,
    /// True when more rows were left out by `limit`.
    truncated: bool,
}

/// Read-only SQL as the caller's role sees the lake, streamed batch by batch as JSON, CSV,
/// Arrow IPC or Parquet (by `Accept`).
#[utoipa::path(
    post,
    path = "/api/v1/query",
    tag = "sql",
    request_body = QueryBody,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The result", content(
            (QueryResult = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"),
            (Vec<u8> = "application/vnd.apache.parquet"),
        )),
        (status = 400, description = "Bad SQL or body", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Not a read-only query", body = ErrorBody),
        (status = 404, description = "A table that does not exist or that the role does not see", body = ErrorBody),
        (status = 422, description = "Over the memory or row limit", body = ErrorBody),
        (status = 504, description = "Over the time limit", body = ErrorBody),
    )
)]
pub(crate) async fn query(
    State(gw): State<Gateway>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let format = Format::negotiate(&headers)?;
    let body: QueryBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body: {e} (expected {{\"sql\": \"...\"}})")))?;
    let limit = body.limit.unwrap_or(gw.max_rows);
    if limit > gw.max_rows {
        return Err(ApiError::bad_request(format!(
            "`limit`: {limit} is above the maximum of {}",
            gw.max_rows
        )));
    }
    let planned = gw.core.plan(&caller.0, &body.sql, None).await?;
    let stream = gw.core.execute(&caller.0, planned).await?;
    stream_response(format, stream, Some(limit), Vec::new()).await
}
