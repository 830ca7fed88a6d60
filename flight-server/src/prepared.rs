//! Prepared statements: their SQL, owner and bound parameters, keyed by handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use assay_engine::access::Principal;
use datafusion::common::{ParamValues, ScalarValue};
use tonic::Status;

use crate::error::internal;

/// A prepared statement: its SQL, its owner and the parameters bound last.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) sql: String,
    pub(crate) owner: String,
    pub(crate) params: Option<ParamValues>,
}

/// Open prepared statements of every connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct PreparedStore {
    map: Arc<Mutex<HashMap<String, Prepared>>>,
}

fn unavailable<T>(_: T) -> Status {
    Status::internal("prepared statements unavailable")
}

impl PreparedStore {
    pub(crate) fn insert(&self, handle: String, prepared: Prepared) -> Result<(), Status> {
        self.map
            .lock()
            .map_err(unavailable)?
            .insert(handle, prepared);
        Ok(())
    }

    /// The statement behind a handle, if the principal owns it.
    pub(crate) fn get(&self, handle: &[u8], principal: &Principal) -> Result<Prepared, Status> {
        let handle = std::str::from_utf8(handle)
            .map_err(|_| Status::invalid_argument("prepared statement handle is not UTF-8"))?;
        let map = self.map.lock().map_err(unavailable)?;
        match map.get(handle) {
            Some(p) if p.owner == principal.name => Ok(p.clone()),
            _ => Err(Status::not_found(format!(
                "no prepared statement `{handle}`"
            ))),
        }
    }

    pub(crate) fn remove(&self, handle: &[u8]) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(String::from_utf8_lossy(handle).as_ref());
        }
    }
}

/// A schema as IPC bytes (prepared statement results and parameters).
pub(crate) fn ipc_schema(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| internal("encoding a schema", e))?;
    Ok(bytes)
}

/// Parameter values from the one row of a bound batch, in column order (`$1`, `$2`, …).
pub(crate) fn params_from(batch: &RecordBatch) -> Result<ParamValues, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind exactly one row of parameters, got {}",
            batch.num_rows()
        )));
    }
    let values = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(format!("bad parameter: {e}")))?;
    Ok(ParamValues::from(values))
}
