//! Turning query results into Flight data: batch by batch, views cast to plain types for
//! older clients unless the server keeps them.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use crate::error::status;

/// The stream a DoGet returns.
pub(crate) type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

fn plain(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(Arc::new(plain_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(plain_field(f))),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| plain_field(f)).collect())
        }
        other => other.clone(),
    }
}

fn plain_field(f: &Field) -> Field {
    f.clone().with_data_type(plain(f.data_type()))
}

/// The schema clients see: view types replaced unless `keep_views`.
pub(crate) fn client_schema(schema: &Schema, keep_views: bool) -> SchemaRef {
    if keep_views {
        return Arc::new(schema.clone());
    }
    let fields: Vec<Field> = schema.fields().iter().map(|f| plain_field(f)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn cast_batch(batch: RecordBatch, target: &SchemaRef) -> Result<RecordBatch, FlightError> {
    if batch.schema().as_ref() == target.as_ref() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(target), columns)?)
}

/// Encodes a result stream as Flight data without collecting it.
pub(crate) fn encode(stream: SendableRecordBatchStream, keep_views: bool) -> FlightStream {
    let schema = client_schema(&stream.schema(), keep_views);
    let target = Arc::clone(&schema);
    let batches = stream.map(move |r| match r {
        Ok(batch) => cast_batch(batch, &target),
        Err(e) => Err(FlightError::Tonic(Box::new(status(
            assay_engine::service::ServiceError::from(e),
        )))),
    });
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Status::internal(format!("encoding results: {other}")),
        });
    Box::pin(encoded)
}

/// Encodes one batch (metadata commands).
pub(crate) fn encode_batch(batch: RecordBatch) -> FlightStream {
    let schema = batch.schema();
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(|e| Status::internal(format!("encoding results: {e}")));
    Box::pin(encoded)
}
