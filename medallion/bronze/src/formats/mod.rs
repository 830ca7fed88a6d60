//! File formats: each turns a byte stream into batches of rows plus rejected lines.
//!
//! Text formats (CSV, NDJSON) keep every value as a string: bronze is raw, silver casts.
//! Parquet keeps its own types.

pub(crate) mod csv;
pub(crate) mod ndjson;
pub(crate) mod parquet;

use std::io::Read;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;

/// Rows per batch handed to the writer.
pub(crate) const BATCH_ROWS: usize = 8192;

/// A line (or a whole file) that could not be parsed.
#[derive(Debug, Clone)]
pub(crate) struct Reject {
    /// 1-based line number; `None` when the whole file is at fault.
    pub(crate) line: Option<u64>,
    /// The line as it was in the file.
    pub(crate) raw: Option<String>,
    /// What is wrong.
    pub(crate) reason: String,
}

/// Output of a parser: a batch of good rows, and the lines rejected since the last chunk.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) batch: Option<RecordBatch>,
    pub(crate) rejects: Vec<Reject>,
    /// Records seen (good and bad) in this chunk.
    pub(crate) records: u64,
}

/// A synchronous `Read` over an object store byte stream, for parsers that run on a
/// blocking thread.
pub(crate) struct BlockingReader {
    handle: tokio::runtime::Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl BlockingReader {
    pub(crate) fn new(
        handle: tokio::runtime::Handle,
        stream: BoxStream<'static, object_store::Result<Bytes>>,
    ) -> Self {
        BlockingReader {
            handle,
            stream,
            current: Bytes::new(),
        }
    }
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Builds string-only batches column by column.
pub(crate) struct StringBatch {
    names: Vec<String>,
    columns: Vec<StringBuilder>,
    rows: usize,
}

impl StringBatch {
    pub(crate) fn new(names: Vec<String>) -> Self {
        let columns = names.iter().map(|_| StringBuilder::new()).collect();
        StringBatch {
            names,
            columns,
            rows: 0,
        }
    }

    /// Adds a column (NULL in the rows so far); returns its index.
    pub(crate) fn add_column(&mut self, name: String) -> usize {
        let mut b = StringBuilder::new();
        for _ in 0..self.rows {
            b.append_null();
        }
        self.names.push(name);
        self.columns.push(b);
        self.columns.len() - 1
    }

    pub(crate) fn column(&mut self, i: usize) -> &mut StringBuilder {
        &mut self.columns[i]
    }

    /// Marks a row complete (every column must have received a value or null).
    pub(crate) fn end_row(&mut self) {
        self.rows += 1;
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Finishes the rows so far into a batch (`None` when empty) and starts afresh.
    pub(crate) fn take(&mut self) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
        if self.rows == 0 {
            return Ok(None);
        }
        let fields: Vec<Field> = self
            .names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect();
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        self.rows = 0;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map(Some)
    }
}

/// Why a whole file could not be parsed.
#[derive(Debug)]
pub(crate) enum FileError {
    /// Reading failed: retry, never reject the file.
    Io(String),
    /// The file itself is malformed (header, not Parquet).
    Format(String),
}

/// Column names bronze reserves for lineage.
pub(crate) const RESERVED: [&str; 3] = ["_ingested_at", "_source_file", "_batch_id"];

/// Checks a header: names present, unique, not reserved.
pub(crate) fn check_columns(names: &[String]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.iter().enumerate() {
        if n.trim().is_empty() {
            return Err(format!("column {} has an empty name", i + 1));
        }
        if RESERVED.contains(&n.as_str()) {
            return Err(format!("column `{n}` is reserved for lineage"));
        }
        if !seen.insert(n) {
            return Err(format!("column `{n}` appears twice in the header"));
        }
    }
    Ok(())
}
