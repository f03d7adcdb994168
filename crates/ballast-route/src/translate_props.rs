//! Properties of the translations over arbitrary requests and answers: no input makes them
//! panic, and what they write is JSON.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::chat_chunk::ChatStreamWriter;
use crate::translate::{self, Api, Plan};
use ballast_classify::{ClassifiedBody, Dialect};

/// A JSON value of any shape, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        "[a-z\"{}:\\\\ ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// The field names the translations look for, and a few they do not.
fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "type",
        "text",
        "role",
        "content",
        "id",
        "name",
        "input",
        "arguments",
        "function",
        "tool_calls",
        "tool_call_id",
        "tool_use_id",
        "tools",
        "tool_choice",
        "messages",
        "system",
        "max_tokens",
        "stream",
        "index",
        "delta",
        "choices",
        "usage",
        "error",
        "message",
        "partial_json",
        "content_block",
        "parameters",
        "input_schema",
        "x",
    ])
    .prop_map(str::to_owned)
}

/// A request-shaped object: messages of known roles whose content is text or blocks of
/// known types, maybe tools and a choice, any of it replaceable by arbitrary JSON (and
/// for the Responses API, the same messages as its `input`).
fn request() -> impl Strategy<Value = Value> {
    let block = (
        prop::sample::select(vec![
            "text",
            "tool_use",
            "tool_result",
            "image",
            "thinking",
            "image_url",
        ]),
        any_json(),
    )
        .prop_map(|(kind, extra)| {
            json!({"type": kind, "text": "t", "id": "i", "name": "n", "tool_use_id": "i",
                   "input": extra.clone(), "content": extra})
        });
    let content = prop_oneof![
        "[a-z]{0,4}".prop_map(Value::from),
        prop::collection::vec(block, 0..3).prop_map(Value::from),
        any_json(),
    ];
    let call = any_json().prop_map(|arguments| {
        json!({"id": "c", "type": "function", "function": {"name": "f",
               "arguments": arguments.as_str().map_or_else(|| arguments.to_string(), str::to_owned)}})
    });
    let message = (
        prop::sample::select(vec![
            "user",
            "assistant",
            "system",
            "tool",
            "developer",
            "x",
        ]),
        content,
        prop::option::of(prop::collection::vec(call, 0..3)),
    )
        .prop_map(|(role, content, calls)| {
            let mut message = json!({"role": role, "content": content, "tool_call_id": "c"});
            if let Some(calls) = calls {
                message["tool_calls"] = Value::from(calls);
            }
            message
        });
    (
        prop::collection::vec(message, 0..5),
        prop::option::of(any_json()),
        prop::option::of(any_json()),
        any_json(),
    )
        .prop_map(|(messages, tools, choice, system)| {
            let mut request = json!({"model": "m", "max_tokens": 9, "messages": messages});
            if let Some(tools) = tools {
                request["tools"] = tools;
            }
            if let Some(choice) = choice {
                request["tool_choice"] = choice;
            }
            request["system"] = system;
            request["input"] = request["messages"].clone();
            request
        })
}

