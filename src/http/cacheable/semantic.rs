//! The semantic phase, run by a flight's leader after every exact tier missed: embed the
//! last user message, find the nearest questions of the same partition, let the
//! verifier refuse look-alikes, serve the first candidate whose answer is still stored.
//! Whatever happens here, a failure only means a miss: the relay is called as before.

use std::sync::Arc;

use axum::http::HeaderValue;
use axum::response::Response;

use super::{Ctx, hit};
use crate::analytics::Outcome;
use crate::cache::{CachedAnswer, Usage};
use crate::config::SemanticMode;
use crate::http::X_CACHE_SIMILARITY;
use crate::http::request_log::RequestLog;
use crate::keying::CacheKey;
use crate::relay::request_headers_for_relay;
use crate::request::CacheableRequest;
use crate::semantic::{Probe, SemanticCache};

/// What a miss needs to remember its answer by meaning once it is stored.
pub(super) struct Remember {
    pub(super) semantic: Arc<SemanticCache>,
    pub(super) probe: Probe,
    pub(super) vector: Arc<[f32]>,
}

impl Remember {
    pub(super) fn stored(&self, key: CacheKey, answer: &CachedAnswer) {
        self.semantic.remember(
            &self.probe,
            self.vector.clone(),
            key,
            answer.namespace.clone(),
            answer.expires_at_ms,
        );
    }
}

pub(super) enum Looked {
    /// A semantic hit: the answer and its response.
    Hit(Arc<CachedAnswer>, Response),
    /// No hit; remember the answer by meaning once stored (when comparable).
    Miss(Option<Remember>),
}

pub(super) async fn lookup(
    cx: &Ctx,
    request: &CacheableRequest,
    request_body: &serde_json::Map<String, serde_json::Value>,
    log: &mut RequestLog,
) -> Looked {
    let Some(semantic) = cx.state.semantic.clone() else {
        return Looked::Miss(None);
    };
    let mode = semantic.mode_for(&cx.caller.namespace);
    if mode == SemanticMode::Off {
        return Looked::Miss(None);
    }
    let probe = match semantic.probe(
        cx.endpoint,
        &cx.namespace,
        request_body,
        cx.state.key_options,
    ) {
        Some(probe) if !cx.controls.semantic_off => probe,
        _ => {
            semantic.count("skipped");
            return Looked::Miss(None);
        }
    };
    let headers = request_headers_for_relay(&cx.headers, cx.caller.managed, true);
    let embedded = match semantic.embed(&probe.text, &headers).await {
        Ok(embedded) => embedded,
        Err(error) => {
            tracing::warn!(%error, "semantic lookup skipped: no embedding");
            semantic.count("error");
            return Looked::Miss(None);
        }
    };
    if embedded.billed_tokens > 0
        && let Some(model) = semantic.embedding_model()
    {
        let usage = Usage {
            prompt_tokens: embedded.billed_tokens,
            completion_tokens: 0,
            estimated: false,
        };
        let usd = cx.state.price(model, usage);
        semantic.metrics().embedding_cost_usd.inc_by(usd);
        log.embedded(usd);
    }
    let mut would_hit = false;
    for candidate in semantic.candidates(&probe.partition, &embedded.vector) {
        if semantic.verify(&candidate, &probe.text).is_err() {
            continue;
        }
        let key = candidate.entry.key;
        let Some((answer, _)) = cx.state.cache.get(&cx.namespace, &key).await else {
            // Purged, evicted or expired in the exact tiers: the entry is stale.
            semantic.forget(&probe.partition, &key);
            continue;
        };
        if mode == SemanticMode::Shadow {
            semantic.count("shadow");
            would_hit = true;
            break;
        }
        semantic.count("hit");
        cx.state.count(cx.endpoint, "semantic");
        log.key = Some(key);
        log.similarity = Some(candidate.similarity);
        log.hit(&cx.state, Outcome::Semantic, answer.usage);
        let mut response = hit(
            &answer,
            "semantic",
            request.stream,
            request.include_usage,
            key,
        );
        if let Ok(value) = HeaderValue::from_str(&format!("{:.4}", candidate.similarity)) {
            response.headers_mut().insert(X_CACHE_SIMILARITY, value);
        }
        return Looked::Hit(answer, response);
    }
    if !would_hit {
        semantic.count("miss");
    }
    Looked::Miss(Some(Remember {
        semantic,
        probe,
        vector: embedded.vector,
    }))
}
