//! The semantic phase, run by a flight's leader after every exact tier missed: embed the
//! last user message, find the nearest questions of the same partition, let the
//! verifier refuse look-alikes, serve the first candidate whose answer is still stored.
//! Whatever happens here, a failure only means a miss: the relay is called as before.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use super::{Ctx, hit};
use crate::analytics::{Agreement, AnalyticsWriter, Outcome, ShadowRow};
use crate::cache::{CachedAnswer, Usage};
use crate::config::SemanticMode;
use crate::http::X_CACHE_SIMILARITY;
use crate::http::request_log::RequestLog;
use crate::keying::CacheKey;
use crate::relay::request_headers_for_relay;
use crate::request::CacheableRequest;
use crate::semantic::{Candidate, Probe, SemanticCache};

/// Shadow mode: candidates from this similarity up are recorded, so the report's curve
/// covers thresholds well below any sensible setting.
const SHADOW_FLOOR: f32 = 0.5;

/// What a miss needs to remember its answer by meaning once it is stored.
pub(super) struct Remember {
    pub(super) semantic: Arc<SemanticCache>,
    pub(super) probe: Probe,
    pub(super) vector: Arc<[f32]>,
    /// Shadow mode: what would have been served, judged once the fresh answer is in.
    pub(super) shadow: Option<Box<Shadow>>,
}

/// A would-be semantic hit waiting for the fresh answer.
pub(super) struct Shadow {
    row: ShadowRow,
    /// The would-be answer (`None` when the verifier refused the candidate).
    candidate: Option<Arc<CachedAnswer>>,
    writer: AnalyticsWriter,
    /// The client's headers, to pay for embedding the answers at the relay.
    headers: HeaderMap,
}

impl Remember {
    pub(super) fn stored(&self, key: CacheKey, answer: &Arc<CachedAnswer>) {
        self.semantic.remember(
            &self.probe,
            self.vector.clone(),
            key,
            answer.namespace.clone(),
            answer.expires_at_ms,
        );
    }

    /// Judges the would-be answer against the fresh one and records the shadow row, off
    /// the request path.
    pub(super) fn judge(&mut self, fresh: &Arc<CachedAnswer>) {
        let Some(shadow) = self.shadow.take() else {
            return;
        };
        let (semantic, fresh) = (self.semantic.clone(), fresh.clone());
        tokio::spawn(async move { shadow.record(&semantic, &fresh).await });
    }
}

impl Shadow {
    async fn record(mut self, semantic: &SemanticCache, fresh: &CachedAnswer) {
        let outcome = match &self.candidate {
            None => "refused",
            Some(candidate) => {
                let (was, now) = (answer_text(candidate), answer_text(fresh));
                self.row.candidate_chars = was.chars().count() as u64;
                self.row.fresh_chars = now.chars().count() as u64;
                self.row.answers_equal = was.trim() == now.trim();
                if !self.row.deterministic && !self.row.answers_equal {
                    self.row.answer_similarity =
                        answer_similarity(semantic, &was, &now, &self.headers).await;
                }
                let agrees = self.row.answers_equal
                    || (!self.row.deterministic
                        && self
                            .row
                            .answer_similarity
                            .is_some_and(|s| s >= Agreement::default().min_answer_similarity));
                if agrees { "agree" } else { "disagree" }
            }
        };
        semantic
            .metrics()
            .shadow
            .with_label_values(&[outcome])
            .inc();
        self.writer.record_shadow(self.row);
    }
}

/// The answer's text: the first choice's message (chat) or text (completions).
fn answer_text(answer: &CachedAnswer) -> String {
    let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let choice = &value["choices"][0];
    choice["message"]["content"]
        .as_str()
        .or_else(|| choice["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Cosine similarity of two answers' embeddings (their first 2,000 characters).
async fn answer_similarity(
    semantic: &SemanticCache,
    a: &str,
    b: &str,
    headers: &HeaderMap,
) -> Option<f32> {
    let cut = |t: &str| t.chars().take(2_000).collect::<String>();
    let a = semantic.embed(&cut(a), headers).await.ok()?;
    let b = semantic.embed(&cut(b), headers).await.ok()?;
    Some(crate::semantic::index::dot(&a.vector, &b.vector))
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
    let shadow_mode = mode == SemanticMode::Shadow;
    let floor = if shadow_mode {
        SHADOW_FLOOR.min(semantic.threshold())
    } else {
        semantic.threshold()
    };
    let mut would_hit = false;
    let mut shadow: Option<Box<Shadow>> = None;
    for candidate in semantic.candidates(&probe.partition, &embedded.vector, floor) {
        let key = candidate.entry.key;
        if let Err(reason) = semantic.verify(&candidate, &probe.text) {
            if shadow_mode && shadow.is_none() {
                shadow = Some(Box::new(cx.shadow(
                    log,
                    request_body,
                    &candidate,
                    reason.as_str(),
                    None,
                )));
            }
            continue;
        }
        let Some((answer, _)) = cx.state.cache.get(&cx.namespace, &key).await else {
            // Purged, evicted or expired in the exact tiers: the entry is stale.
            semantic.forget(&probe.partition, &key);
            continue;
        };
        if shadow_mode {
            if candidate.similarity >= semantic.threshold() {
                semantic.count("shadow");
                would_hit = true;
            }
            shadow = Some(Box::new(cx.shadow(
                log,
                request_body,
                &candidate,
                "pass",
                Some(answer),
            )));
            break;
        }
        semantic.count("hit");
        cx.state.count(cx.endpoint, "semantic");
        log.key = Some(key);
        log.similarity = Some(candidate.similarity);
        log.hit(&cx.state, Outcome::Semantic, answer.usage);
        let mut response = hit(
            &cx.state,
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
        shadow,
    }))
}

impl Ctx {
    /// A shadow row for `candidate`, to be completed when the fresh answer arrives.
    fn shadow(
        &self,
        log: &RequestLog,
        request_body: &serde_json::Map<String, serde_json::Value>,
        candidate: &Candidate,
        verdict: &'static str,
        answer: Option<Arc<CachedAnswer>>,
    ) -> Shadow {
        let deterministic = request_body
            .get("temperature")
            .and_then(serde_json::Value::as_f64)
            == Some(0.0);
        let would_save_usd = answer
            .as_ref()
            .map_or(0.0, |a| self.state.price(&log.model, a.usage));
        Shadow {
            row: ShadowRow {
                ts_ms: self.state.clock.now_ms(),
                endpoint: self.endpoint,
                namespace: self.namespace.clone(),
                model: log.model.clone(),
                key: log.key.unwrap_or(candidate.entry.key),
                candidate_key: candidate.entry.key,
                similarity: candidate.similarity,
                verdict,
                deterministic,
                answers_equal: false,
                answer_similarity: None,
                fresh_chars: 0,
                candidate_chars: 0,
                would_save_usd,
            },
            candidate: answer,
            writer: self.state.analytics.writer.clone(),
            headers: request_headers_for_relay(&self.headers, self.caller.managed, true),
        }
    }
}
