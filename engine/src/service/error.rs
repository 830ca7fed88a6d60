//! The serving core's one error type: a kind (which each server maps to a status in one
//! table) and a message for the client. Internal causes are kept for the log, never sent.

use std::fmt;

use crate::auth::AuthError;
use crate::error::{EngineError, ErrorKind};
use crate::launcher::LaunchError;
use crate::query::QueryError;

/// Result alias of the serving core.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Why a request failed.
#[derive(Debug)]
pub struct ServiceError {
    kind: ErrorKind,
    message: String,
    reason: Option<&'static str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl ServiceError {
    /// An error of `kind` with a message for the client.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServiceError {
            kind,
            message: message.into(),
            reason: None,
            source: None,
        }
    }

    /// Not found (or not visible to the caller).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// Not allowed for this caller.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// A conflict with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// An internal failure: the client sees `internal error`, the cause is kept for the log.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ServiceError {
            kind: ErrorKind::Internal,
            message: "internal error".into(),
            reason: None,
            source: Some(source.into()),
        }
    }

    /// A backend is unreachable: `message` for the client, the cause for the log.
    pub fn unavailable(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ServiceError {
            kind: ErrorKind::Unavailable,
            message: message.into(),
            reason: None,
            source: Some(source.into()),
        }
    }

    /// The same error with a protocol's own code for it (the Unity Catalog API's
    /// `TABLE_DOES_NOT_EXIST`, ...), for transports that speak that protocol.
    #[must_use]
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// The protocol code set by [`ServiceError::with_reason`].
    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// The kind, for the transport's status table.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message a client may see (generic for internal errors).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Logs the cause of an internal or unavailable error (once, by the transport that
    /// answers with it); other kinds are the client's and need no log line.
    pub fn log(&self) {
        if let Some(source) = &self.source {
            match self.kind {
                ErrorKind::Internal => tracing::error!(error = %source, "internal error"),
                ErrorKind::Unavailable => {
                    tracing::warn!(error = %source, message = %self.message, "backend unavailable")
                }
                _ => tracing::debug!(error = %source, "request failed"),
            }
        }
    }
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        match e.kind() {
            ErrorKind::Internal => ServiceError::internal(e),
            ErrorKind::Unavailable => ServiceError::unavailable("storage is unavailable", e),
            kind => ServiceError::new(kind, e.to_string()),
        }
    }
}

impl From<QueryError> for ServiceError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Internal(inner) => ServiceError::internal(inner),
            e => ServiceError::new(e.kind(), e.to_string()),
        }
    }
}

impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        ServiceError::new(e.kind(), e.to_string())
    }
}

impl From<LaunchError> for ServiceError {
    fn from(e: LaunchError) -> Self {
        let kind = match e {
            LaunchError::Busy(_) | LaunchError::BusyElsewhere(_) => ErrorKind::Conflict,
            LaunchError::Selection(_) => ErrorKind::Invalid,
            LaunchError::Lease(source) => {
                return ServiceError::unavailable(
                    "the run lease in the lake is unavailable",
                    source,
                );
            }
        };
        ServiceError::new(kind, e.to_string())
    }
}

impl From<datafusion::error::DataFusionError> for ServiceError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        QueryError::from_datafusion(e).into()
    }
}
