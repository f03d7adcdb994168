//! [`Throttle`]: waits for the call's turn, sends it, learns from the answer.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::SystemTime;

use ballast_classify::hint::{parse_go_duration, parse_rfc3339_delay};
use ballast_classify::{
    BoxError, Deadline, Outcome, OutcomeClass, Queued, RequestFacts, Speculative,
};
use http::HeaderName;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::Throttled;
use crate::limiter::{Limiter, Refusal};
use crate::line::Place;

#[cfg(feature = "redis")]
pub(crate) use crate::fleet::Fleet;
/// Without the `redis` feature there is no fleet.
#[cfg(not(feature = "redis"))]
#[derive(Debug, Clone)]
pub(crate) enum Fleet {}

/// A service that sends each call at its turn: turns come at the learned pace, shared by
/// every clone and caller, each to the call the line chooses (newest first, by default:
/// [`ThrottleConfig::newest_first`](crate::ThrottleConfig)). A call whose turn is too far
/// off, or that finds the queue full, is refused at once with [`Throttled`].
///
/// It learns from the answers of the service it wraps: a 429 (class `rate_limited` with a
/// status) lowers the pace; successes raise it while the pace is what holds calls back; the
/// provider's remaining/reset headers cap it until their reset. Put it below retry and the
/// breaker and above the budget guard, so each attempt takes a turn and a reservation is
/// taken only when the attempt is sent.
#[derive(Debug, Clone)]
pub struct Throttle<S> {
    inner: S,
    limiter: Arc<Limiter>,
    fleet: Option<Fleet>,
}

impl<S> Throttle<S> {
    pub(crate) fn new(inner: S, limiter: Arc<Limiter>, fleet: Option<Fleet>) -> Self {
        Self {
            inner,
            limiter,
            fleet,
        }
    }
}

/// The turn a waiting call holds, to give back if it leaves before the turn comes.
enum Held {
    /// On the local limiter: the turn, its step and token span, the pace's generation.
    Local {
        turn: u64,
        steps: (u64, u64),
        generation: u64,
    },
    /// On the fleet's shared timeline: the turn (server µs) and the interval.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Fleet(Fleet, u64, std::time::Duration),
}

/// Counts a call as waiting while it exists; dropped before its turn came (the caller gave
/// up), it gives the turn back. With `newest_first`, it holds the call's place in the line.
struct InLine {
    limiter: Arc<Limiter>,
    held: Option<Held>,
    place: Option<Arc<Place>>,
}

impl InLine {
    /// `joined`: when the call first joined the line (`None`: now); `deadline`: its own;
    /// `speculative`: whether it is a hedge.
    fn new(
        limiter: &Arc<Limiter>,
        held: Option<Held>,
        joined: Option<u64>,
        (deadline, speculative): (Option<Deadline>, bool),
    ) -> Self {
        limiter.queued.fetch_add(1, Ordering::AcqRel);
        let place = match (&held, limiter.config.newest_first) {
            (
                Some(Held::Local {
                    turn, generation, ..
                }),
                Some(_),
            ) => {
                let joined = joined.unwrap_or_else(|| limiter.now());
                let deadline = deadline.map_or(u64::MAX, |d| limiter.nanos_at(d.instant()));
                let place = Arc::new(Place::new(
                    joined,
                    deadline,
                    *generation,
                    *turn,
                    speculative,
                ));
                limiter.line.join(Arc::clone(&place));
                Some(place)
            }
            _ => None,
        };
        Self {
            limiter: Arc::clone(limiter),
            held,
            place,
        }
    }

    /// When the call joined the line, if it holds a place in it.
    fn joined(&self) -> Option<u64> {
        self.place.as_ref().map(|place| place.joined)
    }

