//! An OTLP/HTTP receiver stand-in: accepts `POST /v1/traces` in the JSON encoding
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) and keeps every span it was sent, flattened
//! for assertions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

/// One received span.
#[derive(Clone, Debug)]
pub struct Span {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// Attribute key to its value, as text.
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Spans = Arc<Mutex<Vec<Span>>>;

pub struct Receiver {
    pub addr: SocketAddr,
    spans: Spans,
}

fn text(value: &Value) -> String {
    // AnyValue: {"stringValue": ..} | {"intValue": ..} | {"boolValue": ..} | ...
    value
        .as_object()
        .and_then(|o| o.values().next())
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .unwrap_or_default()
}

async fn traces(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return "{}";
    };
    let mut found = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let field = |k: &str| span[k].as_str().unwrap_or_default().to_owned();
                found.push(Span {
                    name: field("name"),
                    trace_id: field("traceId").to_lowercase(),
                    span_id: field("spanId").to_lowercase(),
                    parent_span_id: field("parentSpanId").to_lowercase(),
                    attributes: span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            (
                                a["key"].as_str().unwrap_or_default().to_owned(),
                                text(&a["value"]),
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    spans
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(found);
    "{}"
}

impl Receiver {
    pub async fn start() -> std::io::Result<Self> {
        let spans: Spans = Arc::default();
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, spans })
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
