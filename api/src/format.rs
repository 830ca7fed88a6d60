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

/// Encodes batches of one schema, handing out bytes per batch.
pub enum Encoder {
    /// `{"columns": [...], "rows": [...], "count": N, "truncated": bool}`, rows written as
    /// they come.
    Json {
        /// The opening, until the first bytes go out.
        head: Option<String>,
        /// Rows written so far.
        rows: usize,
    },
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
    /// An encoder for `format` over `schema`.
    ///
    /// # Errors
    /// The writer could not start (an unsupported type).
    pub fn new(format: Format, schema: SchemaRef) -> Result<Encoder> {
        Ok(match format {
            Format::Json => {
                let columns: Vec<serde_json::Value> = schema
                    .fields()
                    .iter()
                    .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect();
                Encoder::Json {
                    head: Some(format!(
                        "{{\"columns\":{},\"rows\":[",
                        serde_json::Value::Array(columns)
                    )),
                    rows: 0,
                }
            }
            Format::Csv => Encoder::Csv {
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
            Encoder::Json { head, rows } => {
                let mut out = head.take().unwrap_or_default().into_bytes();
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
                w.write(batch).map_err(enc_err)?;
                w.finish().map_err(enc_err)?;
                // One object per line (JSON escapes newlines inside strings).
                for line in w
                    .into_inner()
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    if *rows > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(line);
                    *rows += 1;
                }
                out
            }
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

    /// Ends the body (JSON count and `truncated`, CSV header when no rows, IPC end marker,
    /// Parquet footer).
    ///
    /// # Errors
    /// Encoding failed.
    pub fn finish(&mut self, truncated: bool) -> Result<Bytes> {
        Ok(Bytes::from(match self {
            Encoder::Json { head, rows } => {
                let mut out = head.take().unwrap_or_default();
                out.push_str(&format!("],\"count\":{rows},\"truncated\":{truncated}}}"));
                out.into_bytes()
            }
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

/// A body being streamed: at most `left` more rows; `truncated` once rows were left out.
struct Streamed {
    stream: SendableRecordBatchStream,
    encoder: Encoder,
    left: usize,
    truncated: bool,
    done: bool,
}

impl Streamed {
    fn end(&mut self) -> Result<Bytes> {
        self.done = true;
        self.encoder.finish(self.truncated)
    }

    /// The next chunk of the body; `None` after the end.
    async fn next(&mut self) -> Option<Result<Bytes>> {
        if self.done {
            return None;
        }
        if self.left == 0 && self.truncated {
            return Some(self.end());
        }
        loop {
            let chunk = match self.stream.next().await {
                Some(Ok(b)) if b.num_rows() == 0 => continue,
                Some(Ok(_)) if self.left == 0 => {
                    self.truncated = true;
                    self.end()
                }
                Some(Ok(b)) => {
                    let b = if b.num_rows() > self.left {
                        self.truncated = true;
                        b.slice(0, self.left)
                    } else {
                        b
                    };
                    self.left -= b.num_rows();
                    self.encoder.write(&b)
                }
                Some(Err(e)) => match QueryError::from_datafusion(e) {
                    // The limit was reached; the row cap only says more rows exist.
                    QueryError::TooManyRows(_) if self.left == 0 => {
                        self.truncated = true;
                        self.end()
                    }
                    e => {
                        self.done = true;
                        Err(e.into())
                    }
                },
                None => self.end(),
            };
            return Some(chunk);
        }
    }
}

/// A streamed response: each batch of `stream` (at most `limit` rows in all) is encoded and
/// sent as it arrives. The first chunk is produced before the status is sent, so errors of
/// the first batch (timeouts, exhausted memory) are proper 4xx/5xx answers; an error after
/// the first bytes ends the body early and is logged.
///
/// # Errors
/// The first batch failed, or the encoder could not start.
pub async fn stream_response(
    format: Format,
    stream: SendableRecordBatchStream,
    limit: Option<usize>,
    extra: Vec<(&'static str, HeaderValue)>,
) -> Result<Response> {
    let encoder = Encoder::new(format, stream.schema())?;
    let mut body = Streamed {
        stream,
        encoder,
        left: limit.unwrap_or(usize::MAX),
        truncated: false,
        done: false,
    };
    let head = body.next().await.unwrap_or_else(|| Ok(Bytes::new()))?;
    let tail = futures::stream::unfold(body, |mut b| async move {
        let chunk = b.next().await?;
        Some((
            chunk.map_err(|e| {
                tracing::error!(error = %e, "streamed response failed");
                std::io::Error::other("response failed")
            }),
            b,
        ))
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