    /// Sleeps until the call may go: its turn has come and the line gives it to this call
    /// (newest first, a turn may be given away and a later one taken, or an earlier one
    /// given), or the pace came down (`slowed`).
    async fn wait(
        &self,
        wait: std::time::Duration,
        generation: u64,
        mut slowed: Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) {
        let limiter = &self.limiter;
        let Some(place) = &self.place else {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = slowed => {}
            }
            return;
        };
        let overdue = limiter.overdue();
        loop {
            // Listen before reading the turn: a turn given after the read wakes the call.
            let moved = place.moved.notified();
            let turn = place.turn();
            let now = limiter.now();
            if turn <= now {
                if limiter.generation() != generation || limiter.line.turn_came(place, now, overdue)
                {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep_until(limiter.instant(turn)) => {}
                () = moved => {}
                () = &mut slowed => return,
            }
        }
    }

    /// The wait ended (the turn came, or a 429 restarted the line): nothing to give back.
    fn leave(mut self) {
        self.held = None;
        if let Some(place) = self.place.take() {
            self.limiter.line.leave(&place);
        }
    }
}

impl Drop for InLine {
    fn drop(&mut self) {
        self.limiter.queued.fetch_sub(1, Ordering::AcqRel);
        match self.held.take() {
            Some(Held::Local {
                turn,
                steps: (step, span),
                generation,
            }) => {
                // In the line, the turn held now may not be the one first taken; one that has
                // come goes to another waiting call, whose later turn is given back instead.
                let turn = match &self.place {
                    Some(place) => {
                        let limiter = &self.limiter;
                        limiter
                            .line
                            .leave_early(place, limiter.now(), limiter.overdue())
                    }
                    None => Some(turn),
                };
                if let Some(turn) = turn {
                    self.limiter.give_back(turn, step, span, generation);
                }
            }
            #[cfg(feature = "redis")]
            Some(Held::Fleet(fleet, turn, interval)) => fleet.give_back(turn, interval),
            _ => {}
        }
    }
}

impl<S, B, R> Service<http::Request<B>> for Throttle<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner service's readiness: a call whose turn is now goes straight to it. A
        // call that must wait takes a clone and awaits its readiness at its turn.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let tokens = match self.limiter.config.tokens_per_minute {
            Some(_) => estimate_tokens(
                RequestFacts::of(&request),
                self.limiter.config.default_max_tokens,
            ),
            None => 0,
        };
        if self.fleet.is_some() {
            return ResponseFuture::waiting(self.wait_for_turn(request, tokens, None));
        }
        // The usual case, written out so that it costs no boxed future: the local limiter
        // gives the turn at once. A turn further off is handed to the waiting future.
        let limiter = &self.limiter;
        let generation = limiter.generation();
        let (wait, held) = match local_turn(limiter, tokens, generation) {
            Ok(turn) => turn,
            Err(refusal) => return ResponseFuture::refused(refusal),
        };
        if wait.is_zero() && limiter.generation() == generation {
            return ResponseFuture {
                state: State::Calling {
                    future: self.inner.call(request),
                    limiter: Arc::clone(limiter),
                },
            };
        }
        // In line from here: dropped before its first poll, the future gives the turn back.
        let deadline = Deadline::of(&request);
        let in_line = InLine::new(
            limiter,
            held,
            None,
            (deadline, Speculative::of_request(&request)),
        );
        // A turn past the call's deadline is of no use to it: refused at once, the turn
        // given back, the refusal saying how far off the turn was.
        if past_deadline(deadline, wait) {
            drop(in_line);
            return ResponseFuture::refused(Refusal::TooLong(wait));
        }
        let first = Some((wait, generation, in_line));
        ResponseFuture::waiting(self.wait_for_turn(request, tokens, first))
    }
}

