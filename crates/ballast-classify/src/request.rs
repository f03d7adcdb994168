//! What Ballast may read from a request before sending it: the model, and the body.

use std::sync::Arc;

use bytes::Bytes;

/// The model a request asks for, as a request extension.
///
/// Layers that key or price by model (breaker, cost, budget) read it with [`model_of`].
/// Set it when the body cannot be read (a streaming body), or to save them the scan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelName(pub Arc<str>);

impl ModelName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bodies whose bytes can be read in place: request bodies before sending (to find the model,
/// estimate cost), and buffered response bodies (to read usage).
///
/// Implemented for the cheap, clonable bodies LLM requests use (`String`, `Bytes`,
/// `Vec<u8>`, `&'static str`, `&'static [u8]`, `()`); bodies that cannot be inspected
/// (`Full`, `Empty`, streams) return `None`, and layers then rely on extensions such as
/// [`ModelName`]. Implement it for your own body type in one line.
pub trait InspectBody {
    /// The whole body, when it is in memory.
    fn inspect(&self) -> Option<&[u8]>;

    /// Replaces the body with `bytes`, when this body type can be rewritten in place
    /// (`String`, `Bytes`, `Vec<u8>`); returns whether it did. Used to write a default
    /// output cap into requests that have none.
    fn replace(&mut self, bytes: Vec<u8>) -> bool {
        let _ = bytes;
        false
    }

    /// Where the body's usage object sits, when a classifier noted it (a
    /// [`ClassifiedBody`](crate::ClassifiedBody) from the stock classifier); `None`: read
    /// the body.
    fn usage_span(&self) -> Option<crate::UsageSpan> {
        None
    }
}

impl InspectBody for String {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }

    fn replace(&mut self, bytes: Vec<u8>) -> bool {
        match String::from_utf8(bytes) {
            Ok(text) => {
                *self = text;
                true
            }
            Err(_) => false,
        }
    }
}

impl InspectBody for Bytes {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self)
    }

    fn replace(&mut self, bytes: Vec<u8>) -> bool {
        *self = Bytes::from(bytes);
        true
    }
}

impl InspectBody for Vec<u8> {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self)
    }

    fn replace(&mut self, bytes: Vec<u8>) -> bool {
        *self = bytes;
        true
    }
}

impl InspectBody for &'static str {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl InspectBody for &'static [u8] {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl InspectBody for () {
    fn inspect(&self) -> Option<&[u8]> {
        None
    }
}

impl<D> InspectBody for http_body_util::Full<D> {
    fn inspect(&self) -> Option<&[u8]> {
        None
    }
}

impl<D> InspectBody for http_body_util::Empty<D> {
    fn inspect(&self) -> Option<&[u8]> {
        None
    }
}

/// The model of a request: its [`ModelName`] extension, else the top-level `"model"` string
/// of its JSON body.
pub fn model_of<B: InspectBody>(request: &http::Request<B>) -> Option<&str> {
    if let Some(model) = request.extensions().get::<ModelName>() {
        return Some(model.as_str());
    }
    json_model(request.body().inspect()?)
}

/// The top-level `"model"` string of a JSON object, found without parsing the body (see
/// [`json::top_level`](crate::json::top_level)). `None` for a model with escapes in it, or
/// none at all.
pub fn json_model(body: &[u8]) -> Option<&str> {
    let raw = crate::json::top_level(body, "model")?;
    let name = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if name.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// The output cap a request sets: `max_tokens`, `max_completion_tokens`,
/// `max_output_tokens`, or Gemini's `generationConfig.maxOutputTokens` (the first of these
/// found, in the body's order). One pass over the body's top level: a long prompt without a
/// cap is walked once, not once per name.
pub fn output_cap(body: &[u8]) -> Option<u64> {
    let number = |raw: &[u8]| std::str::from_utf8(raw).ok()?.parse::<u64>().ok();
    crate::json::members(body)
        .map_while(Result::ok)
        .find_map(|(key, value)| match key {
            b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens" => number(value),
            b"generationConfig" => number(crate::json::top_level(value, "maxOutputTokens")?),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_every_dialect() {
        assert_eq!(output_cap(br#"{"model":"m","max_tokens":500}"#), Some(500));
        assert_eq!(output_cap(br#"{"max_completion_tokens":64}"#), Some(64));
        assert_eq!(output_cap(br#"{"max_output_tokens":7}"#), Some(7));
        assert_eq!(
            output_cap(
                br#"{"contents":[],"generationConfig":{"temperature":0.2,"maxOutputTokens":900}}"#
            ),
            Some(900)
        );
        assert_eq!(output_cap(br#"{"max_tokens":-1}"#), None);
        assert_eq!(output_cap(br#"{"messages":[{"max_tokens":5}]}"#), None);
    }

    #[test]
    fn finds_the_top_level_model() {
        let cases: [(&[u8], Option<&str>); 8] = [
            (
                br#"{"model":"grok-code-fast-1","max_tokens":5}"#,
                Some("grok-code-fast-1"),
            ),
            (
                br#"{ "messages": [{"model": "inner"}], "model" : "gpt-4o" }"#,
                Some("gpt-4o"),
            ),
            (br#"{"metadata":{"model":"nested"},"stream":true}"#, None),
            (
                br#"{"content":"\"model\": \"fake\"","model":"real"}"#,
                Some("real"),
            ),
            (br#"{"model":7,"x":"model"}"#, None),
            (br#"{"model":"esc\"aped"}"#, None),
            (b"not json", None),
            (br#"{"model":"unterminated"#, None),
        ];
        for (body, want) in cases {
            assert_eq!(json_model(body), want, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn extension_wins_over_body() {
        let mut request = http::Request::new(String::from(r#"{"model":"body"}"#));
        assert_eq!(model_of(&request), Some("body"));
        request
            .extensions_mut()
            .insert(ModelName(Arc::from("extension")));
        assert_eq!(model_of(&request), Some("extension"));
        let full = http::Request::new(http_body_util::Full::new(Bytes::from_static(b"{}")));
        assert_eq!(model_of(&full), None);
    }
}
