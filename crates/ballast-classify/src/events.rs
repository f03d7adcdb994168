//! What one server-sent event of a streamed answer says, in each dialect.
//!
//! The SSE framing is [`sse`](crate::sse)'s; this module reads the events' JSON for what
//! the layers need: content delivered, usage, the end, an error
//! sent inside the stream.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::{Dialect, OutcomeClass, ProviderError};

/// Token counts a stream reported (the last report of each count wins: providers send
/// running totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamUsage {
    /// Prompt tokens, cached ones included.
    pub prompt: u64,
    /// Of the prompt, tokens read from a cache.
    pub cached: u64,
    /// Of the prompt, tokens written to a cache (Anthropic bills them apart).
    pub cache_write: u64,
    /// Output tokens, reasoning included.
    pub completion: u64,
}

/// What one event said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Said {
    /// Bytes of content (text, tool-call arguments, refusals) it delivered.
    pub(crate) content: u64,
    /// Whether it ends the answer as the provider meant it to end.
    pub(crate) end: bool,
    /// An error sent inside the stream, classified.
    pub(crate) error: Option<OutcomeClass>,
    /// Counts it reported; `None` leaves each count as it was.
    pub(crate) prompt: Option<u64>,
    pub(crate) cached: Option<u64>,
    pub(crate) cache_write: Option<u64>,
    pub(crate) completion: Option<u64>,
}

impl Said {
    /// Applies the counts to `usage`.
    pub(crate) fn count_into(&self, usage: &mut Option<StreamUsage>) {
        if self.prompt.is_none()
            && self.cached.is_none()
            && self.cache_write.is_none()
            && self.completion.is_none()
        {
            return;
        }
        let usage = usage.get_or_insert_with(StreamUsage::default);
        if let Some(n) = self.prompt {
            usage.prompt = n;
        }
        if let Some(n) = self.cached {
            usage.cached = n;
        }
        if let Some(n) = self.cache_write {
            usage.cache_write = n;
        }
        if let Some(n) = self.completion {
            usage.completion = n;
        }
    }
}

/// Reads one event (`event` its type, `data` its data) of a stream in `dialect`.
///
/// Typed, borrowing deserialization: only the fields read are parsed, strings are measured
/// where they lie, nothing is allocated for an ordinary event (`benches/stream.rs`).
pub(crate) fn read(dialect: Dialect, event: &str, data: &str) -> Said {
    let data = data.trim();
    // OpenAI chat's (and every compatible API's) end marker.
    if data == "[DONE]" {
        return Said {
            end: true,
            ..Said::default()
        };
    }
    if event == "error" {
        return error_event(data.as_bytes());
    }
    if dialect == Dialect::Chat
        && let Some(said) = plain_chat_delta(data)
    {
        return said;
    }
    let said = match dialect {
        // Legacy completions' chunks are chat's with `text` for a delta; embeddings never
        // stream: an event from one is read as chat's.
        Dialect::Chat | Dialect::Completions | Dialect::Embeddings => {
            serde_json::from_str::<Chat>(data).map(Chat::said)
        }
        Dialect::Responses => serde_json::from_str::<Responses<'_>>(data).map(Responses::said),
        Dialect::Messages => serde_json::from_str::<Messages<'_>>(data).map(Messages::said),
        Dialect::Gemini => serde_json::from_str::<Gemini>(data).map(Gemini::said),
        Dialect::Other => return other_event(data),
    };
    match said {
        Ok(Some(said)) => said,
        // An error object: classified as the same error in a 200 body would be.
        Ok(None) => error_event(data.as_bytes()),
        Err(_) => Said::default(),
    }
}

