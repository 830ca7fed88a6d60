//! Prepared statements: their SQL, owner and bound parameters, keyed by handle. The store
//! is bounded ([`MAX_PREPARED`] statements; the least used go first) and forgets a statement
//! left idle for [`IDLE`].

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use assay_engine::auth::Principal;
use datafusion::common::{ParamValues, ScalarValue};
use tonic::Status;

use crate::error::internal;

/// A prepared statement: its SQL, its owner and the parameters bound last.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) sql: String,
    /// [`Principal::identity`] of who prepared it.
    pub(crate) owner: String,
    pub(crate) params: Option<ParamValues>,
}

/// Prepared statements a server keeps at most.
pub(crate) const MAX_PREPARED: u64 = 10_000;

/// A prepared statement not used for this long is forgotten.
pub(crate) const IDLE: Duration = Duration::from_secs(3600);

/// Open prepared statements of every connection.
#[derive(Debug, Clone)]
pub(crate) struct PreparedStore {
    map: moka::sync::Cache<String, Prepared>,
}

impl Default for PreparedStore {
    fn default() -> Self {
        Self::new(MAX_PREPARED, IDLE)
    }
}

impl PreparedStore {
    /// A store of at most `capacity` statements, each forgotten after `idle` unused.
    pub(crate) fn new(capacity: u64, idle: Duration) -> Self {
        PreparedStore {
            map: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle)
                .build(),
        }
    }

    pub(crate) fn insert(&self, handle: String, prepared: Prepared) -> Result<(), Status> {
        self.map.insert(handle, prepared);
        Ok(())
    }

    /// The statement behind a handle, if the principal owns it.
    pub(crate) fn get(&self, handle: &[u8], principal: &Principal) -> Result<Prepared, Status> {
        let handle = std::str::from_utf8(handle)
            .map_err(|_| Status::invalid_argument("prepared statement handle is not UTF-8"))?;
        match self.map.get(handle) {
            Some(p) if p.owner == principal.identity() => Ok(p),
            _ => Err(Status::not_found(format!(
                "no prepared statement `{handle}` (closed, or idle too long)"
            ))),
        }
    }

    pub(crate) fn remove(&self, handle: &[u8]) {
        self.map
            .invalidate(String::from_utf8_lossy(handle).as_ref());
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

#[cfg(test)]
mod tests {
    use super::*;
    use assay_engine::auth::Role;

    fn statement(owner: &str) -> Prepared {
        Prepared {
            sql: "SELECT 1".into(),
            owner: owner.into(),
            params: None,
        }
    }

    #[test]
    fn the_store_is_bounded_and_forgets_idle_statements() {
        let ana = Principal::local("ana", Role::Reader);
        let store = PreparedStore::new(100, Duration::from_millis(300));
        for i in 0..1000 {
            store.insert(format!("h{i}"), statement("ana")).unwrap();
        }
        store.map.run_pending_tasks();
        assert!(
            store.map.entry_count() <= 100,
            "{}",
            store.map.entry_count()
        );
        store.insert("kept".into(), statement("ana")).unwrap();
        assert!(store.get(b"kept", &ana).is_ok());
        let bob = Principal::local("bob", Role::Admin);
        assert!(
            store.get(b"kept", &bob).is_err(),
            "only its owner uses a statement"
        );
        std::thread::sleep(Duration::from_millis(400));
        let err = store.get(b"kept", &ana).unwrap_err();
        assert!(err.message().contains("idle too long"), "{err}");
    }
}
