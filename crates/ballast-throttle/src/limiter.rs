//! The shared pacing state: turns handed out in order (GCRA), a pace that learns.
//!
//! Lock-free: the next free turn, the pace and the learned ceiling are atomics updated by
//! compare-and-swap, so clones and callers share one limiter without a mutex.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::ThrottleConfig;
use crate::line::Line;

/// Why a call was not given a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_queue` calls are already waiting; the next turn is this far off.
    QueueFull(Duration),
    /// The next turn is further off than `max_wait`.
    TooLong(Duration),
}

/// No rate-limited answer seen yet.
const NO_CEILING: u64 = u64::MAX;

pub(crate) struct Limiter {
    pub(crate) config: ThrottleConfig,
    epoch: Instant,
    /// The next free turn, in nanoseconds since `epoch`.
    next_turn: AtomicU64,
    /// The next free moment on the token timeline (with `tokens_per_minute`).
    next_tokens: AtomicU64,
    /// The pace, requests per minute (`f64` bits).
    rate: AtomicU64,
    /// The pace that last drew a rate-limited answer (`f64` bits), or `NO_CEILING`.
    ceiling: AtomicU64,
    /// When the pace last came down, nanoseconds since `epoch` (0: never).
    last_decrease: AtomicU64,
    /// When the pace last grew, nanoseconds since `epoch`.
    last_growth: AtomicU64,
    /// A slower pace the provider's headers asked for (`f64` bits, rpm) ...
    header_cap: AtomicU64,
    /// ... until then, nanoseconds since `epoch`.
    header_until: AtomicU64,
    /// Calls waiting for their turn.
    pub(crate) queued: AtomicUsize,
    /// With `newest_first`: the calls waiting for a local turn, and who takes each.
    pub(crate) line: Line,
    /// Bumped on every decrease: turns handed out before it are taken again.
    generation: AtomicU64,
    /// Wakes the calls waiting for a turn when the pace comes down.
    pub(crate) slowed: tokio::sync::Notify,
    /// Whether the fleet store's failure was logged (once, until it answers again).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fleet_down: std::sync::atomic::AtomicBool,
    /// While the fleet store is down: when (nanoseconds since `epoch`) to ask it again;
    /// until then calls pace locally at once instead of each waiting out the deadline.
    #[cfg(feature = "redis")]
    pub(crate) fleet_retry_at: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("rate_rpm", &self.rate_rpm())
            .field("ceiling_rpm", &self.ceiling_rpm())
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The time `tokens` take on the token timeline at `tpm`, in nanoseconds.
fn token_span(tokens: u64, tpm: f64) -> u64 {
    (tokens as f64 * 60e9 / tpm).min(u64::MAX as f64) as u64
}

/// The time between turns at `rpm`.
fn interval(rpm: f64) -> u64 {
    (60e9 / rpm.max(0.001)).min(u64::MAX as f64) as u64
}

impl Limiter {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        let config = config.sanitised();
        Self {
            epoch: Instant::now(),
            next_turn: AtomicU64::new(0),
            next_tokens: AtomicU64::new(0),
            rate: AtomicU64::new(config.start_rpm.to_bits()),
            ceiling: AtomicU64::new(NO_CEILING),
            last_decrease: AtomicU64::new(0),
            last_growth: AtomicU64::new(0),
            header_cap: AtomicU64::new(f64::INFINITY.to_bits()),
            header_until: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            line: Line::default(),
            generation: AtomicU64::new(0),
            slowed: tokio::sync::Notify::new(),
            fleet_down: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "redis")]
            fleet_retry_at: AtomicU64::new(0),
            config,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }

    /// With `newest_first`: how long a call waits before it goes first (ns).
    pub(crate) fn overdue(&self) -> u64 {
        nanos(self.config.newest_first.unwrap_or_default())
    }

    /// The instant of `at` (nanoseconds since the epoch).
    pub(crate) fn instant(&self, at: u64) -> Instant {
        self.epoch + Duration::from_nanos(at)
    }

    /// `instant` on the limiter's clock (nanoseconds since the epoch).
    pub(crate) fn nanos_at(&self, instant: Instant) -> u64 {
        nanos(instant.saturating_duration_since(self.epoch))
    }

    /// The pace calls are given turns at now: the learned pace, or slower while the
    /// provider's headers ask for it.
    pub(crate) fn effective_rpm(&self, now: u64) -> f64 {
        let rate = self.rate_rpm();
        if now < self.header_until.load(Ordering::Acquire) {
            rate.min(f64::from_bits(self.header_cap.load(Ordering::Acquire)))
        } else {
            rate
        }
    }

    /// Changes whenever the pace comes down: a call that took its turn under an older
    /// generation takes a new one (the pause and the slower pace apply to it too).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The time between turns at the pace now.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn interval_now(&self, now: u64) -> Duration {
        Duration::from_nanos(interval(self.effective_rpm(now)))
    }

    pub(crate) fn rate_rpm(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Acquire))
    }

    pub(crate) fn ceiling_rpm(&self) -> Option<f64> {
        let bits = self.ceiling.load(Ordering::Acquire);
        (bits != NO_CEILING).then(|| f64::from_bits(bits))
    }

    /// Takes the next turn for a call of about `tokens` tokens: when the call may go. Turns
    /// are handed out in arrival order, one interval apart; an idle limiter gives the next
    /// caller its turn at once, with no burst. With a tokens-per-minute limit, the call also
    /// waits until its tokens are free on the token timeline.
    pub(crate) fn acquire(&self, now: u64, tokens: u64) -> Result<u64, Refusal> {
        let now = match self.config.tokens_per_minute {
            Some(tpm) => self.take_tokens(now, tokens, tpm)?,
            None => now,
        };
        self.take_turn(now)
    }

    /// A call that held the turn `turn` (taken `step` apart from the next) and `span` of the
    /// token timeline gave up before its turn came: give them back, so the next caller does
    /// not wait for a turn nobody will use.
    ///
    /// The last call in line takes its turn back exactly. One further ahead cannot take its
    /// slot out of the middle of the line without moving every call behind it, so the line's
    /// end moves one step earlier instead: the next arrival may share a moment with a call
    /// already waiting (two calls at once, never more than the pace over the line's span),
    /// and no turn is left unused.
    /// A turn taken before the pace last came down (`generation`) was dropped with its line.
    pub(crate) fn give_back(&self, turn: u64, step: u64, span: u64, generation: u64) {
        let now = self.now();
        if turn <= now || self.generation() != generation {
            return;
        }
        Self::rewind(&self.next_turn, turn, step, now);
        if span > 0 {
            Self::rewind(&self.next_tokens, turn, span, now);
        }
    }

    fn rewind(timeline: &AtomicU64, turn: u64, step: u64, now: u64) {
        let last = turn.saturating_add(step);
        if timeline
            .compare_exchange(last, turn, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
        let _ = timeline.fetch_update(Ordering::AcqRel, Ordering::Acquire, |next| {
            Some(next.saturating_sub(step).max(now))
        });
    }

    /// The interval between turns at the pace now (ns) and the span `tokens` take on the
    /// token timeline: what a call that gives up gives back.
    pub(crate) fn steps(&self, now: u64, tokens: u64) -> (u64, u64) {
        let span = self
            .config
            .tokens_per_minute
            .map_or(0, |tpm| token_span(tokens, tpm));
        (interval(self.effective_rpm(now)), span)
    }

    /// Reserves `tokens` on the token timeline; returns when they are free.
    fn take_tokens(&self, now: u64, tokens: u64, tpm: f64) -> Result<u64, Refusal> {
        let span = token_span(tokens, tpm);
        let max_wait = nanos(self.config.max_wait);
        let mut next = self.next_tokens.load(Ordering::Acquire);
        loop {
            let at = next.max(now);
            if at - now > max_wait {
                return Err(Refusal::TooLong(Duration::from_nanos(at - now)));
            }
            match self.next_tokens.compare_exchange_weak(
                next,
                at.saturating_add(span),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(at),
                Err(seen) => next = seen,
            }
        }
    }

    fn take_turn(&self, now: u64) -> Result<u64, Refusal> {
        let step = interval(self.effective_rpm(now));
        let max_wait = nanos(self.config.max_wait);
        let mut next = self.next_turn.load(Ordering::Acquire);
        loop {
            let turn = next.max(now);
            let wait = Duration::from_nanos(turn - now);
            if turn - now > max_wait {
                return Err(Refusal::TooLong(wait));
            }
            if self.queued.load(Ordering::Acquire) >= self.config.max_queue {
                return Err(Refusal::QueueFull(wait));
            }
            match self.next_turn.compare_exchange_weak(
                next,
                turn.saturating_add(step),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(turn),
                Err(seen) => next = seen,
            }
        }
    }

    /// The provider rate-limited a call that ended at `now`: pause, slow down, and
    /// remember the pace that drew it (once per cooldown). Returns whether it did.
    pub(crate) fn on_rate_limited(&self, now: u64) -> bool {
        let last = self.last_decrease.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < nanos(self.config.cooldown) {
            return false;
        }
        if self
            .last_decrease
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let rate = self.rate_rpm();
        let lowered = (rate * self.config.decrease).max(self.config.min_rpm);
        self.ceiling.store(rate.to_bits(), Ordering::Release);
        self.rate.store(lowered.to_bits(), Ordering::Release);
        self.last_growth.store(now, Ordering::Release);
        // The turns handed out so far were for the old pace: start again after the pause,
        // and wake their holders to take new ones.
        self.next_turn.store(
            now.saturating_add(nanos(self.config.pause)),
            Ordering::Release,
        );
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.slowed.notify_waiters();
        tracing::debug!(
            target: "ballast::throttle",
            from_rpm = rate,
            to_rpm = lowered,
            "rate limited: pace lowered"
        );
        true
    }

    /// A call that ended at `now` succeeded: grow the pace, if the pace is what holds calls
    /// back (a limiter with idle turns learns nothing from a success).
    pub(crate) fn on_success(&self, now: u64) {
        let rate = self.rate_rpm();
        let busy = self
            .next_turn
            .load(Ordering::Acquire)
            .saturating_add(interval(rate))
            >= now;
        let last = self.last_growth.load(Ordering::Acquire);
        let elapsed = now.saturating_sub(last);
        if elapsed < 50_000_000
            || self
                .last_growth
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        if !busy {
            return;
        }
        let seconds = (elapsed as f64 / 1e9).min(1.0);
        let per_sec = if self.ceiling_rpm().is_none() {
            // Never refused yet: find the limit quickly.
            self.config.recover_per_sec
        } else {
            // Refused before: hold a while after each decrease, then probe slowly.
            let quiet = now.saturating_sub(self.last_decrease.load(Ordering::Acquire));
            if quiet < nanos(self.config.hold) {
                return;
            }
            self.config.probe_per_sec
        };
        let grown = (rate * (1.0 + per_sec * seconds)).min(self.config.max_rpm);
        // A decrease that raced us wins: only grow from the rate we read.
        let _ = self.rate.compare_exchange(
            rate.to_bits(),
            grown.to_bits(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The provider says `remaining` calls are left until `reset` from `now`: never go
    /// faster than that until then.
    pub(crate) fn on_headers(&self, now: u64, remaining: u64, reset: Duration) {
        if reset.is_zero() {
            return;
        }
        let cap = remaining as f64 * 60.0 / reset.as_secs_f64();
        if cap >= self.rate_rpm() {
            return;
        }
        self.header_cap
            .store(cap.max(self.config.min_rpm).to_bits(), Ordering::Release);
        self.header_until
            .store(now.saturating_add(nanos(reset)), Ordering::Release);
        if remaining == 0 {
            // Nothing left: the next turn is after the reset.
            self.next_turn
                .fetch_max(now.saturating_add(nanos(reset)), Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[tokio::test(start_paused = true)]
    async fn turns_are_one_interval_apart_in_order() {
        let limiter = Limiter::new(ThrottleConfig::starting_at(60.0));
        let turns: Vec<u64> = (0..3).map(|_| limiter.acquire(0, 0).unwrap()).collect();
        assert_eq!(turns, [0, SEC, 2 * SEC]);
        // Idle time is not saved up: no burst after a pause.
        assert_eq!(limiter.acquire(10 * SEC, 0).unwrap(), 10 * SEC);
        assert_eq!(limiter.acquire(10 * SEC, 0).unwrap(), 11 * SEC);
    }

    #[tokio::test(start_paused = true)]
    async fn turns_given_back_are_taken_by_the_next_caller() {
        let limiter = Limiter::new(ThrottleConfig::starting_at(60.0));
        let turns: Vec<u64> = (0..4).map(|_| limiter.acquire(0, 0).unwrap()).collect();
        assert_eq!(turns, [0, SEC, 2 * SEC, 3 * SEC]);
        // The last in line leaves: its turn is the next caller's.
        limiter.give_back(3 * SEC, SEC, 0, 0);
        assert_eq!(limiter.acquire(0, 0).unwrap(), 3 * SEC);
        // One in the middle leaves: the line's end moves one step earlier.
        limiter.give_back(SEC, SEC, 0, 0);
        assert_eq!(limiter.acquire(0, 0).unwrap(), 3 * SEC);
        // A turn whose moment has passed is spent, not given back.
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = limiter.now();
        let turn = limiter.acquire(now, 0).unwrap();
        limiter.give_back(turn, SEC, 0, 0);
        assert_eq!(
            limiter.acquire(now, 0).unwrap(),
            now + SEC,
            "a turn taken at once is spent"
        );
        // A turn that a 429's restart has already dropped gives nothing back.
        let fresh = Limiter::new(ThrottleConfig::starting_at(60.0));
        let held = fresh.acquire(0, 0).unwrap();
        let _ = fresh.acquire(0, 0).unwrap();
        fresh.on_rate_limited(SEC / 2);
        fresh.give_back(held + 10 * SEC, SEC, 0, 0);
        assert_eq!(fresh.acquire(SEC / 2, 0).unwrap(), SEC / 2 + 1_250_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_too_far_off_is_refused() {
        let config = ThrottleConfig {
            max_wait: Duration::from_secs(2),
            ..ThrottleConfig::starting_at(60.0)
        };
        let limiter = Limiter::new(config);
        for _ in 0..3 {
            limiter.acquire(0, 0).unwrap();
        }
        assert_eq!(
            limiter.acquire(0, 0),
            Err(Refusal::TooLong(Duration::from_secs(3)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_lowers_the_pace_once_per_cooldown_and_successes_bring_it_back() {
        let limiter = Limiter::new(ThrottleConfig::starting_at(100.0));
        limiter.on_rate_limited(SEC);
        limiter.on_rate_limited(2 * SEC);
        assert!((limiter.rate_rpm() - 90.0).abs() < 1e-9);
        assert_eq!(limiter.ceiling_rpm(), Some(100.0));
        // No turn during the pause.
        assert_eq!(limiter.acquire(SEC, 0).unwrap(), SEC + 1_250_000_000);
        limiter.on_rate_limited(5 * SEC);
        assert!((limiter.rate_rpm() - 81.0).abs() < 1e-9);
        assert_eq!(
            limiter.ceiling_rpm(),
            Some(90.0),
            "the pace that drew the 429"
        );
        // It holds for a while after a decrease, then probes slowly.
        let mut now = 5 * SEC;
        for _ in 0..9 {
            now += SEC;
            let _ = limiter.acquire(now, 0);
            limiter.on_success(now);
        }
        assert!((limiter.rate_rpm() - 81.0).abs() < 1e-9, "held");
        for _ in 0..20 {
            now += SEC;
            let _ = limiter.acquire(now, 0);
            limiter.on_success(now);
        }
        let probed = limiter.rate_rpm();
        assert!(probed > 81.0 * 1.05 && probed < 81.0 * 1.2, "{probed}");
    }

    #[tokio::test(start_paused = true)]
    async fn before_any_429_it_climbs_quickly() {
        let limiter = Limiter::new(ThrottleConfig::starting_at(60.0));
        let mut now = 0;
        for _ in 0..10 {
            now += SEC;
            let _ = limiter.acquire(now, 0);
            limiter.on_success(now);
        }
        assert!(limiter.rate_rpm() > 60.0 * 1.5, "{}", limiter.rate_rpm());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_limit_spaces_big_calls_apart() {
        let config = ThrottleConfig {
            tokens_per_minute: Some(6000.0),
            ..ThrottleConfig::starting_at(600.0)
        };
        let limiter = Limiter::new(config);
        // 1000 tokens at 6000 a minute: one call every 10 s, whatever the request pace.
        assert_eq!(limiter.acquire(0, 1000).unwrap(), 0);
        assert_eq!(limiter.acquire(0, 1000).unwrap(), 10 * SEC);
        assert_eq!(limiter.acquire(0, 100).unwrap(), 20 * SEC);
        assert_eq!(limiter.acquire(0, 100).unwrap(), 21 * SEC);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_does_not_grow() {
        let limiter = Limiter::new(ThrottleConfig::starting_at(60.0));
        for s in 1..100 {
            limiter.on_success(s * 60 * SEC);
        }
        assert_eq!(limiter.rate_rpm(), 60.0);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_slow_the_pace_until_the_reset_and_never_speed_it_up() {
        let limiter = Limiter::new(ThrottleConfig::starting_at(120.0));
        limiter.on_headers(0, 10, Duration::from_secs(60));
        assert_eq!(limiter.effective_rpm(SEC), 10.0);
        assert_eq!(limiter.effective_rpm(61 * SEC), 120.0);
        limiter.on_headers(0, 1000, Duration::from_secs(60));
        assert_eq!(limiter.effective_rpm(61 * SEC), 120.0);
        limiter.on_headers(62 * SEC, 0, Duration::from_secs(5));
        assert_eq!(limiter.acquire(62 * SEC, 0).unwrap(), 67 * SEC);
    }
}
