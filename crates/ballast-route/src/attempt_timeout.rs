//! [`AttemptTimeoutLayer`]: each attempt's time limit, and the share of its call's
//! deadline a target that can fail over may spend.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ballast_classify::{BoxError, Deadline, FailFast};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::timeout::error::Elapsed;
use tower_layer::Layer;
use tower_service::Service;

/// Times out each attempt after a fixed limit, as tower's `Timeout` does (the same
/// [`Elapsed`] error, classified `timeout`), or at its call's [`Deadline`] when that is
/// sooner; and an attempt on a target that can fail over (a request marked [`FailFast`], as
/// [`Failover`](crate::Failover) marks it for every target but the last) after at most half
/// of what is left of the deadline, so the next target has the rest.
///
/// Without it, a target that hangs holds a routed call for its whole attempt limit: with a
/// caller that waits 30 s and a limit of 90 s, the fallback is never tried in time, and the
/// call fails though a healthy target was there; and the last attempt of a call may answer
/// up to its limit past the deadline, to a caller that has left. A call without a deadline
/// keeps the fixed limit.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use ballast_classify::{Deadline, FailFast};
/// use ballast_route::AttemptTimeoutLayer;
/// use tower::{Layer, ServiceExt};
///
/// let hangs = tower::service_fn(|_: http::Request<()>| std::future::pending::<Result<(), std::convert::Infallible>>());
/// let service = AttemptTimeoutLayer::new(Duration::from_secs(90)).layer(hangs);
/// let mut request = http::Request::new(());
/// Deadline::after(Duration::from_secs(30)).set_sooner(request.extensions_mut());
/// request.extensions_mut().insert(FailFast);
/// let started = tokio::time::Instant::now();
/// assert!(service.oneshot(request).await.is_err());
/// assert_eq!(started.elapsed(), Duration::from_secs(15));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AttemptTimeoutLayer {
    limit: Duration,
}

impl AttemptTimeoutLayer {
    /// Attempts time out after `limit`, or sooner as above.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`AttemptTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> AttemptTimeout<S> {
    /// The limit for `request`: the fixed one, or what is left of its deadline when that is
    /// sooner (half of it when it may fail over).
    fn limit_for<B>(&self, request: &http::Request<B>) -> Duration {
        let Some(deadline) = Deadline::of(request) else {
            return self.limit;
        };
        let left = deadline.remaining();
        let share = if FailFast::is_set(request) {
            left / 2
        } else {
            left
        };
        self.limit.min(share)
    }
}

impl<S, B> Service<http::Request<B>> for AttemptTimeout<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AttemptTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let limit = self.limit_for(&request);
        AttemptTimeoutFuture {
            response: self.inner.call(request),
            sleep: tokio::time::sleep(limit),
        }
    }
}

pin_project! {
    /// The future of [`AttemptTimeout`]: the attempt, or [`Elapsed`] when its time is up.
    #[derive(Debug)]
    pub struct AttemptTimeoutFuture<F> {
        #[pin]
        response: F,
        #[pin]
        sleep: Sleep,
    }
}

impl<F, T, E> Future for AttemptTimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.response.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed::new().into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn hangs() -> impl Service<
        http::Request<()>,
        Response = (),
        Error = std::convert::Infallible,
        Future = std::future::Pending<Result<(), std::convert::Infallible>>,
    > + Clone {
        tower::service_fn(|_: http::Request<()>| std::future::pending())
    }

    /// How long an attempt on a hanging service ran before it timed out.
    async fn ran_for(deadline: Option<u64>, fail_fast: bool) -> Duration {
        let service = AttemptTimeoutLayer::new(Duration::from_secs(90)).layer(hangs());
        let mut request = http::Request::new(());
        if let Some(seconds) = deadline {
            Deadline::after(Duration::from_secs(seconds)).set_sooner(request.extensions_mut());
        }
        if fail_fast {
            request.extensions_mut().insert(FailFast);
        }
        let started = tokio::time::Instant::now();
        let error = service.oneshot(request).await.unwrap_err();
        assert!(error.is::<Elapsed>(), "{error}");
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_can_fail_over_spends_half_of_what_is_left() {
        assert_eq!(ran_for(Some(30), true).await, Duration::from_secs(15));
        // A deadline far off: the fixed limit is sooner.
        assert_eq!(ran_for(Some(300), true).await, Duration::from_secs(90));
        // The last target: what is left of the deadline, or the fixed limit if sooner.
        assert_eq!(ran_for(Some(30), false).await, Duration::from_secs(30));
        assert_eq!(ran_for(Some(300), false).await, Duration::from_secs(90));
        // A call without a deadline: the fixed limit.
        assert_eq!(ran_for(None, true).await, Duration::from_secs(90));
        assert_eq!(ran_for(None, false).await, Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_is_the_answer() {
        let answers = tower::service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, std::convert::Infallible>(7)
        });
        let service = AttemptTimeoutLayer::new(Duration::from_secs(2)).layer(answers);
        assert_eq!(service.oneshot(http::Request::new(())).await.unwrap(), 7);
    }
}
