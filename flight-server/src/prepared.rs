//! Prepared statements and statement tickets as self-contained handles: the SQL, the owner
//! and the bound parameters travel in the handle itself, signed by the serving core with the
//! JWT secret. No server keeps any state for them, so a client whose next call lands on
//! another replica (behind a load balancer) keeps working, and a server restart loses none.
//! A handle from a server with another secret, or altered in any byte, is refused.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_flight::{IpcMessage, SchemaAsIpc};
use assay_engine::auth::{Principal, Sealer};
use datafusion::common::{ParamValues, ScalarValue};
use prost::Message;
use tonic::Status;

use crate::error::internal;

/// What a handle is for: a handle made for one purpose is refused for the other.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// A prepared statement handle (`CreatePreparedStatement`, bound by `DoPut`).
    Prepared,
    /// The ticket of a plain statement (`GetFlightInfo` -> `DoGet`).
    Statement,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Prepared => "flight-sql prepared statement",
            Purpose::Statement => "flight-sql statement ticket",
        }
    }
}

/// The signed payload of a handle.
#[derive(Clone, PartialEq, prost::Message)]
struct Payload {
    #[prost(string, tag = "1")]
    sql: String,
    /// [`Principal::identity`] of who prepared it.
    #[prost(string, tag = "2")]
    owner: String,
    /// The bound parameter row as an Arrow IPC stream; empty when none is bound.
    #[prost(bytes = "vec", tag = "3")]
    params: Vec<u8>,
}

/// A statement with its owner and the parameters bound last.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) sql: String,
    owner: String,
    params: Vec<u8>,
}

impl Prepared {
    /// `sql`, prepared by `principal`, with nothing bound.
    pub(crate) fn new(sql: String, principal: &Principal) -> Self {
        Prepared {
            sql,
            owner: principal.identity(),
            params: Vec::new(),
        }
    }

    /// The statement with `batch` (one row) bound, or nothing bound for `None`.
    pub(crate) fn bind(mut self, batch: Option<&RecordBatch>) -> Result<Self, Status> {
        self.params = match batch {
            None => Vec::new(),
            Some(batch) => {
                params_from(batch)?;
                let mut out = Vec::new();
                let mut writer = StreamWriter::try_new(&mut out, &batch.schema())
                    .map_err(|e| internal("encoding parameters", e))?;
                writer
                    .write(batch)
                    .and_then(|()| writer.finish())
                    .map_err(|e| internal("encoding parameters", e))?;
                drop(writer);
                out
            }
        };
        Ok(self)
    }

    /// The bound parameters, `$1`, `$2`, … in column order.
    pub(crate) fn params(&self) -> Result<Option<ParamValues>, Status> {
        if self.params.is_empty() {
            return Ok(None);
        }
        let bad = |e: arrow::error::ArrowError| {
            Status::invalid_argument(format!("bad parameters in the handle: {e}"))
        };
        let reader = StreamReader::try_new(Cursor::new(&self.params), None).map_err(bad)?;
        let mut batches = reader.collect::<Result<Vec<_>, _>>().map_err(bad)?;
        match batches.pop() {
            Some(batch) if batches.is_empty() => params_from(&batch).map(Some),
            _ => Err(Status::invalid_argument(
                "bad parameters in the handle: expected one batch",
            )),
        }
    }

    /// The handle: this statement, signed for `purpose`.
    pub(crate) fn seal(&self, sealer: &dyn Sealer, purpose: Purpose) -> prost::bytes::Bytes {
        let payload = Payload {
            sql: self.sql.clone(),
            owner: self.owner.clone(),
            params: self.params.clone(),
        };
        sealer.seal(purpose.name(), &payload.encode_to_vec()).into()
    }

    /// The statement behind a handle signed for `purpose`, if `principal` owns it.
    pub(crate) fn open(
        sealer: &dyn Sealer,
        purpose: Purpose,
        handle: &[u8],
        principal: &Principal,
    ) -> Result<Self, Status> {
        let what = match purpose {
            Purpose::Prepared => "prepared statement handle",
            Purpose::Statement => "statement ticket",
        };
        let payload = sealer
            .unseal(purpose.name(), handle)
            .and_then(|p| Payload::decode(p).ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{what} not recognized: it was altered, or issued by a server with \
                     another JWT secret (replicas must share [auth] jwt_secret_env)"
                ))
            })?;
        if payload.owner != principal.identity() {
            return Err(Status::permission_denied(format!(
                "this {what} belongs to another user"
            )));
        }
        Ok(Prepared {
            sql: payload.sql,
            owner: payload.owner,
            params: payload.params,
        })
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
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use assay_engine::auth::{AccessPolicy, Role};

    use super::*;

    /// Two replicas' policies (same secret) and a third with another secret.
    fn policies() -> (AccessPolicy, AccessPolicy, AccessPolicy) {
        let ttl = std::time::Duration::from_secs(60);
        let secret = b"replicas share this secret of 32+ bytes";
        (
            AccessPolicy::new(vec![], ttl).with_secret(secret),
            AccessPolicy::new(vec![], ttl).with_secret(secret),
            AccessPolicy::new(vec![], ttl).with_secret(b"some other secret, also 32+ bytes"),
        )
    }

    fn row() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, true),
            Field::new("$2", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![7])),
                Arc::new(StringArray::from(vec!["mug"])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_handle_carries_sql_owner_and_parameters_to_any_replica_with_the_secret() {
        let (a, b, other) = policies();
        let ana = Principal::local("ana", Role::Reader);
        let bound = Prepared::new("SELECT $1, $2".into(), &ana)
            .bind(Some(&row()))
            .unwrap();
        let handle = bound.seal(&a, Purpose::Prepared);
        // Replica b opens what replica a sealed, with the parameters.
        let opened = Prepared::open(&b, Purpose::Prepared, &handle, &ana).unwrap();
        assert_eq!(opened.sql, "SELECT $1, $2");
        let params = opened.params().unwrap().unwrap();
        let ParamValues::List(values) = params else {
            panic!("positional parameters")
        };
        assert_eq!(values[0].value(), &ScalarValue::Int64(Some(7)));
        assert_eq!(values[1].value(), &ScalarValue::Utf8(Some("mug".into())));
        // Unbound: no parameters.
        let plain = Prepared::new("SELECT 1".into(), &ana).seal(&a, Purpose::Prepared);
        let opened = Prepared::open(&b, Purpose::Prepared, &plain, &ana).unwrap();
        assert!(opened.params().unwrap().is_none());

        let err = Prepared::open(&other, Purpose::Prepared, &handle, &ana).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("another JWT secret"), "{err}");
        let err = Prepared::open(&b, Purpose::Statement, &handle, &ana).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "another purpose");
        let bob = Principal::local("bob", Role::Admin);
        let err = Prepared::open(&b, Purpose::Prepared, &handle, &bob).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        // A changed SQL text (an attacker's edit of the visible payload) is refused.
        let mut altered = handle.to_vec();
        let at = altered.windows(6).position(|w| w == b"SELECT").unwrap();
        altered[at] = b'D';
        let err = Prepared::open(&b, Purpose::Prepared, &altered, &ana).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn only_one_row_of_parameters_binds() {
        let ana = Principal::local("ana", Role::Reader);
        let two = arrow::compute::concat_batches(&row().schema(), &[row(), row()]).unwrap();
        let err = Prepared::new("SELECT $1".into(), &ana)
            .bind(Some(&two))
            .unwrap_err();
        assert!(err.message().contains("exactly one row"), "{err}");
    }
}
