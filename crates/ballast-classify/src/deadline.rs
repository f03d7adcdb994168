//! [`Deadline`]: when a call must have its answer, and [`FailFast`]: that it must not wait;
//! both carried in the request's extensions.

use std::time::Duration;

use tokio::time::Instant;

/// The instant by which a logical call must be answered, as a request extension.
///
/// A caller (or [`ReadRequestLayer::deadline`](crate::ReadRequestLayer::deadline), for every
/// call) sets it once; it travels with every attempt. Layers that make a call wait (a
/// breaker's patience, a throttle's line) wait no longer than it, and refuse at once, with an
/// honest wait hint, a call they know they cannot serve in time. It is on tokio's clock, so a
/// paused test clock moves it.
///
/// ```
/// use std::time::Duration;
/// use ballast_classify::Deadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut request = http::Request::new(());
/// Deadline::after(Duration::from_secs(60)).set_sooner(request.extensions_mut());
/// Deadline::after(Duration::from_secs(300)).set_sooner(request.extensions_mut());
/// let deadline = Deadline::of(&request).unwrap();
/// assert_eq!(deadline.remaining(), Duration::from_secs(60));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// The deadline `within` from now (saturating far in the future).
    pub fn after(within: Duration) -> Self {
        let now = Instant::now();
        Self(
            now.checked_add(within)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        )
    }

    /// The instant.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// What is left of it now (zero once passed).
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The request's deadline, if it has one: the sooner of the caller's (this extension)
    /// and the read layer's ([`ReadRequestLayer::deadline`](crate::ReadRequestLayer::deadline),
    /// kept in the [`RequestFacts`](crate::RequestFacts)).
    pub fn of<B>(request: &http::Request<B>) -> Option<Self> {
        let extensions = request.extensions();
        let caller = extensions.get::<Self>().copied();
        let read = extensions
            .get::<crate::RequestFacts>()
            .and_then(|facts| facts.deadline)
            .map(Self);
        match (caller, read) {
            (Some(caller), Some(read)) => Some(caller.min(read)),
            (caller, read) => caller.or(read),
        }
    }

    /// Sets this deadline in `extensions` unless an earlier one is there already.
    pub fn set_sooner(self, extensions: &mut http::Extensions) {
        match extensions.get_mut::<Self>() {
            Some(existing) => *existing = (*existing).min(self),
            None => {
                extensions.insert(self);
            }
        }
    }
}

/// A request extension: this call must not wait for a layer's next chance (a breaker's
/// probe); a refusal is answered at once. A router sets it on every target but its last,
/// so that an open target sends the call on to the next one instead of holding it.
///
/// ```
/// use ballast_classify::FailFast;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(FailFast);
/// assert!(FailFast::is_set(&request));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FailFast;

impl FailFast {
    /// Whether `request` carries it.
    pub fn is_set<B>(request: &http::Request<B>) -> bool {
        request.extensions().get::<Self>().is_some()
    }
}
