//! `/health`, `/ready`, `/metrics` and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorBody, Result};
use crate::{Caller, Gateway};

/// `{"status": "ok"}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: String,
}

/// Readiness and the cache in use.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    /// Always `ready`.
    status: String,
    /// `redis` or `memory`.
    cache: String,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "Alive", body = Health))
)]
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the lake can be listed.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "The lake is unreachable", body = ErrorBody),
    )
)]
pub(crate) async fn ready(State(gw): State<Gateway>) -> Result<Json<Ready>> {
    gw.core.ready().await?;
    Ok(Json(Ready {
        status: "ready".into(),
        cache: gw.cache.kind().into(),
    }))
}

/// Prometheus text (engineers and admins): request counts and latency per route and
/// status, cache hits, misses and errors, runs and rows per step.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Readers do not see metrics", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(State(gw): State<Gateway>, caller: Caller) -> Result<Response> {
    assay_engine::auth::authorize(&caller.0, assay_engine::auth::Action::ReadMetrics)?;
    Ok(crate::metrics::render(&gw))
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub(crate) async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}
