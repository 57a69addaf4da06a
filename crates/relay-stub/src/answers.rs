//! Deterministic answers: the same request always gets the same content (ids differ per
//! call, so a test can tell a relay answer from a cached one).

use serde_json::{Value, json};

pub struct Answer {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    /// (call id, function name, arguments JSON text)
    pub tool_call: Option<(String, String, String)>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

pub fn chat_answer(body: &Value) -> Answer {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let prompt_tokens = messages
        .iter()
        .map(|m| words(&text_of(m.get("content").unwrap_or(&Value::Null))))
        .sum::<u64>()
        .max(1);
    let question = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let reasoning = model
        .contains("reason")
        .then(|| format!("The user asks: {question}"));
    let tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(|t| t.pointer("/function/name"))
        .and_then(Value::as_str);
    if let Some(name) = tool {
        let arguments = json!({"query": question}).to_string();
        return Answer {
            content: None,
            reasoning,
            completion_tokens: words(&arguments).max(1),
            tool_call: Some(("call_stub_0".into(), name.into(), arguments)),
            prompt_tokens,
        };
    }
    let content = format!("Answer to: {question}");
    Answer {
        completion_tokens: words(&content),
        content: Some(content),
        reasoning,
        tool_call: None,
        prompt_tokens,
    }
}

pub fn completion_text(body: &Value) -> (String, u64) {
    let prompt = match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    (format!("Completion of: {prompt}"), words(&prompt).max(1))
}

/// Dimensions of the stub's embeddings.
pub const EMBEDDING_DIMS: usize = 256;

/// A deterministic bag-of-words embedding: each lower-cased word (each CJK character)
/// adds a fixed pseudo-random ±1 vector, and the sum is normalized. Texts sharing most
/// of their words are close (5 of 6 words shared: cosine ≈ 0.83), which is what tests
/// of the semantic cache need: paraphrases near, traps near too (the verifier's job),
/// unrelated questions far.
pub fn bag_of_words_embedding(text: &str) -> Vec<f64> {
    let mut sum = vec![0.0f64; EMBEDDING_DIMS];
    let lower = text.to_lowercase();
    let mut tokens: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in lower.chars() {
        let cjk = matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF);
        if c.is_alphanumeric() && !cjk {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
        if cjk {
            tokens.push(c.to_string());
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    for token in &tokens {
        let mut state = token.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        for x in sum.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *x += if state & 1 == 0 { 1.0 } else { -1.0 };
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        sum.iter_mut().for_each(|x| *x /= norm);
    }
    sum
}

pub fn embeddings(body: &Value, model: &str) -> Value {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(other) => vec![other.to_string()],
        None => Vec::new(),
    };
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += words(text).max(1);
            json!({"object": "embedding", "index": i, "embedding": bag_of_words_embedding(text)})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}
