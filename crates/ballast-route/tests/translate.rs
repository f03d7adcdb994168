//! A route whose fallback speaks another API: what it takes, what it passes over.

use std::sync::{Arc, Mutex};

use ballast_classify::{
    BoxError, ClassifiedBody, FailFast, Outcome, OutcomeClass, ReadRequestLayer, RequestBody,
};
use ballast_route::{Api, Failover, Served, Target};
use bytes::Bytes;
use tower::{Layer, ServiceExt, service_fn};

type Body = ClassifiedBody<http_body_util::Empty<Bytes>>;

/// A target answering `status` with `body`, writing down each request's path, body and
/// whether it was marked [`FailFast`].
fn target(
    status: u16,
    body: &'static str,
    seen: Arc<Mutex<Vec<(String, String, bool)>>>,
) -> impl tower::Service<
    http::Request<RequestBody>,
    Response = http::Response<Body>,
    Error = BoxError,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |request: http::Request<RequestBody>| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push((
                request.uri().path().to_owned(),
                String::from_utf8_lossy(request.body().bytes()).into_owned(),
                FailFast::is_set(&request),
            ));
            let response = http::Response::builder()
                .status(status)
                .body(ClassifiedBody::buffered(Bytes::from_static(
                    body.as_bytes(),
                )))
                .unwrap();
            // Stands in for the stack's classifier: the outcome on the response.
            let outcome = if status == 200 {
                Outcome::new(OutcomeClass::Success)
            } else {
                Outcome::new(OutcomeClass::ServerError)
            };
            let mut response = response;
            response.extensions_mut().insert(outcome);
            Ok::<_, BoxError>(response)
        }
    })
}

type Seen = Arc<Mutex<Vec<(String, String, bool)>>>;

fn route(
    primary: Seen,
    fallback: Seen,
) -> impl tower::Service<http::Request<String>, Response = http::Response<Body>, Error = BoxError> + Clone
{
    ReadRequestLayer::new().layer(Failover::new([
        Target::new(
            "xai",
            "http://xai.invalid/v1".parse().unwrap(),
            target(503, r#"{"error":"down"}"#, primary),
        ),
        Target::new(
            "anthropic",
            "http://anthropic.invalid/v1".parse().unwrap(),
            target(
                200,
                r#"{"id":"msg_1","type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":2}}"#,
                fallback,
            ),
        )
        .model("claude-haiku-4-5")
        .speaks(Api::Anthropic),
    ]))
}

fn chat(extra: &str) -> http::Request<String> {
    http::Request::post("http://caller.invalid/v1/chat/completions")
        .body(format!(
            r#"{{"model":"grok-code-fast-1","max_tokens":9,"messages":[{{"role":"user","content":"hi"}}]{extra}}}"#
        ))
        .unwrap()
}

#[tokio::test]
async fn a_plain_chat_call_is_translated_and_answered_in_chat() {
    let (primary, fallback) = (Seen::default(), Seen::default());
    let response = route(primary.clone(), fallback.clone())
        .oneshot(chat(""))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(Served::of(&response).unwrap().target.as_ref(), "anthropic");
    let json: serde_json::Value = serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
    assert_eq!(json["model"], "claude-haiku-4-5");
    assert_eq!(json["choices"][0]["message"]["content"], "hi");
    assert_eq!(json["usage"]["total_tokens"], 11);
    // The primary was asked as the caller asked, marked to fail fast; the fallback, the
    // last, got Messages on its own path and was not marked.
    assert!(primary.lock().unwrap()[0].2);
    let sent = fallback.lock().unwrap()[0].clone();
    assert_eq!(sent.0, "/v1/messages");
    assert!(!sent.2);
    let body: serde_json::Value = serde_json::from_str(&sent.1).unwrap();
    assert_eq!(body["model"], "claude-haiku-4-5");
    assert_eq!(body["max_tokens"], 9);
}

/// A streamed call is translated too: the fallback is asked for a Messages stream (its
/// events come back as chat chunks; see the facade's failover tests for a whole stream).
#[tokio::test]
async fn a_streamed_call_is_translated_to_a_messages_stream() {
    let (primary, fallback) = (Seen::default(), Seen::default());
    let response = route(primary.clone(), fallback.clone())
        .oneshot(chat(r#","stream":true"#))
        .await
        .unwrap();
    assert_eq!(Served::of(&response).unwrap().target.as_ref(), "anthropic");
    assert!(primary.lock().unwrap()[0].2, "the primary was not the last");
    let sent = fallback.lock().unwrap()[0].clone();
    assert_eq!(sent.0, "/v1/messages");
    let body: serde_json::Value = serde_json::from_str(&sent.1).unwrap();
    assert_eq!(body["stream"], true);
}

/// A call in JSON mode: the fallback could not translate it and was passed over; the
/// primary's failure, already in hand, is the answer.
#[tokio::test]
async fn a_call_the_translation_cannot_carry_gets_the_primarys_answer() {
    let (primary, fallback) = (Seen::default(), Seen::default());
    let response = route(primary.clone(), fallback.clone())
        .oneshot(chat(r#","response_format":{"type":"json_object"}"#))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let served = Served::of(&response).unwrap();
    assert_eq!((served.target.as_ref(), served.passed_over), ("xai", 0));
    assert_eq!(primary.lock().unwrap().len(), 1);
    assert!(fallback.lock().unwrap().is_empty());
}

/// A caller speaking Messages: the OpenAI primary cannot take it; the Anthropic target
/// takes it as it is.
#[tokio::test]
async fn a_messages_caller_goes_to_the_target_that_speaks_messages() {
    let (primary, fallback) = (Seen::default(), Seen::default());
    let request = http::Request::post("http://caller.invalid/v1/messages")
        .body(
            r#"{"model":"claude-x","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#
                .to_owned(),
        )
        .unwrap();
    let response = route(primary.clone(), fallback.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(primary.lock().unwrap().is_empty());
    let sent = fallback.lock().unwrap()[0].clone();
    assert_eq!(sent.0, "/v1/messages");
    assert!(
        sent.1.contains(r#""model":"claude-haiku-4-5""#),
        "{}",
        sent.1
    );
    // Its own dialect comes back untranslated.
    let json: serde_json::Value = serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
    assert_eq!(json["type"], "message");
}

/// A caller speaking Messages, served by an OpenAI-compatible target that speaks its API
/// (`speaks(Api::OpenAi)`, as every target a `RouteBuilder` builds): the request goes as
/// a chat request on chat's path, the answer comes back as Anthropic's message, usage in
/// Anthropic's counts. A target built without `speaks` passes such a call over (above).
#[tokio::test]
async fn a_messages_caller_is_served_by_an_openai_target_in_its_own_api() {
    let seen = Seen::default();
    let route = ReadRequestLayer::new().layer(Failover::new([Target::new(
        "openai",
        "http://openai.invalid/v1".parse().unwrap(),
        target(
            200,
            r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
            seen.clone(),
        ),
    )
    .model("gpt-4o-mini")
    .speaks(Api::OpenAi)]));
    let request = http::Request::post("http://caller.invalid/v1/messages")
        .body(
            r#"{"model":"claude-x","max_tokens":9,"system":"Be brief.","messages":[{"role":"user","content":"hi"}]}"#
                .to_owned(),
        )
        .unwrap();
    let response = route.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent.0, "/v1/chat/completions");
    let body: serde_json::Value = serde_json::from_str(&sent.1).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 9, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]})
    );
    let json: serde_json::Value = serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o-mini",
            "content": [{"type": "text", "text": "hello"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 9, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 2},
        })
    );
}
