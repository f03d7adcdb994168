//! [`Attempt`]: which attempt of a logical call a request or response belongs to;
//! [`Queued`]: how long an attempt waited in a local line before it left; and [`Sent`]:
//! when it left, for a layer above the lines that is timing it as it goes; [`Speculative`]:
//! an attempt sent while another of the same call is still out.

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// The attempt number of a request, and the final attempt count on a response.
///
/// The retry layer puts `Attempt(n)` on the request of every retry (n >= 2) and on the
/// response it finally returns. A request without one is a first attempt, so a call that is
/// never retried pays nothing for the bookkeeping; read it with [`Attempt::of_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attempt(NonZeroU32);

impl Attempt {
    /// The first attempt.
    pub const FIRST: Self = Self(NonZeroU32::MIN);

    /// Attempt `n`; 0 is read as 1.
    pub fn new(n: u32) -> Self {
        Self(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
    }

    /// The number, from 1.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The attempt a request is: its `Attempt` extension, or the first.
    pub fn of_request<B>(request: &http::Request<B>) -> Self {
        request
            .extensions()
            .get::<Self>()
            .copied()
            .unwrap_or(Self::FIRST)
    }

    /// How many attempts a response took: its `Attempt` extension, or one.
    pub fn of_response<B>(response: &http::Response<B>) -> Self {
        response
            .extensions()
            .get::<Self>()
            .copied()
            .unwrap_or(Self::FIRST)
    }

    /// How many attempts a call took before it failed with `error`: the count the retry
    /// layer noted on its [`ClassifiedError`](crate::ClassifiedError), or `None`.
    pub fn of_error(error: &(dyn std::error::Error + 'static)) -> Option<Self> {
        error
            .downcast_ref::<crate::ClassifiedError>()?
            .attempts()
            .map(Self::new)
    }
}

/// How long an attempt waited for its turn in a local line (the throttle's) before it was
/// sent, on its response: a layer above that times the provider (the breaker's slow-call
/// clock) takes it off. Absent: it did not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Queued(pub Duration);

impl Queued {
    /// The wait noted on `response`, or zero.
    pub fn of_response<B>(response: &http::Response<B>) -> Duration {
        response
            .extensions()
            .get::<Self>()
            .map_or(Duration::ZERO, |queued| queued.0)
    }
}

/// When an attempt left the stack's local lines (the breaker's patience, the throttle's
/// turn) for the provider: a cell a layer above the lines puts on the request before it
/// calls down, and the attempt's cost logger, below them, fills as the attempt starts. The
/// hedge times a call from here, so a call waiting for its turn is not taken for a slow
/// provider. A request without one costs the logger one look-up.
#[derive(Debug, Clone, Default)]
pub struct Sent(Arc<OnceLock<Instant>>);

impl Sent {
    /// An empty cell, for one attempt.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that the attempt left at `at`; a later note is ignored.
    pub fn mark(&self, at: Instant) {
        let _ = self.0.set(at);
    }

    /// When the attempt left, once it has.
    pub fn at(&self) -> Option<Instant> {
        self.0.get().copied()
    }

    /// Marks the `Sent` cell on `request`, if it carries one.
    pub fn mark_request<B>(request: &http::Request<B>, at: Instant) {
        if let Some(sent) = request.extensions().get::<Self>() {
            sent.mark(at);
        }
    }
}

/// On the request of an attempt sent while another attempt of the same call is still out
/// (a hedge): a line that serves the newest call first (the throttle's) does not let it pass
/// calls that have nothing out, until it has waited as long as any call may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Speculative;

impl Speculative {
    /// Whether `request` is a speculative attempt.
    pub fn of_request<B>(request: &http::Request<B>) -> bool {
        request.extensions().get::<Self>().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_cell_keeps_its_first_mark_across_clones() {
        let sent = Sent::new();
        let mut request = http::Request::new(());
        request.extensions_mut().insert(sent.clone());
        assert_eq!(sent.at(), None);
        let first = Instant::now();
        Sent::mark_request(&request, first);
        Sent::mark_request(&request, first + Duration::from_secs(1));
        assert_eq!(sent.at(), Some(first));
        // A request without a cell is left alone.
        Sent::mark_request(&http::Request::new(()), first);
    }

    #[test]
    fn absent_means_first() {
        let mut request = http::Request::new(());
        assert_eq!(Attempt::of_request(&request).get(), 1);
        request.extensions_mut().insert(Attempt::new(3));
        assert_eq!(Attempt::of_request(&request).get(), 3);
        assert_eq!(Attempt::new(0), Attempt::FIRST);
        assert_eq!(Attempt::of_response(&http::Response::new(())).get(), 1);
    }
}
