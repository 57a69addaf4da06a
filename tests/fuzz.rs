//! Fuzzing of everything that parses untrusted input, as property tests (cargo-fuzz needs
//! a nightly toolchain this project's machines do not have). `FUZZ_CASES` sets the
//! cases per target: CI runs the default (1,000); the long run is
//! `FUZZ_CASES=200000 cargo nextest run --release --test fuzz`.
//!
//! Targets: request bodies → validation → canonical key; the SSE recorder that records
//! streamed answers; rendering cached answers as JSON and SSE; the Redis value codec;
//! configuration files.

use std::sync::Arc;

use bytes::Bytes;
use edge_gateway::clock::Clock;
use edge_gateway::config::Config;
use edge_gateway::testing::cache::{AnswerFacts, CachedAnswer, StreamRecorder, codec};
use edge_gateway::testing::endpoint::Endpoint;
use edge_gateway::testing::keying::{KeyOptions, cache_key, canonical_bytes};
use edge_gateway::testing::request::CacheableRequest;
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

const ENDPOINTS: [Endpoint; 3] = [
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
];

/// A relay answer as raw JSON text: an object of the fields the gateway reads (and
/// others), plausible or arbitrary values, keys repeated or escaped at times, values that
/// a `Value` parse refuses (lone surrogates, numbers out of range, bad UTF-8, bad syntax);
/// or any JSON at all.
fn answer_text() -> impl Strategy<Value = Vec<u8>> {
    let reason = prop_oneof![
        3 => Just(json!("stop")),
        2 => Just(json!("tool_calls")),
        1 => Just(json!("length")),
        1 => Just(Value::Null),
        1 => Just(json!(1)),
    ];
    let choice = prop_oneof![
        6 => reason.prop_map(|r| json!({"index": 0, "message": {"content": "hi"}, "finish_reason": r})),
        1 => json_value(),
    ];
    let choices = prop::collection::vec(choice, 0..4).prop_map(|c| Value::Array(c).to_string());
    let data = prop::collection::vec(json_value(), 0..3).prop_map(|d| Value::Array(d).to_string());
    let count = prop_oneof![
        4 => any::<u32>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(json!(1.5)),
        1 => Just(Value::Null),
    ];
    let usage =
        (count.clone(), count.clone(), count, any::<bool>()).prop_map(|(p, c, i, responses)| {
            if responses {
                json!({"input_tokens": i, "output_tokens": c}).to_string()
            } else {
                json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": 3}).to_string()
            }
        });
    let any_text = json_value().prop_map(|v| v.to_string()).boxed();
    let tricky = prop_oneof![
        Just("\"\\ud800\""),
        Just("\"\\ud83d\\ude00\""),
        Just("1e400"),
        Just("-0"),
        Just("[1,2,]"),
        Just("{\"a\":1,\"a\":2}"),
        Just("\"\u{e9}\\u00e9\""),
    ]
    .prop_map(str::to_owned)
    .boxed();
    // Mostly the value a relay sends for the key; at times anything, or a tricky text.
    let field = |key: &'static str, usual: BoxedStrategy<String>| {
        (
            Just(key),
            prop_oneof![6 => usual, 1 => any_text.clone(), 1 => tricky.clone()],
        )
    };
    let fields = prop_oneof![
        4 => field("choices", choices.clone().boxed()),
        1 => field("choic\\u0065s", choices.boxed()),
        2 => field("data", data.boxed()),
        2 => field("usage", usage.boxed()),
        2 => field("model", "[a-z0-9.-]{0,12}".prop_map(|m| Value::from(m).to_string()).boxed()),
        1 => field("mod\\u0065l", Just("\"gpt-4o\"".to_owned()).boxed()),
        1 => field("error", prop_oneof![3 => Just("null".to_owned()), 1 => Just("{\"message\":\"x\"}".to_owned())].boxed()),
        1 => field("id", Just("\"chatcmpl-1\"".to_owned()).boxed()),
    ];
    let object = prop::collection::vec(fields, 0..7).prop_map(|fields| {
        let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", inner.join(",")).into_bytes()
    });
    prop_oneof![
        6 => object.clone(),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (object, any::<usize>(), any::<u8>()).prop_map(|(mut text, at, byte)| {
            let i = at % text.len();
            text[i] = byte;
            text
        }),
    ]
}

