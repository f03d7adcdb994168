//! The request facts are what a JSON parser reads, for any body, in every dialect.

use ballast_classify::{Dialect, HalfByteCount, RequestFacts};
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;

/// Each path with its dialect; at a path no dialect names (read as chat by
/// `Dialect::of_path`), a body without `messages` is `Dialect::Other` (see `dialect_of`).
const PATHS: [(&str, Dialect); 12] = [
    ("/v1/chat/completions", Dialect::Chat),
    ("/v1/moderations", Dialect::Chat),
    ("/api/chat", Dialect::Chat),
    ("/v1/messages/count_tokens", Dialect::Other),
    (
        "/v1beta/models/gemini-2.5-flash:countTokens",
        Dialect::Other,
    ),
    ("/v1/completions", Dialect::Completions),
    ("/v1/fim/completions", Dialect::Completions),
    ("/v1/embeddings", Dialect::Embeddings),
    ("/v1/responses", Dialect::Responses),
    ("/v1/messages", Dialect::Messages),
    (
        "/v1beta/models/gemini-2.5-flash:generateContent",
        Dialect::Gemini,
    ),
    (
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        Dialect::Gemini,
    ),
];

/// The dialect of a body at `path`, read with `serde_json::Value`: a path no dialect names
/// is chat's only for a body with `messages`.
fn dialect_of(path: &str, dialect: Dialect, body: &[u8]) -> Dialect {
    let chat = matches!(serde_json::from_slice::<Value>(body),
        Ok(Value::Object(object)) if object.contains_key("messages"));
    if dialect == Dialect::Chat && !path.ends_with("/chat/completions") && !chat {
        Dialect::Other
    } else {
        dialect
    }
}

/// What the facts should be, read with `serde_json::Value` (the last of duplicate names wins
/// there too).
fn expected(path: &str, dialect: Dialect, body: &[u8]) -> (Option<String>, bool, Option<u64>) {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };
    let get = |name: &str| object.as_ref().and_then(|o| o.get(name));
    let count = |name: &str| get(name).and_then(Value::as_u64);
    match dialect {
        Dialect::Gemini => {
            let model = path
                .rsplit_once("models/")
                .and_then(|(_, rest)| rest.split_once(':'))
                .map(|(model, _)| model.to_owned());
            let config_cap = |config: Option<&Value>| {
                let config = config?.as_object()?;
                let camel = config.get("maxOutputTokens").and_then(Value::as_u64);
                let snake = config.get("max_output_tokens").and_then(Value::as_u64);
                camel.max(snake)
            };
            // Protobuf JSON takes both spellings, of the object and of the field.
            let cap = config_cap(get("generationConfig")).max(config_cap(get("generation_config")));
            (model, path.contains(":streamGenerateContent"), cap)
        }
        // No output bound for a call with no reading: what its answer reports is charged.
        Dialect::Other => (
            get("model").and_then(Value::as_str).map(str::to_owned),
            get("stream") == Some(&Value::Bool(true)),
            Some(0),
        ),
        // An embedding has no output, and never streams, whatever the body says.
        Dialect::Embeddings => (
            get("model").and_then(Value::as_str).map(str::to_owned),
            false,
            Some(0),
        ),
        _ => {
            let model = get("model").and_then(Value::as_str).map(str::to_owned);
            let stream = get("stream") == Some(&Value::Bool(true));
            let cap = match dialect {
                Dialect::Chat => count("max_completion_tokens").max(count("max_tokens")),
                Dialect::Responses => count("max_output_tokens"),
                _ => count("max_tokens"),
            };
            (model, stream, cap)
        }
    }
}

/// A JSON string literal for `text`, each character escaped as `\uXXXX` when `escape` says.
fn string_literal(text: &str, escape: &[bool]) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if escape.get(i).copied().unwrap_or(false) && (c as u32) < 0x10000 {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
    }
    out.push('"');
    out
}

