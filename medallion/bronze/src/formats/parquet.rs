//! Parquet: read batch by batch straight from the object store, types kept.

use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::{Stream, TryStreamExt};
use object_store::ObjectStore;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
#[allow(deprecated)] // the replacement needs a hand-written AsyncFileReader; tracked upstream
use parquet::arrow::async_reader::ParquetObjectReader;

use super::{BATCH_ROWS, FileError};
use crate::discover::SourceFile;

/// A stream of the file's batches.
///
/// # Errors
/// The file is not valid Parquet (as a message).
pub(crate) async fn open(
    store: Arc<dyn ObjectStore>,
    file: &SourceFile,
) -> Result<impl Stream<Item = Result<RecordBatch, FileError>> + use<>, FileError> {
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store, file.location.clone()).with_file_size(file.size);
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| match e {
            parquet::errors::ParquetError::External(io) => FileError::Io(io.to_string()),
            other => FileError::Format(format!("not a readable Parquet file: {other}")),
        })?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| FileError::Format(e.to_string()))?;
    Ok(stream.map_err(|e| FileError::Format(format!("corrupt Parquet data: {e}"))))
}
