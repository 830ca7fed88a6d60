//! Prometheus `/metrics`: request counts and latency histograms per route and status, cache
//! hits / misses / errors, and whatever the engine and the Flight SQL server record (runs,
//! steps, rows per table, scheduler lag, the run lease, Flight calls).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use tracing::Instrument;

use crate::Gateway;

/// Latency buckets in seconds: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets in seconds for runs, steps and scheduler lag: 50 ms to 2 h.
const LONG_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 7200.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use (a process has one).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let long = |b: PrometheusBuilder, name: &str| {
            b.set_buckets_for_metric(Matcher::Full(name.to_string()), &LONG_BUCKETS)
        };
        let builder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .and_then(|b| long(b, "assay_run_duration_seconds"))
            .and_then(|b| long(b, "assay_step_duration_seconds"))
            .and_then(|b| long(b, "assay_scheduler_lag_seconds"));
        let builder = match builder {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "histogram buckets rejected; histograms render as summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only this one");
        }
        describe();
        // Histograms keep every sample until upkeep folds them into their buckets; without
        // it memory grows by ~20 bytes a request between scrapes (seen in the soak bench).
        let upkept = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkept.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread; histograms fold only on scrape");
        }
        handle
    })
}

/// The `# HELP` line of every metric the process records.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "assay_http_requests_total",
        "REST requests by method, route template and status"
    );
    describe_histogram!(
        "assay_http_request_duration_seconds",
        Unit::Seconds,
        "REST request latency by method and route template"
    );
    describe_counter!(
        "assay_http_connections_refused_total",
        "REST connections closed at once because max_connections were open"
    );
    describe_counter!(
        "assay_cache_hits_total",
        "REST answers served from the cache"
    );
    describe_counter!(
        "assay_cache_misses_total",
        "REST answers computed because the cache had none"
    );
    describe_counter!(
        "assay_cache_errors_total",
        "Cache reads or writes that failed (the answer was computed)"
    );
    describe_counter!(
        "assay_runs_total",
        "Runs that ended, by status (succeeded, failed, abandoned)"
    );
    describe_histogram!(
        "assay_run_duration_seconds",
        Unit::Seconds,
        "Run duration by status"
    );
    describe_counter!(
        "assay_step_runs_total",
        "Steps that ended, by table and status"
    );
    describe_histogram!(
        "assay_step_duration_seconds",
        Unit::Seconds,
        "Step duration by table and status"
    );
    describe_counter!(
        "assay_step_rows_written_total",
        "Rows steps wrote, by table and status"
    );
    describe_counter!(
        "assay_step_rows_rejected_total",
        "Rows steps quarantined or rejected, by table and status"
    );
    describe_histogram!(
        "assay_scheduler_lag_seconds",
        Unit::Seconds,
        "Delay from a schedule's tick to this server claiming it"
    );
    describe_counter!(
        "assay_schedule_ticks_total",
        "Ticks this server claimed, by schedule and outcome"
    );
    describe_gauge!(
        "assay_schedule_next_fire_timestamp_seconds",
        Unit::Seconds,
        "When a schedule fires next (Unix time)"
    );
    describe_gauge!(
        "assay_run_lease_held",
        "1 while this server (holder) holds the lake-wide run lease"
    );
    describe_counter!(
        "assay_flight_requests_total",
        "Flight SQL calls by method and gRPC status"
    );
    describe_histogram!(
        "assay_flight_request_duration_seconds",
        Unit::Seconds,
        "Flight SQL call duration by method, to the end of the response stream"
    );
}

/// Route and status labels, interned: routes come from the router and statuses from a
/// short list, so the set is bounded; anything past [`MAX_LABELS`] is `other`.
const MAX_LABELS: usize = 512;

fn intern(value: &str) -> &'static str {
    static LABELS: OnceLock<RwLock<HashMap<String, &'static str>>> = OnceLock::new();
    let labels = LABELS.get_or_init(Default::default);
    if let Some(v) = labels.read().ok().and_then(|m| m.get(value).copied()) {
        return v;
    }
    let Ok(mut m) = labels.write() else {
        return "other";
    };
    if m.len() >= MAX_LABELS {
        return "other";
    }
    let leaked: &'static str = Box::leak(value.to_string().into_boxed_str());
    m.insert(value.to_string(), leaked);
    leaked
}

/// The method as a label: the standard ones, `other` for anything a client invents.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

type Handles = (metrics::Counter, metrics::Histogram);
/// The label triple a request is counted under.
type LabelKey = (&'static str, &'static str, &'static str);

/// The counter and histogram of one (method, route, status), registered once.
fn handles(method: &'static str, route: &'static str, status: &'static str) -> Handles {
    static HANDLES: OnceLock<RwLock<HashMap<LabelKey, Handles>>> = OnceLock::new();
    let map = HANDLES.get_or_init(Default::default);
    let key = (method, route, status);
    if let Some(h) = map.read().ok().and_then(|m| m.get(&key).cloned()) {
        return h;
    }
    let h = (
        metrics::counter!("assay_http_requests_total", "method" => method, "route" => route, "status" => status),
        metrics::histogram!("assay_http_request_duration_seconds", "method" => method, "route" => route),
    );
    if let Ok(mut m) = map.write() {
        m.insert(key, h.clone());
    }
    h
}

/// Counts and times every request by method, matched route and status, and runs it in an
/// `http` span (method, route, user, status, client, `X-Request-ID`) that stays open until
/// the response body is sent, then records its `bytes` (the access log's line).
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| intern(p.as_str()));
    let method = method_label(req.method());
    let client = crate::client_ip(req.extensions()).map(|ip| ip.to_string());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128);
    let span = tracing::info_span!(
        "http",
        method,
        route,
        user = tracing::field::Empty,
        status = tracing::field::Empty,
        bytes = tracing::field::Empty,
        client,
        request_id,
    );
    let started = Instant::now();
    let res = next.run(req).instrument(span.clone()).await;
    let status = intern(res.status().as_str());
    span.record("status", status);
    let (count, duration) = handles(method, route, status);
    count.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    let (parts, body) = res.into_parts();
    let counted = Counted {
        inner: body,
        span,
        bytes: 0,
    };
    Response::from_parts(parts, axum::body::Body::new(counted))
}

/// A response body that counts the bytes it sends and records them in the request's span
/// when it is done (or dropped by a client that went away).
struct Counted {
    inner: axum::body::Body,
    span: tracing::Span,
    bytes: u64,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.span.record("bytes", self.bytes);
    }
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
