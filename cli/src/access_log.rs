//! The access log: one JSON line per REST request and per Flight SQL call, written when the
//! request is done (its response body sent, or the client gone), from the `http` and
//! `flight` spans the servers already open (method, route, user, status, bytes).
//!
//! ```json
//! {"ts":"2026-12-07T10:00:00.123Z","server":"rest","method":"GET","route":"/api/v1/tables/{table}/rows","status":"200","user":"ana","duration_ms":3.1,"bytes":5120,"client":"127.0.0.1","request_id":"a1b2"}
//! ```
//!
//! The layer is always installed; it writes nothing until [`start`] names a target.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use assay_engine::config::AccessLog;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

type Sink = Mutex<Box<dyn Write + Send>>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Starts writing access lines to `target`.
///
/// # Errors
/// The file cannot be opened for appending.
pub(crate) fn start(target: &AccessLog) -> std::io::Result<()> {
    let sink: Box<dyn Write + Send> = match target {
        AccessLog::Stdout => Box::new(std::io::stdout()),
        AccessLog::Stderr => Box::new(std::io::stderr()),
        AccessLog::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    };
    // A second call (tests serving twice in one process) keeps the first target.
    let _ = SINK.set(Mutex::new(sink));
    Ok(())
}

/// The request spans, and only while the access log is on.
pub(crate) struct Requests;

impl<S> Filter<S> for Requests {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        is_request(meta) && SINK.get().is_some()
    }

    /// Asked again for every span: the log may be switched on after the callsite registered.
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if is_request(meta) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

fn is_request(meta: &Metadata<'_>) -> bool {
    meta.is_span() && matches!(meta.name(), "http" | "flight")
}

/// What one request's line says, gathered from its span.
#[derive(Default)]
struct Fields {
    method: Option<String>,
    route: Option<String>,
    status: Option<String>,
    user: Option<String>,
    bytes: Option<u64>,
    client: Option<String>,
    request_id: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "method" => &mut self.method,
            "route" => &mut self.route,
            "status" => &mut self.status,
            "user" => &mut self.user,
            "client" => &mut self.client,
            "request_id" => &mut self.request_id,
            _ => return,
        };
        *slot = Some(value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "bytes" {
            self.bytes = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

struct Started(Instant);

/// Writes a request's line when its span closes.
pub(crate) struct AccessLayer;

impl<S> Layer<S> for AccessLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut ext = span.extensions_mut();
        ext.insert(fields);
        ext.insert(Started(Instant::now()));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let (Some(sink), Some(span)) = (SINK.get(), ctx.span(&id)) else {
            return;
        };
        let server = if span.name() == "http" {
            "rest"
        } else {
            "flight"
        };
        let ext = span.extensions();
        let (Some(f), Some(Started(started))) = (ext.get::<Fields>(), ext.get::<Started>()) else {
            return;
        };
        let line = line(server, f, started.elapsed().as_secs_f64() * 1000.0);
        if let Ok(mut out) = sink.lock() {
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
}

fn line(server: &str, f: &Fields, duration_ms: f64) -> String {
    serde_json::json!({
        "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "server": server,
        "method": f.method,
        "route": f.route,
        "status": f.status,
        "user": f.user,
        "duration_ms": (duration_ms * 1000.0).round() / 1000.0,
        "bytes": f.bytes.unwrap_or(0),
        "client": f.client,
        "request_id": f.request_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let f = Fields {
            method: Some("GET".into()),
            route: Some("/api/v1/tables/{table}/rows".into()),
            status: Some("200".into()),
            user: Some("ana \"quoted\"\nname".into()),
            bytes: Some(512),
            client: Some("127.0.0.1".into()),
            request_id: None,
        };
        let line = line("rest", &f, 1.23456);
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["server"], "rest");
        assert_eq!(v["user"], "ana \"quoted\"\nname");
        assert_eq!(v["bytes"], 512);
        assert_eq!(v["duration_ms"], 1.235);
        assert!(v["request_id"].is_null());
    }
}
