//! The `[semantic]` section: the opt-in semantic tier's mode, threshold and embedder.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether the semantic tier answers, only records what it would answer, or sleeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SemanticMode {
    #[default]
    Off,
    /// Look up and record what would have been served; serve nothing (issue 19).
    Shadow,
    On,
}

impl std::str::FromStr for SemanticMode {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "0" => Ok(Self::Off),
            "shadow" => Ok(Self::Shadow),
            "on" | "true" | "1" => Ok(Self::On),
            other => Err(format!("{other:?}: use off, shadow or on")),
        }
    }
}

/// The semantic cache (SPEC.md "Semantic cache"). Off by default: a semantic hit serves
/// an answer given to another question, which is only right when the two mean the same.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SemanticConfig {
    pub mode: SemanticMode,
    /// Per namespace (the caller's, before any `x-cache-namespace` partition), overriding
    /// `mode`: turn it on for the FAQ bot's tenant only.
    pub namespaces: BTreeMap<String, SemanticMode>,
    /// Cosine similarity a candidate must reach. It depends on the embedding model: the
    /// default was measured with all-MiniLM-L6-v2 (bench/RESULTS.md, "Semantic cache").
    pub threshold: f32,
    /// `relay` (the relay's `/v1/embeddings` with `embedding_model`) or the path of a
    /// local static-embedding model directory (model2vec format: `tokenizer.json`,
    /// `model.safetensors`, `config.json`), which costs no relay call.
    pub embedder: String,
    pub embedding_model: String,
    /// Entries kept in the in-process index (oldest evicted first), across partitions.
    pub max_entries: usize,
    /// Last user messages longer than this (in characters) are not compared by meaning:
    /// long prompts rarely repeat and their embeddings blur details.
    pub max_text_chars: usize,
    /// Nearest entries the verifier may examine per lookup.
    pub candidates: usize,
    /// How often an instance reads the entries other regions shared through Redis.
    pub share_poll_ms: u64,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        Self {
            mode: SemanticMode::Off,
            namespaces: BTreeMap::new(),
            threshold: 0.85,
            embedder: "relay".into(),
            embedding_model: "text-embedding-3-small".into(),
            max_entries: 100_000,
            max_text_chars: 2_000,
            candidates: 4,
            share_poll_ms: 250,
        }
    }
}
