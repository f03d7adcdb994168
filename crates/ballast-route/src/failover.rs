//! [`Failover`]: an ordered chain of targets; the next one serves when the current one
//! cannot.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use ballast_classify::{
    BoxError, ClassifiedError, Dialect, Outcome, OutcomeClass, RequestBody, RequestFacts,
};
use tower::ServiceExt;
use tower_service::Service;

use crate::hedge::past_deadline;
use crate::{Api, Served, Target};

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
///
/// Targets that serve alike (the same model through two keys, two regions, or two
/// providers) can share the load ([`share_load`](Self::share_load)): a call then starts at
/// the one of them with the fewest calls in flight, taken in turn when they are equally
/// busy, and goes on to the others of the group before the targets after it.
pub struct Failover<R> {
    targets: Arc<[Target<R>]>,
    /// Bit `i` set: class `OutcomeClass::ALL[i]` fails over.
    classes: u32,
    /// The groups that share their load, when there are any.
    spread: Option<Arc<Spread>>,
}

impl<R> Clone for Failover<R> {
    fn clone(&self) -> Self {
        Self {
            targets: Arc::clone(&self.targets),
            classes: self.classes,
            spread: self.spread.clone(),
        }
    }
}

/// The groups of targets that share their load, and what each target has in flight.
#[derive(Debug)]
struct Spread {
    /// Each target's group (a range of target indices; a target alone is a group of one).
    group: Box<[Range<usize>]>,
    /// Calls in flight on each target (counted from its call to its answer's head).
    in_flight: Box<[AtomicU32]>,
    /// Per group, by its first target: calls begun, for taking equally busy members in turn.
    turns: Box<[AtomicU32]>,
}

impl Spread {
    /// The order a call tries the targets in: each group from its least busy member (the
    /// next in turn among the equally busy), wrapping round.
    fn order(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.group.len());
        let mut i = 0;
        while i < self.group.len() {
            let group = self.group[i].clone();
            let len = group.len();
            if len == 1 {
                order.push(group.start);
                i = group.end;
                continue;
            }
            let turn = self.turns[group.start].fetch_add(1, Ordering::Relaxed) as usize;
            let at = |k: usize| group.start + (turn + k) % len;
            let busy = |i: usize| self.in_flight[i].load(Ordering::Relaxed);
            let first = (0..len).min_by_key(|k| busy(at(*k))).unwrap_or(0);
            order.extend((0..len).map(|k| at(first + k)));
            i = group.end;
        }
        order
    }
}

