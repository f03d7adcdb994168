//! The outcome classes: what one LLM API attempt came to.

use std::fmt;

use http::StatusCode;

/// What one attempt came to, in words every Ballast layer shares.
///
/// Each class answers the two questions the other layers ask, in one place:
/// [`is_retryable`](Self::is_retryable) (would the same request, sent again later, plausibly
/// succeed?) and [`is_provider_failure`](Self::is_provider_failure) (does it say the provider is
/// unhealthy, so a circuit breaker should count it?).
///
/// | class | retryable | provider failure | typical source |
/// |---|---|---|---|
/// | `Success` | - | no | 2xx without an error object |
/// | `RateLimited` | yes | no | 429, `rate_limit_error`, Gemini `RESOURCE_EXHAUSTED` |
/// | `QuotaExhausted` | **no** | no | 402, OpenAI `insufficient_quota`, xAI "used all available credits", Anthropic's 429 `enforced_spend_limit_reached` |
/// | `Auth` | no | no | 401, 403, xAI 400 "Incorrect API key provided" |
/// | `BadRequest` | no | no | 400, 404, 413, 422 |
/// | `ContextTooLong` | no | no | `context_length_exceeded`, "prompt is too long" |
/// | `ContentFiltered` | no | no | `content_filter`, `content_policy_violation` |
/// | `ServerError` | yes | yes | 500, 502, 503, 504; an error object in a 200 body |
/// | `Overloaded` | yes | yes | Anthropic 529, Groq 498, "model is overloaded" |
/// | `Timeout` | yes | yes | tower's `Elapsed`, 408, I/O timeouts |
/// | `Network` | yes | yes | connection refused or reset, body cut off |
/// | `InvalidResponse` | no | yes | a 2xx body that is not JSON, or larger than the cap |
/// | `CircuitOpen`, `BudgetExceeded`, `Throttled` | no | no | a local layer refused: nothing was sent |
/// | `Refused` | no | no | a local layer of yours refused ([`ClassifiedError::refused`](crate::ClassifiedError::refused)): nothing was sent |
/// | `Cancelled` | no | no | the caller dropped the call before it ended (logs and metrics only) |
/// | `Unknown` | no | no | anything else (1xx, 3xx, unrecognised errors) |
///
/// `InvalidResponse` is not retryable by default because the provider usually billed the
/// attempt: sending it again pays twice for what is most often a deterministic fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum OutcomeClass {
    /// The call succeeded.
    Success,
    /// The provider rate-limited the call; it usually says when to try again.
    RateLimited,
    /// The account's quota, credits or spending limit is used up. No retry fixes this.
    QuotaExhausted,
    /// The key is missing, malformed, revoked or lacks permission.
    Auth,
    /// The request itself is wrong (bad parameter, unknown model, too large).
    BadRequest,
    /// The prompt (plus output cap) does not fit the model's context window.
    ContextTooLong,
    /// The provider's content policy refused the prompt or cut the output.
    ContentFiltered,
    /// The provider failed (5xx, or an error object inside a 200 body).
    ServerError,
    /// The provider says it is over capacity (Anthropic 529, Groq 498).
    Overloaded,
    /// The attempt took too long (tower's `Elapsed`, HTTP 408, an I/O timeout).
    Timeout,
    /// The connection failed: refused, reset, or closed before the body ended.
    Network,
    /// The response could not be read: a 2xx body that is not JSON, or larger than the cap.
    InvalidResponse,
    /// A local circuit breaker refused the call: nothing was sent. Not retryable by default,
    /// so a retry loop does not hammer an open breaker; its error says when the next probe is.
    CircuitOpen,
    /// A local spend cap refused the call: nothing was sent. Its error says when the budget
    /// window turns.
    BudgetExceeded,
    /// A local rate limiter refused the call: its queue was full, or the call would have
    /// waited longer than allowed for its turn. Nothing was sent. Its error says when a turn
    /// is likely.
    Throttled,
    /// Another local layer refused the call (one of yours: a tenant quota, a policy check):
    /// nothing was sent. Its own error, the source of the
    /// [`ClassifiedError::refused`](crate::ClassifiedError::refused) it returns, says why;
    /// every Ballast layer treats it as the local refusals above (not retried, not a
    /// provider failure, not charged), so a layer adds its refusal without a class of its own.
    Refused,
    /// The caller dropped the call before it ended. No layer returns it: the cost logger
    /// logs and counts a dropped call under it, and the budget guard charges such an
    /// attempt as the provider may have billed it.
    Cancelled,
    /// Nothing above fits.
    Unknown,
}

