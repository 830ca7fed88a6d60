//! Logs on stderr (text or JSON, filtered by `ASSAY_LOG`) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the spans
//! of runs, steps, HTTP requests and Flight calls exported over OTLP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::LogFormat;

/// The installed subscriber's trace exporter, flushed by [`Telemetry::shutdown`].
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

impl Telemetry {
    /// Installs the process's subscriber. Call inside the Tokio runtime: the gRPC exporter
    /// opens its channel there.
    pub(crate) fn init(format: LogFormat) -> Telemetry {
        let filter =
            EnvFilter::try_from_env("ASSAY_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
        let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let logs: Boxed = match format {
            LogFormat::Text => logs.with_filter(filter).boxed(),
            LogFormat::Json => logs
                .json()
                .with_current_span(true)
                .with_filter(filter)
                .boxed(),
        };
        let (traces, provider, problem) = match exporter() {
            Ok(Some(exporter)) => {
                let mut resource = Resource::builder();
                if std::env::var("OTEL_SERVICE_NAME").is_err() {
                    resource = resource.with_service_name("assay");
                }
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.build())
                    .build();
                // Assay's own spans and events at info; other crates' warnings only.
                let wanted = Targets::new()
                    .with_default(Level::WARN)
                    .with_target("assay", Level::INFO);
                let layer: Boxed = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("assay"))
                    .with_filter(wanted)
                    .boxed();
                (Some(layer), Some(provider), None)
            }
            Ok(None) => (None, None, None),
            Err(e) => (None, None, Some(e)),
        };
        let access: Boxed = crate::access_log::AccessLayer
            .with_filter(crate::access_log::Requests)
            .boxed();
        let layers: Vec<Boxed> = [logs, access].into_iter().chain(traces).collect();
        tracing_subscriber::registry().with(layers).init();
        if let Some(e) = problem {
            tracing::error!(error = %e, "OTLP trace export is off");
        }
        Telemetry { provider }
    }

    /// Sends the spans not yet exported (waits for the exporter's timeout at most).
    pub(crate) fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: exporting the last traces failed: {e}");
        }
    }
}

fn set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// The OTLP span exporter the environment asks for: none without an endpoint (or with
/// `OTEL_SDK_DISABLED=true`); gRPC unless `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`.
fn exporter() -> Result<Option<SpanExporter>, String> {
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "grpc".into());
    let built = match protocol.trim() {
        "grpc" => SpanExporter::builder().with_tonic().build(),
        "http/protobuf" => SpanExporter::builder().with_http().build(),
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL: `{other}` is not one of grpc, http/protobuf"
            ));
        }
    };
    built.map(Some).map_err(|e| e.to_string())
}
