//! The provider dialects: success and error bodies, and the headers that go with them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::Flavor;

/// Token counts of one answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) prompt: u64,
    pub(crate) cached: u64,
    /// Output tokens of the answer itself.
    pub(crate) completion: u64,
    /// Output tokens of reasoning, before it.
    pub(crate) reasoning: u64,
    pub(crate) ticks: u64,
    pub(crate) hit_cap: bool,
}

/// The errors the simulator can answer with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WireError {
    RateLimited { hint: Option<Duration> },
    Quota,
    BadKey,
    BadRequest(&'static str),
    ContextTooLong { tokens: u64, window: u32 },
    Server(u16),
    ErrorInOk,
}

const FILLER: &str =
    "The quick brown fox jumps over the lazy dog while the compiler checks every borrow. ";

fn text_of(tokens: u64) -> String {
    // About four characters per token, as tokenizers average on English text.
    let len = usize::try_from(tokens.saturating_mul(4))
        .unwrap_or(usize::MAX)
        .min(1 << 20);
    FILLER.chars().cycle().take(len).collect()
}

/// An answer's body: its text (or, with `tool_call`, a call to that tool, its input
/// [`TOOL_INPUT`](crate::tools::TOOL_INPUT)) and its usage, in `flavor`'s API.
pub(crate) fn success_body(
    flavor: Flavor,
    responses: bool,
    id: u64,
    model: &str,
    usage: Usage,
    tool_call: Option<&str>,
) -> Bytes {
    let text = text_of(usage.completion);
    if responses {
        return Bytes::from(responses_body(id, model, &usage, &text).to_string());
    }
    let body = match flavor {
        Flavor::XAi | Flavor::OpenAi => {
            let mut usage_json = chat_usage(flavor, &usage);
            if flavor == Flavor::XAi {
                usage_json["cost_in_usd_ticks"] = json!(usage.ticks);
            }
            let (message, finish) = match tool_call {
                Some(name) => (
                    json!({"role": "assistant", "content": null, "tool_calls": [{
                        "id": format!("call_sim{id}"),
                        "type": "function",
                        "function": {"name": name, "arguments": crate::tools::TOOL_INPUT},
                    }]}),
                    "tool_calls",
                ),
                None => (
                    json!({"role": "assistant", "content": text}),
                    if usage.hit_cap { "length" } else { "stop" },
                ),
            };
            json!({
                "id": format!("sim-{id}"),
                "object": "chat.completion",
                "created": 1_764_000_000u64,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": message,
                    "finish_reason": finish,
                }],
                "usage": usage_json,
                "system_fingerprint": "fp_sim",
            })
        }
        Flavor::Anthropic => json!({
            "id": format!("msg_sim{id}"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": match tool_call {
                Some(name) => json!([{
                    "type": "tool_use",
                    "id": format!("toolu_sim{id}"),
                    "name": name,
                    "input": serde_json::from_str::<Value>(crate::tools::TOOL_INPUT)
                        .unwrap_or_default(),
                }]),
                None => json!([{"type": "text", "text": text}]),
            },
            "stop_reason": match (tool_call, usage.hit_cap) {
                (Some(_), _) => "tool_use",
                (None, true) => "max_tokens",
                (None, false) => "end_turn",
            },
            "stop_sequence": null,
            // Anthropic counts cache reads apart from input_tokens.
            "usage": {
                "input_tokens": usage.prompt - usage.cached,
                "cache_read_input_tokens": usage.cached,
                "cache_creation_input_tokens": 0,
                "output_tokens": usage.completion + usage.reasoning,
            },
        }),
        Flavor::Gemini => json!({
            "candidates": [{
                "content": {"parts": [match tool_call {
                    Some(name) => gemini_call(id, name),
                    None => json!({"text": text}),
                }], "role": "model"},
                "finishReason": if usage.hit_cap && tool_call.is_none() { "MAX_TOKENS" } else { "STOP" },
                "index": 0,
            }],
            "usageMetadata": gemini_usage(&usage, usage.completion),
            "modelVersion": model,
            "responseId": format!("sim{id}"),
        }),
    };
    Bytes::from(body.to_string())
}