impl OutcomeClass {
    /// Every class, in declaration order (handy for metrics tables and exhaustive tests).
    pub const ALL: [OutcomeClass; 18] = [
        Self::Success,
        Self::RateLimited,
        Self::QuotaExhausted,
        Self::Auth,
        Self::BadRequest,
        Self::ContextTooLong,
        Self::ContentFiltered,
        Self::ServerError,
        Self::Overloaded,
        Self::Timeout,
        Self::Network,
        Self::InvalidResponse,
        Self::CircuitOpen,
        Self::BudgetExceeded,
        Self::Throttled,
        Self::Refused,
        Self::Cancelled,
        Self::Unknown,
    ];

    /// The number of classes.
    pub const COUNT: usize = Self::ALL.len();

    /// The class's position in [`ALL`](Self::ALL), for per-class tables (`[T; COUNT]`).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// `true` for [`Success`](Self::Success).
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }

    /// Whether sending the same request again later may plausibly succeed.
    ///
    /// This is the default a retry policy starts from; policies may override it per class.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::ServerError
                | Self::Overloaded
                | Self::Timeout
                | Self::Network
        )
    }

    /// Whether the outcome says the provider (or the path to it) is unhealthy.
    ///
    /// Circuit breakers count only these. A 4xx, a rate limit or an exhausted quota says
    /// something about the caller, not about the provider's health.
    pub const fn is_provider_failure(self) -> bool {
        matches!(
            self,
            Self::ServerError
                | Self::Overloaded
                | Self::Timeout
                | Self::Network
                | Self::InvalidResponse
        )
    }

    /// Whether a local layer refused the call before anything was sent (an open breaker,
    /// a spent budget, a full throttle queue).
    pub const fn is_local_refusal(self) -> bool {
        matches!(
            self,
            Self::CircuitOpen | Self::BudgetExceeded | Self::Throttled | Self::Refused
        )
    }

    /// A stable `snake_case` name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RateLimited => "rate_limited",
            Self::QuotaExhausted => "quota_exhausted",
            Self::Auth => "auth",
            Self::BadRequest => "bad_request",
            Self::ContextTooLong => "context_too_long",
            Self::ContentFiltered => "content_filtered",
            Self::ServerError => "server_error",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::InvalidResponse => "invalid_response",
            Self::CircuitOpen => "circuit_open",
            Self::BudgetExceeded => "budget_exceeded",
            Self::Throttled => "throttled",
            Self::Refused => "refused",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }

    /// The class an HTTP status alone implies, before any body is read.
    ///
    /// Body rules refine this (a 400 may turn out to be [`Auth`](Self::Auth) or
    /// [`ContextTooLong`](Self::ContextTooLong); a 200 may carry an error object).
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            200..=299 => Self::Success,
            401 | 403 => Self::Auth,
            402 => Self::QuotaExhausted,
            408 => Self::Timeout,
            429 => Self::RateLimited,
            // Groq's "flex tier capacity exceeded".
            498 => Self::Overloaded,
            // nginx's "client closed request": the caller went away, nothing to learn.
            499 => Self::Unknown,
            400..=497 => Self::BadRequest,
            // Anthropic's "overloaded_error".
            529 => Self::Overloaded,
            500..=599 => Self::ServerError,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for OutcomeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cases = [
            (200, OutcomeClass::Success),
            (204, OutcomeClass::Success),
            (400, OutcomeClass::BadRequest),
            (401, OutcomeClass::Auth),
            (402, OutcomeClass::QuotaExhausted),
            (403, OutcomeClass::Auth),
            (404, OutcomeClass::BadRequest),
            (408, OutcomeClass::Timeout),
            (413, OutcomeClass::BadRequest),
            (422, OutcomeClass::BadRequest),
            (429, OutcomeClass::RateLimited),
            (498, OutcomeClass::Overloaded),
            (500, OutcomeClass::ServerError),
            (502, OutcomeClass::ServerError),
            (503, OutcomeClass::ServerError),
            (504, OutcomeClass::ServerError),
            (529, OutcomeClass::Overloaded),
            (301, OutcomeClass::Unknown),
            (101, OutcomeClass::Unknown),
        ];
        for (code, class) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(OutcomeClass::from_status(status), class, "status {code}");
        }
    }

    #[test]
    fn retry_and_health_answers() {
        use OutcomeClass::*;
        let retryable: Vec<_> = OutcomeClass::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            [RateLimited, ServerError, Overloaded, Timeout, Network]
        );
        let health: Vec<_> = OutcomeClass::ALL
            .into_iter()
            .filter(|c| c.is_provider_failure())
            .collect();
        assert_eq!(
            health,
            [ServerError, Overloaded, Timeout, Network, InvalidResponse]
        );
        assert!(!QuotaExhausted.is_retryable());
        assert!(!RateLimited.is_provider_failure());
    }

    #[test]
    fn index_matches_position_in_all() {
        for (i, class) in OutcomeClass::ALL.into_iter().enumerate() {
            assert_eq!(class.index(), i);
        }
        assert_eq!(OutcomeClass::COUNT, 18);
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = OutcomeClass::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OutcomeClass::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
