//! Turning a question into a unit vector: the relay's `/v1/embeddings` (what every
//! OpenAI-compatible relay offers; each call costs tokens, recorded in analytics) or a
//! local static-embedding model in the model2vec format (`model2vec-rs`: a token table
//! and mean pooling, tens of microseconds a question, no relay call).
//!
//! Vectors are cached by exact text (and embedder), so a question asked again is embedded
//! once; concurrent requests for the same text share one computation.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::relay::Relay;

/// Why a question could not be embedded (the lookup then goes on as a miss).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct EmbedError(pub String);

pub enum Embedder {
    Relay { relay: Arc<Relay>, model: String },
    Local(Box<model2vec_rs::model::StaticModel>),
}

/// One embedded question.
#[derive(Clone, Debug)]
pub struct Embedded {
    pub vector: Arc<[f32]>,
    /// Tokens the relay charged for this embedding: 0 for the local model and for a
    /// vector found in the cache.
    pub billed_tokens: u64,
}

pub fn normalized(mut v: Vec<f32>) -> Option<Arc<[f32]>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v.into())
}

impl Embedder {
    /// Loads a local model directory, or names the relay model.
    pub fn from_config(
        embedder: &str,
        model: &str,
        relay: Arc<Relay>,
    ) -> Result<(Self, Arc<str>), EmbedError> {
        if embedder == "relay" {
            let id = Arc::from(format!("relay:{model}"));
            return Ok((
                Self::Relay {
                    relay,
                    model: model.to_owned(),
                },
                id,
            ));
        }
        let dir = Path::new(embedder);
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(|e| {
            EmbedError(format!(
                "semantic.embedder: cannot read {}/model.safetensors: {e}",
                dir.display()
            ))
        })?;
        let local = model2vec_rs::model::StaticModel::from_pretrained(dir, None, Some(true), None)
            .map_err(|e| EmbedError(format!("semantic.embedder {}: {e}", dir.display())))?;
        // Vectors of different models never compare: the id names the weights.
        let digest = hex::encode(&Sha256::digest(&weights)[..8]);
        let id = Arc::from(format!("model2vec:{digest}"));
        Ok((Self::Local(Box::new(local)), id))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Relay { .. } => "relay",
            Self::Local(_) => "local",
        }
    }

    /// Embeds `text`; `headers` are the client's (pass-through mode pays with its key).
    pub async fn embed(&self, text: &str, headers: &HeaderMap) -> Result<Embedded, EmbedError> {
        match self {
            Self::Local(model) => {
                let vector = normalized(model.encode_single(text))
                    .ok_or_else(|| EmbedError("the local model gave an empty vector".into()))?;
                Ok(Embedded {
                    vector,
                    billed_tokens: 0,
                })
            }
            Self::Relay { relay, model } => relay_embed(relay, model, text, headers).await,
        }
    }
}

async fn relay_embed(
    relay: &Relay,
    model: &str,
    text: &str,
    headers: &HeaderMap,
) -> Result<Embedded, EmbedError> {
    let body = serde_json::to_vec(&serde_json::json!({"model": model, "input": text}))
        .map_err(|e| EmbedError(e.to_string()))?;
    let response = relay
        .send(
            Method::POST,
            "/embeddings",
            headers.clone(),
            Bytes::from(body),
            true,
        )
        .await
        .map_err(|e| EmbedError(format!("embedding call failed: {e}")))?;
    let mut bytes = BytesMut::new();
    let mut stream = response.body;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(|e| EmbedError(e.to_string()))?);
    }
    if response.status != StatusCode::OK {
        return Err(EmbedError(format!(
            "the relay answered the embedding call with {}",
            response.status
        )));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| EmbedError(format!("embedding answer: {e}")))?;
    let vector: Vec<f32> = value
        .pointer("/data/0/embedding")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| EmbedError("embedding answer without data[0].embedding".into()))?
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32))
        .collect::<Option<_>>()
        .ok_or_else(|| EmbedError("embedding answer with a non-number".into()))?;
    let billed_tokens = value
        .pointer("/usage/prompt_tokens")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Ok(Embedded {
        vector: normalized(vector)
            .ok_or_else(|| EmbedError("the relay gave an empty vector".into()))?,
        billed_tokens,
    })
}

/// Vectors by exact text, bounded in bytes.
pub struct EmbeddingCache {
    cache: moka::future::Cache<[u8; 32], Arc<[f32]>>,
}

impl EmbeddingCache {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, v: &Arc<[f32]>| (v.len() * 4 + 64).try_into().unwrap_or(u32::MAX))
                .build(),
        }
    }

    /// The vector of `text` under `embedder_id`; computed at most once at a time.
    /// Returns the vector, its billed tokens (0 unless computed now) and how long it took.
    pub async fn get_or_embed(
        &self,
        embedder: &Embedder,
        embedder_id: &str,
        text: &str,
        headers: &HeaderMap,
    ) -> Result<(Embedded, bool, f64), EmbedError> {
        let mut hasher = Sha256::new();
        hasher.update(embedder_id.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        let id: [u8; 32] = hasher.finalize().into();
        let started = Instant::now();
        let billed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let entry = {
            let billed = billed.clone();
            self.cache
                .entry(id)
                .or_try_insert_with(async move {
                    let embedded = embedder.embed(text, headers).await?;
                    billed.store(embedded.billed_tokens, std::sync::atomic::Ordering::Relaxed);
                    Ok::<_, EmbedError>(embedded.vector)
                })
                .await
                .map_err(|e: Arc<EmbedError>| (*e).clone())?
        };
        let fresh = entry.is_fresh();
        Ok((
            Embedded {
                vector: entry.into_value(),
                billed_tokens: if fresh {
                    billed.load(std::sync::atomic::Ordering::Relaxed)
                } else {
                    0
                },
            },
            fresh,
            started.elapsed().as_secs_f64(),
        ))
    }
}
