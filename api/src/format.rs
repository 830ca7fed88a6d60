//! Response formats chosen by `Accept`: JSON (default), CSV, Arrow IPC stream, Parquet.
//!
//! CSV, Arrow and Parquet bodies are encoded batch by batch as the query produces them, so a
//! large response streams with bounded memory; [`Encoder`] hands out the bytes each batch
//! added.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;

use assay_engine::query::QueryError;

use crate::error::{ApiError, Result};

/// A response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json` (the default).
    Json,
    /// `text/csv` with a header row.
    Csv,
    /// `application/vnd.apache.arrow.stream` (Arrow IPC stream).
    Arrow,
    /// `application/vnd.apache.parquet`.
    Parquet,
}

const SUPPORTED: &str = "application/json, text/csv, application/vnd.apache.arrow.stream, \
                         application/vnd.apache.parquet";

impl Format {
    /// The format an `Accept` header asks for: the first supported media type in order of
    /// preference (`q`), JSON for none or `*/*`; 406 when it names only unsupported types.
    ///
    /// # Errors
    /// [`ApiError::NotAcceptable`].
    pub fn negotiate(headers: &HeaderMap) -> Result<Format> {
        let Some(accept) = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .filter(|a| !a.trim().is_empty())
        else {
            return Ok(Format::Json);
        };
        let mut ranges: Vec<(f32, usize, &str)> = accept
            .split(',')
            .enumerate()
            .map(|(i, part)| {
                let mut pieces = part.split(';');
                let media = pieces.next().unwrap_or("").trim();
                let q = pieces
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q, i, media)
            })
            .filter(|(q, _, _)| *q > 0.0)
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, media) in ranges {
            let f = match media.to_ascii_lowercase().as_str() {
                "application/json" | "application/*" | "*/*" => Format::Json,
                "text/csv" | "text/*" => Format::Csv,
                "application/vnd.apache.arrow.stream" => Format::Arrow,
                "application/vnd.apache.parquet" | "application/x-parquet" => Format::Parquet,
                _ => continue,
            };
            return Ok(f);
        }
        Err(ApiError::NotAcceptable(format!(
            "`Accept: {accept}`: supported types are {SUPPORTED}"
        )))
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// A short name, used in cache keys.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Arrow => "arrow",
            Format::Parquet => "parquet",
        }
    }
}

/// Encodes batches of one schema as CSV, Arrow IPC or Parquet, handing out bytes per batch.
pub enum Encoder {
    /// CSV; the header is written before the first batch.
    Csv {
        /// True once the header is out.
        started: bool,
        /// The schema (for a header when there are no rows).
        schema: SchemaRef,
    },
    /// Arrow IPC stream.
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
    /// Parquet; row groups are flushed every 8 MiB.
    Parquet(Box<parquet::arrow::ArrowWriter<Vec<u8>>>),
}

const ROW_GROUP_BYTES: usize = 8 << 20;

fn enc_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("encoding the response: {e}"))
}

impl Encoder {
    /// An encoder for `format` (not JSON) over `schema`.
    ///
    /// # Errors
    /// The writer could not start (an unsupported type).
    pub fn new(format: Format, schema: SchemaRef) -> Result<Encoder> {
        Ok(match format {
            Format::Json | Format::Csv => Encoder::Csv {
                started: false,
                schema,
            },
            Format::Arrow => Encoder::Arrow(Box::new(
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(enc_err)?,
            )),
            Format::Parquet => Encoder::Parquet(Box::new(
                parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, None).map_err(enc_err)?,
            )),
        })
    }

    fn csv(started: &mut bool, batch: &RecordBatch) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(!*started)
                .build(&mut out);
            w.write(batch).map_err(enc_err)?;
        }
        *started = true;
        Ok(out)
    }

    /// Encodes one batch; returns the bytes ready to send.
    ///
    /// # Errors
    /// Encoding failed.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Bytes> {
        Ok(Bytes::from(match self {
            Encoder::Csv { started, .. } => Self::csv(started, batch)?,
            Encoder::Arrow(w) => {
                w.write(batch).map_err(enc_err)?;
                std::mem::take(w.get_mut())
            }
            Encoder::Parquet(w) => {
                w.write(batch).map_err(enc_err)?;
                if w.in_progress_size() >= ROW_GROUP_BYTES {
                    w.flush().map_err(enc_err)?;
                }
                std::mem::take(w.inner_mut())
            }
        }))
    }

    /// Ends the body (CSV header when no rows, IPC end marker, Parquet footer).
    ///
    /// # Errors
    /// Encoding failed.
    pub fn finish(&mut self) -> Result<Bytes> {
        Ok(Bytes::from(match self {
            Encoder::Csv { started, schema } => {
                if *started {
                    Vec::new()
                } else {
                    Self::csv(started, &RecordBatch::new_empty(Arc::clone(schema)))?
                }
            }
            Encoder::Arrow(w) => {
                w.finish().map_err(enc_err)?;
                std::mem::take(w.get_mut())
            }
            Encoder::Parquet(w) => {
                w.finish().map_err(enc_err)?;
                std::mem::take(w.inner_mut())
            }
        }))
    }
}

