//! The local embedder: a model2vec-format directory (a WordPiece `tokenizer.json`, a
//! `model.safetensors` token table, `config.json`) built here, tiny but with meaning:
//! `reset`/`change` and `password`/`passcode` share directions, so a paraphrase in
//! other words is close while an unrelated question is not. No relay embedding call.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::*;

/// (token, vector): synonyms point the same way; `[UNK]` is ignored by the pooling.
const TABLE: &[(&str, [f32; 6])] = &[
    ("[UNK]", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
    ("how", [0.2, 0.0, 0.0, 0.0, 0.0, 0.1]),
    ("do", [0.1, 0.0, 0.0, 0.0, 0.0, 0.1]),
    ("i", [0.1, 0.0, 0.0, 0.0, 0.0, 0.1]),
    ("my", [0.1, 0.0, 0.0, 0.0, 0.0, 0.1]),
    ("reset", [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
    ("change", [0.0, 0.9, 0.1, 0.0, 0.0, 0.0]),
    ("password", [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
    ("pass", [0.0, 0.0, 0.6, 0.0, 0.0, 0.0]),
    ("##code", [0.0, 0.0, 0.4, 0.0, 0.0, 0.0]),
    ("where", [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
    ("is", [0.1, 0.0, 0.0, 0.0, 0.0, 0.1]),
    ("the", [0.1, 0.0, 0.0, 0.0, 0.0, 0.1]),
    ("store", [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
    ("?", [0.0, 0.0, 0.0, 0.0, 0.0, 0.05]),
];

pub(super) fn write_model(dir: &Path) {
    let vocab: serde_json::Map<String, Value> = TABLE
        .iter()
        .enumerate()
        .map(|(i, (token, _))| ((*token).to_owned(), json!(i)))
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"normalize": true}"#).unwrap();
    let data: Vec<u8> = TABLE
        .iter()
        .flat_map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()))
        .collect();
    let view = TensorView::new(Dtype::F32, vec![TABLE.len(), 6], &data).unwrap();
    let bytes = safetensors::tensor::serialize([("embeddings", view)], &None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
}

#[tokio::test]
async fn a_local_model_serves_a_paraphrase_in_other_words_without_a_relay_embedding() {
    let model = tempfile::tempdir().unwrap();
    write_model(model.path());
    let path = model.path().to_str().unwrap().to_owned();
    let app = spawn_app_with(move |c| {
        semantic_on(c);
        c.semantic.embedder = path;
        c.semantic.threshold = 0.9;
    })
    .await;
    seed(&app, "How do I reset my password?").await;
    let response = app.chat(&ask("How do I change my passcode?")).await;
    assert_eq!(header(&response, "x-cache-tier"), "semantic");
    let unrelated = app.chat(&ask("Where is the store?")).await;
    assert_eq!(header(&unrelated, "x-cache"), "miss");
    assert_eq!(app.stub.calls("/v1/embeddings"), 0, "embedded locally");
    app.stop().await;
}

#[tokio::test]
async fn a_model_directory_that_cannot_be_loaded_stops_the_start_with_its_path() {
    let empty = tempfile::tempdir().unwrap();
    let stub = relay_stub::RelayStub::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&stub, &dir);
    semantic_on(&mut config);
    config.semantic.embedder = empty.path().to_str().unwrap().to_owned();
    let error = match edge_gateway::App::build(config).await {
        Ok(_) => panic!("a gateway without its model must not start"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("model.safetensors"), "{error}");
}
