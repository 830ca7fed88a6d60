//! Errors of the gateway: every one becomes a JSON body `{code, message}` with a status.

use assay_engine::EngineError;
use assay_engine::access::AuthError;
use assay_engine::query::QueryError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Result alias of the gateway.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// What a request can fail with. 4xx messages name the parameter, field or rule at fault;
/// 5xx messages never carry internals (those are logged).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed request: a bad parameter, value, body or SQL.
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one that is invalid or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but the role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// A table that does not exist or that the caller cannot see.
    #[error("{0}")]
    NotFound(String),
    /// The `Accept` header names no format the gateway can produce.
    #[error("{0}")]
    NotAcceptable(String),
    /// The resource exists already (a taken user name).
    #[error("{0}")]
    Conflict(String),
    /// A backend the request needs (the account store, the OIDC issuer) is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// The result would exceed the row limit.
    #[error("{0}")]
    TooLarge(String),
    /// A query that ran past its timeout.
    #[error("{0}")]
    Timeout(String),
    /// Anything else; the message sent is generic.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The status code and the machine-readable code.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::TooLarge(_) => (StatusCode::UNPROCESSABLE_ENTITY, "too_many_rows"),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// An internal error: the detail goes to the log, the client gets "internal error".
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(detail.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let body = serde_json::json!({ "code": code, "message": self.to_string() });
        (status, axum::Json(body)).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::InvalidSql(m) => ApiError::BadRequest(format!("invalid SQL: {m}")),
            QueryError::ReadOnly(m) => ApiError::Forbidden(format!("read-only: {m}")),
            QueryError::NotFound(m) => ApiError::NotFound(m),
            e @ QueryError::Timeout(_) => ApiError::Timeout(e.to_string()),
            e @ QueryError::TooManyRows(_) => ApiError::TooLarge(e.to_string()),
            e @ QueryError::ResourcesExhausted(_) => ApiError::TooLarge(e.to_string()),
            QueryError::Internal(inner) => ApiError::internal(inner),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::BadCredentials | AuthError::BadToken => ApiError::Unauthenticated(message),
            AuthError::Inactive(_) | AuthError::Forbidden(_) => ApiError::Forbidden(message),
            AuthError::Invalid(_) => ApiError::BadRequest(message),
            AuthError::Conflict(_) => ApiError::Conflict(message),
            AuthError::NotFound(_) => ApiError::NotFound(message),
            AuthError::Unavailable => ApiError::Unavailable(message),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::internal(e)
    }
}
