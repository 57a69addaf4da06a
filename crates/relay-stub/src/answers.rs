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

pub fn embeddings(body: &Value, model: &str) -> Value {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::Array(items)) => items.iter().map(|i| i.to_string()).collect(),
        Some(other) => vec![other.to_string()],
        None => Vec::new(),
    };
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += words(text).max(1);
            let seed = text
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            let vector: Vec<f64> = (0..8)
                .map(|k| ((seed >> (k * 4)) & 0xff) as f64 / 255.0 - 0.5)
                .collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}
