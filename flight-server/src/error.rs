//! One mapping from query errors to gRPC status codes. Internal details are logged, never
//! sent.

use assay_engine::query::QueryError;
use tonic::Status;

/// The status a client sees for a query error.
pub(crate) fn status(e: QueryError) -> Status {
    match e {
        QueryError::InvalidSql(m) => Status::invalid_argument(m),
        QueryError::ReadOnly(m) => Status::permission_denied(format!("read-only server: {m}")),
        QueryError::NotFound(m) => Status::not_found(m),
        QueryError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
        QueryError::TooManyRows(_) | QueryError::ResourcesExhausted(_) => {
            Status::resource_exhausted(e.to_string())
        }
        QueryError::Internal(inner) => {
            tracing::error!(error = %inner, "query failed");
            Status::internal("internal error")
        }
    }
}

/// A status for a failure that is ours, logged with its cause.
pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "{context}");
    Status::internal(format!("internal error: {context}"))
}
