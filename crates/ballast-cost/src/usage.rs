//! [`Usage`]: token counts from a response body, in every provider's convention.

use ballast_classify::json::{self, Malformed};
use ballast_classify::{
    InspectBody, StreamEnd, StreamSummary, StreamUsage, UsageDetails, UsageField, UsageFields,
};

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
    /// What a streamed answer is counted at, at its end: the usage it reported when it
    /// ended whole; otherwise no less than what was seen: the reported prompt (or
    /// `prompt_bound`, the request's estimate) and the larger of the reported output and
    /// [`StreamSummary::output_bound`] (content delivered, and two events in flight). Never
    /// zero for a stream that was sent, never the untouched worst case. What is charged is
    /// [`Charge::of_stream`](crate::Charge::of_stream)'s: this, for a stream read to its
    /// end; the worst case for one left before it (what was seen does not bound unseen
    /// reasoning).
    pub fn of_stream(summary: &StreamSummary, prompt_bound: u64) -> Self {
        let whole = summary.end == StreamEnd::Finished;
        match summary.usage {
            Some(usage) if whole => Self::from_counts(&usage),
            Some(usage) => {
                let mut counted = Self::from_counts(&usage);
                if usage.prompt == 0 {
                    counted.input_tokens = prompt_bound;
                }
                counted.output_tokens = counted.output_tokens.max(summary.output_bound());
                counted
            }
            None => Self {
                input_tokens: prompt_bound,
                output_tokens: summary.output_bound(),
                ..Self::default()
            },
        }
    }

    /// Token counts a stream reported, in this type's split (uncached prompt apart).
    pub fn from_counts(counts: &StreamUsage) -> Self {
        let cached = counts.cached.min(counts.prompt);
        let write = counts.cache_write.min(counts.prompt - cached);
        Self {
            input_tokens: counts.prompt - cached - write,
            cached_input_tokens: cached,
            cache_write_tokens: write,
            output_tokens: counts.completion,
            ..Self::default()
        }
    }

    /// All prompt tokens, whatever their price.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cached_input_tokens)
            .saturating_add(self.cache_write_tokens)
    }

    /// The usage of `response`: the one an inner layer already read (a `Usage` in the
    /// response's extensions), else [`of_body`](Self::of_body). The first Ballast layer to
    /// read it (the attempt logger, in the facade's order) stores it there, so a 2 KB body
    /// is read once per attempt, not once per layer.
    pub fn of_response<B: InspectBody>(response: &http::Response<B>) -> Option<Self> {
        if let Some(usage) = response.extensions().get::<Usage>() {
            return Some(*usage);
        }
        Self::of_body(response.body())
    }

    /// The usage in a buffered body: the object at the
    /// [`UsageSpan`](ballast_classify::UsageSpan) the classifier noted when there is one,
    /// else found by a walk of the body.
    pub fn of_body<B: InspectBody>(body: &B) -> Option<Self> {
        let bytes = body.inspect()?;
        let noted = body.usage_span().and_then(|span| {
            let object = span.slice(bytes)?;
            match span.fields() {
                // Read on the classifier's pass: no second walk.
                Some(fields) => Some(RawUsage::from_fields(fields).normalise()),
                None => Self::from_object(span.key(), object),
            }
        });
        // A span that does not read (a body rewritten since) falls back to the walk.
        noted.or_else(|| Self::from_body(bytes))
    }

    /// Reads usage from a response body, reading only the usage object; `None` when the
    /// body has none or it cannot be read.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        if let Some(raw) = json::top_level(body, "usage") {
            return Self::from_object("usage", raw);
        }
        Self::from_object("usageMetadata", json::top_level(body, "usageMetadata")?)
    }

    /// Reads the usage object found under the top-level `key` (`"usage"`, or Gemini's
    /// `"usageMetadata"`).
    fn from_object(key: &str, object: &[u8]) -> Option<Self> {
        if key == "usageMetadata" {
            return GeminiUsage::read(object).map(GeminiUsage::normalise);
        }
        RawUsage::read(object).map(RawUsage::normalise)
    }
}

/// A token count: a JSON unsigned integer, `null` for none; anything else is not a usage.
fn count(raw: &[u8]) -> Result<Option<u64>, Malformed> {
    if raw == b"null" {
        return Ok(None);
    }
    json::unsigned(raw).map(Some).ok_or(Malformed)
}

