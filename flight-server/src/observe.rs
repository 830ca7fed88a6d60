//! Every Flight call in a `flight` span (method, user, gRPC status, bytes sent, client,
//! `X-Request-ID`) and in
//! `/metrics`: `assay_flight_requests_total{method,status}` and
//! `assay_flight_request_duration_seconds{method}`, timed to the end of the response stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tracing::Instrument;

/// The Flight service wrapped in a span and timed.
#[derive(Debug, Clone)]
pub(crate) struct Observed<S> {
    inner: S,
}

impl<S> Observed<S> {
    pub(crate) fn new(inner: S) -> Self {
        Observed { inner }
    }
}

impl<S: NamedService> NamedService for Observed<S> {
    const NAME: &'static str = S::NAME;
}

/// The Flight methods by name; anything else is `other` (the label set stays bounded).
const METHODS: [&str; 10] = [
    "Handshake",
    "ListFlights",
    "GetFlightInfo",
    "PollFlightInfo",
    "GetSchema",
    "DoGet",
    "DoPut",
    "DoExchange",
    "DoAction",
    "ListActions",
];

fn method_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or_default();
    METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("other")
}

/// The gRPC status name of a `grpc-status` value (`Ok` when absent).
fn status_of(value: Option<&http::HeaderValue>) -> &'static str {
    let code = value.map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes()));
    match code {
        tonic::Code::Ok => "ok",
        tonic::Code::Cancelled => "cancelled",
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::DeadlineExceeded => "deadline_exceeded",
        tonic::Code::NotFound => "not_found",
        tonic::Code::AlreadyExists => "already_exists",
        tonic::Code::PermissionDenied => "permission_denied",
        tonic::Code::ResourceExhausted => "resource_exhausted",
        tonic::Code::FailedPrecondition => "failed_precondition",
        tonic::Code::Aborted => "aborted",
        tonic::Code::OutOfRange => "out_of_range",
        tonic::Code::Unimplemented => "unimplemented",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::DataLoss => "internal",
    }
}

impl<S> Service<http::Request<Body>> for Observed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = method_of(req.uri().path());
        let client = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|c| c.remote_addr())
            .map(|a| a.ip().to_string());
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128);
        let span = tracing::info_span!(
            "flight",
            method,
            user = tracing::field::Empty,
            status = tracing::field::Empty,
            bytes = tracing::field::Empty,
            client,
            request_id,
        );
        let started = Instant::now();
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let call = span.in_scope(|| inner.call(req));
        Box::pin(async move {
            let res = call.instrument(span.clone()).await?;
            let (parts, body) = res.into_parts();
            // A call that fails before streaming answers with the status in its headers.
            let status = parts.headers.get("grpc-status").map(|v| status_of(Some(v)));
            let timed = Timed {
                inner: body,
                span,
                method,
                started,
                status,
                bytes: 0,
            };
            Ok(http::Response::from_parts(parts, Body::new(timed)))
        })
    }
}

/// A response body that polls its stream inside the call's span and records the call when
/// it is done (or dropped by a client that went away).
struct Timed {
    inner: Body,
    span: tracing::Span,
    method: &'static str,
    started: Instant,
    status: Option<&'static str>,
    /// Bytes of response data sent so far.
    bytes: u64,
}

impl http_body::Body for Timed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(trailers) = frame.trailers_ref() {
                this.status = Some(status_of(trailers.get("grpc-status")));
            } else if let Some(data) = frame.data_ref() {
                this.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        let status = self.status.unwrap_or("cancelled");
        self.span.record("status", status);
        self.span.record("bytes", self.bytes);
        metrics::counter!("assay_flight_requests_total", "method" => self.method, "status" => status)
            .increment(1);
        metrics::histogram!("assay_flight_request_duration_seconds", "method" => self.method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_statuses_are_bounded_labels() {
        assert_eq!(
            method_of("/arrow.flight.protocol.FlightService/DoGet"),
            "DoGet"
        );
        assert_eq!(method_of("/x/../../etc/passwd"), "other");
        assert_eq!(status_of(None), "ok");
        let v = http::HeaderValue::from_static("16");
        assert_eq!(status_of(Some(&v)), "unauthenticated");
        let v = http::HeaderValue::from_static("garbage");
        assert_eq!(status_of(Some(&v)), "internal");
    }
}