/// Encodes whole batches into one body (for responses that are cached).
///
/// # Errors
/// Encoding failed.
pub fn encode_all(format: Format, schema: SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut e = Encoder::new(format, schema)?;
    let mut out = Vec::new();
    for b in batches {
        out.extend_from_slice(&e.write(b)?);
    }
    out.extend_from_slice(&e.finish()?);
    Ok(out)
}

/// A streamed response: each batch of `stream` (at most `limit` rows in all) is encoded and
/// sent as it arrives. The first batch is awaited before the status is sent, so errors of
/// planning and of the first batch (timeouts, exhausted memory) are proper 4xx/5xx answers;
/// an error after the first bytes ends the body early and is logged.
///
/// # Errors
/// The first batch failed, or the encoder could not start.
pub async fn stream_response(
    format: Format,
    mut stream: SendableRecordBatchStream,
    limit: Option<usize>,
    extra: Vec<(&'static str, HeaderValue)>,
) -> Result<Response> {
    let schema = stream.schema();
    let mut encoder = Encoder::new(format, schema)?;
    let first = match stream.next().await {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return Err(QueryError::from_datafusion(e).into()),
        None => None,
    };
    let mut left = limit.unwrap_or(usize::MAX);
    let mut step = move |batch: Option<RecordBatch>| -> Result<Option<Bytes>> {
        match batch {
            Some(b) => {
                if left == 0 {
                    return Ok(None);
                }
                let b = if b.num_rows() > left {
                    b.slice(0, left)
                } else {
                    b
                };
                left -= b.num_rows();
                encoder.write(&b).map(Some)
            }
            None => encoder.finish().map(Some),
        }
    };
    let (head, ended) = match first {
        Some(b) => match step(Some(b))? {
            Some(bytes) => (bytes, false),
            None => (step(None)?.unwrap_or_default(), true),
        },
        None => (step(None)?.unwrap_or_default(), true),
    };
    let rest = if ended { None } else { Some((stream, step)) };
    let tail = futures::stream::unfold(rest, |state| async move {
        let (mut stream, mut step) = state?;
        let out = match stream.next().await {
            Some(Ok(b)) => match step(Some(b)) {
                Ok(Some(bytes)) => Ok((bytes, true)),
                Ok(None) => step(None).map(|b| (b.unwrap_or_default(), false)),
                Err(e) => Err(e),
            },
            Some(Err(e)) => Err(ApiError::internal(e)),
            None => step(None).map(|b| (b.unwrap_or_default(), false)),
        };
        match out {
            Ok((bytes, true)) => Some((Ok(bytes), Some((stream, step)))),
            Ok((bytes, false)) => Some((Ok(bytes), None)),
            Err(e) => {
                tracing::error!(error = %e, "streamed response failed");
                Some((Err(std::io::Error::other("response failed")), None))
            }
        }
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(tail);
    let mut res = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    for (k, v) in extra {
        h.insert(k, v);
    }
    Ok(res)
}