/// Arbitrary JSON, with the kinds of text that stress normalization.
fn json_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,8}",
        Just(" \t\n\u{a0}\u{3000}".to_owned()),
        Just("e\u{301}\u{fb01}".to_owned()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text.prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn a_valid_stream() -> Vec<u8> {
    let mut out = Vec::new();
    let chunks = [
        json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}),
        json!({"id":"c","choices":[{"index":0,"delta":{"content":"Hello "}}]}),
        json!({"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}),
        json!({"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}),
        json!({"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        json!({"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}),
    ];
    for c in chunks {
        out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn record(endpoint: Endpoint, bytes: &[u8], cuts: &[usize]) -> Option<Value> {
    let mut recorder = StreamRecorder::new(endpoint);
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts {
        recorder.feed(&bytes[start..cut.max(start)]);
        start = cut.max(start);
    }
    recorder.feed(&bytes[start..]);
    recorder.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_validation_or_keying(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for endpoint in ENDPOINTS {
            if let Ok(request) = CacheableRequest::parse(endpoint, &bytes) {
                let a = cache_key(endpoint, "ns", &request.body, KeyOptions::default());
                let b = cache_key(endpoint, "ns", &request.body, KeyOptions { case_insensitive: true });
                prop_assert_eq!(a, cache_key(endpoint, "ns", &request.body, KeyOptions::default()));
                let _ = b;
            }
        }
    }

    #[test]
    fn any_json_body_keys_the_same_however_it_is_spelled(extra in json_value(), messages in prop::collection::vec(json_value(), 1..4)) {
        let messages: Vec<Value> = messages
            .into_iter()
            .map(|content| json!({"role": "user", "content": content}))
            .collect();
        let body = json!({"model": "m", "messages": messages, "extra": extra});
        let compact = serde_json::to_vec(&body).unwrap();
        let pretty = serde_json::to_vec_pretty(&body).unwrap();
        let parsed = |raw: &[u8]| CacheableRequest::parse(Endpoint::ChatCompletions, raw);
        match (parsed(&compact), parsed(&pretty)) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(
                    canonical_bytes(Endpoint::ChatCompletions, "n", &a.body, false),
                    canonical_bytes(Endpoint::ChatCompletions, "n", &b.body, false)
                );
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "spelling changed validity"),
        }
    }

    #[test]
    fn random_bytes_never_complete_a_stream(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut recorder = StreamRecorder::new(Endpoint::ChatCompletions);
        for c in &chunks {
            recorder.feed(c);
        }
        if let Some(answer) = recorder.finish() {
            // Only a well-formed stream ending in [DONE] may complete.
            let text: Vec<u8> = chunks.concat();
            prop_assert!(String::from_utf8_lossy(&text).contains("[DONE]"));
            prop_assert!(answer["choices"].is_array());
        }
    }

    #[test]
    fn a_valid_stream_records_alike_at_any_cut_and_mutations_never_panic(
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let stream = a_valid_stream();
        let whole = record(Endpoint::ChatCompletions, &stream, &[]).expect("valid stream records");
        prop_assert_eq!(record(Endpoint::ChatCompletions, &stream, &cuts), Some(whole.clone()));
        let mut mutated = stream.clone();
        for (at, byte) in &flips {
            let i = at % mutated.len();
            mutated[i] = *byte;
        }
        if let Some(answer) = record(Endpoint::ChatCompletions, &mutated, &cuts) {
            prop_assert!(answer["choices"].is_array());
        }
        let truncated = &stream[..stream.len() - 3];
        prop_assert_eq!(record(Endpoint::ChatCompletions, truncated, &cuts), None);
    }

    #[test]
    fn an_answer_read_without_a_value_has_the_facts_of_its_value(text in answer_text()) {
        for endpoint in ENDPOINTS {
            let whole = CachedAnswer::validate(endpoint, &text).map(|v| AnswerFacts::of(endpoint, &v));
            prop_assert_eq!(
                CachedAnswer::read(endpoint, &text),
                whole,
                "{:?}: {}",
                endpoint,
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn any_cached_body_renders_as_json_and_as_valid_sse(value in json_value(), usage in any::<bool>()) {
        for endpoint in ENDPOINTS {
            let body = Bytes::from(serde_json::to_vec(&value).unwrap());
            let answer = CachedAnswer::new(endpoint, Arc::from("n"), body.clone(), &value, Clock::system().now_ms() + 5_000);
            prop_assert_eq!(&answer.body, &body);
            let sse = answer.sse(usage);
            let text = std::str::from_utf8(&sse).unwrap();
            prop_assert!(text.ends_with("data: [DONE]\n\n"));
            for event in text.split("\n\n").filter(|e| !e.is_empty()) {
                let data = event.strip_prefix("data: ").unwrap();
                if data != "[DONE]" {
                    prop_assert!(serde_json::from_str::<Value>(data).is_ok());
                }
            }
        }
    }

    #[test]
    fn the_value_codec_rejects_garbage_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..256), value in json_value()) {
        let _ = codec::decode(&bytes, 1 << 20);
        let mut framed = b"EG2".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = codec::decode(&framed, 1 << 20);
        // With a valid checksum too: lengths and compression are still checked.
        let checksum = crc32fast_hash(&framed);
        framed.extend_from_slice(&checksum.to_le_bytes());
        let _ = codec::decode(&framed, 1 << 20);
        let body = Bytes::from(serde_json::to_vec(&value).unwrap());
        let answer = CachedAnswer::new(Endpoint::ChatCompletions, Arc::from("n"), body.clone(), &value, Clock::system().now_ms() + 5_000);
        let decoded = codec::decode(&codec::encode(&answer), 1 << 20).expect("round trip");
        prop_assert_eq!(decoded.body, body);
    }

    #[test]
    fn config_files_never_panic_the_loader(text in "\\PC{0,200}", edits in prop::collection::vec((any::<usize>(), "[\\[\\]=\"a-z0-9_. \n]{0,6}"), 0..4)) {
        let _ = toml::from_str::<Config>(&text);
        let mut valid = String::from(
            "edge_region = \"cdg\"\n[server]\nport = 8080\n[cache]\nttl_secs = 60\n\
             [[relay.regions]]\nname = \"a\"\nurl = \"http://x/v1\"\nweight = 2\n\
             [pricing]\n\"m\" = { input = 1.0, output = 2.0 }\n",
        );
        for (at, insert) in edits {
            let mut i = at % (valid.len() + 1);
            while !valid.is_char_boundary(i) {
                i -= 1;
            }
            valid.insert_str(i, &insert);
        }
        if let Ok(config) = toml::from_str::<Config>(&valid) {
            let _ = config.validate();
        }
    }
}

/// CRC-32 (IEEE), as the codec's checksum, written out so the test does not trust the
/// implementation it checks.
fn crc32fast_hash(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
