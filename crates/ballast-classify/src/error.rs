//! Errors: [`ClassifiedError`], the one error type the classify layer returns.

use std::error::Error as StdError;
use std::fmt;

use crate::outcome::transport_class;
use crate::{Outcome, OutcomeClass, ProviderError, StreamSummary};

/// A boxed, thread-safe error, as tower layers pass them around.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// An attempt that produced no usable response, with its [`Outcome`].
///
/// Returned by the classify layer for transport errors (refused connections, bodies cut off,
/// I/O timeouts) and unreadable bodies ([`BodyTooLarge`]). Once boxed by outer layers, get
/// it back with `error.downcast_ref::<ClassifiedError>()`, or skip the downcast with
/// [`Outcome::from_error`], which also walks source chains. Its `Display` never contains
/// request data, so it is safe to log.
#[derive(Debug)]
pub struct ClassifiedError {
    outcome: Outcome,
    detail: Option<Box<ProviderError>>,
    source: Option<BoxError>,
    /// A stream that failed before its first content: what was seen of it.
    stream: Option<Box<StreamSummary>>,
    /// The attempts the call took before it failed with this (0: not told, one).
    attempts: u32,
}

impl ClassifiedError {
    /// An error with `outcome`, caused by `source`.
    pub fn new(outcome: Outcome, source: Option<BoxError>) -> Self {
        Self {
            outcome,
            detail: None,
            source,
            stream: None,
            attempts: 0,
        }
    }

    /// A transport error from the inner service, classified as
    /// [`Timeout`](OutcomeClass::Timeout) when its chain holds a timeout and as
    /// [`Network`](OutcomeClass::Network) otherwise.
    pub fn transport(source: BoxError) -> Self {
        if let Some(classified) = source.downcast_ref::<ClassifiedError>() {
            let outcome = classified.outcome;
            return Self::new(outcome, Some(source));
        }
        let mut class = OutcomeClass::Network;
        let mut current: Option<&(dyn StdError + 'static)> = Some(&*source);
        while let Some(err) = current {
            if let Some(found) = transport_class(err) {
                class = found;
                if found == OutcomeClass::Timeout {
                    break;
                }
            }
            current = err.source();
        }
        Self::new(Outcome::new(class), Some(source))
    }

    /// A local layer's refusal (yours: a tenant quota, a policy check), class
    /// [`Refused`](OutcomeClass::Refused): nothing was sent, so no layer retries it, counts
    /// it against the provider or charges it; `reason` (your error type) is its source and
    /// its message, and `retry_in`, if any, its wait hint (a `Retry-After` through a proxy).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ballast_classify::{ClassifiedError, Outcome, OutcomeClass};
    ///
    /// let error = ClassifiedError::refused("tenant quota spent".into(), Some(Duration::from_secs(60)));
    /// assert_eq!(error.class(), OutcomeClass::Refused);
    /// assert!(error.class().is_local_refusal());
    /// assert_eq!(error.to_string(), "refused: tenant quota spent");
    /// assert_eq!(error.outcome().wait_hint().map(|h| h.delay()), Some(Duration::from_secs(60)));
    /// ```
    pub fn refused(reason: BoxError, retry_in: Option<std::time::Duration>) -> Self {
        let hint = retry_in.map(|delay| crate::WaitHint::new(delay, crate::HintSource::Local));
        Self::new(
            Outcome::new(OutcomeClass::Refused).with_wait_hint(hint),
            Some(reason),
        )
    }

    /// Attaches the provider's error object.
    pub fn with_detail(mut self, detail: Option<Box<ProviderError>>) -> Self {
        self.detail = detail;
        self
    }

    /// Notes what was seen of a stream that failed before its first content (a cut, a
    /// first-content timeout), so the layers charge it from that.
    pub fn with_stream(mut self, summary: StreamSummary) -> Self {
        self.stream = Some(Box::new(summary));
        self
    }

    /// What was seen of the stream this attempt was, when it was one.
    pub fn stream(&self) -> Option<&StreamSummary> {
        self.stream.as_deref()
    }

    /// Notes how many attempts the call took before it failed with this (the retry layer
    /// does, so the logs above count them all).
    pub fn set_attempts(&mut self, attempts: u32) {
        self.attempts = attempts;
    }

    /// How many attempts the call took, when a retry layer said.
    pub fn attempts(&self) -> Option<u32> {
        (self.attempts != 0).then_some(self.attempts)
    }

    pub(crate) fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The outcome.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Shorthand for `self.outcome().class()`.
    pub fn class(&self) -> OutcomeClass {
        self.outcome.class()
    }

    /// The provider's error object, if the body held one.
    pub fn detail(&self) -> Option<&ProviderError> {
        self.detail.as_deref()
    }
}

impl fmt::Display for ClassifiedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.outcome.class())?;
        if let Some(status) = self.outcome.status() {
            write!(f, " (HTTP {})", status.as_u16())?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        } else if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for ClassifiedError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A response body longer than the classify layer's limit. Its class is
/// [`InvalidResponse`](OutcomeClass::InvalidResponse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    limit: usize,
}

impl BodyTooLarge {
    /// The limit that was exceeded, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response body exceeds the {} byte limit", self.limit)
    }
}

impl StdError for BodyTooLarge {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_finds_timeouts_deep_in_chains() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("client error")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Wrapper(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let err = ClassifiedError::transport(Box::new(timed_out));
        assert_eq!(err.class(), OutcomeClass::Timeout);
        assert_eq!(err.to_string(), "timeout: client error");

        let reset = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            ClassifiedError::transport(Box::new(reset)).class(),
            OutcomeClass::Network
        );
        assert_eq!(
            ClassifiedError::transport("opaque".into()).class(),
            OutcomeClass::Network
        );
    }

    #[test]
    fn display_names_class_status_and_detail() {
        let outcome = Outcome::from_status(http::StatusCode::PAYLOAD_TOO_LARGE)
            .with_class(OutcomeClass::InvalidResponse);
        let err = ClassifiedError::new(outcome, Some(Box::new(BodyTooLarge::new(10))));
        assert_eq!(
            err.to_string(),
            "invalid_response (HTTP 413): response body exceeds the 10 byte limit"
        );
        assert!(err.source().unwrap().is::<BodyTooLarge>());
    }
}
