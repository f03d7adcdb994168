//! [`Usage`]: token counts from a response body, in every provider's convention.

use ballast_classify::{InspectBody, json};
use serde::Deserialize;

use crate::Usd;

/// What one response used, normalised: the four kinds of tokens are disjoint, so their prices
/// can simply be added.
///
/// | provider | field | convention |
/// |---|---|---|
/// | OpenAI (chat) | `usage.prompt_tokens`, `.prompt_tokens_details.cached_tokens`, `.completion_tokens` | cached tokens are **inside** prompt tokens; reasoning tokens inside completion tokens |
/// | OpenAI (responses) | `usage.input_tokens`, `.input_tokens_details.cached_tokens`, `.output_tokens` | as above |
/// | xAI | as OpenAI chat, plus `usage.cost_in_usd_ticks` | reasoning tokens are **outside** completion tokens when `total_tokens` says so |
/// | Anthropic | `usage.input_tokens`, `.cache_read_input_tokens`, `.cache_creation_input_tokens`, `.output_tokens` | cache reads and writes are **outside** input tokens |
/// | Gemini | `usageMetadata.promptTokenCount`, `.cachedContentTokenCount`, `.candidatesTokenCount`, `.thoughtsTokenCount` | cached inside prompt; thoughts outside candidates |
///
/// Counting cached tokens twice (once in the prompt, once as cached) is the usual bug this
/// normalisation exists to avoid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens billed at the full input price.
    pub input_tokens: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the cache (Anthropic bills them apart).
    pub cache_write_tokens: u64,
    /// Output tokens, reasoning included.
    pub output_tokens: u64,
    /// Of the output tokens, how many were reasoning.
    pub reasoning_tokens: u64,
    /// The cost the provider reported, when it did (xAI's `cost_in_usd_ticks`).
    pub reported_cost: Option<Usd>,
}

