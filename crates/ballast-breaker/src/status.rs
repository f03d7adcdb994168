//! [`BreakerState`]: what a breaker is doing, as a handle or an error reports it.

use std::fmt;
use std::time::Duration;

/// The state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through and are counted.
    Closed,
    /// Calls fail fast until the next probe.
    Open {
        /// Time until the breaker lets a probe through.
        retry_in: Duration,
    },
    /// A limited number of probes go through; their outcome closes or reopens the breaker.
    HalfOpen,
    /// Open until a handle resets it: no wait fixes the reason.
    Latched(LatchReason),
    /// Closed, but sending only a share of calls: the provider serves some and fails the
    /// rest, and the share refused follows what it serves ([`Admission`](crate::Admission)).
    Shedding,
    /// Forced open through a handle.
    ForcedOpen,
    /// Disabled through a handle: every call goes through, nothing is counted.
    Disabled,
}

impl BreakerState {
    /// A stable `snake_case` name, for logs and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
            Self::Latched(_) => "latched",
            Self::Shedding => "shedding",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { retry_in } => {
                write!(f, "open (next probe in {:.1}s)", retry_in.as_secs_f64())
            }
            Self::Latched(reason) => write!(f, "latched ({reason})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Why a breaker latched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatchReason {
    /// The provider rejected the key.
    Auth,
    /// The account's credits or quota are used up.
    QuotaExhausted,
}

impl fmt::Display for LatchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auth => "the provider rejected the API key; fix it, then reset the breaker",
            Self::QuotaExhausted => {
                "the account's credits or quota are used up; top up, then reset the breaker"
            }
        })
    }
}
