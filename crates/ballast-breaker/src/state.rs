//! One key's breaker: the state machine, lock-free on the closed path.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ballast_classify::{Outcome, OutcomeClass};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::window::{Totals, Window};
use crate::{BreakerConfig, BreakerKey, BreakerState, LatchReason};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;
const LATCHED_AUTH: u8 = 3;
const LATCHED_QUOTA: u8 = 4;
/// Forced open through the handle, for this key alone, until its reset.
const FORCED: u8 = 5;

/// How a call was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitKind {
    /// The breaker was closed.
    Closed,
    /// A half-open probe of the given half-open period: its slot must be given back, and
    /// its answer counts only in its own period.
    Probe(u32),
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) state: BreakerState,
    pub(crate) retry_in: Option<Duration>,
}

/// What an outcome means to a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure,
    /// Says nothing about the provider's health (4xx, rate limits).
    Neutral,
    Latch(LatchReason),
}

#[derive(Debug)]
pub(crate) struct KeyBreaker {
    key: BreakerKey,
    pub(crate) config: Arc<BreakerConfig>,
    epoch: Instant,
    state: AtomicU8,
    /// Nanoseconds since the registry's epoch: the end of the open time, or while latched,
    /// of the latch's wait before a probe.
    open_until: AtomicU64,
    /// When the breaker last went half-open (nanoseconds since the epoch).
    half_open_since: AtomicU64,
    /// Probes out (low 32 bits), whatever their period, and the half-open period now (high
    /// 32 bits), in one word so a probe is admitted and stamped with its period at once.
    /// Probes still out from an earlier period keep their slots: a half-open breaker never
    /// has more than `probes` calls in flight.
    probes: AtomicU64,
    probe_successes: AtomicU32,
    consecutive: AtomicU32,
    /// When the current run of failures began (nanoseconds since the epoch; the first
    /// failure's answer): a success from a call sent before then is old news and does not
    /// end the run.
    run_since: AtomicU64,
    trips: AtomicU32,
    /// Times opened or latched, ever.
    opened: AtomicU64,
    window: Window,
    pub(crate) last_used: AtomicU64,
    /// With [`Admission`](crate::Admission): the share of calls refused now, in 2^-32ths
    /// (0: none, the closed path's one extra load), kept by `record` and by refusals.
    shed: AtomicU32,
    /// The admission draws so far, the counter the draws are made from.
    draws: AtomicU64,
    seed: u64,
    /// Serialises the rare transitions; the closed path never takes it.
    transitions: Mutex<SmallRng>,
    /// Where patient calls wait (FIFO): woken one at a time when a chance opens (the
    /// breaker closed, a probe slot came free), each admitted one waking the next.
    pub(crate) line: Notify,
    /// Calls waiting in `line` now.
    pub(crate) waiting: AtomicU32,
    /// With [`PartialTrip`](crate::PartialTrip): the failed probes of this episode (since the
    /// breaker last tripped while closed) while it is a partial one; `NOT_PARTIAL` once it
    /// is an outage's, or was one from the start.
    partial_misses: AtomicU32,
    /// Whether this episode is a sudden one ([`PartialTrip::sudden_share`](crate::PartialTrip::sudden_share)):
    /// set when the breaker trips while closed.
    sudden: AtomicBool,
    /// When a call last succeeded (nanoseconds since the epoch, +1; 0: never), kept only
    /// with [`PartialTrip`](crate::PartialTrip): a trip within a window of it is partial, even
    /// when the window was cleared by a close since.
    last_success: AtomicU64,
}

/// [`KeyBreaker::partial_misses`] of an episode that is an outage's.
const NOT_PARTIAL: u32 = u32::MAX;

/// What [`KeyBreaker::record`] changed, for events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Transition {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
    pub(crate) totals: Totals,
}