proptest! {
    /// Any request, in either dialect, for any API: translated into a JSON object, or
    /// refused with a reason; never a panic.
    #[test]
    fn any_request_is_translated_or_refused(
        request in prop_oneof![request(), any_json()],
        stream in any::<bool>(),
    ) {
        let body = request.to_string();
        for (api, dialect) in [
            (Api::Anthropic, Dialect::Chat),
            (Api::Gemini, Dialect::Chat),
            (Api::OpenAi, Dialect::Messages),
            (Api::Gemini, Dialect::Messages),
            (Api::Anthropic, Dialect::Responses),
            (Api::Gemini, Dialect::Responses),
        ] {
            if let Ok(Plan::Translated { body, .. }) =
                translate::plan(api, dialect, stream, body.as_bytes(), Some("m"), None)
            {
                let translated: Value = serde_json::from_slice(&body).unwrap();
                prop_assert!(translated.is_object());
            }
        }
    }

    /// Any answer body, whole or as stream events, goes back to either caller's dialect
    /// without a panic; a whole one comes back as JSON when it was.
    #[test]
    fn any_answer_goes_back_without_a_panic(
        answer in any_json(),
        status in prop::sample::select(vec![200u16, 400, 429, 500, 529]),
        events in prop::collection::vec((key(), any_json()), 0..6),
    ) {
        for (api, dialect) in [
            (Api::Anthropic, Dialect::Chat),
            (Api::Gemini, Dialect::Chat),
            (Api::OpenAi, Dialect::Messages),
            (Api::Gemini, Dialect::Messages),
            (Api::Anthropic, Dialect::Responses),
            (Api::Gemini, Dialect::Responses),
        ] {
            let response = http::Response::builder()
                .status(status)
                .body(ClassifiedBody::<()>::buffered(Bytes::from(answer.to_string())))
                .unwrap();
            let back = translate::answer_back(api, dialect, response, "m", true);
            let bytes = back.body().bytes().unwrap();
            prop_assert!(serde_json::from_slice::<Value>(bytes).is_ok());
        }
        let mut out = BytesMut::new();
        let mut chunks = translate::Chunks::new(Api::Anthropic, "m", true);
        let mut gemini = translate::Chunks::new(Api::Gemini, "m", true);
        let mut messages = crate::from_messages::Events::new("m");
        let mut responses = crate::from_responses::Events::new("m");
        for (event, data) in &events {
            let data = data.to_string();
            chunks.on(event, &data, &mut out);
            gemini.on(event, &data, &mut out);
            messages.on(event, &data, &mut out);
            responses.on(event, &data, &mut out);
        }
        messages.on("", "[DONE]", &mut out);
        responses.on("", "[DONE]", &mut out);
    }

    /// A Gemini answer with calls of any shape (names, arguments, signatures and ids of any
    /// JSON), whole or streamed, goes back to every caller's dialect as JSON, without a
    /// panic; each call of a whole answer becomes one chat tool call.
    #[test]
    fn any_gemini_call_goes_back_as_json(
        calls in prop::collection::vec((any_json(), any_json(), any_json(), any_json()), 1..4),
        text in prop::option::of("[a-z ]{0,8}"),
    ) {
        let mut parts: Vec<Value> = calls
            .iter()
            .map(|(name, args, signature, id)| {
                json!({"functionCall": {"name": name, "args": args, "id": id},
                       "thoughtSignature": signature})
            })
            .collect();
        if let Some(text) = text {
            parts.insert(0, json!({"text": text}));
        }
        let answer = json!({"responseId": "r", "candidates": [{"content": {"parts": parts},
            "finishReason": "STOP"}]});
        for dialect in [Dialect::Chat, Dialect::Messages, Dialect::Responses] {
            let response = http::Response::builder()
                .body(ClassifiedBody::<()>::buffered(Bytes::from(answer.to_string())))
                .unwrap();
            let back = translate::answer_back(Api::Gemini, dialect, response, "m", true);
            let json: Value = serde_json::from_slice(back.body().bytes().unwrap()).unwrap();
            if dialect == Dialect::Chat {
                let tool_calls = json.pointer("/choices/0/message/tool_calls");
                prop_assert_eq!(tool_calls.and_then(Value::as_array).map(Vec::len), Some(calls.len()));
            }
        }
        let mut out = BytesMut::new();
        let mut chunks = translate::Chunks::new(Api::Gemini, "m", true);
        chunks.on("", &answer.to_string(), &mut out);
        for event in std::str::from_utf8(&out).unwrap().split("\n\n") {
            if let Some(data) = event.strip_prefix("data: ").filter(|d| *d != "[DONE]") {
                prop_assert!(serde_json::from_str::<Value>(data).is_ok(), "{}", data);
            }
        }
    }
}