/// The common chat chunk, a content delta and nothing else, read without a JSON parse: its
/// content's decoded length. `None` for anything else (usage, an error, a finish reason,
/// tool calls, refusals, reasoning, a body that is not plainly an object), which the typed
/// parse reads. Written by hand because `benches/stream.rs` measured the typed parse of
/// such a chunk at most of the stream path's cost per event; `plain_deltas_read_as_parsed`
/// checks it against the parse. A quote inside a JSON string is escaped, so a quoted name
/// found here is a name, never text.
fn plain_chat_delta(data: &str) -> Option<Said> {
    use std::sync::LazyLock;

    use aho_corasick::packed::{Config, MatchKind, Searcher};
    // The names a plain delta is read by (0 to 2) or must not have (3 on), found in one
    // SIMD pass (aho-corasick's Teddy): seven `memmem` passes cost 40% of the stream path
    // per event (`benches/stream.rs`). Every name starts and ends with a quote, and a
    // quote inside a JSON string is escaped, so no match lies inside a string's text.
    static NAMES: LazyLock<Option<Searcher>> = LazyLock::new(|| {
        Config::new()
            .match_kind(MatchKind::LeftmostFirst)
            .builder()
            .extend([
                &b"\"usage\""[..],
                b"\"finish_reason\"",
                b"\"content\"",
                b"\"error\"",
                b"\"tool_calls\"",
                b"\"refusal\"",
                b"\"reasoning_content\"",
                // Legacy completions' `choices[].text` (FIM and base models): read by serde.
                b"\"text\"",
            ])
            .build()
    });
    let bytes = data.as_bytes();
    if bytes.first() != Some(&b'{') || bytes.last() != Some(&b'}') {
        return None;
    }
    let names = NAMES.as_ref()?;
    let (mut content, mut finishes) = (0, 0);
    // Where the last content string ended: a name found before it lay inside it.
    let mut past = 0;
    for found in names.find_iter(bytes) {
        if found.start() < past {
            continue;
        }
        let pattern = found.pattern().as_usize();
        if pattern > 2 {
            return None;
        }
        // A name, not a value: its colon follows.
        let value = bytes[found.end()..]
            .trim_ascii_start()
            .strip_prefix(b":")?
            .trim_ascii_start();
        match pattern {
            // `"usage": null` rides on every chunk of a stream that asked for usage.
            0 => {
                if !value.starts_with(b"null") {
                    return None;
                }
            }
            1 => {
                finishes += 1;
                if !value.starts_with(b"null") {
                    return None;
                }
            }
            _ => {
                if value.starts_with(b"null") {
                    continue;
                }
                let text = value.strip_prefix(b"\"")?;
                let (decoded, used) = decoded_len(text)?;
                content += decoded;
                past = bytes.len() - text.len() + used;
            }
        }
    }
    if finishes != 1 {
        return None;
    }
    Some(Said {
        content,
        ..Said::default()
    })
}

/// The decoded length in bytes of the JSON string starting at `text` (after its opening
/// quote), and the bytes it took with its closing quote; `None` if it is not a valid one.
fn decoded_len(text: &[u8]) -> Option<(u64, usize)> {
    let mut len = 0u64;
    let mut i = 0;
    loop {
        let at = memchr::memchr2(b'"', b'\\', &text[i..])?;
        len += at as u64;
        i += at;
        if text[i] == b'"' {
            return Some((len, i + 1));
        }
        let escape = *text.get(i + 1)?;
        if escape != b'u' {
            if !matches!(
                escape,
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'
            ) {
                return None;
            }
            len += 1;
            i += 2;
            continue;
        }
        let unit = hex4(text.get(i + 2..i + 6)?)?;
        i += 6;
        len += match unit {
            0..=0x7F => 1,
            0x80..=0x7FF => 2,
            0xD800..=0xDBFF => {
                // A surrogate pair is one four-byte character; a lone one decodes as
                // U+FFFD (three bytes), as serde_json refuses, so: no fast path.
                if text.get(i..i + 2)? != b"\\u" {
                    return None;
                }
                let low = hex4(text.get(i + 2..i + 6)?)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return None;
                }
                i += 6;
                4
            }
            0xDC00..=0xDFFF => return None,
            _ => 3,
        };
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| u32::from_str_radix(d, 16).ok())
}