impl KeyBreaker {
    pub(crate) fn new(
        key: BreakerKey,
        config: Arc<BreakerConfig>,
        epoch: Instant,
        seed: u64,
        now: u64,
    ) -> Self {
        Self {
            window: Window::new(config.buckets, config.bucket_nanos()),
            key,
            config,
            epoch,
            state: AtomicU8::new(CLOSED),
            open_until: AtomicU64::new(0),
            half_open_since: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            probe_successes: AtomicU32::new(0),
            consecutive: AtomicU32::new(0),
            run_since: AtomicU64::new(0),
            trips: AtomicU32::new(0),
            opened: AtomicU64::new(0),
            last_used: AtomicU64::new(now),
            shed: AtomicU32::new(0),
            draws: AtomicU64::new(0),
            seed,
            transitions: Mutex::new(SmallRng::seed_from_u64(seed)),
            line: Notify::new(),
            waiting: AtomicU32::new(0),
            partial_misses: AtomicU32::new(NOT_PARTIAL),
            sudden: AtomicBool::new(false),
            last_success: AtomicU64::new(0),
        }
    }

    pub(crate) fn key(&self) -> &BreakerKey {
        &self.key
    }

    /// Nanoseconds since the registry's epoch, on tokio's clock.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The state at `now`, as a caller would see it.
    pub(crate) fn state(&self, now: u64) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED if self.shed.load(Ordering::Relaxed) != 0 => BreakerState::Shedding,
            CLOSED => BreakerState::Closed,
            OPEN => {
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    BreakerState::Open {
                        retry_in: Duration::from_nanos(until - now),
                    }
                } else {
                    BreakerState::HalfOpen
                }
            }
            HALF_OPEN => BreakerState::HalfOpen,
            LATCHED_AUTH => BreakerState::Latched(LatchReason::Auth),
            FORCED => BreakerState::ForcedOpen,
            _ => BreakerState::Latched(LatchReason::QuotaExhausted),
        }
    }

    pub(crate) fn totals(&self, now: u64) -> Totals {
        self.window.totals(now)
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Acquire)
    }

    pub(crate) fn trips(&self) -> u32 {
        self.trips.load(Ordering::Acquire)
    }

    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Lets a call through or refuses it. Closed: one atomic load.
    pub(crate) fn admit(
        &self,
        config: &BreakerConfig,
        now: u64,
    ) -> Result<(PermitKind, Option<Transition>), Refusal> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => {
                let shed = self.shed.load(Ordering::Relaxed);
                if shed != 0 && self.draw() < shed {
                    self.window.record_refused(now);
                    self.update_shed(config, now);
                    return Err(Refusal {
                        state: BreakerState::Shedding,
                        retry_in: Some(config.half_open_wait),
                    });
                }
                Ok((PermitKind::Closed, None))
            }
            OPEN => {
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    return Err(Refusal {
                        state: BreakerState::Open {
                            retry_in: Duration::from_nanos(until - now),
                        },
                        retry_in: Some(Duration::from_nanos(until - now)),
                    });
                }
                let transition = self.to_half_open(now);
                self.try_probe(config, now).map(|kind| (kind, transition))
            }
            HALF_OPEN => self.try_probe(config, now).map(|kind| (kind, None)),
            FORCED => Err(Refusal {
                state: BreakerState::ForcedOpen,
                retry_in: None,
            }),
            // Latched for `latch_reprobe`: then one probe finds out whether the key was
            // fixed or the account topped up.
            _ if now >= self.open_until.load(Ordering::Acquire) => {
                let transition = self.to_half_open(now);
                self.try_probe(config, now).map(|kind| (kind, transition))
            }
            latched => Err(Refusal {
                state: BreakerState::Latched(if latched == LATCHED_AUTH {
                    LatchReason::Auth
                } else {
                    LatchReason::QuotaExhausted
                }),
                retry_in: None,
            }),
        }
    }

    /// A uniform 32-bit draw, lock-free and reproducible from the breaker's seed
    /// (splitmix64 over a counter).
    fn draw(&self) -> u32 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 32) as u32
    }

    /// The share to refuse, from the window: none without admission, or before the window
    /// holds `min_calls` requests.
    fn update_shed(&self, config: &BreakerConfig, now: u64) {
        let Some(admission) = config.admission else {
            return;
        };
        let totals = self.window.totals(now);
        let requests = f64::from(totals.calls) + f64::from(totals.refused);
        let accepts = f64::from(totals.calls.saturating_sub(totals.failures));
        let share = if requests < f64::from(config.min_calls.max(1)) {
            0.0
        } else {
            ((requests - admission.multiplier.max(1.0) * accepts) / (requests + 1.0))
                .clamp(0.0, admission.max_shed.clamp(0.0, 1.0))
        };
        // Saturating float-to-int: 1.0 maps to u32::MAX.
        self.shed
            .store((share * f64::from(u32::MAX)) as u32, Ordering::Relaxed);
    }

    /// The share of calls refused now, 0 to 1 (0 without admission).
    pub(crate) fn shed_share(&self) -> f64 {
        f64::from(self.shed.load(Ordering::Relaxed)) / f64::from(u32::MAX)
    }

    /// Whether the breaker is in a partial trip's episode now.
    pub(crate) fn partial_episode(&self) -> bool {
        self.partial(&self.config).is_some()
    }

    /// The partial-trip settings, while this episode is a partial one.
    fn partial<'a>(&self, config: &'a BreakerConfig) -> Option<&'a crate::PartialTrip> {
        config
            .partial
            .as_ref()
            .filter(|_| self.partial_misses.load(Ordering::Acquire) != NOT_PARTIAL)
    }

    /// How many probes may be out at `now`, and when that number next grows. A partial
    /// episode's limit doubles for each [`PartialTrip::ramp`](crate::PartialTrip::ramp) its
    /// half-open period has lasted: a failed probe would have ended the period, so probes out
    /// that long without one are taken for successes under way (failures come back fast,
    /// answers take their time), and the waiting calls follow them before they answer.
    fn probe_limit(&self, config: &BreakerConfig, now: u64) -> (u64, Option<Duration>) {
        let Some(partial) = self.partial(config) else {
            return (u64::from(config.probes.max(1)), None);
        };
        let probes = if self.sudden.load(Ordering::Relaxed) {
            partial.sudden_probes
        } else {
            partial.probes
        };
        let limit = u64::from(probes.max(1));
        let Some(ramp) = partial.ramp else {
            return (limit, None);
        };
        let step = u64::try_from(ramp.as_nanos()).unwrap_or(u64::MAX).max(1);
        let quiet = now.saturating_sub(self.half_open_since.load(Ordering::Acquire));
        // Past 16 doublings the limit is no limit; it stops growing there.
        let doublings = (quiet / step).min(16);
        let grows_in = (doublings < 16).then(|| Duration::from_nanos(step - quiet % step));
        (limit << doublings, grows_in)
    }

    fn try_probe(&self, config: &BreakerConfig, now: u64) -> Result<PermitKind, Refusal> {
        let (limit, grows_in) = self.probe_limit(config, now);
        let admitted = self
            .probes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word & OUT < limit).then_some(word + 1)
            });
        // A trip may have raced the admission: only a half-open breaker lets probes through.
        if let Ok(word) = admitted {
            if self.state.load(Ordering::Acquire) == HALF_OPEN {
                return Ok(PermitKind::Probe(period(word)));
            }
            self.probes.fetch_sub(1, Ordering::AcqRel);
        }
        // The probes out decide soon: a caller told "come back after an open time" would
        // stay away after the breaker closes.
        Err(Refusal {
            state: BreakerState::HalfOpen,
            retry_in: Some(grows_in.map_or(config.half_open_wait, |grows_in| {
                grows_in.min(config.half_open_wait)
            })),
        })
    }

    /// From open, or latched, to half-open once its time is up.
    fn to_half_open(&self, now: u64) -> Option<Transition> {
        let _guard = self.lock();
        let from = match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open {
                retry_in: Duration::ZERO,
            },
            LATCHED_AUTH => BreakerState::Latched(LatchReason::Auth),
            LATCHED_QUOTA => BreakerState::Latched(LatchReason::QuotaExhausted),
            _ => return None,
        };
        if now < self.open_until.load(Ordering::Acquire) {
            return None;
        }
        self.next_period();
        self.half_open_since.store(now, Ordering::Release);
        self.state.store(HALF_OPEN, Ordering::Release);
        Some(Transition {
            from,
            to: BreakerState::HalfOpen,
            totals: Totals::default(),
        })
    }

    /// Records how a call let through as `kind` ended.
    pub(crate) fn record(
        &self,
        config: &BreakerConfig,
        kind: PermitKind,
        outcome: Option<&Outcome>,
        elapsed: Duration,
        now: u64,
    ) -> Option<Transition> {
        let transition = self.judge(config, kind, outcome, elapsed, now);
        // A probe's slot came free and the breaker is still half-open (the probe was
        // dropped, said nothing, or more successes are needed): a waiting call may take it.
        if matches!(kind, PermitKind::Probe(_)) && self.state.load(Ordering::Acquire) == HALF_OPEN {
            self.line.notify_one();
        }
        transition
    }

    fn judge(
        &self,
        config: &BreakerConfig,
        kind: PermitKind,
        outcome: Option<&Outcome>,
        elapsed: Duration,
        now: u64,
    ) -> Option<Transition> {
        let mut stale = false;
        if let PermitKind::Probe(of) = kind {
            let word = self.probes.fetch_sub(1, Ordering::AcqRel);
            stale = period(word) != of;
        }
        // A dropped call (no outcome) only gives its probe slot back.
        let outcome = outcome?;
        let verdict = verdict(config, outcome);
        if matches!(kind, PermitKind::Probe(_)) && verdict == Verdict::Failure {
            self.count_partial_miss(config);
        }
        if verdict == Verdict::Success && config.partial.is_some() {
            self.note_success(now);
            if matches!(kind, PermitKind::Probe(_)) {
                self.clear_partial_misses();
            }
        }
        let slow = elapsed >= config.slow_call;
        match (kind, verdict) {
            (_, Verdict::Latch(reason)) => self.latch(reason, now),
            (_, Verdict::Neutral) => None,
            // A probe of a period that has ended (the breaker tripped, or was reset, and
            // half-opened again since) says nothing about this one.
            (PermitKind::Probe(_), _) if stale => None,
            (PermitKind::Probe(_), Verdict::Success) => {
                let successes = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
                (successes >= config.probe_successes.max(1))
                    .then(|| self.close(now))
                    .flatten()
            }
            (PermitKind::Probe(_), Verdict::Failure) => self.trip(config, outcome, now, true),
            (_, verdict) => {
                if self.state.load(Ordering::Acquire) != CLOSED {
                    return None;
                }
                let failure = verdict == Verdict::Failure;
                self.window.record(now, failure, slow);
                let consecutive = if failure {
                    let run = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
                    if run == 1 {
                        self.run_since.store(now, Ordering::Release);
                    }
                    run
                } else {
                    // Read first: a store on every success would bounce the cache line
                    // between threads even when the run is already zero. A call sent
                    // before the run began (a long success still in flight when an outage
                    // starts) says nothing about now: the run goes on.
                    let sent =
                        now.saturating_sub(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
                    if self.consecutive.load(Ordering::Acquire) != 0
                        && sent >= self.run_since.load(Ordering::Acquire)
                    {
                        self.consecutive.store(0, Ordering::Release);
                    }
                    0
                };
                // With admission, the share refused follows every answer while any is
                // refused, and every failure (a success with nothing refused keeps it 0).
                if config.admission.is_some() && (failure || self.shed.load(Ordering::Relaxed) != 0)
                {
                    self.update_shed(config, now);
                }
                if !failure && !slow {
                    return None;
                }
                let totals = self.window.totals(now);
                let enough = totals.calls >= config.min_calls.max(1);
                let rate = |n: u32| f64::from(n) / f64::from(totals.calls.max(1));
                let run = consecutive >= config.consecutive_failures.max(1);
                let trips = match config.admission {
                    // Admission handles partial failure; only an outage opens: a run of
                    // failures with no success left in the window.
                    Some(_) => run && totals.failures >= totals.calls,
                    None => run || (enough && rate(totals.failures) >= config.failure_rate),
                } || (enough && rate(totals.slow) >= config.slow_rate);
                trips
                    .then(|| self.trip(config, outcome, now, false))
                    .flatten()
            }
        }
    }

    /// A probe failed: one more miss of a partial episode; at `outage_after` it is an
    /// outage's. Probes of an ended half-open period count too: they were sent to find out.
    fn count_partial_miss(&self, config: &BreakerConfig) {
        let Some(partial) = config.partial else {
            return;
        };
        let _ = self
            .partial_misses
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |misses| {
                (misses != NOT_PARTIAL).then(|| {
                    if misses + 1 >= partial.outage_after {
                        NOT_PARTIAL
                    } else {
                        misses + 1
                    }
                })
            });
    }

    /// A probe succeeded: the provider serves, so a partial episode starts its count of
    /// misses again. Also when the probe's period has ended (a faster failure reopened the
    /// breaker first): the answers of a provider failing four calls in five come back
    /// after the failures of the same round, and the episode is not an outage for that.
    fn clear_partial_misses(&self) {
        let _ = self
            .partial_misses
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |misses| {
                (misses != NOT_PARTIAL && misses != 0).then_some(0)
            });
    }

    /// Keeps when a call last succeeded, to the millisecond: read first, so successes in a
    /// row do not each write the shared word.
    fn note_success(&self, now: u64) {
        let stamp = now.saturating_add(1);
        if stamp.saturating_sub(self.last_success.load(Ordering::Relaxed)) >= 1_000_000 {
            self.last_success.store(stamp, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmallRng> {
        self.transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn trip(
        &self,
        config: &BreakerConfig,
        outcome: &Outcome,
        now: u64,
        from_probe: bool,
    ) -> Option<Transition> {
        let mut rng = self.lock();
        let state = self.state.load(Ordering::Acquire);
        let expected = if from_probe { HALF_OPEN } else { CLOSED };
        if state != expected {
            return None;
        }
        let totals = self.window.totals(now);
        if !from_probe {
            // Partial when the provider still served some of the window's calls, or a call
            // within a window's time (a close since cleared the window).
            let last = self.last_success.load(Ordering::Relaxed);
            let window = u64::try_from(config.window.as_nanos()).unwrap_or(u64::MAX);
            let partial = config.partial.is_some()
                && (totals.failures < totals.calls
                    || (last != 0 && now.saturating_add(1).saturating_sub(last) <= window));
            self.partial_misses
                .store(if partial { 0 } else { NOT_PARTIAL }, Ordering::Release);
            let sudden = partial
                && totals.calls > 0
                && config
                    .partial
                    .and_then(|p| p.sudden_share)
                    .is_some_and(|share| {
                        f64::from(totals.calls - totals.failures) >= share * f64::from(totals.calls)
                    });
            self.sudden.store(sudden, Ordering::Relaxed);
        }
        let trip = self.trips.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        self.opened.fetch_add(1, Ordering::Relaxed);
        let jitter = 1.0 + config.open_jitter.max(0.0) * rng.random::<f64>();
        let base = match self.partial(config) {
            None => config.open_time(trip),
            Some(partial) if self.sudden.load(Ordering::Relaxed) => partial.sudden_open,
            Some(partial) => partial.open,
        };
        let mut open =
            Duration::try_from_secs_f64(base.as_secs_f64() * jitter).unwrap_or(Duration::MAX);
        if let Some(hint) = outcome.wait_hint() {
            let (stretched, _) = config.hint_trust.apply(open, Some(hint.delay()));
            open = stretched.min(open.max(config.max_hint));
        }
        let until = now.saturating_add(u64::try_from(open.as_nanos()).unwrap_or(u64::MAX));
        self.open_until.store(until, Ordering::Release);
        self.consecutive.store(0, Ordering::Release);
        self.shed.store(0, Ordering::Relaxed);
        self.window.clear();
        self.state.store(OPEN, Ordering::Release);
        Some(Transition {
            from: if from_probe {
                BreakerState::HalfOpen
            } else {
                BreakerState::Closed
            },
            to: BreakerState::Open { retry_in: open },
            totals,
        })
    }

    fn close(&self, now: u64) -> Option<Transition> {
        let _guard = self.lock();
        if self.state.load(Ordering::Acquire) != HALF_OPEN {
            return None;
        }
        self.trips.store(0, Ordering::Release);
        self.consecutive.store(0, Ordering::Release);
        self.shed.store(0, Ordering::Relaxed);
        self.partial_misses.store(NOT_PARTIAL, Ordering::Release);
        self.window.clear();
        self.state.store(CLOSED, Ordering::Release);
        // The first waiting call goes; it wakes the next.
        self.line.notify_one();
        Some(Transition {
            from: BreakerState::HalfOpen,
            to: BreakerState::Closed,
            totals: self.window.totals(now),
        })
    }

    fn latch(&self, reason: LatchReason, now: u64) -> Option<Transition> {
        let _guard = self.lock();
        let from = self.state(now);
        let code = match reason {
            LatchReason::Auth => LATCHED_AUTH,
            LatchReason::QuotaExhausted => LATCHED_QUOTA,
        };
        let state = self.state.load(Ordering::Acquire);
        // Forced open stays so until its reset.
        if state == FORCED || state == code {
            return None;
        }
        self.partial_misses.store(NOT_PARTIAL, Ordering::Release);
        let wait = u64::try_from(self.config.latch_reprobe.as_nanos()).unwrap_or(u64::MAX);
        self.open_until
            .store(now.saturating_add(wait), Ordering::Release);
        self.state.store(code, Ordering::Release);
        self.opened.fetch_add(1, Ordering::Relaxed);
        Some(Transition {
            from,
            to: BreakerState::Latched(reason),
            totals: self.window.totals(now),
        })
    }

    /// Refuses every call until [`reset`](Self::reset) (a handle's per-key force-open).
    pub(crate) fn force_open(&self, now: u64) -> Option<Transition> {
        let _guard = self.lock();
        let from = self.state(now);
        (self.state.swap(FORCED, Ordering::AcqRel) != FORCED).then_some(Transition {
            from,
            to: BreakerState::ForcedOpen,
            totals: Totals::default(),
        })
    }

    /// Back to closed, forgetting everything (a handle's reset).
    pub(crate) fn reset(&self, now: u64) -> Option<Transition> {
        let _guard = self.lock();
        let from = self.state(now);
        self.trips.store(0, Ordering::Release);
        self.consecutive.store(0, Ordering::Release);
        self.window.clear();
        self.shed.store(0, Ordering::Relaxed);
        self.partial_misses.store(NOT_PARTIAL, Ordering::Release);
        self.next_period();
        let was = self.state.swap(CLOSED, Ordering::AcqRel);
        self.line.notify_one();
        (was != CLOSED).then_some(Transition {
            from,
            to: BreakerState::Closed,
            totals: Totals::default(),
        })
    }
}

/// The probes-out half of [`KeyBreaker::probes`].
const OUT: u64 = u32::MAX as u64;

/// The half-open period a probes word is in.
fn period(word: u64) -> u32 {
    (word >> 32) as u32
}

impl KeyBreaker {
    /// Starts a new half-open period: probes out stay counted, their answers stop counting.
    /// Called under the transitions lock.
    fn next_period(&self) {
        let _ = self
            .probes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                Some((word & OUT) | (u64::from(period(word).wrapping_add(1)) << 32))
            });
        self.probe_successes.store(0, Ordering::Release);
    }
}

fn verdict(config: &BreakerConfig, outcome: &Outcome) -> Verdict {
    match outcome.class() {
        OutcomeClass::Success => Verdict::Success,
        OutcomeClass::Auth if config.latch_on_auth_and_quota => Verdict::Latch(LatchReason::Auth),
        OutcomeClass::QuotaExhausted if config.latch_on_auth_and_quota => {
            Verdict::Latch(LatchReason::QuotaExhausted)
        }
        class if class.is_provider_failure() => Verdict::Failure,
        _ => Verdict::Neutral,
    }
}
