//! # assay-api
//!
//! The REST gateway: the lake's catalog, filtered rows, appends, read-only SQL, runs and
//! accounts over HTTP (axum), with a Redis or in-process response cache.
//!
//! - [`Gateway`]: what every handler shares — the query service (catalog + limits), the
//!   access policy (the same accounts and tokens as Flight SQL), the cache, the run launcher;
//! - [`router`]: the routes; [`serve`] runs them on a listener until a shutdown signal;
//! - [`params::RowsQuery`]: the rows query string, its cache key and its filters;
//! - [`cache::Cache`]: entries stamped with the table version they were computed from;
//! - [`format`]: JSON, CSV, Arrow IPC and Parquet bodies, streamed batch by batch;
//! - [`openapi`]: the OpenAPI document and the Postman collection, from one route list;
//! - [`metrics`]: the Prometheus recorder behind `/metrics`.
//!
//! The gateway never decides access itself: it asks the engine's `AccessPolicy` for the
//! principal and its role, and `QueryService` for role-restricted, read-only queries.

pub mod cache;
mod catalog;
pub mod error;
pub mod format;
pub mod metrics;
pub mod openapi;
pub mod params;
mod rows;
mod runs;
mod sql;
mod users;

use std::sync::Arc;

use assay_engine::access::{AccessPolicy, Principal, Role};
use assay_engine::query::QueryService;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use cache::Cache;
pub use error::{ApiError, Result};

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Role-restricted, read-only queries over the lake.
    pub query: QueryService,
    /// Users and tokens (shared with Flight SQL).
    pub policy: Arc<AccessPolicy>,
    /// Response cache.
    pub cache: Arc<Cache>,
    /// Most rows one `rows` or `query` response may carry.
    pub max_rows: usize,
    /// Starts runs for `POST /runs`; without one the endpoint answers 404.
    pub launcher: Option<assay_engine::launcher::Launcher>,
}

impl Gateway {
    /// A gateway over a query service, a policy and a cache. `max_rows` defaults to the
    /// query limits' `max_rows`, or 10,000.
    pub fn new(query: QueryService, policy: Arc<AccessPolicy>, cache: Cache) -> Self {
        let max_rows = query.limits().max_rows.unwrap_or(10_000);
        Gateway {
            query,
            policy,
            cache: Arc::new(cache),
            max_rows,
            launcher: None,
        }
    }

    /// Lets `POST /runs` start runs with `launcher`.
    pub fn with_launcher(mut self, launcher: assay_engine::launcher::Launcher) -> Self {
        self.launcher = Some(launcher);
        self
    }
}

/// The caller, from `Authorization: Bearer <token>` (a JWT or an API key) or `X-API-Key`.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<Gateway> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Gateway) -> Result<Self> {
        let api_key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let token = match (parts.headers.get(header::AUTHORIZATION), api_key) {
            (Some(h), _) => {
                let h = h.to_str().unwrap_or("");
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
                    .ok_or_else(|| {
                        ApiError::Unauthenticated("expected `Authorization: Bearer <token>`".into())
                    })?
            }
            (None, Some(key)) => key,
            (None, None) => {
                return Err(ApiError::Unauthenticated(
                    "missing bearer token (or X-API-Key)".into(),
                ));
            }
        };
        Ok(Caller(state.policy.verify_token(token.trim()).await?))
    }
}

impl Caller {
    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<()> {
        if self.0.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "user `{}` ({:?}) may not do this: admins only",
                self.0.name, self.0.role
            )))
        }
    }
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn ready(State(gw): State<Gateway>) -> Response {
    match gw.query.catalog().refresh().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready", "cache": gw.cache.kind()}))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "lake not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({"code": "unavailable", "message": "lake unreachable"}),
                ),
            )
                .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// The gateway's routes: `/health` and `/ready` at the root, the API under `/api/v1`.
pub fn router(gw: Gateway) -> Router {
    let api = Router::new()
        .route("/signup", post(users::signup))
        .route("/login", post(users::login))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{name}", axum::routing::patch(users::update))
        .route("/api-keys", get(users::list_keys).post(users::create_key))
        .route("/api-keys/{id}", axum::routing::delete(users::revoke_key))
        .route("/catalog", get(catalog::catalog))
        .route("/tables/{table}", get(catalog::table))
        .route(
            "/tables/{table}/rows",
            get(rows::get_rows).post(rows::post_rows),
        )
        .route("/query", post(sql::query))
        .route("/runs", get(runs::list).post(runs::start))
        .route("/runs/{id}", get(runs::get))
        .route("/openapi.json", get(openapi::serve));
    metrics::handle();
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics::render))
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(axum::middleware::map_response(no_store_on_errors))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(gw)
}

/// Error responses must not be cached by clients or proxies.
async fn no_store_on_errors(mut res: Response) -> Response {
    if res.status().is_client_error() || res.status().is_server_error() {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Serves the gateway on `listener` until `shutdown` completes.
///
/// # Errors
/// The server failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Gateway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(gw))
        .with_graceful_shutdown(shutdown)
        .await
}