impl Usage {
    /// All prompt tokens, whatever their price.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cached_input_tokens)
            .saturating_add(self.cache_write_tokens)
    }

    /// The usage of `response`: the one an inner layer already read (a `Usage` in the
    /// response's extensions), else read from its buffered body. The first Ballast layer to
    /// read it (the attempt logger, in the facade's order) stores it there, so a 2 KB body is
    /// parsed once per attempt, not once per layer.
    pub fn of_response<B: InspectBody>(response: &http::Response<B>) -> Option<Self> {
        if let Some(usage) = response.extensions().get::<Usage>() {
            return Some(*usage);
        }
        response.body().inspect().and_then(Self::from_body)
    }

    /// Reads usage from a response body, parsing only the usage object; `None` when the
    /// body has none or it cannot be read.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        if let Some(raw) = json::top_level(body, "usage") {
            let usage: RawUsage = serde_json::from_slice(raw).ok()?;
            return Some(usage.normalise());
        }
        let raw = json::top_level(body, "usageMetadata")?;
        let gemini: GeminiUsage = serde_json::from_slice(raw).ok()?;
        Some(gemini.normalise())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawUsage {
    // OpenAI chat, xAI
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    cost_in_usd_ticks: Option<u64>,
    // Anthropic, OpenAI responses
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

impl RawUsage {
    fn normalise(self) -> Usage {
        let reported_cost = self.cost_in_usd_ticks.map(Usd::from_xai_ticks);
        if let Some(prompt) = self.prompt_tokens {
            let cached = self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0)
                .min(prompt);
            let completion = self.completion_tokens.unwrap_or(0);
            let reasoning = self
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0);
            // OpenAI counts reasoning inside completion tokens; xAI reports it beside them,
            // and its total says so.
            let reasoning_outside = reasoning > 0
                && self.total_tokens
                    == prompt
                        .checked_add(completion)
                        .and_then(|n| n.checked_add(reasoning));
            return Usage {
                input_tokens: prompt - cached,
                cached_input_tokens: cached,
                cache_write_tokens: 0,
                output_tokens: if reasoning_outside {
                    completion.saturating_add(reasoning)
                } else {
                    completion
                },
                reasoning_tokens: reasoning,
                reported_cost,
            };
        }
        let input = self.input_tokens.unwrap_or(0);
        let output = self.output_tokens.unwrap_or(0);
        if let Some(details) = self.input_tokens_details {
            // OpenAI's responses API: cached tokens inside input tokens.
            let cached = details.cached_tokens.unwrap_or(0).min(input);
            return Usage {
                input_tokens: input - cached,
                cached_input_tokens: cached,
                cache_write_tokens: 0,
                output_tokens: output,
                reasoning_tokens: self
                    .output_tokens_details
                    .and_then(|d| d.reasoning_tokens)
                    .unwrap_or(0),
                reported_cost,
            };
        }
        // Anthropic: cache reads and writes beside input tokens.
        Usage {
            input_tokens: input,
            cached_input_tokens: self.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: self.cache_creation_input_tokens.unwrap_or(0),
            output_tokens: output,
            reasoning_tokens: 0,
            reported_cost,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GeminiUsage {
    prompt_token_count: u64,
    cached_content_token_count: u64,
    candidates_token_count: u64,
    thoughts_token_count: u64,
}

impl GeminiUsage {
    fn normalise(self) -> Usage {
        let cached = self.cached_content_token_count.min(self.prompt_token_count);
        Usage {
            input_tokens: self.prompt_token_count - cached,
            cached_input_tokens: cached,
            cache_write_tokens: 0,
            output_tokens: self
                .candidates_token_count
                .saturating_add(self.thoughts_token_count),
            reasoning_tokens: self.thoughts_token_count,
            reported_cost: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_counts_cached_inside_prompt() {
        let body = br#"{"id":"c","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300,"prompt_tokens_details":{"cached_tokens":800},"completion_tokens_details":{"reasoning_tokens":120}}}"#;
        let usage = Usage::from_body(body).unwrap();
        assert_eq!(usage.input_tokens, 200);
        assert_eq!(usage.cached_input_tokens, 800);
        assert_eq!(
            usage.output_tokens, 300,
            "reasoning is inside completion for OpenAI"
        );
        assert_eq!(usage.reasoning_tokens, 120);
        assert_eq!(usage.prompt_tokens(), 1000);
        assert_eq!(usage.reported_cost, None);
    }

    #[test]
    fn xai_reports_cost_and_reasoning_beside_completion() {
        let body = br#"{"usage":{"prompt_tokens":37,"completion_tokens":11,"total_tokens":714,"prompt_tokens_details":{"cached_tokens":5},"completion_tokens_details":{"reasoning_tokens":666},"cost_in_usd_ticks":10170000}}"#;
        let usage = Usage::from_body(body).unwrap();
        assert_eq!(usage.input_tokens, 32);
        assert_eq!(usage.cached_input_tokens, 5);
        assert_eq!(usage.output_tokens, 677);
        assert_eq!(usage.reported_cost, Some(Usd::from_xai_ticks(10_170_000)));
    }

    #[test]
    fn anthropic_counts_cache_beside_input() {
        let body = br#"{"id":"msg","type":"message","content":[{"type":"text","text":"\"usage\": fake"}],"usage":{"input_tokens":50,"cache_read_input_tokens":900,"cache_creation_input_tokens":100,"output_tokens":40}}"#;
        let usage = Usage::from_body(body).unwrap();
        assert_eq!(usage.input_tokens, 50);
        assert_eq!(usage.cached_input_tokens, 900);
        assert_eq!(usage.cache_write_tokens, 100);
        assert_eq!(usage.output_tokens, 40);
        assert_eq!(usage.prompt_tokens(), 1050);
    }

    #[test]
    fn openai_responses_api() {
        let body = br#"{"usage":{"input_tokens":500,"input_tokens_details":{"cached_tokens":100},"output_tokens":70,"output_tokens_details":{"reasoning_tokens":30},"total_tokens":570}}"#;
        let usage = Usage::from_body(body).unwrap();
        assert_eq!((usage.input_tokens, usage.cached_input_tokens), (400, 100));
        assert_eq!((usage.output_tokens, usage.reasoning_tokens), (70, 30));
    }

    #[test]
    fn gemini_usage_metadata() {
        let body = br#"{"candidates":[],"usageMetadata":{"promptTokenCount":1200,"cachedContentTokenCount":1000,"candidatesTokenCount":80,"thoughtsTokenCount":20,"totalTokenCount":1300}}"#;
        let usage = Usage::from_body(body).unwrap();
        assert_eq!((usage.input_tokens, usage.cached_input_tokens), (200, 1000));
        assert_eq!((usage.output_tokens, usage.reasoning_tokens), (100, 20));
    }

    #[test]
    fn missing_or_broken_usage() {
        assert_eq!(Usage::from_body(br#"{"choices":[]}"#), None);
        assert_eq!(Usage::from_body(br#"{"usage":"none"}"#), None);
        assert_eq!(Usage::from_body(b"not json"), None);
        let odd = Usage::from_body(
            br#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":9}}}"#,
        )
        .unwrap();
        assert_eq!(
            (odd.input_tokens, odd.cached_input_tokens),
            (0, 5),
            "cached never exceeds prompt"
        );
    }

    #[test]
    fn a_usage_read_by_an_inner_layer_is_not_read_again() {
        let body = br#"{"usage":{"prompt_tokens":10,"completion_tokens":5}}"#;
        let mut response = http::Response::new(&body[..]);
        assert_eq!(Usage::of_response(&response).unwrap().output_tokens, 5);
        let stored = Usage {
            output_tokens: 7,
            ..Usage::default()
        };
        response.extensions_mut().insert(stored);
        assert_eq!(
            Usage::of_response(&response),
            Some(stored),
            "the extension wins"
        );
    }
}
