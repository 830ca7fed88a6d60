//! One table from the serving core's error kinds to gRPC status codes. Internal details
//! are logged, never sent.

use assay_engine::ErrorKind;
use assay_engine::service::ServiceError;
use tonic::{Code, Status};

/// The gRPC code of an error kind.
pub(crate) fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Invalid => Code::InvalidArgument,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::TooLarge | ErrorKind::Busy => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status a client sees for an error of the serving core.
pub(crate) fn status(e: ServiceError) -> Status {
    e.log();
    Status::new(code_of(e.kind()), e.message().to_string())
}

/// A status for a failure that is ours, logged with its cause.
pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "{context}");
    Status::internal(format!("internal error: {context}"))
}