/// The usage object's fields, read by hand: a few integers out of a small object, cheaper
/// than a derived parse on every response.
#[derive(Debug, Default, PartialEq)]
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

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

impl Details {
    fn read(raw: &[u8]) -> Result<Option<Self>, Malformed> {
        if raw == b"null" {
            return Ok(None);
        }
        let mut details = Self::default();
        for member in json::members(raw) {
            let (key, value) = member?;
            match key {
                b"cached_tokens" => details.cached_tokens = count(value)?,
                b"reasoning_tokens" => details.reasoning_tokens = count(value)?,
                _ => {}
            }
        }
        Ok(Some(details))
    }
}

impl RawUsage {
    /// The counts the classifier read on its pass, in the member walk's terms.
    fn from_fields(fields: &UsageFields) -> Self {
        let details = |of| {
            fields.has_details(of).then(|| Details {
                cached_tokens: fields.get(UsageField::Cached(of)),
                reasoning_tokens: fields.get(UsageField::Reasoning(of)),
            })
        };
        Self {
            prompt_tokens: fields.get(UsageField::PromptTokens),
            completion_tokens: fields.get(UsageField::CompletionTokens),
            total_tokens: fields.get(UsageField::TotalTokens),
            prompt_tokens_details: details(UsageDetails::PromptTokens),
            completion_tokens_details: details(UsageDetails::CompletionTokens),
            cost_in_usd_ticks: fields.get(UsageField::CostInUsdTicks),
            input_tokens: fields.get(UsageField::InputTokens),
            output_tokens: fields.get(UsageField::OutputTokens),
            input_tokens_details: details(UsageDetails::InputTokens),
            output_tokens_details: details(UsageDetails::OutputTokens),
            cache_read_input_tokens: fields.get(UsageField::CacheReadInputTokens),
            cache_creation_input_tokens: fields.get(UsageField::CacheCreationInputTokens),
        }
    }

    /// The object's fields: in one pass when it has the usual shape, else member by member.
    fn read(object: &[u8]) -> Option<Self> {
        match Self::read_one_pass(object) {
            Some(usage) => Some(usage),
            None => Self::read_members(object),
        }
    }

    /// One pass over an object of the usual shape: values unsigned integers, `null`, or
    /// (under the `*_details` keys) objects of those. `None` for
    /// anything else, which [`read_members`](Self::read_members) then reads: the answer is
    /// always what it gives (property-tested). Written by hand because it runs on every
    /// response: the member walk skips each value, then reads it again, and costs about
    /// 4 900 instructions on a 200-byte usage object (`benches/instructions.sh`).
    fn read_one_pass(object: &[u8]) -> Option<Self> {
        let mut usage = Self::default();
        let mut at = Cursor {
            bytes: object,
            i: 0,
        };
        at.expect(b'{')?;
        if at.peek_past_ws()? == b'}' {
            return Some(usage);
        }
        loop {
            let key = at.key()?;
            let slot = match key {
                b"prompt_tokens" => Slot::Count(&mut usage.prompt_tokens),
                b"completion_tokens" => Slot::Count(&mut usage.completion_tokens),
                b"total_tokens" => Slot::Count(&mut usage.total_tokens),
                b"cost_in_usd_ticks" => Slot::Count(&mut usage.cost_in_usd_ticks),
                b"input_tokens" => Slot::Count(&mut usage.input_tokens),
                b"output_tokens" => Slot::Count(&mut usage.output_tokens),
                b"cache_read_input_tokens" => Slot::Count(&mut usage.cache_read_input_tokens),
                b"cache_creation_input_tokens" => {
                    Slot::Count(&mut usage.cache_creation_input_tokens)
                }
                b"prompt_tokens_details" => Slot::Details(&mut usage.prompt_tokens_details),
                b"completion_tokens_details" => Slot::Details(&mut usage.completion_tokens_details),
                b"input_tokens_details" => Slot::Details(&mut usage.input_tokens_details),
                b"output_tokens_details" => Slot::Details(&mut usage.output_tokens_details),
                _ => Slot::Ignored,
            };
            match slot {
                Slot::Count(field) => *field = at.count()?,
                Slot::Ignored => {
                    at.count()?;
                }
                Slot::Details(field) => *field = at.details()?,
            }
            if !at.next_member()? {
                break;
            }
        }
        at.end().then_some(usage)
    }