/// A legacy Completions API answer (`object: "text_completion"`): its text in
/// `choices[0].text`, and chat's usage.
pub(crate) fn legacy_body(id: u64, model: &str, usage: Usage) -> Bytes {
    let text = text_of(usage.completion);
    let usage_json = chat_usage(Flavor::OpenAi, &usage);
    Bytes::from(
        json!({
            "id": format!("cmpl-sim{id}"),
            "object": "text_completion",
            "created": 1_764_000_000u64,
            "model": model,
            "choices": [{
                "text": text,
                "index": 0,
                "logprobs": null,
                "finish_reason": if usage.hit_cap { "length" } else { "stop" },
            }],
            "usage": usage_json,
        })
        .to_string(),
    )
}

/// A Gemini `functionCall` part calling `name` with [`TOOL_INPUT`](crate::TOOL_INPUT),
/// signed as Gemini 3 signs a step.
pub(crate) fn gemini_call(id: u64, name: &str) -> Value {
    json!({
        "functionCall": {
            "name": name,
            "args": serde_json::from_str::<Value>(crate::tools::TOOL_INPUT).unwrap_or_default(),
        },
        "thoughtSignature": format!("{}{id}", crate::tools::THOUGHT_SIGNATURE),
    })
}

/// A chat usage object: xAI reports reasoning beside `completion_tokens` (its total
/// counts them), OpenAI inside.
pub(crate) fn chat_usage(flavor: Flavor, usage: &Usage) -> Value {
    let completion = match flavor {
        Flavor::XAi => usage.completion,
        _ => usage.completion + usage.reasoning,
    };
    json!({
        "prompt_tokens": usage.prompt,
        "completion_tokens": completion,
        "total_tokens": usage.prompt + usage.completion + usage.reasoning,
        "prompt_tokens_details": {"cached_tokens": usage.cached},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    })
}

/// Gemini's `usageMetadata` with `candidates` answer tokens so far: thoughts apart.
pub(crate) fn gemini_usage(usage: &Usage, candidates: u64) -> Value {
    let mut metadata = json!({
        "promptTokenCount": usage.prompt,
        "cachedContentTokenCount": usage.cached,
        "candidatesTokenCount": candidates,
        "totalTokenCount": usage.prompt + candidates + usage.reasoning,
    });
    if usage.reasoning > 0 {
        metadata["thoughtsTokenCount"] = json!(usage.reasoning);
    }
    metadata
}

/// A Responses API answer (`object: "response"`), whole: its text in one message, and its
/// usage (`input_tokens` counts cached ones too, as OpenAI's does).
pub(crate) fn responses_body(id: u64, model: &str, usage: &Usage, text: &str) -> Value {
    json!({
        "id": format!("resp_sim{id}"),
        "object": "response",
        "created_at": 1_764_000_000u64,
        "status": if usage.hit_cap { "incomplete" } else { "completed" },
        "incomplete_details": if usage.hit_cap { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "model": model,
        "output": [{
            "type": "message",
            "id": format!("msg_sim{id}"),
            "status": if usage.hit_cap { "incomplete" } else { "completed" },
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }],
        "usage": {
            "input_tokens": usage.prompt,
            "input_tokens_details": {"cached_tokens": usage.cached},
            "output_tokens": usage.completion + usage.reasoning,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning},
            "total_tokens": usage.prompt + usage.completion + usage.reasoning,
        },
    })
}

fn secs_text(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{}", secs as u64)
    } else {
        format!("{secs:.3}")
    }
}

