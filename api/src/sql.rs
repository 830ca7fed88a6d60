//! `POST /query`: read-only SQL for the caller's role, with a row limit.

use arrow::array::RecordBatch;
use assay_engine::query::QueryError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::error::{ApiError, Result};
use crate::format::{Format, stream_response};
use crate::rows::json_rows;
use crate::{Caller, Gateway};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
    limit: Option<usize>,
}

/// `POST /api/v1/query` with `{"sql": "...", "limit": 100}`: the rows (JSON, or CSV / Arrow /
/// Parquet streamed by `Accept`), at most
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
    if format != Format::Json {
        let stream = gw.query.execute(df).await?;
        return stream_response(format, stream, Some(limit), Vec::new()).await;
    }
    let columns: Vec<serde_json::Value> = df
        .schema()
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut stream = gw.query.execute(df).await?;
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| ApiError::from(QueryError::from_datafusion(e)))?;
        let room = limit - rows;
        if batch.num_rows() > room {
            batches.push(batch.slice(0, room));
            rows += room;
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        batches.push(batch);
    }
    let body = format!(
        "{{\"columns\":{},\"count\":{rows},\"truncated\":{truncated},\"rows\":{}}}",
        serde_json::Value::Array(columns),
        json_rows(&batches)?
    );
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}
