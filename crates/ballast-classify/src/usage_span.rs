//! [`UsageSpan`]: where a response's usage object sits in its buffered body.

/// Where the provider's usage object (`"usage"`, or Gemini's `"usageMetadata"`) sits in a
/// buffered 2xx JSON body, noted by the stock classifier on its one pass over the body.
///
/// The classify layer hands it up with the body ([`ClassifiedBody::with_usage_span`],
/// read through [`InspectBody::usage_span`]), so a layer that reads usage (the cost logger)
/// parses those few bytes instead of walking a 2 KB body again. A body without one was not
/// looked at this way (a custom classifier, a body of another type): read the body itself.
///
/// [`ClassifiedBody::with_usage_span`]: crate::ClassifiedBody::with_usage_span
/// [`InspectBody::usage_span`]: crate::InspectBody::usage_span
///
/// ```
/// use ballast_classify::UsageSpan;
///
/// let body = br#"{"id":"x","usage":{"prompt_tokens":12}}"#;
/// let span = UsageSpan::new(18, 38, "usage");
/// assert_eq!(span.slice(body), Some(&br#"{"prompt_tokens":12}"#[..]));
/// assert_eq!(span.key(), "usage");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSpan {
    start: usize,
    end: usize,
    key: &'static str,
}

impl UsageSpan {
    /// The object at `start..end` of the body, under the top-level `key`.
    pub fn new(start: usize, end: usize, key: &'static str) -> Self {
        Self { start, end, key }
    }

    /// The object's bytes in `body` (the body the span was found in); `None` when the span
    /// does not fit it.
    pub fn slice<'a>(&self, body: &'a [u8]) -> Option<&'a [u8]> {
        body.get(self.start..self.end)
    }

    /// The key it was found under: `"usage"` or `"usageMetadata"`.
    pub fn key(&self) -> &'static str {
        self.key
    }
}
