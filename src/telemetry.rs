//! Logging and tracing. Logs go to stdout as text (JSON with `LOG_FORMAT=json`), filtered
//! by `RUST_LOG`. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over
//! OTLP/HTTP (protobuf, or JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`; the other
//! `OTEL_*` variables as the OpenTelemetry SDK reads them): one span per request on a
//! cacheable route with its cache tier, key prefix, namespace, relay region and status,
//! a child span per relay attempt, a W3C `traceparent` taken from the client and passed
//! to the relay. Nothing on the request path logs or traces prompts, answers or keys
//! (prompts only as events with `privacy.log_payloads`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Whether spans are exported: request spans are only built then (they cost a hit).
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Flushes exported spans at shutdown.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.shutdown();
        }
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()))
}

fn tracer_provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("edge-gateway")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(filter: &str) -> Telemetry {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stdout().is_terminal())
        .with_target(false);
    let fmt = if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let provider = if otlp_configured() {
        match tracer_provider() {
            Ok(provider) => Some(provider),
            Err(e) => {
                eprintln!("OpenTelemetry export disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("edge-gateway"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                // Request and attempt spans, not every log line's target.
                meta.is_span() && meta.target().starts_with("edge_gateway")
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Telemetry { provider }
}

/// The span of one request on a cacheable route, child of the client's `traceparent`;
/// `Span::none()` unless spans are exported.
pub fn request_span(method: &str, route: &'static str, headers: &HeaderMap) -> Span {
    if !exporting() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "edge_gateway::request",
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = route,
        cache.tier = tracing::field::Empty,
        cache.key_prefix = tracing::field::Empty,
        namespace = tracing::field::Empty,
        relay.region = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
    span
}

/// The span of one relay attempt (a child of the request's).
pub fn attempt_span(region: &str, attempt: u32) -> Span {
    if !exporting() {
        return Span::none();
    }
    tracing::info_span!(
        target: "edge_gateway::relay",
        "relay attempt",
        otel.kind = "client",
        relay.region = %region,
        relay.attempt = attempt,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Adds `traceparent` (and `tracestate`) of `span` to the relay's request headers.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_none() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
    });
}
