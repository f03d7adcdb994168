//! [`Hedge`]: a second attempt for a call that is slower than most, the first answer kept.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use ballast_classify::{
    BoxError, Deadline, Dialect, Outcome, RequestBody, RequestFacts, Sent, Speculative,
    copy_request,
};
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::Oneshot;
use tower_layer::Layer;
use tower_service::Service;

use crate::latencies::ByKind;

/// When and how much to hedge.
///
/// | setting | default | why |
/// |---|---|---|
/// | `percentile` | 0.995 | a call slower than 199 in 200 recent answers, both timed from when they left the local lines below ([`Sent`]), is likely stuck (a hang, a slow replica): the scoreboard's hangs, six seeds, 87.1% goodput (25.3% unhedged) at no cost elsewhere; at 0.95 a long answer is hedged as often as a stuck one, and the 10-minute outage's calls per item rise from 1.03 to 1.05 |
/// | `min_samples` | 20 | a percentile of fewer answers is noise: no hedging until then |
/// | `max_share` | 0.1 | at most one extra call per ten calls, whatever the latencies do |
/// | `min_delay` | 100 ms | never hedge sooner, however fast the answers |
/// | `period` | 60 s | latencies older than one to two periods are forgotten |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgeConfig {
    /// The share of recent answers a call must be slower than to be hedged.
    pub percentile: f64,
    /// Answers seen before the first hedge.
    pub min_samples: u32,
    /// The most hedges per call, over the calls so far.
    pub max_share: f64,
    /// The shortest delay before a hedge.
    pub min_delay: Duration,
    /// How long latencies are remembered (between one and two periods).
    pub period: Duration,
    /// The most hedges one call may send: a hedge that is slow past the delay too gets
    /// one of its own, up to this many (each counted against `max_share`).
    pub max_per_call: u32,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            percentile: 0.995,
            min_samples: 20,
            max_share: 0.1,
            min_delay: Duration::from_millis(100),
            period: Duration::from_secs(60),
            max_per_call: 2,
        }
    }
}

impl HedgeConfig {
    /// The same settings for a provider whose clock runs `scale` times faster: the delays
    /// and the period divided by `scale`.
    pub fn time_scaled(mut self, scale: f64) -> Self {
        if scale.is_finite() && scale > 0.0 {
            let scaled =
                |d: Duration| Duration::try_from_secs_f64(d.as_secs_f64() / scale).unwrap_or(d);
            self.min_delay = scaled(self.min_delay);
            self.period = scaled(self.period);
        }
        self
    }
}

/// Builds [`Hedge`] services sharing one latency record and hedge count.
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    shared: Arc<Shared>,
}