/// An error sent inside the stream, classified as the same error in a 200 body would be.
fn error_event(data: &[u8]) -> Said {
    let class = ProviderError::parse(data).map_or(OutcomeClass::ServerError, |error| {
        crate::provider::error_in_success_class(&error)
    });
    Said {
        error: Some(class),
        ..Said::default()
    }
}

/// An event of a stream Ballast has no reading of (a transcription's, a speech's, in
/// `Dialect::Other`): an error when it says so (an `error` member, or its type is `error`
/// or ends in `.failed`); otherwise content, its data's length, and the stream may end
/// after it (nothing else marks an end). A `usage` object is counted (OpenAI's audio
/// streams end with one); data that is not JSON is content all the same.
fn other_event(data: &str) -> Said {
    #[derive(Deserialize)]
    struct OtherEvent<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(default)]
        error: Option<IgnoredAny>,
        #[serde(default)]
        usage: Option<ResponsesUsage>,
    }
    let mut said = Said {
        content: data.len() as u64,
        end: true,
        ..Said::default()
    };
    if let Ok(event) = serde_json::from_str::<OtherEvent<'_>>(data) {
        if event.error.is_some() || event.kind == "error" || event.kind.ends_with(".failed") {
            return error_event(data.as_bytes());
        }
        if let Some(usage) = event.usage {
            said.prompt = usage.input_tokens;
            said.completion = usage.output_tokens;
            said.cached = usage.input_tokens_details.and_then(|d| d.cached_tokens);
        }
    }
    said
}

/// The length of a string value, read where it lies (`null` or any other value: 0).
#[derive(Debug, Default, Clone, Copy)]
struct Len(u64);

