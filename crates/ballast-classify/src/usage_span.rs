//! [`UsageSpan`]: where a response's usage object sits in its buffered body.

use crate::UsageFields;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSpan {
    start: usize,
    end: usize,
    key: &'static str,
    /// Boxed: the span rides in every buffered body, which each layer moves; the counts'
    /// 136 bytes inline cost more in copies (`benches/instructions.sh`: about 850
    /// instructions a request in the facade) than one allocation.
    fields: Option<Box<UsageFields>>,
}

impl UsageSpan {
    /// The object at `start..end` of the body, under the top-level `key`.
    pub fn new(start: usize, end: usize, key: &'static str) -> Self {
        Self {
            start,
            end,
            key,
            fields: None,
        }
    }

    /// With the object's counts, read on the same pass (`None`: not read).
    pub fn with_fields(mut self, fields: Option<UsageFields>) -> Self {
        self.fields = fields.map(Box::new);
        self
    }

    /// The object's counts, if the pass that found it read them ([`UsageFields`]); else
    /// parse [`slice`](Self::slice).
    pub fn fields(&self) -> Option<&UsageFields> {
        self.fields.as_deref()
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