impl HedgeLayer {
    /// A layer with `config`.
    pub fn new(config: HedgeConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// Calls seen and hedges sent so far, by every service of this layer.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.calls.load(Ordering::Relaxed),
            self.shared.hedges.load(Ordering::Relaxed),
        )
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Hedge<S> {
        Hedge {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Sends a second attempt (a copy of the request, to the same inner service) when the
/// first has not answered within a high percentile of the latency of recent answers of its
/// kind (its model, streamed or not: a stream is timed to its first content), and keeps
/// the first success. Each attempt carries a [`Sent`] cell: where a layer below notes when
/// the attempt left its local lines (the facade's attempt cost logger does), the attempt is
/// timed from then, and the latencies learnt are the provider's, so a call waiting for
/// its turn is not taken for a stuck one; in a stack that notes nothing, from the call.
/// The other attempt is dropped, and the layers below act on its drop as on any cancelled
/// call (its budget reservation settled at its worst case, no outcome
/// for the breaker). A failure does not win while the other attempt may still succeed.
/// Hedges are capped at `max_share` of calls, and none leaves past the call's
/// [`Deadline`]; a hedge the stack below refuses (budget spent, breaker open) simply loses.
///
/// Each kind's latencies live in two rotating sets of 64 logarithmic buckets of atomic
/// counters, and the kinds in a list read without a lock: recording an answer takes no lock
/// (a mutex-guarded histogram, as tower's `hedge` keeps, would be one lock per call on
/// every call's path). A kind has no hedges until `min_samples` answers of its own; past
/// 32 kinds, further ones share one record. The share of hedges is the layer's, over every
/// kind.
#[derive(Debug, Clone)]
pub struct Hedge<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What every service of one layer shares: the settings, the latency records, the counts.
#[derive(Debug)]
struct Shared {
    config: HedgeConfig,
    epoch: Instant,
    /// Recent latencies, one record per kind of call (model, streamed or not).
    latencies: ByKind,
    calls: AtomicU64,
    hedges: AtomicU64,
    /// Whether the stack below notes when attempts leave (`Sent`): then a call is timed
    /// from its departure, and one not gone yet is not hedged.
    marked: AtomicBool,
}

impl Shared {
    fn new(config: HedgeConfig) -> Self {
        Self {
            config,
            epoch: Instant::now(),
            latencies: ByKind::new(),
            calls: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            marked: AtomicBool::new(false),
        }
    }

    /// Nanoseconds since the layer was made.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes a hedge, if fewer than `max_share` of the calls so far were hedged.
    fn take_hedge(&self) -> bool {
        let calls = self.calls.load(Ordering::Relaxed) as f64;
        let allowed = (self.config.max_share.max(0.0) * calls).floor() as u64;
        self.hedges
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hedges| {
                (hedges < allowed).then_some(hedges + 1)
            })
            .is_ok()
    }
}

/// Whether the call `request` stands for has passed its [`Deadline`] at `now`: from then on
/// no new attempt starts for it, as no retry does (the hedge and the failover ask).
///
/// The hedge reads it from the copy it keeps (the copy carries the caller's extensions)
/// only when a hedge is due, so a call never hedged pays nothing for it
/// (`benches/instructions.sh`, the facade with the throttle: 39 916 to 40 178 instructions
/// a request over four runs, 39 784 and 39 927 without the check: within the count's spread
/// from run to run).
#[cold]
pub(crate) fn past_deadline<B>(request: &http::Request<B>, now: Instant) -> bool {
    Deadline::of(request).is_some_and(|deadline| now >= deadline.instant())
}

fn succeeded<R>(result: &Result<http::Response<R>, BoxError>) -> bool {
    match result {
        Ok(response) => Outcome::from_response(response).is_success(),
        Err(_) => false,
    }
}

/// A hedge in flight: a copy of the request on its way through a clone of the service.
type HedgeAttempt<S> = Pin<Box<Oneshot<S, http::Request<RequestBody>>>>;

/// The future of [`Hedge`] (boxed: the race holds two calls).
pub type HedgeFuture<R> = Pin<Box<dyn Future<Output = Result<http::Response<R>, BoxError>> + Send>>;

impl<S, R> Service<http::Request<RequestBody>> for Hedge<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<R>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = HedgeFuture<R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        shared.calls.fetch_add(1, Ordering::Relaxed);
        let facts = RequestFacts::of(&request);
        // A call Ballast has no reading of is never hedged: nothing bounds what a second
        // one costs (an image, a minute of audio), and a file or a batch made twice is two.
        let kind = (facts.dialect() != Dialect::Other)
            .then(|| shared.latencies.of(facts, || shared.now()));
        let delay = kind.and_then(|kind| shared.latencies.get(kind).delay());
        // The copy first: each hedge gets a `Sent` cell of its own, so the first's is not
        // copied with it.
        let spare = delay.map(|_| (self.inner.clone(), copy_request(&request)));
        // Timed from when it leaves the lines below, where a layer notes it (`Sent`).
        let sent = Sent::new();
        request.extensions_mut().insert(sent.clone());
        let first = self.inner.call(request);
        Box::pin(async move {
            let start = Instant::now();
            let first = pin!(first);
            let answered = |result: Result<http::Response<R>, BoxError>| {
                if let Some(kind) = kind
                    && succeeded(&result)
                {
                    let latency = match sent.at() {
                        Some(at) => {
                            shared.marked.store(true, Ordering::Relaxed);
                            at.elapsed()
                        }
                        None => start.elapsed(),
                    };
                    let now = shared.now();
                    shared
                        .latencies
                        .get(kind)
                        .record(&shared.config, now, latency);
                }
                result
            };
            let (Some(delay), Some((spare, copy))) = (delay, spare) else {
                return answered(first.await);
            };
            // The attempts racing: the first, then a hedge each time the delay passes with
            // none answered well (up to `max_per_call`, within the share). The first success
            // wins; a failure waits for the others; when all failed, the first attempt's
            // failure is the call's.
            let mut first = Some(first);
            let mut hedges: Vec<Option<HedgeAttempt<S>>> = Vec::new();
            let mut first_failure = None;
            let mut other_failure = None;
            let mut may_hedge = true;
            // The newest hedge's cell (the first attempt's is `sent`).
            let mut newest_hedge: Option<Sent> = None;
            let timer = tokio::time::sleep(delay);
            let mut timer = pin!(timer);
            loop {
                let event = std::future::poll_fn(|cx| {
                    if let Some(attempt) = first.as_mut()
                        && let Poll::Ready(result) = attempt.as_mut().poll(cx)
                    {
                        first = None;
                        return Poll::Ready(Some((0, result)));
                    }
                    for (i, slot) in hedges.iter_mut().enumerate() {
                        if let Some(attempt) = slot
                            && let Poll::Ready(result) = attempt.as_mut().poll(cx)
                        {
                            *slot = None;
                            return Poll::Ready(Some((i + 1, result)));
                        }
                    }
                    if may_hedge && timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    Poll::Pending
                })
                .await;
                match event {
                    Some((which, result)) => {
                        if succeeded(&result) {
                            return if which == 0 { answered(result) } else { result };
                        }
                        if which == 0 {
                            first_failure = Some(result);
                        } else if other_failure.is_none() {
                            other_failure = Some(result);
                        }
                        if first.is_none() && hedges.iter().all(Option::is_none) {
                            // Every attempt failed: the first's failure is the call's.
                            if let Some(result) = first_failure.or(other_failure) {
                                return result;
                            }
                            return Err("hedge: no attempt answered".into());
                        }
                    }
                    None => {
                        // The newest attempt is slow once `delay` has passed since it
                        // left; one still waiting in a line below is looked at again in
                        // half a delay (a stack that notes no departures: since its launch).
                        let newest = newest_hedge.as_ref().unwrap_or(&sent);
                        let now = Instant::now();
                        match newest.at() {
                            Some(at) if at + delay > now => {
                                timer.as_mut().reset(at + delay);
                                continue;
                            }
                            None if shared.marked.load(Ordering::Relaxed) => {
                                timer.as_mut().reset(now + delay / 2);
                                continue;
                            }
                            _ => {}
                        }
                        // Past the deadline a hedge could only end later than the call
                        // may (found by the facade's deadline property test: a 1 s call
                        // hedged at 2 s, both attempts hanging, ended 21 s late).
                        if !past_deadline(&copy, now)
                            && hedges.len() < shared.config.max_per_call as usize
                            && shared.take_hedge()
                        {
                            tracing::debug!(target: "ballast::route", ?delay, hedge = hedges.len() + 1, "hedging a slow call");
                            let mut request = copy_request(&copy);
                            let sent = Sent::new();
                            request.extensions_mut().insert(sent.clone());
                            request.extensions_mut().insert(Speculative);
                            newest_hedge = Some(sent);
                            hedges.push(Some(Box::pin(spare.clone().oneshot(request))));
                            timer.as_mut().reset(now + delay);
                        } else {
                            may_hedge = false;
                        }
                    }
                }
            }
        })
    }
}
