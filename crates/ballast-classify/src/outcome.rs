//! [`Outcome`]: the verdict on one attempt, as it travels between layers.

use std::error::Error as StdError;

use http::StatusCode;

use crate::{ClassifiedError, OutcomeClass, WaitHint};

/// The verdict on one attempt: its class, the HTTP status if there was one, and the
/// provider's wait hint if it gave one.
///
/// The classify layer puts an `Outcome` into every response's extensions and into every
/// [`ClassifiedError`]; outer layers read it back with [`Outcome::from_response`] and
/// [`Outcome::from_error`] instead of parsing bodies again. It is `Copy` and allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    class: OutcomeClass,
    status: Option<StatusCode>,
    wait_hint: Option<WaitHint>,
}

impl Outcome {
    /// An outcome of `class`, with no status and no hint.
    pub const fn new(class: OutcomeClass) -> Self {
        Self {
            class,
            status: None,
            wait_hint: None,
        }
    }

    /// The outcome an HTTP status alone implies (see [`OutcomeClass::from_status`]).
    pub fn from_status(status: StatusCode) -> Self {
        Self::new(OutcomeClass::from_status(status)).with_status(status)
    }

    /// Sets the HTTP status.
    pub const fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets (or clears) the wait hint.
    pub const fn with_wait_hint(mut self, hint: Option<WaitHint>) -> Self {
        self.wait_hint = hint;
        self
    }

    /// Changes the class, keeping status and hint.
    pub const fn with_class(mut self, class: OutcomeClass) -> Self {
        self.class = class;
        self
    }

    /// The class.
    pub const fn class(&self) -> OutcomeClass {
        self.class
    }

    /// The HTTP status, when the attempt got a response.
    pub const fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The provider's wait hint, when it gave one. Data, not a command.
    pub const fn wait_hint(&self) -> Option<WaitHint> {
        self.wait_hint
    }

    /// Shorthand for `self.class().is_success()`.
    pub const fn is_success(&self) -> bool {
        self.class.is_success()
    }

    /// Shorthand for `self.class().is_retryable()`.
    pub const fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }

    /// Shorthand for `self.class().is_provider_failure()`.
    pub const fn is_provider_failure(&self) -> bool {
        self.class.is_provider_failure()
    }

    /// The outcome of a response: the one the classify layer attached, or, for a response
    /// that never passed through it, the one its status implies.
    pub fn from_response<B>(response: &http::Response<B>) -> Self {
        response
            .extensions()
            .get::<Outcome>()
            .copied()
            .unwrap_or_else(|| Self::from_status(response.status()))
    }

    /// The outcome of an error, found by walking its source chain.
    ///
    /// Recognised: [`ClassifiedError`] (its own outcome), tower's `Elapsed` and I/O timeouts
    /// ([`Timeout`](OutcomeClass::Timeout)), hyper and I/O connection errors
    /// ([`Network`](OutcomeClass::Network)). Anything else is
    /// [`Unknown`](OutcomeClass::Unknown).
    pub fn from_error(error: &(dyn StdError + 'static)) -> Self {
        let mut current = Some(error);
        while let Some(err) = current {
            if let Some(classified) = err.downcast_ref::<ClassifiedError>() {
                return classified.outcome();
            }
            if let Some(class) = transport_class(err) {
                return Self::new(class);
            }
            current = err.source();
        }
        Self::new(OutcomeClass::Unknown)
    }

    /// The outcome of a call's result, whichever side it is on.
    pub fn from_result<B, E>(result: &Result<http::Response<B>, E>) -> Self
    where
        E: AsRef<dyn StdError + Send + Sync + 'static>,
    {
        match result {
            Ok(response) => Self::from_response(response),
            Err(error) => {
                let error: &(dyn StdError + 'static) = error.as_ref();
                Self::from_error(error)
            }
        }
    }
}

/// Whether `error` proves that its request never reached the provider, so nothing can have
/// been billed: a local layer refused it ([`OutcomeClass::is_local_refusal`], or the
/// request could not be read: [`RequestTooLarge`](crate::RequestTooLarge),
/// [`RequestBodyError`](crate::RequestBodyError)), or the connection was refused (`ConnectionRefused` anywhere in the source chain).
///
/// Anything else may have reached the provider: a timeout, a reset, a body cut off, an
/// unreadable answer, an error we do not know. The budget guard charges those at the
/// attempt's reservation, as a provider that did the work would bill them.
pub fn never_sent(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(classified) = err.downcast_ref::<ClassifiedError>()
            && classified.class().is_local_refusal()
        {
            return true;
        }
        if crate::read_request::is_read_refusal(err) {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// The class of one error in a chain, when it is a transport error we know.
pub(crate) fn transport_class(err: &(dyn StdError + 'static)) -> Option<OutcomeClass> {
    if err.is::<tower::timeout::error::Elapsed>() {
        return Some(OutcomeClass::Timeout);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return Some(match io.kind() {
            std::io::ErrorKind::TimedOut => OutcomeClass::Timeout,
            _ => OutcomeClass::Network,
        });
    }
    if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
        if hyper.is_timeout() {
            return Some(OutcomeClass::Timeout);
        }
        // A hyper error may wrap an I/O error with a more precise kind; let the walk find it.
        if hyper.source().is_none() {
            return Some(OutcomeClass::Network);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HintSource;
    use std::time::Duration;

    type BoxError = Box<dyn StdError + Send + Sync>;

    #[test]
    fn response_without_extension_falls_back_to_status() {
        let response = http::Response::builder().status(503).body(()).unwrap();
        let outcome = Outcome::from_response(&response);
        assert_eq!(outcome.class(), OutcomeClass::ServerError);
        assert_eq!(outcome.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn response_extension_wins() {
        let hint = WaitHint::new(Duration::from_secs(3), HintSource::Message);
        let outcome = Outcome::new(OutcomeClass::Auth).with_wait_hint(Some(hint));
        let mut response = http::Response::builder().status(400).body(()).unwrap();
        response.extensions_mut().insert(outcome);
        assert_eq!(Outcome::from_response(&response), outcome);
    }

    #[test]
    fn errors_through_box_and_chains() {
        let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(
            Outcome::from_error(&*elapsed).class(),
            OutcomeClass::Timeout
        );
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            Outcome::from_error(&*refused).class(),
            OutcomeClass::Network
        );
        let classified: BoxError = Box::new(ClassifiedError::new(
            Outcome::new(OutcomeClass::InvalidResponse),
            None,
        ));
        assert_eq!(
            Outcome::from_error(&*classified).class(),
            OutcomeClass::InvalidResponse
        );
        let other: BoxError = "something odd".into();
        assert_eq!(Outcome::from_error(&*other).class(), OutcomeClass::Unknown);

        let result: Result<http::Response<()>, BoxError> = Err(elapsed);
        assert!(!never_sent(result.as_ref().unwrap_err().as_ref()));
        assert_eq!(Outcome::from_result(&result).class(), OutcomeClass::Timeout);
    }

    #[test]
    fn only_local_refusals_and_refused_connections_were_never_sent() {
        let refused = ClassifiedError::transport(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(never_sent(&refused));
        let reset = ClassifiedError::transport(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(
            !never_sent(&reset),
            "a reset may come after the request left"
        );
        for class in OutcomeClass::ALL {
            let error = ClassifiedError::new(Outcome::new(class), None);
            assert_eq!(never_sent(&error), class.is_local_refusal(), "{class}");
        }
        let timeout = tower::timeout::error::Elapsed::new();
        assert!(!never_sent(&timeout));
    }
}
