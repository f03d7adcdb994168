//! Request-side estimates: the worst case a call can cost, before it is sent.

use ballast_classify::RequestFacts;
#[cfg(feature = "tokenizer")]
use ballast_classify::TokenEstimator;

use crate::{CostSource, PriceTable, Rate, Usage, Usd};

/// A tokenizer-backed estimate (feature `tokenizer`): OpenAI's `o200k_base` encoding of the
/// whole body, plus a quarter for the other providers' tokenizers (Anthropic's and xAI's
/// count somewhat more tokens for the same text) and the JSON around the messages.
///
/// Give it to the layer that reads requests
/// (`ReadRequestLayer::estimator`); the facts then carry its count.
///
/// Tighter than [`HalfByteCount`](ballast_classify::HalfByteCount) by about half on English text, at the price of running the
/// tokenizer on every request.
#[cfg(feature = "tokenizer")]
#[derive(Clone)]
pub struct Tokenizer {
    bpe: std::sync::Arc<tiktoken_rs::CoreBPE>,
}

#[cfg(feature = "tokenizer")]
impl Tokenizer {
    /// Loads the encoding (it ships inside the crate; no download).
    pub fn o200k() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let bpe = tiktoken_rs::o200k_base().map_err(|e| e.to_string())?;
        Ok(Self {
            bpe: std::sync::Arc::new(bpe),
        })
    }
}

#[cfg(feature = "tokenizer")]
impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokenizer(o200k_base)")
    }
}

#[cfg(feature = "tokenizer")]
impl TokenEstimator for Tokenizer {
    fn prompt_tokens(&self, body: &[u8]) -> u64 {
        let text = String::from_utf8_lossy(body);
        let tokens = self.bpe.encode_ordinary(&text).len() as u64;
        tokens + tokens.div_ceil(4)
    }
}

/// The most a request can cost: its whole prompt at the uncached input price plus its output
/// cap at the output price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestEstimate {
    /// Prompt tokens, an upper bound.
    pub prompt_tokens: u64,
    /// The output cap: the request's own, or the default.
    pub max_output_tokens: u64,
    /// Whether the cap came from the request (`false`: the default was assumed).
    pub cap_in_request: bool,
    /// The worst-case cost.
    pub cost: Usd,
    /// `Estimated` for a known model, `UnknownPrice` (priced at the fallback) otherwise.
    pub source: CostSource,
}

/// Estimates the worst-case cost of a request from its facts, at its model's price.
pub fn estimate(
    table: &PriceTable,
    facts: &RequestFacts,
    default_max_tokens: u64,
) -> RequestEstimate {
    estimate_at(&table.rate(facts.model()), facts, default_max_tokens)
}

/// [`estimate`] at prices already looked up: the budget guard holds the [`Rate`] from the
/// estimate to the settlement.
pub fn estimate_at(rate: &Rate, facts: &RequestFacts, default_max_tokens: u64) -> RequestEstimate {
    let prompt_tokens = facts.prompt_tokens();
    let cap = facts.output_cap();
    let max_output_tokens = cap.unwrap_or(default_max_tokens);
    let usage = Usage {
        input_tokens: prompt_tokens,
        output_tokens: max_output_tokens,
        ..Usage::default()
    };
    let (cost, source) = rate.cost(&usage);
    RequestEstimate {
        prompt_tokens,
        max_output_tokens,
        cap_in_request: cap.is_some(),
        cost,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_classify::HalfByteCount;
    use bytes::Bytes;

    fn facts(body: &'static [u8]) -> RequestFacts {
        RequestFacts::read(
            "/v1/chat/completions",
            &Bytes::from_static(body),
            &HalfByteCount,
        )
    }

    #[cfg(feature = "tokenizer")]
    #[test]
    fn the_tokenizer_is_tighter_than_the_byte_bound_and_still_above_the_truth() {
        use ballast_classify::TokenEstimator;
        let tokenizer = Tokenizer::o200k().unwrap();
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(50);
        let body =
            format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{text}"}}]}}"#);
        let tight = tokenizer.prompt_tokens(body.as_bytes());
        let loose = HalfByteCount.prompt_tokens(body.as_bytes());
        // 50 sentences of 10 tokens each, give or take the JSON.
        assert!(tight >= 500, "{tight}");
        assert!(tight < loose, "{tight} vs {loose}");
    }

    #[test]
    fn worst_case_for_grok_code_fast_1() {
        let table = PriceTable::builtin();
        let body = br#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}],"max_tokens":1000}"#;
        let e = estimate(&table, &facts(body), 500);
        assert_eq!(e.prompt_tokens, (body.len() as u64).div_ceil(2));
        assert_eq!(e.max_output_tokens, 1000);
        assert!(e.cap_in_request);
        let expected = "0.20".parse::<Usd>().unwrap().per_million(e.prompt_tokens)
            + "1.50".parse::<Usd>().unwrap().per_million(1000);
        assert_eq!(e.cost, expected);
        assert_eq!(e.source, CostSource::Estimated);

        let e = estimate(&table, &facts(br#"{"model":"grok-code-fast-1"}"#), 500);
        assert_eq!((e.max_output_tokens, e.cap_in_request), (500, false));
        let unknown = facts(body).with_model("who-knows");
        let e = estimate(&table, &unknown, 500);
        assert_eq!(e.source, CostSource::UnknownPrice);
        let usage = Usage {
            input_tokens: e.prompt_tokens,
            output_tokens: e.max_output_tokens,
            ..Usage::default()
        };
        assert_eq!(e.cost, table.rate(None).cost(&usage).0);
    }
}
