//! Errors of the gateway: the serving core's error kinds mapped to HTTP statuses by one
//! table ([`status_of`]), answered as JSON `{code, message}`. Internal details are logged,
//! never sent.

use assay_engine::ErrorKind;
use assay_engine::service::ServiceError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Result alias of the gateway.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A failure of the serving core (or of decoding the request), by kind.
    #[error("{0}")]
    Service(ServiceError),
    /// The `Accept` header names no format the gateway can produce.
    #[error("{0}")]
    NotAcceptable(String),
}

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: `bad_request`, `unauthenticated`, `forbidden`, `not_found`,
    /// `not_acceptable`, `conflict`, `too_many_rows`, `unavailable`, `timeout`, `internal`.
    pub code: String,
    /// What is wrong, naming the parameter, field, row or rule at fault (`internal error`
    /// for 5xx).
    pub message: String,
}

/// The one table from error kind to HTTP status and code.
pub fn status_of(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "bad_request"),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
        ErrorKind::TooLarge => (StatusCode::UNPROCESSABLE_ENTITY, "too_many_rows"),
        ErrorKind::Busy => (StatusCode::TOO_MANY_REQUESTS, "busy"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl ApiError {
    /// A malformed request (400), naming what is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::Service(ServiceError::invalid(message))
    }

    /// A failure of ours (500): the detail goes to the log, the client gets `internal error`.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::Service(ServiceError::internal(detail.to_string()))
    }

    /// The status code and the machine-readable code.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Service(e) => status_of(e.kind()),
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if let ApiError::Service(e) = &self {
            e.log();
        }
        let body = ErrorBody {
            code: code.into(),
            message: self.to_string(),
        };
        let mut res = (status, axum::Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, 1.into());
        }
        res
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl From<assay_engine::EngineError> for ApiError {
    fn from(e: assay_engine::EngineError) -> Self {
        ApiError::Service(e.into())
    }
}

impl From<assay_engine::query::QueryError> for ApiError {
    fn from(e: assay_engine::query::QueryError) -> Self {
        ApiError::Service(e.into())
    }
}