impl<S> Throttle<S> {
    /// The future of a call that waits for its turn (or asks the fleet for one): boxed, as
    /// the wait is long beside the allocation. `first` is a local turn already taken.
    fn wait_for_turn<B, R>(
        &mut self,
        request: http::Request<B>,
        tokens: u64,
        mut first: Option<(std::time::Duration, u64, InLine)>,
    ) -> Waiting<R>
    where
        S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: Send + 'static,
        R: Send + 'static,
    {
        let limiter = Arc::clone(&self.limiter);
        let fleet = self.fleet.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let deadline = Deadline::of(&request);
        let speculative = Speculative::of_request(&request);
        Box::pin(async move {
            let queued_since = tokio::time::Instant::now();
            // When the call first joined the line: a call sent back by a slower pace keeps
            // its place in the order of waits.
            let mut joined = first.as_ref().and_then(|(_, _, in_line)| in_line.joined());
            loop {
                // Listen before reading the generation, so no decrease slips between. A
                // `Notified` sees `notify_waiters` from the moment it is made; it takes the
                // `Notify`'s lock only once polled, so a call that does not wait never does.
                let slowed = limiter.slowed.notified();
                tokio::pin!(slowed);
                let (wait, generation, in_line) = match first.take() {
                    Some(taken) => taken,
                    None => {
                        let generation = limiter.generation();
                        let now = limiter.now();
                        // A turn that is not taken is given back: on the local limiter, or
                        // on the fleet's shared timeline in Redis.
                        let (wait, held) = match shared_turn(&limiter, fleet.as_ref(), now).await {
                            Some(turn) => {
                                let (wait, at) = turn.map_err(refusal_error)?;
                                let held = fleet.clone().zip(at).map(|(fleet, at)| {
                                    Held::Fleet(fleet, at, limiter.interval_now(now))
                                });
                                (wait, held)
                            }
                            None => {
                                local_turn(&limiter, tokens, generation).map_err(refusal_error)?
                            }
                        };
                        let in_line = InLine::new(&limiter, held, joined, (deadline, speculative));
                        joined = joined.or_else(|| in_line.joined());
                        // As in `call`: a turn past the deadline is refused and given back.
                        if past_deadline(deadline, wait) {
                            drop(in_line);
                            return Err(refusal_error(Refusal::TooLong(wait)));
                        }
                        (wait, generation, in_line)
                    }
                };
                if !wait.is_zero() {
                    // Dropped here, by a caller that gave up, the turn goes back (or, if it
                    // has come, to the next call the line chooses).
                    in_line.wait(wait, generation, slowed.as_mut()).await;
                }
                in_line.leave();
                // The pace came down while this call waited: its turn was given at the old
                // pace, into a provider that is refusing calls. Take a new one.
                if limiter.generation() == generation {
                    break;
                }
            }
            poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let queued = queued_since.elapsed();
            let mut result = inner.call(request).await.map_err(Into::into);
            // The layers above time the provider from when the call left, not from here.
            if let Ok(response) = &mut result {
                response.extensions_mut().insert(Queued(queued));
            }
            if learn(&limiter, &result) {
                pause_fleet(&limiter, fleet.as_ref()).await;
            }
            result
        })
    }
}

pin_project! {
    /// The future of [`Throttle`]: the inner call when the turn was now, else the wait for
    /// the turn and then the call (boxed), or the refusal.
    pub struct ResponseFuture<F, R> {
        #[pin]
        state: State<F, R>,
    }
}

type Waiting<R> = Pin<Box<dyn Future<Output = Result<http::Response<R>, BoxError>> + Send>>;

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        Calling { #[pin] future: F, limiter: Arc<Limiter> },
        Waiting { future: Waiting<R> },
        Refused { error: Option<BoxError> },
    }
}

impl<F, R> ResponseFuture<F, R> {
    fn waiting(future: Waiting<R>) -> Self {
        Self {
            state: State::Waiting { future },
        }
    }

    fn refused(refusal: Refusal) -> Self {
        Self {
            state: State::Refused {
                error: Some(refusal_error(refusal)),
            },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Calling { future, limiter } => {
                let result = std::task::ready!(future.poll(cx)).map_err(Into::into);
                // No fleet on this path: a pace that came down has no one else to tell.
                learn(limiter, &result);
                Poll::Ready(result)
            }
            StateProj::Waiting { future } => future.as_mut().poll(cx),
            StateProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "throttle future polled after completion".into()))),
        }
    }
}

