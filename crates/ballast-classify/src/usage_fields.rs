//! [`UsageFields`]: the counts of a usage object, read on the classifier's one pass.

/// A `*_details` object of a usage object (OpenAI's and xAI's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageDetails {
    /// `prompt_tokens_details`
    PromptTokens,
    /// `completion_tokens_details`
    CompletionTokens,
    /// `input_tokens_details`
    InputTokens,
    /// `output_tokens_details`
    OutputTokens,
}

impl UsageDetails {
    fn index(self) -> usize {
        self as usize
    }
}

/// A count in a usage object, by the provider's own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageField {
    /// `prompt_tokens` (OpenAI chat, xAI)
    PromptTokens,
    /// `completion_tokens` (OpenAI chat, xAI)
    CompletionTokens,
    /// `total_tokens`
    TotalTokens,
    /// `cost_in_usd_ticks` (xAI)
    CostInUsdTicks,
    /// `input_tokens` (Anthropic, OpenAI responses)
    InputTokens,
    /// `output_tokens` (Anthropic, OpenAI responses)
    OutputTokens,
    /// `cache_read_input_tokens` (Anthropic)
    CacheReadInputTokens,
    /// `cache_creation_input_tokens` (Anthropic)
    CacheCreationInputTokens,
    /// `cached_tokens` inside a `*_details` object
    Cached(UsageDetails),
    /// `reasoning_tokens` inside a `*_details` object
    Reasoning(UsageDetails),
}

impl UsageField {
    fn index(self) -> usize {
        match self {
            Self::PromptTokens => 0,
            Self::CompletionTokens => 1,
            Self::TotalTokens => 2,
            Self::CostInUsdTicks => 3,
            Self::InputTokens => 4,
            Self::OutputTokens => 5,
            Self::CacheReadInputTokens => 6,
            Self::CacheCreationInputTokens => 7,
            Self::Cached(details) => 8 + 2 * details.index(),
            Self::Reasoning(details) => 9 + 2 * details.index(),
        }
    }

    /// The top-level member named `key`, as written between its quotes.
    fn top(key: &[u8]) -> Option<Slot> {
        let field = match key {
            b"prompt_tokens" => Self::PromptTokens,
            b"completion_tokens" => Self::CompletionTokens,
            b"total_tokens" => Self::TotalTokens,
            b"cost_in_usd_ticks" => Self::CostInUsdTicks,
            b"input_tokens" => Self::InputTokens,
            b"output_tokens" => Self::OutputTokens,
            b"cache_read_input_tokens" => Self::CacheReadInputTokens,
            b"cache_creation_input_tokens" => Self::CacheCreationInputTokens,
            b"prompt_tokens_details" => return Some(Slot::Details(UsageDetails::PromptTokens)),
            b"completion_tokens_details" => {
                return Some(Slot::Details(UsageDetails::CompletionTokens));
            }
            b"input_tokens_details" => return Some(Slot::Details(UsageDetails::InputTokens)),
            b"output_tokens_details" => return Some(Slot::Details(UsageDetails::OutputTokens)),
            _ => return None,
        };
        Some(Slot::Count(field.index()))
    }
}

/// The counts of a response's top-level `"usage"` object, as the stock classifier read them
/// on its one pass over the body: each member a count or `null`, each `*_details` member an
/// object of such counts or `null`, by the last value given (as a member walk assigns them).
/// The classifier notes them only when every member it knows is of that shape; otherwise
/// (a float, a string, a count past `u64::MAX`, Gemini's `usageMetadata`) only the
/// [`UsageSpan`](crate::UsageSpan) is noted, and the reader parses the object itself.
///
/// A layer that prices answers (the cost logger) reads these instead of walking the usage
/// object a second time.
///
/// ```
/// use ballast_classify::{UsageDetails, UsageField, UsageFields};
///
/// let fields = UsageFields::read(br#"{"prompt_tokens":12,"prompt_tokens_details":{"cached_tokens":4}}"#).unwrap();
/// assert_eq!(fields.get(UsageField::PromptTokens), Some(12));
/// assert_eq!(fields.get(UsageField::Cached(UsageDetails::PromptTokens)), Some(4));
/// assert!(fields.has_details(UsageDetails::PromptTokens));
/// assert_eq!(fields.get(UsageField::CompletionTokens), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageFields {
    values: [u64; 16],
    /// Bit `i`: `values[i]` was given.
    set: u16,
    /// Bit `d`: the `d`-th `*_details` member was an object.
    details: u8,
}

impl UsageFields {
    /// The count given for `field`; `None` when absent or `null`.
    pub fn get(&self, field: UsageField) -> Option<u64> {
        let i = field.index();
        (self.set >> i & 1 == 1).then_some(self.values[i])
    }

    /// Whether `details` was an object (`null` or absent: not).
    pub fn has_details(&self, details: UsageDetails) -> bool {
        self.details >> details.index() & 1 == 1
    }

    /// The fields of a usage object on its own (`None` when it is not of the usual shape,
    /// or not a JSON object): what the classifier notes on its pass, for a body that did not
    /// come through it.
    pub fn read(object: &[u8]) -> Option<Self> {
        let body = [br#"{"usage":"#.as_slice(), object, b"}"].concat();
        crate::provider::usage_fields_of(&body)
    }

    fn clear_details(&mut self, details: UsageDetails) {
        let d = details.index();
        self.details &= !(1 << d);
        self.set &= !(0b11 << (8 + 2 * d));
    }
}

/// What the next value fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Count(usize),
    Details(UsageDetails),
}

