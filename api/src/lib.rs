//! # assay-api
//!
//! The REST gateway: a thin HTTP adapter over the engine's serving core
//! ([`assay_engine::service::LakeService`]) — the lake's catalog, filtered rows, appends,
//! read-only SQL, runs and accounts — with a Redis or in-process response cache.
//!
//! - [`Gateway`]: what every handler shares — the serving core and the cache;
//! - [`router`]: the routes, from one [`utoipa_axum`] router that also makes the OpenAPI
//!   document ([`openapi::document`]); [`serve`] runs them until a shutdown signal;
//! - [`params::RowsQuery`]: the rows query string, parsed into the core's `RowsRequest`;
//! - [`cache::Cache`]: entries stamped with the table version they were computed from;
//! - [`format`]: JSON, CSV, Arrow IPC and Parquet bodies, streamed batch by batch;
//! - [`error`]: the one table from error kind to HTTP status;
//! - [`metrics`]: the Prometheus recorder behind `/metrics`.
//!
//! Handlers decode, call one core method with the caller, encode: they never decide access
//! (the core asks `authorize`) and never evaluate a filter themselves.

pub mod cache;
mod console;
pub mod error;
pub mod format;
pub mod metrics;
pub mod openapi;
pub mod params;
mod routes;
pub mod unity;

use std::sync::Arc;

use assay_engine::auth::Principal;
use assay_engine::service::LakeService;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::Response;

pub use cache::Cache;
pub use error::{ApiError, Result};

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The serving core (the same one Flight SQL uses).
    pub core: Arc<dyn LakeService>,
    /// Response cache.
    pub cache: Arc<Cache>,
    /// Most rows one `rows` or `query` response may carry.
    pub max_rows: usize,
    /// Connections, header timeout and body size the server accepts.
    pub limits: assay_engine::config::ServeLimits,
}

impl Gateway {
    /// A gateway over a serving core and a cache; responses carry at most `max_rows` rows.
    /// Commits other gateways announce through a shared Redis reach the core at once.
    pub fn new(core: Arc<dyn LakeService>, cache: Cache, max_rows: usize) -> Self {
        let listener = Arc::clone(&core);
        cache.listen(move |table, version| {
            if let Ok(id) = assay_engine::TableId::parse(table) {
                listener.observe(&id, version);
            }
        });
        Gateway {
            core,
            cache: Arc::new(cache),
            max_rows,
            limits: assay_engine::config::ServeLimits::default(),
        }
    }

    /// The gateway with these connection limits.
    pub fn with_limits(mut self, limits: assay_engine::config::ServeLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// The caller, from `Authorization: Bearer <token>` (a JWT or an API key) or `X-API-Key`.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<Gateway> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Gateway) -> Result<Self> {
        let unauthenticated = |m: &str| {
            ApiError::Service(assay_engine::service::ServiceError::new(
                assay_engine::ErrorKind::Unauthenticated,
                m,
            ))
        };
        let api_key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let token = match (parts.headers.get(header::AUTHORIZATION), api_key) {
            (Some(h), _) => {
                let h = h.to_str().unwrap_or("");
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
                    .ok_or_else(|| unauthenticated("expected `Authorization: Bearer <token>`"))?
            }
            (None, Some(key)) => key,
            (None, None) => return Err(unauthenticated("missing bearer token (or X-API-Key)")),
        };
        Ok(Caller(state.core.principal(token.trim()).await?))
    }
}

/// The gateway's routes: `/health`, `/ready` and `/metrics` at the root, the API under
/// `/api/v1`, every one documented in the OpenAPI document.
pub fn router(gw: Gateway) -> Router {
    let (routes, _) = routes::all().split_for_parts();
    metrics::handle();
    let body_limit = gw.limits.max_body_bytes;
    routes
        .merge(console::routes())
        .merge(unity::routes())
        .fallback(routes::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
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

/// Serves the gateway on `listener` until `shutdown` completes: at most
/// `limits.max_connections` connections (more are closed at once), each with
/// `limits.header_timeout` to send a request's headers (slow clients are cut off, idle
/// kept-alive connections closed). With `tls`, every connection is TLS (its handshake within
/// the same timeout; a plain-text client gets the connection closed). In-flight requests
/// finish before it returns.
///
/// # Errors
/// The server failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Gateway,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let limits = gw.limits;
    let app = router(gw);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            ::metrics::counter!("assay_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        // Responses are written whole; Nagle would hold the last segment for the peer's
        // delayed ACK (~40 ms on Linux).
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut app = app.clone();
                tower_service::Service::call(&mut app, req.map(axum::body::Body::new))
            });
        match &tls {
            None => {
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(slot);
                });
            }
            Some(acceptor) => {
                let (acceptor, builder) = (acceptor.clone(), builder.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(tls)) => {
                            let conn = builder.serve_connection(TokioIo::new(tls), service);
                            let _ = watcher.watch(conn).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The client's address, when the gateway runs under [`serve`].
pub(crate) fn client_ip(parts: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    parts
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}