/// A turn on the local limiter, taken now: how long until it comes, and what to give back
/// if the call leaves before then (nothing for a turn that is now). `generation` is the
/// pace's, read before the turn.
#[inline]
fn local_turn(
    limiter: &Limiter,
    tokens: u64,
    generation: u64,
) -> Result<(std::time::Duration, Option<Held>), Refusal> {
    let now = limiter.now();
    let turn = limiter.acquire(now, tokens)?;
    if turn <= now {
        return Ok((std::time::Duration::ZERO, None));
    }
    let held = Held::Local {
        turn,
        steps: limiter.steps(now, tokens),
        generation,
    };
    Ok((std::time::Duration::from_nanos(turn - now), Some(held)))
}

/// Whether a turn `wait` from now comes after the call's deadline.
fn past_deadline(deadline: Option<Deadline>, wait: std::time::Duration) -> bool {
    deadline.is_some_and(|deadline| wait > deadline.remaining())
}

/// The error a refused call ends with.
fn refusal_error(refusal: Refusal) -> BoxError {
    Box::new(Throttled::from_refusal(refusal).into_error())
}

/// A turn on the fleet's shared timeline, when there is a fleet and it answers: `None`
/// means "use the local limiter".
#[cfg(feature = "redis")]
async fn shared_turn(
    limiter: &Limiter,
    fleet: Option<&Fleet>,
    now: u64,
) -> Option<Result<(std::time::Duration, Option<u64>), Refusal>> {
    let fleet = fleet?;
    if limiter.queued.load(Ordering::Acquire) >= limiter.config.max_queue {
        return Some(Err(Refusal::QueueFull(std::time::Duration::ZERO)));
    }
    // Down: the local limiter paces at once, and the store is asked again once a second.
    if limiter.fleet_down.load(Ordering::Relaxed)
        && now < limiter.fleet_retry_at.load(Ordering::Relaxed)
    {
        return None;
    }
    let asked = tokio::time::timeout(
        FLEET_DEADLINE,
        fleet.turn(limiter.interval_now(now), limiter.config.max_wait),
    )
    .await;
    match asked {
        Ok(Ok(crate::fleet::FleetTurn::After(wait, turn))) => {
            limiter.fleet_down.store(false, Ordering::Relaxed);
            Some(Ok((wait, Some(turn))))
        }
        Ok(Ok(crate::fleet::FleetTurn::TooLong(wait))) => Some(Err(Refusal::TooLong(wait))),
        failed => {
            let retry_at = now.saturating_add(crate::limiter::nanos(FLEET_RECHECK));
            limiter.fleet_retry_at.store(retry_at, Ordering::Relaxed);
            if !limiter.fleet_down.swap(true, Ordering::Relaxed) {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {FLEET_DEADLINE:?}"),
                };
                tracing::warn!(target: "ballast::throttle", %error, "fleet store unreachable: pacing with the local limiter until it answers");
            }
            None
        }
    }
}

/// How long a call waits for the fleet store's turn before it paces locally.
#[cfg(feature = "redis")]
const FLEET_DEADLINE: std::time::Duration = std::time::Duration::from_millis(250);

/// While the fleet store is down, how often it is asked again.
#[cfg(feature = "redis")]
const FLEET_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(not(feature = "redis"))]
async fn shared_turn(
    _: &Limiter,
    fleet: Option<&Fleet>,
    _: u64,
) -> Option<Result<(std::time::Duration, Option<u64>), Refusal>> {
    match *fleet? {}
}

/// Pushes the fleet's timeline past this process's pause, so the whole fleet pauses.
#[cfg(feature = "redis")]
async fn pause_fleet(limiter: &Limiter, fleet: Option<&Fleet>) {
    // Bounded like a turn: a store that does not answer does not hold the answer back.
    if let Some(fleet) = fleet {
        match tokio::time::timeout(FLEET_DEADLINE, fleet.pause(limiter.config.pause)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(target: "ballast::throttle", %error, "fleet pause not shared");
            }
            Err(_) => {
                tracing::debug!(target: "ballast::throttle", "fleet pause not shared: no answer within {FLEET_DEADLINE:?}");
            }
        }
    }
}