/// Reads the members of a `"usage"` object as the classifier's pass walks it: told each key,
/// value and container by depth (the usage object's members at depth 2).
#[derive(Debug, Default)]
pub(crate) struct FieldReader {
    fields: UsageFields,
    pending: Option<Slot>,
    /// The `*_details` object the pass is in (its members at depth 3).
    details: Option<UsageDetails>,
    irregular: bool,
}

impl FieldReader {
    /// A key at `depth`.
    #[inline]
    pub(crate) fn key(&mut self, depth: usize, key: &[u8]) {
        self.pending = match (depth, self.details) {
            (2, _) => UsageField::top(key),
            (3, Some(details)) => match key {
                b"cached_tokens" => Some(Slot::Count(UsageField::Cached(details).index())),
                b"reasoning_tokens" => Some(Slot::Count(UsageField::Reasoning(details).index())),
                _ => None,
            },
            _ => None,
        };
    }

    /// A number value, its text.
    #[inline]
    pub(crate) fn number(&mut self, text: &[u8]) {
        match self.pending.take() {
            Some(Slot::Count(i)) => match crate::json::unsigned(text) {
                Some(n) => {
                    self.fields.values[i] = n;
                    self.fields.set |= 1 << i;
                }
                None => self.irregular = true,
            },
            Some(Slot::Details(_)) => self.irregular = true,
            None => {}
        }
    }

    /// A `null` value.
    pub(crate) fn null(&mut self) {
        match self.pending.take() {
            Some(Slot::Count(i)) => self.fields.set &= !(1 << i),
            Some(Slot::Details(details)) => self.fields.clear_details(details),
            None => {}
        }
    }

    /// A string, `true` or `false`.
    pub(crate) fn other(&mut self) {
        if self.pending.take().is_some() {
            self.irregular = true;
        }
    }

    /// A container opens (an object when `object`).
    pub(crate) fn open(&mut self, object: bool) {
        match self.pending.take() {
            Some(Slot::Details(details)) if object => {
                self.fields.clear_details(details);
                self.fields.details |= 1 << details.index();
                self.details = Some(details);
            }
            Some(_) => self.irregular = true,
            None => {}
        }
    }

    /// A container closed, leaving the pass at `depth`.
    pub(crate) fn close(&mut self, depth: usize) {
        if depth == 2 {
            self.details = None;
        }
    }

    /// The fields read, if every known member had the usual shape.
    pub(crate) fn finish(self) -> Option<UsageFields> {
        (!self.irregular).then_some(self.fields)
    }
}

/// A chat usage object's output tokens, reasoning included: OpenAI counts reasoning inside
/// `completion_tokens`; xAI reports it beside them, and its `total_tokens` says so (prompt
/// plus completion plus reasoning). Billed as output either way. The one statement of the
/// rule for every reader of chat usage (streamed, whole, translated).
///
/// ```
/// use ballast_classify::chat_output_tokens;
///
/// // xAI: 40 reasoning tokens beside 10 completion tokens, the total says so.
/// assert_eq!(chat_output_tokens(Some(5), 10, 40, Some(55)), 50);
/// // OpenAI: the same 40 inside the 50 completion tokens.
/// assert_eq!(chat_output_tokens(Some(5), 50, 40, Some(55)), 50);
/// ```
pub fn chat_output_tokens(
    prompt: Option<u64>,
    completion: u64,
    reasoning: u64,
    total: Option<u64>,
) -> u64 {
    let outside = reasoning > 0
        && total.is_some()
        && total
            == prompt
                .and_then(|p| p.checked_add(completion))
                .and_then(|n| n.checked_add(reasoning));
    if outside {
        completion.saturating_add(reasoning)
    } else {
        completion
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nulls_and_details_are_read_by_their_last_value() {
        let fields = UsageFields::read(
            br#"{"prompt_tokens":5,"prompt_tokens":7,"completion_tokens":null,
                 "completion_tokens_details":{"reasoning_tokens":3,"x":[1,{"y":"z"}]},
                 "input_tokens_details":{"cached_tokens":2},"input_tokens_details":null,
                 "other":{"cached_tokens":"not ours"}}"#,
        )
        .unwrap();
        assert_eq!(fields.get(UsageField::PromptTokens), Some(7));
        assert_eq!(fields.get(UsageField::CompletionTokens), None);
        assert_eq!(
            fields.get(UsageField::Reasoning(UsageDetails::CompletionTokens)),
            Some(3)
        );
        assert!(fields.has_details(UsageDetails::CompletionTokens));
        assert!(!fields.has_details(UsageDetails::InputTokens));
        assert_eq!(
            fields.get(UsageField::Cached(UsageDetails::InputTokens)),
            None
        );
        for details in [
            UsageDetails::PromptTokens,
            UsageDetails::CompletionTokens,
            UsageDetails::InputTokens,
            UsageDetails::OutputTokens,
        ] {
            assert_eq!(fields.get(UsageField::Cached(details)), None);
        }
    }

    #[test]
    fn a_known_member_of_another_shape_leaves_the_object_to_its_reader() {
        for odd in [
            r#"{"prompt_tokens":1.0}"#,
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":"12"}"#,
            r#"{"prompt_tokens":18446744073709551616}"#,
            r#"{"prompt_tokens_details":[]}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":true}}"#,
        ] {
            assert_eq!(UsageFields::read(odd.as_bytes()), None, "{odd}");
        }
        assert_eq!(UsageFields::read(b"[]"), None);
    }
}
