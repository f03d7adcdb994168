//! [`Failover`]: an ordered chain of targets; the next one serves when the current one
//! cannot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ballast_classify::{BoxError, ClassifiedError, Outcome, OutcomeClass, RequestBody};
use tower::ServiceExt;
use tower_service::Service;

use crate::hedge::past_deadline;
use crate::{Served, Target};

/// The classes that send a call on to the next target by default: the target is open or
/// latched (`circuit_open`), its account is empty (`quota_exhausted`), its key is refused
/// (`auth`), the prompt does not fit its window (`context_too_long`), its retries are spent
/// on a failure worth trying elsewhere (`server_error`, `overloaded`, `timeout`, `network`,
/// `rate_limited`, a broken answer: `invalid_response`), or its throttle refused
/// (`throttled`). A spent budget (a route has one), a content filter's refusal or a bad
/// request is the caller's to see: another target would refuse it too.
const DEFAULT_CLASSES: [OutcomeClass; 11] = [
    OutcomeClass::CircuitOpen,
    OutcomeClass::QuotaExhausted,
    OutcomeClass::Auth,
    OutcomeClass::ContextTooLong,
    OutcomeClass::ServerError,
    OutcomeClass::Overloaded,
    OutcomeClass::Timeout,
    OutcomeClass::Network,
    OutcomeClass::RateLimited,
    OutcomeClass::InvalidResponse,
    OutcomeClass::Throttled,
];

/// Serves each call from the first target of an ordered chain that can, each target being
/// its own whole stack.
///
/// A call goes to the first target, addressed to it (base URL, model, no credentials: see
/// [`Target`]), marked [`FailFast`](ballast_classify::FailFast) so that an open breaker
/// refuses it at once instead of holding it. If its final outcome is one of the failover
/// classes (by default: open or latched, quota, auth, context too long, retries spent on a
/// server error, overload, timeout, network error, rate limit or broken answer, a
/// throttle's refusal), the call goes to the next target, and so on; the last target is not
/// marked, so its breaker's patience applies. The answer (or the last failure) carries
/// [`Served`].
///
/// No target is tried once the call's [`Deadline`](ballast_classify::Deadline) has passed
/// (as no retry starts past it): the failure that ended the last target tried is the
/// answer.
///
/// Every call starts at the first target, so the chain goes back to the primary as soon as
/// its breaker lets a call through again (its probe is the first call after its open time).
/// Each target's stack logs, settles and prices its own attempts: a failed attempt is on the
/// target that failed it, the answer on the target that gave it.
pub struct Failover<R> {
    targets: Arc<[Target<R>]>,
    /// Bit `i` set: class `OutcomeClass::ALL[i]` fails over.
    classes: u32,
}

impl<R> Clone for Failover<R> {
    fn clone(&self) -> Self {
        Self {
            targets: Arc::clone(&self.targets),
            classes: self.classes,
        }
    }
}

impl<R> std::fmt::Debug for Failover<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("targets", &self.targets)
            .field("classes", &format_args!("{:#x}", self.classes))
            .finish()
    }
}

impl<R> Failover<R> {
    /// A chain of `targets`, first first. An empty chain answers every call with an error.
    pub fn new(targets: impl IntoIterator<Item = Target<R>>) -> Self {
        Self {
            targets: targets.into_iter().collect(),
            classes: DEFAULT_CLASSES.iter().fold(0, |bits, c| bits | bit(*c)),
        }
    }

    /// Whether an outcome of `class` sends the call on to the next target.
    pub fn fail_over_on(mut self, class: OutcomeClass, on: bool) -> Self {
        if on {
            self.classes |= bit(class);
        } else {
            self.classes &= !bit(class);
        }
        self
    }

    /// The targets, first first.
    pub fn targets(&self) -> &[Target<R>] {
        &self.targets
    }

    fn fails_over(&self, class: OutcomeClass) -> bool {
        self.classes & bit(class) != 0
    }
}

fn bit(class: OutcomeClass) -> u32 {
    OutcomeClass::ALL
        .iter()
        .position(|c| *c == class)
        .map_or(0, |i| 1 << i)
}

/// The future of [`Failover`]: the call to each target in turn (boxed: one allocation per
/// call, small beside a provider call).
pub type ResponseFuture<R> =
    Pin<Box<dyn Future<Output = Result<http::Response<R>, BoxError>> + Send>>;

impl<R> Service<http::Request<RequestBody>> for Failover<R>
where
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<R>;

    /// Always ready: each target is called through a clone made ready for that call.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let route = self.clone();
        Box::pin(async move {
            // The last target that may take the request: its breaker's patience applies.
            let last = route.targets.iter().rposition(|t| t.may_take(&request));
            let mut kept: Option<(Result<http::Response<R>, BoxError>, usize)> = None;
            for (i, target) in route.targets.iter().enumerate() {
                // No target is tried past the call's deadline, as no retry starts past it:
                // the call ends within its deadline plus one attempt's timeout, with the
                // last failure.
                if kept.is_some() && past_deadline(&request, tokio::time::Instant::now()) {
                    break;
                }
                let addressed = match target.address(&request, Some(i) == last) {
                    Ok(addressed) => addressed,
                    Err(why) => {
                        tracing::debug!(
                            target: "ballast::route",
                            target_name = %target.name,
                            reason = %why.0,
                            "passing over a target that cannot take the request"
                        );
                        continue;
                    }
                };
                let result = target.service.clone().oneshot(addressed).await;
                let class = Outcome::from_result(&result).class();
                let result = result.map(|response| target.answer(&request, response));
                let more = last.is_some_and(|last| i < last);
                if more && route.fails_over(class) {
                    tracing::info!(
                        target: "ballast::route",
                        from = %target.name,
                        %class,
                        "failing over"
                    );
                    kept = Some((result, i));
                    continue;
                }
                // The last target, or an outcome that stays: this is the call's answer.
                return route.served(result, i);
            }
            // No target took the call after the last failure: that failure is the answer.
            match kept {
                Some((result, i)) => route.served(result, i),
                None => Err(ClassifiedError::new(
                    Outcome::new(OutcomeClass::BadRequest),
                    Some("no target of the route can take this request".into()),
                )
                .into()),
            }
        })
    }
}

impl<R> Failover<R> {
    /// `result` marked as served by target `i` (the targets before it tried or passed over).
    fn served(
        &self,
        result: Result<http::Response<R>, BoxError>,
        i: usize,
    ) -> Result<http::Response<R>, BoxError> {
        let target = &self.targets[i];
        result.map(|mut response| {
            response.extensions_mut().insert(Served {
                target: Arc::clone(&target.name),
                model: target.model.clone(),
                passed_over: i as u32,
            });
            response
        })
    }
}