#[cfg(not(feature = "redis"))]
async fn pause_fleet(_: &Limiter, _: Option<&Fleet>) {}

/// What an answer teaches the limiter; `true` when the pace came down.
fn learn<R>(limiter: &Limiter, result: &Result<http::Response<R>, BoxError>) -> bool {
    let now = limiter.now();
    let outcome = Outcome::from_result(result);
    match outcome.class() {
        OutcomeClass::RateLimited if outcome.status().is_some() => {
            return limiter.on_rate_limited(now);
        }
        OutcomeClass::Success => {
            limiter.on_success(now);
            if limiter.config.use_headers
                && let Ok(response) = result
                && let Some((remaining, reset)) = remaining_and_reset(response.headers())
            {
                limiter.on_headers(now, remaining, reset);
            }
        }
        _ => {}
    }
    false
}

/// An upper bound of a call's tokens as a provider's TPM limit counts them: the prompt bound
/// of its facts plus the output cap it names (or `default_max_tokens`).
fn estimate_tokens(facts: &RequestFacts, default_max_tokens: u64) -> u64 {
    let cap = facts.output_cap().unwrap_or(default_max_tokens);
    facts.prompt_tokens().saturating_add(cap)
}

// The remaining/reset header names, parsed once: a lookup by `&str` parses the name on
// every call, and this runs on every success.
const OPENAI_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const OPENAI_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const ANTHROPIC_REMAINING: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-requests-remaining");
const ANTHROPIC_RESET: HeaderName = HeaderName::from_static("anthropic-ratelimit-requests-reset");

/// Requests left and time to the reset, from OpenAI-style or Anthropic headers.
fn remaining_and_reset(headers: &http::HeaderMap) -> Option<(u64, std::time::Duration)> {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(remaining) = text(&OPENAI_REMAINING) {
        let reset = text(&OPENAI_RESET)?;
        return Some((remaining.trim().parse().ok()?, parse_go_duration(reset)?));
    }
    let remaining = text(&ANTHROPIC_REMAINING)?;
    let reset = text(&ANTHROPIC_RESET)?;
    Some((
        remaining.trim().parse().ok()?,
        parse_rfc3339_delay(reset, SystemTime::now())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimates_count_the_prompt_and_the_cap() {
        let read = |body: &'static [u8]| {
            let body = bytes::Bytes::from_static(body);
            RequestFacts::read(
                "/v1/chat/completions",
                &body,
                &ballast_classify::HalfByteCount,
            )
        };
        let body = br#"{"model":"m","max_tokens":300,"messages":[]}"#;
        assert_eq!(
            estimate_tokens(&read(body), 500),
            300 + (body.len() as u64).div_ceil(2)
        );
        assert_eq!(estimate_tokens(&read(br#"{"model":"m"}"#), 500), 500 + 7);
        assert_eq!(estimate_tokens(&RequestFacts::EMPTY, 500), 500);
    }

    #[test]
    fn headers_in_both_dialects() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(remaining_and_reset(&headers), None);
        headers.insert("x-ratelimit-remaining-requests", "12".parse().unwrap());
        headers.insert("x-ratelimit-reset-requests", "6m0s".parse().unwrap());
        assert_eq!(
            remaining_and_reset(&headers),
            Some((12, std::time::Duration::from_secs(360)))
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-remaining-requests", "lots".parse().unwrap());
        headers.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
        assert_eq!(remaining_and_reset(&headers), None, "garbage is ignored");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "anthropic-ratelimit-requests-remaining",
            "3".parse().unwrap(),
        );
        headers.insert(
            "anthropic-ratelimit-requests-reset",
            "2999-01-01T00:00:00Z".parse().unwrap(),
        );
        let (remaining, reset) = remaining_and_reset(&headers).unwrap();
        assert_eq!(remaining, 3);
        assert!(reset > std::time::Duration::ZERO);
    }
}