/// An error answer: status, body, and any hint headers.
pub(crate) fn error_response(flavor: Flavor, error: WireError) -> Response<Full<Bytes>> {
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    let (status, body): (u16, Value) = match (flavor, error) {
        (_, WireError::ErrorInOk) => (
            200,
            json!({"error": {"message": "upstream provider error", "type": "server_error", "code": 502}}),
        ),
        (Flavor::XAi, WireError::RateLimited { hint }) => {
            let message = match hint {
                Some(h) => format!(
                    "Too many requests. Please try again in {} seconds.",
                    secs_text(h)
                ),
                None => "Too many requests.".to_owned(),
            };
            (
                429,
                json!({"code": "Some resource has been exhausted", "error": message}),
            )
        }
        (Flavor::OpenAi, WireError::RateLimited { hint }) => {
            let mut message = "Rate limit reached for requests per min (RPM).".to_owned();
            if let Some(h) = hint {
                message.push_str(&format!(" Please try again in {}s.", secs_text(h)));
                headers.push(("x-ratelimit-reset-requests", format!("{}s", secs_text(h))));
                headers.push(("x-ratelimit-remaining-requests", "0".to_owned()));
            }
            (
                429,
                json!({"error": {"message": message, "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
            )
        }
        (Flavor::Anthropic, WireError::RateLimited { hint }) => {
            if let Some(h) = hint {
                headers.push(("retry-after", format!("{}", h.as_secs_f64().ceil() as u64)));
            }
            (
                429,
                json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your per-minute rate limit."}}),
            )
        }
        (Flavor::Gemini, WireError::RateLimited { hint }) => {
            let mut details = vec![
                json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []}),
            ];
            if let Some(h) = hint {
                details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{}s", secs_text(h))}));
            }
            (
                429,
                json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED", "details": details}}),
            )
        }
        (Flavor::XAi, WireError::Quota) => (
            429,
            json!({"code": "Some resource has been exhausted", "error": "Your team sim-team has either used all available credits or reached its monthly spending limit. To continue making API requests, please purchase more credits or raise your spending limit."}),
        ),
        (Flavor::OpenAi, WireError::Quota) => (
            429,
            json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
        ),
        (Flavor::Anthropic, WireError::Quota) => (
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}),
        ),
        (Flavor::Gemini, WireError::Quota) => (
            429,
            json!({"error": {"code": 429, "message": "You exceeded your current quota, please check your plan and billing details.", "status": "RESOURCE_EXHAUSTED"}}),
        ),
        (Flavor::XAi, WireError::BadKey) => (
            400,
            json!({"code": "Client specified an invalid argument", "error": "Incorrect API key provided: xa***im. You can obtain an API key from https://console.x.ai."}),
        ),
        (Flavor::OpenAi, WireError::BadKey) => (
            401,
            json!({"error": {"message": "Incorrect API key provided: sk-***im. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        ),
        (Flavor::Anthropic, WireError::BadKey) => (
            401,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        ),
        (Flavor::Gemini, WireError::BadKey) => (
            400,
            json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}),
        ),
        (flavor, WireError::BadRequest(message)) => (400, invalid_request(flavor, message)),
        (flavor, WireError::ContextTooLong { tokens, window }) => {
            let message = match flavor {
                Flavor::XAi => format!(
                    "This model's maximum prompt length is {window} but the request contains {tokens} tokens."
                ),
                Flavor::OpenAi => format!(
                    "This model's maximum context length is {window} tokens. However, your messages resulted in {tokens} tokens."
                ),
                Flavor::Anthropic => {
                    format!("prompt is too long: {tokens} tokens > {window} maximum")
                }
                Flavor::Gemini => format!(
                    "The input token count ({tokens}) exceeds the maximum number of tokens allowed ({window})."
                ),
            };
            let mut body = invalid_request(flavor, &message);
            if flavor == Flavor::OpenAi {
                body["error"]["code"] = json!("context_length_exceeded");
            }
            (400, body)
        }
        (flavor, WireError::Server(status)) => (status, server_error(flavor, status)),
    };
    let is_html = status == 502 && body.is_null();
    let mut response = Response::new(Full::new(if is_html {
        Bytes::from_static(b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>")
    } else {
        Bytes::from(body.to_string())
    }));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if is_html {
        "text/html"
    } else {
        "application/json"
    };
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn invalid_request(flavor: Flavor, message: &str) -> Value {
    match flavor {
        Flavor::XAi => json!({"code": "Client specified an invalid argument", "error": message}),
        Flavor::OpenAi => {
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
        }
        Flavor::Anthropic => {
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
        }
        Flavor::Gemini => {
            json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})
        }
    }
}

/// A 5xx body; `Null` for the load balancer's HTML 502 page.
fn server_error(flavor: Flavor, status: u16) -> Value {
    match (flavor, status) {
        (_, 502) => Value::Null,
        (Flavor::Anthropic, 529) => {
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        }
        (Flavor::Anthropic, _) => {
            json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
        }
        (Flavor::Gemini, 503) => {
            json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}})
        }
        (Flavor::Gemini, _) => {
            json!({"error": {"code": status, "message": "An internal error has occurred.", "status": "INTERNAL"}})
        }
        (Flavor::XAi, _) => {
            json!({"code": "Internal error", "error": "Service temporarily unavailable. Please try again later."})
        }
        (Flavor::OpenAi, _) => {
            json!({"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null}})
        }
    }
}