    /// Member by member, any valid JSON: the reference [`read_one_pass`](Self::read_one_pass)
    /// is checked against.
    fn read_members(object: &[u8]) -> Option<Self> {
        let mut usage = Self::default();
        for member in json::members(object) {
            let (key, value) = member.ok()?;
            let result = match key {
                b"prompt_tokens" => count(value).map(|n| usage.prompt_tokens = n),
                b"completion_tokens" => count(value).map(|n| usage.completion_tokens = n),
                b"total_tokens" => count(value).map(|n| usage.total_tokens = n),
                b"cost_in_usd_ticks" => count(value).map(|n| usage.cost_in_usd_ticks = n),
                b"input_tokens" => count(value).map(|n| usage.input_tokens = n),
                b"output_tokens" => count(value).map(|n| usage.output_tokens = n),
                b"cache_read_input_tokens" => {
                    count(value).map(|n| usage.cache_read_input_tokens = n)
                }
                b"cache_creation_input_tokens" => {
                    count(value).map(|n| usage.cache_creation_input_tokens = n)
                }
                b"prompt_tokens_details" => {
                    Details::read(value).map(|d| usage.prompt_tokens_details = d)
                }
                b"completion_tokens_details" => {
                    Details::read(value).map(|d| usage.completion_tokens_details = d)
                }
                b"input_tokens_details" => {
                    Details::read(value).map(|d| usage.input_tokens_details = d)
                }
                b"output_tokens_details" => {
                    Details::read(value).map(|d| usage.output_tokens_details = d)
                }
                _ => Ok(()),
            };
            result.ok()?;
        }
        Some(usage)
    }
}