impl<'de> Deserialize<'de> for Len {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenVisitor;
        impl<'de> Visitor<'de> for LenVisitor {
            type Value = Len;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Len, E> {
                Ok(Len(text.len() as u64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Len, E> {
                Ok(Len(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Len, E> {
                Ok(Len(0))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Len, E> {
                Ok(Len(0))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Len, E> {
                Ok(Len(0))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Len, E> {
                Ok(Len(0))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Len, E> {
                Ok(Len(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Len, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Len(0))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Len, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Len(0))
            }
        }
        deserializer.deserialize_any(LenVisitor)
    }
}

/// A sequence folded into one value without collecting it: each element read as `T` and
/// added in with `T::fold`.
#[derive(Debug, Default)]
struct Fold<T>(T);

trait Folds: Default {
    fn fold(&mut self, other: Self);
}

impl<'de, T: Folds + Deserialize<'de>> Deserialize<'de> for Fold<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FoldVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Folds + Deserialize<'de>> Visitor<'de> for FoldVisitor<T> {
            type Value = Fold<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fold<T>, A::Error> {
                let mut all = T::default();
                while let Some(one) = seq.next_element::<T>()? {
                    all.fold(one);
                }
                Ok(Fold(all))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Fold<T>, E> {
                Ok(Fold(T::default()))
            }
        }
        deserializer.deserialize_any(FoldVisitor(std::marker::PhantomData))
    }
}

/// Whether a value is there and not `null`.
#[derive(Debug, Default, Clone, Copy)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<IgnoredAny>::deserialize(deserializer).map(|value| Present(value.is_some()))
    }
}

/// A chat completion chunk: `choices[].delta` content, `finish_reason`, and `usage` (the
/// last chunk, with `stream_options.include_usage`), or an `error` object.
#[derive(Deserialize)]
struct Chat {
    #[serde(default)]
    choices: Fold<ChatChoice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
    #[serde(default)]
    error: Present,
}

#[derive(Deserialize, Default)]
struct ChatChoice {
    #[serde(default)]
    delta: Option<ChatDelta>,
    /// The legacy Completions API's streamed text (`/v1/completions`: fill-in-the-middle
    /// and base models), in place of a delta.
    #[serde(default)]
    text: Len,
    #[serde(default)]
    finish_reason: Present,
}

impl ChatChoice {
    fn len(&self) -> u64 {
        self.delta.map_or(0, ChatDelta::len) + self.text.0
    }
}

impl Folds for ChatChoice {
    fn fold(&mut self, other: Self) {
        let content = self.len() + other.len();
        self.delta = Some(ChatDelta {
            content: Len(content),
            ..ChatDelta::default()
        });
        self.text = Len(0);
        self.finish_reason.0 |= other.finish_reason.0;
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
struct ChatDelta {
    #[serde(default)]
    content: Len,
    #[serde(default)]
    refusal: Len,
    #[serde(default)]
    reasoning_content: Len,
    #[serde(default)]
    tool_calls: Fold<ToolCall>,
}

impl ChatDelta {
    fn len(self) -> u64 {
        self.content.0 + self.refusal.0 + self.reasoning_content.0 + self.tool_calls.0.len()
    }
}

impl Clone for Fold<ToolCall> {
    fn clone(&self) -> Self {
        *self
    }
}

impl Copy for Fold<ToolCall> {}

#[derive(Deserialize, Default, Clone, Copy)]
struct ToolCall {
    #[serde(default)]
    function: Option<ToolFunction>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct ToolFunction {
    #[serde(default)]
    name: Len,
    #[serde(default)]
    arguments: Len,
}

impl ToolCall {
    fn len(self) -> u64 {
        self.function.map_or(0, |f| f.name.0 + f.arguments.0)
    }
}

impl Folds for ToolCall {
    fn fold(&mut self, other: Self) {
        let total = self.len() + other.len();
        self.function = Some(ToolFunction {
            name: Len(0),
            arguments: Len(total),
        });
    }
}

#[derive(Deserialize)]
struct ChatUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<CachedDetails>,
    #[serde(default)]
    completion_tokens_details: Option<ReasoningDetails>,
}

#[derive(Deserialize)]
struct CachedDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ReasoningDetails {
    reasoning_tokens: Option<u64>,
}

impl ChatUsage {
    /// Output tokens, reasoning included ([`chat_output_tokens`](crate::chat_output_tokens)).
    fn output(&self) -> Option<u64> {
        let reasoning = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        Some(crate::chat_output_tokens(
            self.prompt_tokens,
            self.completion_tokens?,
            reasoning,
            self.total_tokens,
        ))
    }
}

impl Chat {
    /// What it said; `None` for an error object.
    fn said(self) -> Option<Said> {
        if self.error.0 {
            return None;
        }
        let choice = self.choices.0;
        let mut said = Said {
            content: choice.len(),
            end: choice.finish_reason.0,
            ..Said::default()
        };
        if let Some(usage) = self.usage {
            said.prompt = usage.prompt_tokens;
            said.completion = usage.output();
            said.cached = usage.prompt_tokens_details.and_then(|d| d.cached_tokens);
        }
        Some(said)
    }
}

/// A Responses API event: the deltas deliver, `response.completed` /
/// `response.incomplete` end with usage, `response.failed` and `error` fail.
#[derive(Deserialize)]
struct Responses<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    delta: Len,
    #[serde(default)]
    response: Option<ResponsesBody>,
}

#[derive(Deserialize)]
struct ResponsesBody {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

#[derive(Deserialize)]
struct ResponsesUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<CachedDetails>,
}

impl Responses<'_> {
    fn said(self) -> Option<Said> {
        let mut said = Said::default();
        match &*self.kind {
            "response.failed" | "error" => return None,
            "response.completed" | "response.incomplete" => {
                said.end = true;
                if let Some(usage) = self.response.and_then(|r| r.usage) {
                    said.prompt = usage.input_tokens;
                    said.completion = usage.output_tokens;
                    said.cached = usage.input_tokens_details.and_then(|d| d.cached_tokens);
                }
            }
            kind if kind.ends_with(".delta") => said.content = self.delta.0,
            _ => {}
        }
        Some(said)
    }
}

/// An Anthropic Messages event: `message_start` (prompt usage), `content_block_delta`
/// (content), `message_delta` (output usage so far), `message_stop` (the end), `error`.
#[derive(Deserialize)]
struct Messages<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    message: Option<MessageStart>,
    #[serde(default)]
    delta: Option<MessageDelta>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    text: Len,
    #[serde(default)]
    partial_json: Len,
    #[serde(default)]
    thinking: Len,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl Messages<'_> {
    fn said(self) -> Option<Said> {
        let mut said = Said::default();
        match &*self.kind {
            "message_start" => {
                if let Some(usage) = self.message.and_then(|m| m.usage) {
                    let read = usage.cache_read_input_tokens.unwrap_or(0);
                    let write = usage.cache_creation_input_tokens.unwrap_or(0);
                    // Anthropic counts cache reads and writes apart from `input_tokens`.
                    said.prompt = Some(usage.input_tokens.unwrap_or(0) + read + write);
                    said.cached = Some(read);
                    said.cache_write = Some(write);
                    said.completion = usage.output_tokens;
                }
            }
            "content_block_delta" => {
                if let Some(delta) = self.delta {
                    said.content = delta.text.0 + delta.partial_json.0 + delta.thinking.0;
                }
            }
            "message_delta" => said.completion = self.usage.and_then(|u| u.output_tokens),
            "message_stop" => said.end = true,
            "error" => return None,
            _ => {}
        }
        Some(said)
    }
}

/// A Gemini `streamGenerateContent?alt=sse` chunk: candidate parts (content), a
/// `finishReason` (the end), `usageMetadata` (running totals), or an `error` object.
#[derive(Deserialize)]
struct Gemini {
    #[serde(default)]
    candidates: Fold<Candidate>,
    #[serde(default, rename = "usageMetadata")]
    usage: Option<GeminiUsage>,
    #[serde(default)]
    error: Present,
}

#[derive(Deserialize, Default)]
struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default, rename = "finishReason")]
    finish_reason: Present,
}

#[derive(Deserialize, Default)]
struct CandidateContent {
    #[serde(default)]
    parts: Fold<Part>,
}

#[derive(Deserialize, Default)]
struct Part {
    #[serde(default)]
    text: Len,
}

impl Folds for Part {
    fn fold(&mut self, other: Self) {
        self.text.0 += other.text.0;
    }
}

impl Candidate {
    fn len(&self) -> u64 {
        self.content.as_ref().map_or(0, |c| c.parts.0.text.0)
    }
}

impl Folds for Candidate {
    fn fold(&mut self, other: Self) {
        let total = self.len() + other.len();
        self.content = Some(CandidateContent {
            parts: Fold(Part { text: Len(total) }),
        });
        self.finish_reason.0 |= other.finish_reason.0;
    }
}

#[derive(Deserialize)]
struct GeminiUsage {
    #[serde(rename = "promptTokenCount")]
    prompt: Option<u64>,
    #[serde(rename = "cachedContentTokenCount")]
    cached: Option<u64>,
    #[serde(rename = "candidatesTokenCount")]
    candidates: Option<u64>,
    #[serde(rename = "thoughtsTokenCount")]
    thoughts: Option<u64>,
}

impl Gemini {
    fn said(self) -> Option<Said> {
        if self.error.0 {
            return None;
        }
        let candidate = self.candidates.0;
        let mut said = Said {
            content: candidate.len(),
            end: candidate.finish_reason.0,
            ..Said::default()
        };
        if let Some(usage) = self.usage {
            said.prompt = usage.prompt;
            said.cached = usage.cached;
            // Chat's `completion_tokens` includes reasoning; Gemini counts thoughts apart.
            said.completion = usage.candidates.map(|n| n + usage.thoughts.unwrap_or(0));
        }
        Some(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(data: &str) -> Said {
        serde_json::from_str::<Chat>(data)
            .ok()
            .and_then(Chat::said)
            .unwrap_or_default()
    }

    /// A stream with no reading of its own (OpenAI's transcription and speech streams):
    /// every event is content and may end it, its usage is counted, its errors are errors.
    #[test]
    fn an_unread_streams_events_are_content_usage_or_errors() {
        let delta = r#"{"type":"transcript.text.delta","delta":"Hel"}"#;
        let said = read(Dialect::Other, "", delta);
        assert_eq!(
            (said.content, said.end, said.error),
            (delta.len() as u64, true, None)
        );
        let done = r#"{"type":"speech.audio.done","usage":{"input_tokens":14,"output_tokens":101,"total_tokens":115}}"#;
        let said = read(Dialect::Other, "", done);
        assert_eq!((said.prompt, said.completion), (Some(14), Some(101)));
        // Not JSON: content all the same.
        assert_eq!(read(Dialect::Other, "", "raw bytes").content, 9);
        // An error object, or an error type.
        let error = r#"{"error":{"message":"Overloaded","type":"server_error"}}"#;
        assert!(read(Dialect::Other, "", error).error.is_some());
        let failed = r#"{"type":"transcript.text.failed"}"#;
        assert!(read(Dialect::Other, "", failed).error.is_some());
        assert!(read(Dialect::Other, "error", "{}").error.is_some());
    }

    /// A JSON string literal for `text`, with some characters written as `\u` escapes
    /// (surrogate pairs included) when `escape` says so.
    fn literal(text: &str, escape: &[bool]) -> String {
        let mut out = String::from("\"");
        for (i, c) in text.chars().enumerate() {
            if escape.get(i).copied().unwrap_or(false) {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            } else {
                let one = serde_json::to_string(&c.to_string()).unwrap();
                out.push_str(&one[1..one.len() - 1]);
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// The hand-read plain delta says what the typed parse says, whenever it reads one.
        #[test]
        fn plain_deltas_read_as_parsed(
            texts in proptest::collection::vec(".{0,12}", 1..3),
            escape in proptest::collection::vec(proptest::prelude::any::<bool>(), 0..12),
            finish in proptest::option::of("stop|length"),
            usage in proptest::prelude::any::<bool>(),
            spaces in 0..3usize,
        ) {
            let sep = [":", ": ", " : "][spaces];
            let choices: Vec<String> = texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let finish = finish.as_ref().map_or("null".to_owned(), |f| format!("\"{f}\""));
                    format!(
                        r#"{{"index"{sep}{i},"delta"{sep}{{"content"{sep}{}}},"finish_reason"{sep}{finish}}}"#,
                        literal(text, &escape)
                    )
                })
                .collect();
            let with_usage = usage;
            let usage = if with_usage { r#","usage":null"# } else { "" };
            let data = format!(
                r#"{{"id":"c","object":"chat.completion.chunk","choices":[{}]{usage}}}"#,
                choices.join(",")
            );
            if let Some(fast) = plain_chat_delta(&data) {
                proptest::prop_assert_eq!(fast, parsed(&data), "{}", data);
            }
            // The one-choice plain delta, the stream's common event, takes the fast path,
            // `"usage": null` or not.
            if texts.len() == 1 && finish.is_none() {
                proptest::prop_assert!(plain_chat_delta(&data).is_some(), "{}", data);
            }
        }
    }

    #[test]
    fn chat_chunks() {
        let said = read(
            Dialect::Chat,
            "",
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
        );
        assert_eq!((said.content, said.end), (3, false));
        let said = read(
            Dialect::Chat,
            "",
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        );
        assert_eq!((said.content, said.end), (0, true));
        // The legacy Completions API (`/v1/completions`, fill-in-the-middle): its text is
        // content, so its stream is passed on from its first chunk, not held to its end.
        let said = read(
            Dialect::Chat,
            "",
            r#"{"id":"cmpl-1","object":"text_completion","choices":[{"text":"def f(","index":0,"logprobs":null,"finish_reason":null}],"model":"m"}"#,
        );
        assert_eq!((said.content, said.end), (6, false));
        let said = read(
            Dialect::Chat,
            "",
            r#"{"choices":[{"text":"","index":0,"finish_reason":"length"}]}"#,
        );
        assert_eq!((said.content, said.end), (0, true));
        let said = read(
            Dialect::Chat,
            "",
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2}}}"#,
        );
        let mut usage = None;
        said.count_into(&mut usage);
        assert_eq!(
            usage,
            Some(StreamUsage {
                prompt: 9,
                cached: 2,
                cache_write: 0,
                completion: 4
            })
        );
        // Reasoning: inside `completion_tokens` (OpenAI's way), or beside them (xAI's, its
        // total says so); billed as output either way.
        for (usage, output) in [
            (
                r#"{"prompt_tokens":9,"completion_tokens":40,"total_tokens":49,"completion_tokens_details":{"reasoning_tokens":30}}"#,
                40,
            ),
            (
                r#"{"prompt_tokens":9,"completion_tokens":10,"total_tokens":49,"completion_tokens_details":{"reasoning_tokens":30}}"#,
                40,
            ),
        ] {
            let said = read(
                Dialect::Chat,
                "",
                &format!(r#"{{"choices":[],"usage":{usage}}}"#),
            );
            assert_eq!(said.completion, Some(output), "{usage}");
        }
        assert!(read(Dialect::Chat, "", " [DONE] ").end);
        let error = read(
            Dialect::Chat,
            "",
            r#"{"error":{"message":"The server is overloaded","type":"server_error"}}"#,
        );
        assert_eq!(error.error, Some(OutcomeClass::Overloaded));
        let limited = read(
            Dialect::Chat,
            "",
            r#"{"error":{"message":"slow down","type":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(limited.error, Some(OutcomeClass::RateLimited));
        assert_eq!(read(Dialect::Chat, "", "{broken"), Said::default());
    }

    #[test]
    fn anthropic_events() {
        let mut usage = None;
        read(
            Dialect::Messages,
            "message_start",
            r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":2,"output_tokens":1}}}"#,
        )
        .count_into(&mut usage);
        let delta = read(
            Dialect::Messages,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi!"}}"#,
        );
        assert_eq!(delta.content, 3);
        read(
            Dialect::Messages,
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        )
        .count_into(&mut usage);
        assert_eq!(
            usage,
            Some(StreamUsage {
                prompt: 17,
                cached: 5,
                cache_write: 2,
                completion: 15
            })
        );
        assert!(
            read(
                Dialect::Messages,
                "message_stop",
                r#"{"type":"message_stop"}"#
            )
            .end
        );
        let error = read(
            Dialect::Messages,
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(error.error, Some(OutcomeClass::Overloaded));
    }

    /// Spaces around a name's colon, differing from name to name: the plain delta reads the
    /// content all the same (it once read none with a space before `content`'s colon only).
    #[test]
    fn plain_deltas_with_odd_spacing() {
        let data = r#"{"choices":[{"delta":{"content" :  "héllo"},"finish_reason":null}]}"#;
        let fast = plain_chat_delta(data).expect("a plain delta");
        assert_eq!(fast.content, 6);
        assert_eq!(fast, parsed(data));
        // A name that is a value (no colon after it) sends the chunk to the parse.
        let value = r#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}],"x":"content"}"#;
        assert_eq!(plain_chat_delta(value), None);
        assert_eq!(parsed(value).content, 1);
    }

    #[test]
    fn responses_and_gemini_events() {
        let delta = read(
            Dialect::Responses,
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","delta":"abc"}"#,
        );
        assert_eq!(delta.content, 3);
        let mut usage = None;
        let done = read(
            Dialect::Responses,
            "response.completed",
            r#"{"type":"response.completed","response":{"usage":{"input_tokens":7,"output_tokens":3,"input_tokens_details":{"cached_tokens":1}}}}"#,
        );
        assert!(done.end);
        done.count_into(&mut usage);
        assert_eq!(
            usage.map(|u| (u.prompt, u.cached, u.completion)),
            Some((7, 1, 3))
        );
        assert!(
            read(
                Dialect::Responses,
                "response.failed",
                r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"x"}}}"#
            )
            .error
            .is_some()
        );
        let chunk = read(
            Dialect::Gemini,
            "",
            r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":3}}"#,
        );
        assert_eq!((chunk.content, chunk.end), (2, true));
        assert_eq!((chunk.prompt, chunk.completion), (Some(4), Some(5)));
    }
}