/// One call in flight on a target of a spread route: counted until dropped.
struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicU32) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
            spread: None,
        }
    }

    /// Makes the targets at `indices` (first first) share their load: a call starts at the
    /// one with the fewest calls in flight, taken in turn when they are equally busy, and
    /// goes on to the others before the targets after them. A range that reaches past the
    /// chain is cut to it; one that overlaps a group declared before it, or holds fewer
    /// than two targets, changes nothing.
    ///
    /// ```
    /// use ballast_route::{Failover, Target};
    ///
    /// let target = |name: &'static str| {
    ///     Target::<String>::new(name, http::Uri::from_static("http://x.invalid/v1"),
    ///         tower::service_fn(|_: http::Request<ballast_classify::RequestBody>| async {
    ///             Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    ///         }))
    /// };
    /// // Two keys for the same model share the load; a cheaper model is the fallback.
    /// let route = Failover::new([target("xai-a"), target("xai-b"), target("fallback")])
    ///     .share_load(0..2);
    /// assert_eq!(route.targets().len(), 3);
    /// ```
    pub fn share_load(mut self, indices: Range<usize>) -> Self {
        let n = self.targets.len();
        let indices = indices.start.min(n)..indices.end.min(n);
        if indices.len() < 2 {
            return self;
        }
        // The groups so far (each target alone at first); counts start at zero, as the
        // route is still being built.
        let mut group: Box<[Range<usize>]> = match self.spread.as_deref() {
            Some(spread) => spread.group.clone(),
            None => (0..n).map(|i| i..i + 1).collect(),
        };
        if indices.clone().all(|i| group[i].len() == 1) {
            for i in indices.clone() {
                group[i] = indices.clone();
            }
        }
        let counts = || (0..n).map(|_| AtomicU32::new(0)).collect();
        self.spread = Some(Arc::new(Spread {
            group,
            in_flight: counts(),
            turns: counts(),
        }));
        self
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
            // A call Ballast has no reading of (a file, a batch, a moderation, a token
            // count) goes to the chain's first target of its API (else its first), as its
            // last: the ids it names or makes live in that account, and nothing says
            // another would serve it alike.
            if RequestFacts::of(&request).dialect() == Dialect::Other {
                let api = Api::of_unread(request.uri().path());
                let i = (route.targets.iter())
                    .position(|target| target.api() == api)
                    .unwrap_or(0);
                let target = &route.targets[i];
                let result = match target.address(&request, true) {
                    Ok(addressed) => target.service.clone().oneshot(addressed).await,
                    Err(why) => Err(ClassifiedError::new(
                        Outcome::new(OutcomeClass::BadRequest),
                        Some(why.0.into()),
                    )
                    .into()),
                };
                return route.served(result, i, i, &request);
            }
            // The order the targets are tried in: the chain's (no allocation), or each
            // group of a spread route from its least busy member.
            let order = route.spread.as_deref().map(Spread::order);
            let at = |position: usize| order.as_ref().map_or(position, |order| order[position]);
            let n = route.targets.len();
            // The last target that may take the request: its breaker's patience applies.
            let last = (0..n)
                .rev()
                .find(|position| route.targets[at(*position)].may_take(&request));
            // A failure kept while the next targets are tried: the result, its position.
            let mut kept: Option<(Result<http::Response<R>, BoxError>, usize)> = None;
            for position in 0..n {
                let i = at(position);
                let target = &route.targets[i];
                // No target is tried past the call's deadline, as no retry starts past it:
                // the call ends within its deadline plus one attempt's timeout, with the
                // last failure.
                if kept.is_some() && past_deadline(&request, tokio::time::Instant::now()) {
                    break;
                }
                let addressed = match target.address(&request, Some(position) == last) {
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
                let result = {
                    let _in_flight = route
                        .spread
                        .as_deref()
                        .map(|spread| InFlight::new(&spread.in_flight[i]));
                    target.service.clone().oneshot(addressed).await
                };
                let class = Outcome::from_result(&result).class();
                let result = result.map(|response| target.answer(&request, response));
                let more = last.is_some_and(|last| position < last);
                if more && route.fails_over(class) {
                    tracing::info!(
                        target: "ballast::route",
                        from = %target.name,
                        %class,
                        "failing over"
                    );
                    kept = Some((result, position));
                    continue;
                }
                // The last target, or an outcome that stays: this is the call's answer.
                return route.served(result, i, position, &request);
            }
            // No target took the call after the last failure: that failure is the answer.
            match kept {
                Some((result, position)) => route.served(result, at(position), position, &request),
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
    /// `result` marked as served by target `i`, the call's `position`th (the targets before
    /// it tried or passed over), with the model `request` asked of it when the route
    /// changed it.
    fn served(
        &self,
        result: Result<http::Response<R>, BoxError>,
        i: usize,
        position: usize,
        request: &http::Request<RequestBody>,
    ) -> Result<http::Response<R>, BoxError> {
        let target = &self.targets[i];
        result.map(|mut response| {
            response.extensions_mut().insert(Served {
                target: Arc::clone(&target.name),
                model: target.asked_model(request),
                passed_over: position as u32,
            });
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use ballast_classify::{HalfByteCount, RequestFacts};
    use bytes::Bytes;

    /// What the targets saw: the name of each target called, in order.
    type Calls = Arc<Mutex<Vec<&'static str>>>;

    /// A target named `name` that records its calls, answers 200 (or, when `down`, a
    /// server error that fails over), and waits for `gate` to open first when given.
    fn target(
        name: &'static str,
        calls: &Calls,
        down: bool,
        gate: Option<Arc<tokio::sync::Notify>>,
    ) -> Target<String> {
        let calls = Arc::clone(calls);
        let service = tower::service_fn(move |_: http::Request<RequestBody>| {
            calls.lock().unwrap().push(name);
            let gate = gate.clone();
            async move {
                if let Some(gate) = gate {
                    gate.notified().await;
                }
                if down {
                    Err::<http::Response<String>, BoxError>(
                        ClassifiedError::new(Outcome::new(OutcomeClass::ServerError), None).into(),
                    )
                } else {
                    Ok(http::Response::new(String::new()))
                }
            }
        });
        Target::new(name, http::Uri::from_static("http://x.invalid/v1"), service)
    }

    fn request() -> http::Request<RequestBody> {
        let body = Bytes::from_static(br#"{"model":"m","messages":[]}"#);
        let mut request = http::Request::post("http://x.invalid/v1/chat/completions")
            .body(RequestBody::from(body.clone()))
            .unwrap();
        let facts = RequestFacts::read("/v1/chat/completions", &body, &HalfByteCount);
        request.extensions_mut().insert(facts);
        request
    }

    fn served_by(result: &Result<http::Response<String>, BoxError>) -> (String, u32) {
        let served = result
            .as_ref()
            .unwrap()
            .extensions()
            .get::<Served>()
            .unwrap();
        (served.target.to_string(), served.passed_over)
    }

    #[tokio::test]
    async fn equally_busy_targets_are_taken_in_turn() {
        let calls = Calls::default();
        let route = Failover::new([
            target("a", &calls, false, None),
            target("b", &calls, false, None),
            target("fallback", &calls, false, None),
        ])
        .share_load(0..2);
        for _ in 0..6 {
            route.clone().oneshot(request()).await.unwrap();
        }
        assert_eq!(*calls.lock().unwrap(), ["a", "b", "a", "b", "a", "b"]);
        // A plain chain: every call to the first.
        let calls = Calls::default();
        let chain = Failover::new([
            target("a", &calls, false, None),
            target("b", &calls, false, None),
        ]);
        for _ in 0..3 {
            chain.clone().oneshot(request()).await.unwrap();
        }
        assert_eq!(*calls.lock().unwrap(), ["a", "a", "a"]);
    }

    #[tokio::test]
    async fn a_busy_target_is_passed_for_the_least_busy() {
        let calls = Calls::default();
        let gate = Arc::new(tokio::sync::Notify::new());
        let route = Failover::new([
            target("a", &calls, false, Some(Arc::clone(&gate))),
            target("b", &calls, false, None),
        ])
        .share_load(0..2);
        // The first call holds `a` (its turn), the next ones all go to `b`.
        let held = tokio::spawn(route.clone().oneshot(request()));
        tokio::task::yield_now().await;
        for _ in 0..3 {
            let result = route.clone().oneshot(request()).await;
            assert_eq!(served_by(&result), ("b".to_owned(), 0));
        }
        gate.notify_one();
        held.await.unwrap().unwrap();
        assert_eq!(*calls.lock().unwrap(), ["a", "b", "b", "b"]);
        // Nothing is counted in flight once the calls are done.
        let spread = route.spread.as_deref().unwrap();
        assert!(
            spread
                .in_flight
                .iter()
                .all(|n| n.load(Ordering::Relaxed) == 0)
        );
    }

    #[tokio::test]
    async fn a_failing_member_sends_the_call_to_the_others_then_on() {
        let calls = Calls::default();
        let route = Failover::new([
            target("a", &calls, true, None),
            target("b", &calls, false, None),
            target("fallback", &calls, false, None),
        ])
        .share_load(0..2);
        // In turn: `a` first (fails, then `b`), then `b` first.
        let first = route.clone().oneshot(request()).await;
        let second = route.clone().oneshot(request()).await;
        assert_eq!(served_by(&first), ("b".to_owned(), 1));
        assert_eq!(served_by(&second), ("b".to_owned(), 0));
        // Both members down: the group, then the fallback.
        let calls = Calls::default();
        let route = Failover::new([
            target("a", &calls, true, None),
            target("b", &calls, true, None),
            target("fallback", &calls, false, None),
        ])
        .share_load(0..2);
        let result = route.clone().oneshot(request()).await;
        assert_eq!(served_by(&result), ("fallback".to_owned(), 2));
        assert_eq!(*calls.lock().unwrap(), ["a", "b", "fallback"]);
    }

    #[tokio::test]
    async fn a_call_dropped_in_flight_is_no_longer_counted() {
        let calls = Calls::default();
        let gate = Arc::new(tokio::sync::Notify::new());
        let route = Failover::new([
            target("a", &calls, false, Some(Arc::clone(&gate))),
            target("b", &calls, false, Some(gate)),
        ])
        .share_load(0..2);
        let spread = Arc::clone(route.spread.as_ref().unwrap());
        let busy = || -> Vec<u32> {
            spread
                .in_flight
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect()
        };
        {
            let call = route.clone().oneshot(request());
            tokio::pin!(call);
            // Polled once: the call is in flight on `a`, then dropped there.
            assert!(poll_once(call.as_mut()).await);
            assert_eq!(busy(), [1, 0]);
        }
        assert_eq!(busy(), [0, 0]);
    }

    /// Polls `future` once; whether it is still pending.
    async fn poll_once<F: Future + Unpin>(mut future: F) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut future).poll(cx).is_pending())).await
    }

    #[test]
    fn groups_that_overlap_or_are_too_small_change_nothing() {
        let calls = Calls::default();
        let three = || {
            Failover::new([
                target("a", &calls, false, None),
                target("b", &calls, false, None),
                target("c", &calls, false, None),
            ])
        };
        assert!(three().share_load(1..2).spread.is_none());
        let route = three().share_load(0..2).share_load(1..3);
        let groups = &route.spread.as_deref().unwrap().group;
        assert_eq!(&groups[..], [0..2, 0..2, 2..3]);
        let cut = three().share_load(1..9);
        assert_eq!(
            &cut.spread.as_deref().unwrap().group[..],
            [0..1, 1..3, 1..3]
        );
    }
}