/// Where a member's value goes in [`RawUsage::read_one_pass`].
enum Slot<'a> {
    Count(&'a mut Option<u64>),
    Details(&'a mut Option<Details>),
    Ignored,
}

/// A position in a usage object read in one pass; every step `None` when the bytes are not
/// of the usual shape.
struct Cursor<'a> {
    bytes: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.bytes.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn peek_past_ws(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.i).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek_past_ws()? == byte).then(|| self.i += 1)
    }

    /// A key (its text between the quotes, escapes as written, as the member walk gives it)
    /// and its colon.
    fn key(&mut self) -> Option<&'a [u8]> {
        if self.peek_past_ws()? != b'"' {
            return None;
        }
        let bytes = self.bytes;
        let end = json::string_end(bytes, self.i)?;
        let key = &bytes[self.i + 1..end];
        self.i = end + 1;
        self.expect(b':')?;
        Some(key)
    }

    /// An unsigned integer that fits a `u64` in at most 20 digits, or `null`. Inlined: it
    /// runs for every count of every answer (`benches/instructions.sh`: the facade about
    /// 200 instructions fewer a request).
    #[inline(always)]
    fn count(&mut self) -> Option<Option<u64>> {
        self.skip_ws();
        let rest = self.bytes.get(self.i..)?;
        let mut n = 0u64;
        let mut digits = 0;
        while let Some(&byte) = rest.get(digits) {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(digit))?;
            digits += 1;
        }
        match digits {
            0 if rest.starts_with(b"null") => {
                self.i += 4;
                self.value_ends().then_some(None)
            }
            1..=20 => {
                self.i += digits;
                self.value_ends().then_some(Some(n))
            }
            _ => None,
        }
    }

    /// Whether the value just read ends here (white space, a comma or a closing brace).
    fn value_ends(&self) -> bool {
        matches!(
            self.bytes.get(self.i),
            Some(b',' | b'}') | Some(b' ' | b'\t' | b'\n' | b'\r')
        )
    }

    /// A `*_details` object of counts, or `null`.
    fn details(&mut self) -> Option<Option<Details>> {
        if self.peek_past_ws()? == b'n' {
            return self.count().map(|_| None);
        }
        self.expect(b'{')?;
        let mut details = Details::default();
        if self.peek_past_ws()? == b'}' {
            self.i += 1;
            return Some(Some(details));
        }
        loop {
            let key = self.key()?;
            let value = self.count()?;
            match key {
                b"cached_tokens" => details.cached_tokens = value,
                b"reasoning_tokens" => details.reasoning_tokens = value,
                _ => {}
            }
            if !self.next_member()? {
                return Some(Some(details));
            }
        }
    }

    /// Past a comma (`true`: another member follows) or a closing brace (`false`).
    fn next_member(&mut self) -> Option<bool> {
        let byte = self.peek_past_ws()?;
        self.i += 1;
        match byte {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    /// Whether nothing but white space follows.
    fn end(&mut self) -> bool {
        self.skip_ws();
        self.i == self.bytes.len()
    }
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
            return Usage {
                input_tokens: prompt - cached,
                cached_input_tokens: cached,
                cache_write_tokens: 0,
                output_tokens: ballast_classify::chat_output_tokens(
                    Some(prompt),
                    completion,
                    reasoning,
                    self.total_tokens,
                ),
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

#[derive(Default)]
struct GeminiUsage {
    prompt_token_count: u64,
    cached_content_token_count: u64,
    candidates_token_count: u64,
    thoughts_token_count: u64,
}

impl GeminiUsage {
    fn read(object: &[u8]) -> Option<Self> {
        let mut usage = Self::default();
        for member in json::members(object) {
            let (key, value) = member.ok()?;
            let field = match key {
                b"promptTokenCount" => &mut usage.prompt_token_count,
                b"cachedContentTokenCount" => &mut usage.cached_content_token_count,
                b"candidatesTokenCount" => &mut usage.candidates_token_count,
                b"thoughtsTokenCount" => &mut usage.thoughts_token_count,
                _ => continue,
            };
            *field = count(value).ok()?.unwrap_or(0);
        }
        Some(usage)
    }

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
    use proptest::prelude::*;

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

    /// The same fields read through `serde_json::Value`: what a derived parse would give.
    fn reference(body: &[u8]) -> Option<Usage> {
        use serde_json::Value;
        let value: Value = serde_json::from_slice(body).ok()?;
        let count = |v: Option<&Value>| -> Result<Option<u64>, ()> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or(()),
            }
        };
        let details = |v: Option<&Value>| -> Result<Option<Details>, ()> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(o)) => Ok(Some(Details {
                    cached_tokens: count(o.get("cached_tokens"))?,
                    reasoning_tokens: count(o.get("reasoning_tokens"))?,
                })),
                Some(_) => Err(()),
            }
        };
        let object = value.get("usage")?.as_object()?;
        let get = |k: &str| object.get(k);
        let raw = RawUsage {
            prompt_tokens: count(get("prompt_tokens")).ok()?,
            completion_tokens: count(get("completion_tokens")).ok()?,
            total_tokens: count(get("total_tokens")).ok()?,
            prompt_tokens_details: details(get("prompt_tokens_details")).ok()?,
            completion_tokens_details: details(get("completion_tokens_details")).ok()?,
            cost_in_usd_ticks: count(get("cost_in_usd_ticks")).ok()?,
            input_tokens: count(get("input_tokens")).ok()?,
            output_tokens: count(get("output_tokens")).ok()?,
            input_tokens_details: details(get("input_tokens_details")).ok()?,
            output_tokens_details: details(get("output_tokens_details")).ok()?,
            cache_read_input_tokens: count(get("cache_read_input_tokens")).ok()?,
            cache_creation_input_tokens: count(get("cache_creation_input_tokens")).ok()?,
        };
        Some(raw.normalise())
    }

    fn arb_count() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            4 => (0u64..2_000_000).prop_map(serde_json::Value::from),
            1 => any::<u64>().prop_map(serde_json::Value::from),
            1 => Just(serde_json::Value::Null),
            1 => any::<i32>().prop_map(serde_json::Value::from),
            1 => any::<f32>().prop_map(serde_json::Value::from),
            1 => "[a-z0-9]{0,4}".prop_map(serde_json::Value::from),
        ]
    }

    /// The count keys of OpenAI, xAI and Anthropic usage objects.
    const COUNT_KEYS: &[&str] = &[
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost_in_usd_ticks",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ];

    fn arb_usage() -> impl Strategy<Value = serde_json::Value> {
        let field = prop_oneof![prop::sample::select(COUNT_KEYS), Just("other")];
        let details_field = prop_oneof![
            Just("prompt_tokens_details"),
            Just("completion_tokens_details"),
            Just("input_tokens_details"),
            Just("output_tokens_details"),
        ];
        let details = prop::collection::btree_map(
            prop_oneof![Just("cached_tokens"), Just("reasoning_tokens"), Just("x")],
            arb_count(),
            0..3,
        )
        .prop_map(|m| serde_json::json!(m));
        (
            prop::collection::btree_map(field, arb_count(), 0..8),
            prop::collection::btree_map(details_field, details, 0..3),
        )
            .prop_map(|(counts, details)| {
                let mut object = serde_json::Map::new();
                object.extend(counts.into_iter().map(|(k, v)| (k.to_owned(), v)));
                object.extend(details.into_iter().map(|(k, v)| (k.to_owned(), v)));
                serde_json::Value::Object(object)
            })
    }

    proptest! {
        /// The hand-written reader agrees with a generic JSON parse on every usage object,
        /// odd values included, and reading at the classifier's span agrees with a walk.
        #[test]
        fn reads_what_a_parser_reads(usage in arb_usage(), pretty in any::<bool>()) {
            let value = serde_json::json!({"id": "x", "choices": [{"message": {"content": "usage"}}], "usage": usage});
            let body = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            prop_assert_eq!(Usage::from_body(&body), reference(&body));
            let headers = http::HeaderMap::new();
            let view = ballast_classify::ResponseView::new(http::StatusCode::OK, &headers, Some(&body));
            let span = ballast_classify::ClassifyResponse::classify(&ballast_classify::Provider::XAi, &view).usage;
            prop_assert!(span.is_some());
            let classified = ballast_classify::ClassifiedBody::<()>::buffered(bytes::Bytes::from(body.clone()))
                .with_usage_span(span);
            let response = http::Response::new(classified);
            prop_assert_eq!(Usage::of_response(&response), reference(&body));
        }
    }

    /// Usage-like object text, the usual shape and not: known and unknown keys, escaped
    /// keys, counts past `u64`, floats, signs, strings, arrays, `*_details` objects with
    /// odd members, odd white space, trailing commas and bytes.
    fn usage_like() -> impl Strategy<Value = Vec<u8>> {
        let key = prop_oneof![
            prop::sample::select(COUNT_KEYS),
            Just("cached_tokens"),
            Just("reasoning_tokens"),
            Just("other"),
            Just("prompt\\u0074okens"),
        ];
        let details_key = prop_oneof![
            Just("prompt_tokens_details"),
            Just("completion_tokens_details"),
            Just("input_tokens_details"),
            Just("output_tokens_details"),
        ];
        let scalar = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..1000).prop_map(|n| n.to_string()),
            Just("null".to_owned()),
            Just("184467440737095516160".to_owned()),
            Just("007".to_owned()),
            Just("-3".to_owned()),
            Just("1.5".to_owned()),
            Just("1e3".to_owned()),
            Just("\"7\"".to_owned()),
            Just("[1]".to_owned()),
            Just("{\"cached_tokens\":9}".to_owned()),
            Just("true".to_owned()),
            Just("nul".to_owned()),
        ];
        let ws = prop_oneof![
            Just(""),
            Just(""),
            Just(" "),
            Just("\n  "),
            Just("\t"),
            Just("\u{c}")
        ];
        let member =
            (key, scalar.clone(), ws.clone()).prop_map(|(k, v, w)| format!("\"{k}\"{w}:{w}{v}"));
        let inner = prop::collection::vec(
            (
                prop_oneof![Just("cached_tokens"), Just("reasoning_tokens"), Just("x")],
                scalar.clone(),
            )
                .prop_map(|(k, v)| format!("\"{k}\":{v}")),
            0..3,
        );
        let details = (
            details_key,
            prop_oneof![
                inner.prop_map(|m| format!("{{{}}}", m.join(","))),
                Just("null".to_owned()),
                scalar
            ],
        )
            .prop_map(|(k, v)| format!("\"{k}\":{v}"));
        let members = prop::collection::vec(prop_oneof![3 => member, 1 => details], 0..8);
        (
            members,
            ws,
            prop_oneof![Just(""), Just(","), Just("}"), Just(" x")],
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(members, w, tail, cut, truncate)| {
                let mut text = format!("{{{w}{}{w}}}", members.join(&format!("{w},{w}")));
                if !tail.is_empty() && tail != "}" {
                    text.insert_str(text.len() - 1, tail);
                } else {
                    text.push_str(tail);
                }
                let mut bytes = text.into_bytes();
                if truncate {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
                bytes
            })
    }

    proptest! {
        /// The one-pass reader answers only where it gives what the member walk gives.
        #[test]
        fn one_pass_agrees_with_the_member_walk(object in usage_like()) {
            let walked = RawUsage::read_members(&object);
            if let Some(fast) = RawUsage::read_one_pass(&object) {
                prop_assert_eq!(Some(fast), walked, "{}", String::from_utf8_lossy(&object));
            }
            prop_assert_eq!(RawUsage::read(&object), RawUsage::read_members(&object));
        }
    }

    proptest! {
        /// The counts the classifier notes on its pass, where it notes them, are what the
        /// member walk reads from the object.
        #[test]
        fn the_classifier_counts_agree_with_the_member_walk(object in usage_like()) {
            if let Some(fields) = UsageFields::read(&object) {
                prop_assert_eq!(
                    Some(RawUsage::from_fields(&fields)),
                    RawUsage::read_members(&object),
                    "{}",
                    String::from_utf8_lossy(&object)
                );
            }
        }
    }

    #[test]
    fn counts_read_by_the_classifier_are_not_read_again() {
        let body = br#"{"usage":{"prompt_tokens":812,"completion_tokens":421}}"#;
        let fields = UsageFields::read(br#"{"prompt_tokens":7,"completion_tokens":3}"#);
        assert!(fields.is_some());
        // A span whose counts disagree with its bytes: the counts are what is read.
        let span = ballast_classify::UsageSpan::new(9, body.len() - 1, "usage").with_fields(fields);
        let classified =
            ballast_classify::ClassifiedBody::<()>::buffered(bytes::Bytes::from_static(body))
                .with_usage_span(Some(span));
        let usage = Usage::of_body(&classified).unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (7, 3));
        // Without counts, the object at the span is parsed.
        let span = ballast_classify::UsageSpan::new(9, body.len() - 1, "usage");
        let classified =
            ballast_classify::ClassifiedBody::<()>::buffered(bytes::Bytes::from_static(body))
                .with_usage_span(Some(span));
        let usage = Usage::of_body(&classified).unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (812, 421));
    }

    #[test]
    fn the_classifier_reads_the_counts_of_the_usual_shapes() {
        let xai = br#"{"prompt_tokens":812,"completion_tokens":421,"total_tokens":1233,"prompt_tokens_details":{"cached_tokens":640},"completion_tokens_details":{"reasoning_tokens":0},"cost_in_usd_ticks":6692400}"#;
        let anthropic = br#"{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":2,"output_tokens":7}"#;
        let responses = br#"{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":3}}"#;
        for object in [&xai[..], &anthropic[..], &responses[..]] {
            let fields = UsageFields::read(object).expect("the usual shape");
            assert_eq!(
                Some(RawUsage::from_fields(&fields)),
                RawUsage::read_members(object)
            );
        }
    }

    #[test]
    fn one_pass_reads_the_usual_shapes() {
        let xai = br#"{"prompt_tokens":812,"completion_tokens":421,"total_tokens":1233,"prompt_tokens_details":{"cached_tokens":640},"completion_tokens_details":{"reasoning_tokens":0},"cost_in_usd_ticks":6692400}"#;
        let read = RawUsage::read_one_pass(xai).expect("the usual shape");
        assert_eq!(read.prompt_tokens, Some(812));
        assert_eq!(
            read.prompt_tokens_details.and_then(|d| d.cached_tokens),
            Some(640)
        );
        assert_eq!(read.cost_in_usd_ticks, Some(6_692_400));
        let anthropic =
            br#"{ "input_tokens": 10, "cache_read_input_tokens": null, "output_tokens": 5 }"#;
        assert_eq!(
            RawUsage::read_one_pass(anthropic).and_then(|u| u.output_tokens),
            Some(5)
        );
        assert_eq!(
            RawUsage::read_one_pass(br#"{"x":"text"}"#),
            None,
            "a string: the walk reads it"
        );
        assert!(RawUsage::read(br#"{"x":"text","output_tokens":3}"#).is_some());
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