/// Values a fact's member may hold: the right shape and every wrong one.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..2000).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("5e2".to_owned()),
        Just("500.0".to_owned()),
        // What a parser refuses, or accepts only just.
        Just("1e400".to_owned()),
        Just("-1.5E-3".to_owned()),
        Just("01".to_owned()),
        Just("1.".to_owned()),
        Just("tru".to_owned()),
        Just(r#""\ud800""#.to_owned()),
        Just(r#""\udc00x""#.to_owned()),
        Just(r#""\ud83d\ude00""#.to_owned()),
        Just("\"a\u{1}b\"".to_owned()),
        Just(r#""\x""#.to_owned()),
        Just("\"tab\there\"".to_owned()),
        (
            "[a-z0-9\\-\" \\\\é]{0,12}",
            prop::collection::vec(any::<bool>(), 0..12)
        )
            .prop_map(|(s, e)| string_literal(&s, &e)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((name(), inner), 0..4).prop_map(|members| object(&members)),
        ]
    })
}

/// Member names: every name a fact is read from, in both spellings, and others.
fn name() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "model",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "generationConfig",
        "generation_config",
        "maxOutputTokens",
        "messages",
        "contents",
        "input",
        "prompt",
        "temperature",
        "Model",
        "model ",
    ]);
    (names, prop::collection::vec(any::<bool>(), 0..24))
        .prop_map(|(name, escape)| string_literal(name, &escape))
}

fn object(members: &[(String, String)]) -> String {
    let members: Vec<String> = members.iter().map(|(k, v)| format!("{k} : {v}")).collect();
    format!("{{ {} }}", members.join(","))
}

/// Request bodies: objects of fact members (duplicates, escapes, wrong types, nested
/// generation configs), the same cut short or with a byte changed, and arbitrary bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let object =
        || prop::collection::vec((name(), value()), 0..8).prop_map(|m| object(&m).into_bytes());
    prop_oneof![
        4 => object(),
        1 => (object(), any::<prop::sample::Index>())
            .prop_map(|(body, at)| body[..at.index(body.len() + 1)].to_vec()),
        1 => (object(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut body, at, byte)| {
            if !body.is_empty() {
                let i = at.index(body.len());
                body[i] = byte;
            }
            body
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn facts_are_what_a_json_parser_reads(body in body(), which in 0..PATHS.len()) {
        let (path, dialect) = PATHS[which];
        let dialect = dialect_of(path, dialect, &body);
        let bytes = Bytes::from(body.clone());
        let facts = RequestFacts::read(path, &bytes, &HalfByteCount);
        let (model, stream, cap) = expected(path, dialect, &body);
        prop_assert_eq!(facts.dialect(), dialect, "{}", String::from_utf8_lossy(&body));
        prop_assert_eq!(facts.model(), model.as_deref(), "{}", String::from_utf8_lossy(&body));
        prop_assert_eq!(facts.is_stream(), stream, "{}", String::from_utf8_lossy(&body));
        prop_assert_eq!(facts.output_cap(), cap, "{}", String::from_utf8_lossy(&body));
        prop_assert_eq!(facts.body_len(), body.len() as u64);
        let bound = if dialect == Dialect::Other { 0 } else { (body.len() as u64).div_ceil(2) };
        prop_assert_eq!(facts.prompt_tokens(), bound);
        prop_assert_eq!(
            facts.is_json_object(),
            matches!(serde_json::from_slice::<Value>(&body), Ok(Value::Object(_)))
        );
    }
}

/// The read layer keeps a caller's `content-length` when it sends the body as it came, and
/// drops it when it rewrote the body (the default cap written in).
#[tokio::test]
async fn content_length_goes_only_with_a_rewritten_body() {
    use ballast_classify::{ReadRequestLayer, RequestBody};
    use tower::{Layer, ServiceExt};
    let sent = |cap: Option<u64>, body: &'static str| async move {
        let layer = match cap {
            Some(tokens) => ReadRequestLayer::new().default_output_cap(tokens),
            None => ReadRequestLayer::new(),
        };
        let service = layer.layer(tower::service_fn(
            |request: http::Request<RequestBody>| async move {
                Ok::<_, ballast_classify::ClassifiedError>(
                    request
                        .headers()
                        .get(http::header::CONTENT_LENGTH)
                        .map(|v| v.to_str().unwrap().to_owned()),
                )
            },
        ));
        let request = http::Request::post("/v1/chat/completions")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body.to_owned())
            .unwrap();
        service.oneshot(request).await.unwrap()
    };
    let body = r#"{"model":"m","max_tokens":9}"#;
    assert_eq!(sent(Some(100), body).await, Some(body.len().to_string()));
    assert_eq!(sent(Some(100), r#"{"model":"m"}"#).await, None);
    assert_eq!(sent(None, r#"{"model":"m"}"#).await, Some("13".to_owned()));
}
