//! Provider error bodies, as each provider documents them, and what they must classify as.

use std::time::{Duration, SystemTime};

use ballast_classify::{
    ClassifyResponse, HintSource, OutcomeClass, Provider, ResponseView, Verdict,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

struct Fixture {
    name: &'static str,
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    class: OutcomeClass,
    hint: Option<(Duration, HintSource)>,
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// 2025-11-25T12:00:00Z, the `now` every fixture is classified at.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + secs(1_764_072_000)
}

fn fixtures() -> Vec<Fixture> {
    vec![
        // ---- xAI ---------------------------------------------------------------------------
        Fixture {
            name: "xai bad key is a 400",
            status: 400,
            headers: &[JSON],
            body: r#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***yz. You can obtain an API key from https://console.x.ai."}"#,
            class: OutcomeClass::Auth,
            hint: None,
        },
        Fixture {
            name: "xai rate limit with message hint",
            status: 429,
            headers: &[JSON],
            body: r#"{"code":"Some resource has been exhausted","error":"Too many requests. Please try again in 12 seconds."}"#,
            class: OutcomeClass::RateLimited,
            hint: Some((secs(12), HintSource::Message)),
        },
        Fixture {
            name: "xai out of credits is quota, not a rate limit",
            status: 429,
            headers: &[JSON],
            body: r#"{"code":"Some resource has been exhausted","error":"Your team 0f1e has either used all available credits or reached its monthly spending limit. To continue making API requests, please purchase more credits or raise your spending limit."}"#,
            class: OutcomeClass::QuotaExhausted,
            hint: None,
        },
        Fixture {
            name: "xai prompt too long",
            status: 400,
            headers: &[JSON],
            body: r#"{"code":"Client specified an invalid argument","error":"This model's maximum prompt length is 256000 but the request contains 301233 tokens."}"#,
            class: OutcomeClass::ContextTooLong,
            hint: None,
        },
        Fixture {
            name: "xai unknown model",
            status: 404,
            headers: &[JSON],
            body: r#"{"code":"Some requested entity was not found","error":"The model grok-9 does not exist or your team does not have access to it."}"#,
            class: OutcomeClass::BadRequest,
            hint: None,
        },
        Fixture {
            name: "xai 503",
            status: 503,
            headers: &[JSON, ("retry-after", "2")],
            body: r#"{"code":"Internal error","error":"Service temporarily unavailable."}"#,
            class: OutcomeClass::ServerError,
            hint: Some((secs(2), HintSource::RetryAfter)),
        },
        // ---- OpenAI ------------------------------------------------------------------------
        Fixture {
            name: "openai insufficient_quota",
            status: 429,
            headers: &[JSON],
            body: r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            class: OutcomeClass::QuotaExhausted,
            hint: None,
        },
        Fixture {
            name: "openai rate limit: exhausted reset header beats the message",
            status: 429,
            headers: &[
                JSON,
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1m30s"),
                ("x-ratelimit-remaining-tokens", "14000"),
                ("x-ratelimit-reset-tokens", "250ms"),
            ],
            body: r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 20s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            class: OutcomeClass::RateLimited,
            hint: Some((secs(90), HintSource::RateLimitReset)),
        },
        Fixture {
            name: "openai retry-after-ms wins",
            status: 429,
            headers: &[JSON, ("retry-after-ms", "750"), ("retry-after", "1")],
            body: r#"{"error":{"message":"Rate limit reached.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
            class: OutcomeClass::RateLimited,
            hint: Some((Duration::from_millis(750), HintSource::RetryAfterMs)),
        },
        Fixture {
            name: "openai invalid key",
            status: 401,
            headers: &[JSON],
            body: r#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            class: OutcomeClass::Auth,
            hint: None,
        },
        Fixture {
            name: "openai context_length_exceeded",
            status: 400,
            headers: &[JSON],
            body: r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            class: OutcomeClass::ContextTooLong,
            hint: None,
        },
        Fixture {
            name: "openai content policy",
            status: 400,
            headers: &[JSON],
            body: r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#,
            class: OutcomeClass::ContentFiltered,
            hint: None,
        },
        Fixture {
            name: "openai overloaded engine",
            status: 503,
            headers: &[JSON],
            body: r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}}"#,
            class: OutcomeClass::Overloaded,
            hint: None,
        },
        Fixture {
            name: "azure x-ms-retry-after-ms",
            status: 429,
            headers: &[JSON, ("x-ms-retry-after-ms", "4000")],
            body: r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded call rate limit."}}"#,
            class: OutcomeClass::RateLimited,
            hint: Some((secs(4), HintSource::RetryAfterMs)),
        },
        // ---- Anthropic ---------------------------------------------------------------------
        Fixture {
            name: "anthropic overloaded 529",
            status: 529,
            headers: &[JSON],
            body: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            class: OutcomeClass::Overloaded,
            hint: None,
        },
        Fixture {
            name: "anthropic rate limit with retry-after",
            status: 429,
            headers: &[
                JSON,
                ("retry-after", "17"),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2025-11-25T12:00:30Z"),
            ],
            body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
            class: OutcomeClass::RateLimited,
            hint: Some((secs(17), HintSource::RetryAfter)),
        },
        Fixture {
            name: "anthropic rate limit with only reset headers",
            status: 429,
            headers: &[
                JSON,
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2025-11-25T12:00:30Z"),
                ("anthropic-ratelimit-tokens-remaining", "5000"),
                ("anthropic-ratelimit-tokens-reset", "2025-11-25T12:00:50Z"),
            ],
            body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"rate limited"}}"#,
            class: OutcomeClass::RateLimited,
            hint: Some((secs(30), HintSource::AnthropicReset)),
        },
        Fixture {
            name: "anthropic prompt too long",
            status: 400,
            headers: &[JSON],
            body: r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
            class: OutcomeClass::ContextTooLong,
            hint: None,
        },
        Fixture {
            name: "anthropic credit balance",
            status: 400,
            headers: &[JSON],
            body: r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#,
            class: OutcomeClass::QuotaExhausted,
            hint: None,
        },
        Fixture {
            name: "anthropic authentication_error",
            status: 401,
            headers: &[JSON],
            body: r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            class: OutcomeClass::Auth,
            hint: None,
        },
        Fixture {
            name: "anthropic request_too_large",
            status: 413,
            headers: &[JSON],
            body: r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}"#,
            class: OutcomeClass::BadRequest,
            hint: None,
        },
        Fixture {
            name: "anthropic api_error 500",
            status: 500,
            headers: &[JSON],
            body: r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
            class: OutcomeClass::ServerError,
            hint: None,
        },
        // ---- Gemini ------------------------------------------------------------------------
        Fixture {
            name: "gemini RESOURCE_EXHAUSTED with RetryInfo",
            status: 429,
            headers: &[JSON],
            body: r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. Please retry in 34.5s.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34s"}]}}"#,
            class: OutcomeClass::RateLimited,
            hint: Some((secs(34), HintSource::RetryInfo)),
        },
        Fixture {
            name: "gemini quota without RetryInfo",
            status: 429,
            headers: &[JSON],
            body: r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED"}}"#,
            class: OutcomeClass::QuotaExhausted,
            hint: None,
        },
        Fixture {
            name: "gemini API_KEY_INVALID is a 400",
            status: 400,
            headers: &[JSON],
            body: r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
            class: OutcomeClass::Auth,
            hint: None,
        },
        Fixture {
            name: "gemini token count over the limit",
            status: 400,
            headers: &[JSON],
            body: r#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
            class: OutcomeClass::ContextTooLong,
            hint: None,
        },
        Fixture {
            name: "gemini model overloaded",
            status: 503,
            headers: &[JSON],
            body: r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
            class: OutcomeClass::Overloaded,
            hint: None,
        },
        Fixture {
            name: "gemini error array from a streaming endpoint",
            status: 500,
            headers: &[JSON],
            body: r#"[{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}]"#,
            class: OutcomeClass::ServerError,
            hint: None,
        },
        // ---- others ------------------------------------------------------------------------
        Fixture {
            name: "groq 498 capacity",
            status: 498,
            headers: &[JSON],
            body: r#"{"error":{"message":"flex tier capacity exceeded","type":"capacity_exceeded"}}"#,
            class: OutcomeClass::Overloaded,
            hint: None,
        },
        Fixture {
            name: "gateway 502 html page",
            status: 502,
            headers: &[("content-type", "text/html")],
            body: "<html><body><h1>502 Bad Gateway</h1></body></html>",
            class: OutcomeClass::ServerError,
            hint: None,
        },
        Fixture {
            name: "408 from a proxy",
            status: 408,
            headers: &[],
            body: "",
            class: OutcomeClass::Timeout,
            hint: None,
        },
        Fixture {
            name: "402 payment required",
            status: 402,
            headers: &[JSON],
            body: r#"{"error":{"message":"Insufficient credits","code":402}}"#,
            class: OutcomeClass::QuotaExhausted,
            hint: None,
        },
        Fixture {
            name: "retry-after as an HTTP date",
            status: 503,
            headers: &[("retry-after", "Tue, 25 Nov 2025 12:01:00 GMT")],
            body: "",
            class: OutcomeClass::ServerError,
            hint: Some((secs(60), HintSource::RetryAfter)),
        },
        Fixture {
            name: "absurd hint is clamped, not trusted",
            status: 429,
            headers: &[("retry-after", "410400")],
            body: "",
            class: OutcomeClass::RateLimited,
            hint: Some((ballast_classify::MAX_WAIT_HINT, HintSource::RetryAfter)),
        },
        Fixture {
            name: "negative hint is ignored, message used instead",
            status: 429,
            headers: &[JSON, ("retry-after", "-3")],
            body: r#"{"error":{"message":"Please try again in 2s.","type":"requests","code":"rate_limit_exceeded"}}"#,
            class: OutcomeClass::RateLimited,
            hint: Some((secs(2), HintSource::Message)),
        },
        // ---- successes that are not ----------------------------------------------------------
        Fixture {
            name: "error object inside a 200 (OpenRouter style)",
            status: 200,
            headers: &[JSON],
            body: r#"{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"rate limited upstream"}}}"#,
            class: OutcomeClass::RateLimited,
            hint: None,
        },
        Fixture {
            name: "error object inside a 200 without a code",
            status: 200,
            headers: &[JSON],
            body: r#"{"id":"x","error":{"message":"upstream failed","type":"server_error"}}"#,
            class: OutcomeClass::ServerError,
            hint: None,
        },
        Fixture {
            name: "truncated JSON in a 200",
            status: 200,
            headers: &[JSON],
            body: r#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hel"#,
            class: OutcomeClass::InvalidResponse,
            hint: None,
        },
        Fixture {
            name: "html in a 200 (captive portal)",
            status: 200,
            headers: &[("content-type", "text/html; charset=utf-8")],
            body: "<!doctype html><title>Sign in</title>",
            class: OutcomeClass::InvalidResponse,
            hint: None,
        },
        Fixture {
            name: "openai finish_reason content_filter",
            status: 200,
            headers: &[JSON],
            body: r#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5}}"#,
            class: OutcomeClass::ContentFiltered,
            hint: None,
        },
        Fixture {
            name: "anthropic refusal",
            status: 200,
            headers: &[JSON],
            body: r#"{"id":"msg","type":"message","role":"assistant","content":[],"stop_reason":"refusal","usage":{"input_tokens":5,"output_tokens":0}}"#,
            class: OutcomeClass::ContentFiltered,
            hint: None,
        },
        Fixture {
            name: "gemini blocked prompt",
            status: 200,
            headers: &[JSON],
            body: r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5}}"#,
            class: OutcomeClass::ContentFiltered,
            hint: None,
        },
        Fixture {
            name: "a success that talks about errors and filters",
            status: 200,
            headers: &[JSON],
            body: r#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"set \"error\" to null and \"content_filter\" to off"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}"#,
            class: OutcomeClass::Success,
            hint: None,
        },
        Fixture {
            name: "a plain success",
            status: 200,
            headers: &[JSON],
            body: r#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
            class: OutcomeClass::Success,
            hint: None,
        },
    ]
}

