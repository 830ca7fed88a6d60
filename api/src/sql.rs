//! `POST /query`: read-only SQL for the caller's role, with a row limit.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::error::{ApiError, Result};
use crate::format::{Format, stream_response};
use crate::{Caller, Gateway};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
    limit: Option<usize>,
}

/// `POST /api/v1/query` with `{"sql": "...", "limit": 100}`: the rows (JSON, or CSV / Arrow /
/// Parquet by `Accept`), streamed batch by batch, at most
/// `limit` (default and maximum: the gateway's row limit); `truncated` says when more rows
/// were left out.
pub(crate) async fn query(
    State(gw): State<Gateway>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let format = Format::negotiate(&headers)?;
    let body: QueryBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body: {e} (expected {{\"sql\": \"...\"}})")))?;
    let limit = body.limit.unwrap_or(gw.max_rows);
    if limit > gw.max_rows {
        return Err(ApiError::BadRequest(format!(
            "`limit`: {limit} is above the maximum of {}",
            gw.max_rows
        )));
    }
    let df = gw.query.plan(&caller.0, &body.sql, None).await?;
    let stream = gw.query.execute(df).await?;
    stream_response(format, stream, Some(limit), Vec::new()).await
}
