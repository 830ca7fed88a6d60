//! Prometheus `/metrics`: request counts and latency histograms per route and status, cache
//! hits / misses / errors, and whatever the engine records (runs, rows per step).

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::Gateway;

/// Latency buckets in seconds: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed on first use (a process has one).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(&BUCKETS) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "latency buckets rejected; histograms render as summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only this one");
        }
        handle
    })
}

/// Counts and times every request by method, matched route and status.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("assay_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("assay_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

/// The Prometheus text format, with the cache's counters brought up to date.
pub(crate) fn render(gw: &Gateway) -> Response {
    let h = handle();
    let s = &gw.cache.stats;
    let kind = gw.cache.kind().to_string();
    metrics::counter!("assay_cache_hits_total", "cache" => kind.clone())
        .absolute(s.hits.load(Ordering::Relaxed));
    metrics::counter!("assay_cache_misses_total", "cache" => kind.clone())
        .absolute(s.misses.load(Ordering::Relaxed));
    metrics::counter!("assay_cache_errors_total", "cache" => kind)
        .absolute(s.errors.load(Ordering::Relaxed));
    h.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        h.render(),
    )
        .into_response()
}