fn classify(provider: Provider, fixture: &Fixture) -> Verdict {
    let mut headers = HeaderMap::new();
    for (name, value) in fixture.headers {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let status = StatusCode::from_u16(fixture.status).unwrap();
    let view = ResponseView::new(status, &headers, Some(fixture.body.as_bytes())).with_now(now());
    provider.classify(&view)
}

#[test]
fn every_fixture_classifies_as_documented() {
    let mut failures = Vec::new();
    for fixture in fixtures() {
        // The dialects are read by every stock provider.
        for provider in [
            Provider::XAi,
            Provider::OpenAi,
            Provider::Anthropic,
            Provider::Gemini,
            Provider::OpenAiCompatible,
        ] {
            let verdict = classify(provider, &fixture);
            let hint = verdict.outcome.wait_hint().map(|h| (h.delay(), h.source()));
            if verdict.outcome.class() != fixture.class || hint != fixture.hint {
                failures.push(format!(
                    "{} ({provider:?}): got {:?} {:?}, want {:?} {:?}",
                    fixture.name,
                    verdict.outcome.class(),
                    hint,
                    fixture.class,
                    fixture.hint
                ));
            }
            assert_eq!(
                verdict.outcome.status(),
                Some(StatusCode::from_u16(fixture.status).unwrap())
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn failures_carry_the_provider_detail_and_successes_do_not() {
    for fixture in fixtures() {
        let verdict = classify(Provider::XAi, &fixture);
        if fixture.class == OutcomeClass::Success {
            assert!(verdict.detail.is_none(), "{}", fixture.name);
        }
        let has_error_object = fixture.body.contains("\"error\"");
        if has_error_object && fixture.class != OutcomeClass::Success {
            assert!(verdict.detail.is_some(), "{}", fixture.name);
        }
    }
}

#[test]
fn streaming_responses_classify_from_status_and_headers() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("5"));
    let view = ResponseView::new(StatusCode::TOO_MANY_REQUESTS, &headers, None);
    let verdict = Provider::OpenAi.classify(&view);
    assert_eq!(verdict.outcome.class(), OutcomeClass::RateLimited);
    assert_eq!(verdict.outcome.wait_hint().unwrap().delay(), secs(5));
    let view = ResponseView::new(StatusCode::OK, &headers, None);
    let verdict = Provider::OpenAi.classify(&view);
    assert_eq!(verdict.outcome.class(), OutcomeClass::Success);
    assert_eq!(verdict.outcome.wait_hint(), None, "successes carry no hint");
}
