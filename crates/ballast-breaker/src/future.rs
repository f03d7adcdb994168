//! The response future of [`Breaker`](crate::Breaker), and the permit that records its
//! outcome, even when the call is dropped half way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ballast_classify::{BoxError, InspectBody, Outcome, StreamEnd};
use pin_project_lite::pin_project;

use crate::BreakerOpen;
use crate::registry::emit;
use crate::state::{KeyBreaker, PermitKind};

/// A call let through. Dropped without an outcome (the caller gave up), it still gives a
/// half-open probe slot back, so a cancelled probe cannot wedge the breaker.
#[derive(Debug)]
pub(crate) struct Permit {
    breaker: Arc<KeyBreaker>,
    kind: PermitKind,
    started: u64,
    done: bool,
}

impl Permit {
    pub(crate) fn new(breaker: Arc<KeyBreaker>, kind: PermitKind, started: u64) -> Self {
        Self {
            breaker,
            kind,
            started,
            done: false,
        }
    }

    /// The breaker it was given by.
    pub(crate) fn breaker(&self) -> &Arc<KeyBreaker> {
        &self.breaker
    }

    /// Whether the call is a half-open probe.
    pub(crate) fn is_probe(&self) -> bool {
        matches!(self.kind, PermitKind::Probe(_))
    }

    /// Records the call's `outcome` (`None`: dropped); `queued` is the time it waited in a
    /// line below before it left, which is not the provider's.
    fn finish(&mut self, outcome: Option<&Outcome>, queued: Duration) {
        if self.done {
            return;
        }
        self.done = true;
        let now = self.breaker.now();
        let elapsed = Duration::from_nanos(now.saturating_sub(self.started)).saturating_sub(queued);
        let config = Arc::clone(&self.breaker.config);
        if let Some(transition) = self
            .breaker
            .record(&config, self.kind, outcome, elapsed, now)
        {
            emit(self.breaker.key(), &transition);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(None, Duration::ZERO);
    }
}

/// A patient call's future: its wait in line, then the call.
type Waiting<R> = Pin<Box<dyn Future<Output = Result<http::Response<R>, BoxError>> + Send>>;

pin_project! {
    /// The future returned by [`Breaker`](crate::Breaker).
    pub struct ResponseFuture<F, R> {
        #[pin]
        kind: Kind<F, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R> {
        Called { #[pin] future: F, permit: Option<Permit> },
        Refused { refusal: Option<BreakerOpen> },
        Waiting { future: Waiting<R> },
    }
}

impl<F, R> std::fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Refused { .. } => "refused",
            Kind::Waiting { .. } => "waiting",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) fn called(future: F, permit: Option<Permit>) -> Self {
        Self {
            kind: Kind::Called { future, permit },
        }
    }

    pub(crate) fn refused(refusal: BreakerOpen) -> Self {
        Self {
            kind: Kind::Refused {
                refusal: Some(refusal),
            },
        }
    }

    pub(crate) fn waiting(future: Waiting<R>) -> Self {
        Self {
            kind: Kind::Waiting { future },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    E: Into<BoxError>,
    R: InspectBody,
{
    type Output = Result<http::Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, permit } => {
                let mut result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(mut permit) = permit.take() {
                    let (outcome, queued) = match &result {
                        Ok(response) => (
                            Outcome::from_response(response),
                            ballast_classify::Queued::of_response(response),
                        ),
                        Err(error) => (Outcome::from_error(&**error), Duration::ZERO),
                    };
                    permit.finish(Some(&outcome), queued);
                    if let Ok(response) = &mut result {
                        hear_the_end(response, permit.breaker());
                    }
                }
                Poll::Ready(result)
            }
            KindProj::Refused { refusal } => Poll::Ready(Err(match refusal.take() {
                Some(refusal) => Box::new(refusal.into_classified()),
                None => "breaker response future polled after completion".into(),
            })),
            KindProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

/// A watched stream was a success at its first content; if it then fails (cut, stalled, an
/// error event), the breaker hears that failure too. A caller leaving says nothing of the
/// provider.
fn hear_the_end<R: InspectBody>(response: &mut http::Response<R>, breaker: &Arc<KeyBreaker>) {
    if !response.body().watches_stream() {
        return;
    }
    // Only a stream pays for the reference its hook keeps.
    let breaker = Arc::clone(breaker);
    let started = breaker.now();
    let hook = Box::new(move |summary: &ballast_classify::StreamSummary| {
        if matches!(summary.end, StreamEnd::Finished | StreamEnd::Dropped) {
            return;
        }
        let now = breaker.now();
        let elapsed = Duration::from_nanos(now.saturating_sub(started));
        let config = Arc::clone(&breaker.config);
        let outcome = summary.end.outcome();
        if let Some(transition) =
            breaker.record(&config, PermitKind::Closed, Some(&outcome), elapsed, now)
        {
            emit(breaker.key(), &transition);
        }
    });
    let _ = response.body_mut().on_end(hook);
}
