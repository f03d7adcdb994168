//! [`BreakerConfig`]: when a breaker opens, how long it stays open, how it probes.

use std::time::Duration;

use ballast_classify::HintTrust;

/// Everything a breaker is configured with. Start from [`BreakerConfig::default`] and change
/// what you need; every field is public.
///
/// The defaults are for LLM request rates (a few requests per second per key), where the
/// 100-call windows of Polly and resilience4j take half a minute to fill or never do:
///
/// | setting | default | why |
/// |---|---|---|
/// | `consecutive_failures` | 5 | a total outage opens after 5 failed calls, 1.5 s at 200 requests/min |
/// | `window` / `buckets` | 10 s in 10 buckets | about 33 calls at 200 requests/min: enough to judge a rate, short enough to forget a past burst |
/// | `min_calls` | 10 | a rate over fewer calls is noise; at 200 requests/min the window holds 10 calls after 3 s |
/// | `failure_rate` | 0.5 | half the calls failing is an outage, not bad luck; with 10 calls it opens within 5 to 10 failed calls |
/// | `slow_call` / `slow_rate` | 60 s / 0.5 | twice the 30 s average the story calls "complaints"; half the calls that slow is a provider in trouble |
/// | `open_base` / `open_growth` / `open_cap` | 3 s, x2, 3 s | a probe every 3 s: a provider's bad spells last seconds, so a longer open time costs more successes than it saves calls (the scoreboard's 5xx bursts: 58% goodput with a 5 s cap, 40% with 10 s, 33% with 20 s); a recovery is found about half an open time after it, so with the primary down a minute and up a minute (six seeds) 3 s keeps 48.3% goodput against 46.7% with 5 s (coming back every second: 50.5% at 2.5 calls per item), while a 10-minute outage costs one probe per 3 s (1.04 calls per item through it, 1.03 with 5 s). Raise the cap to back off on repeated trips |
/// | `open_jitter` | 0.2 | up to 20% longer, so breakers of many processes do not probe together; 3 s x 1.2 = 3.6 s keeps the first success within 3.6 s of a recovery |
/// | `hint_trust` / `max_hint` | clamped to 5 s past the open time / 60 s | a 503's `retry-after` may keep the breaker open longer, weighed by the same [`HintTrust`] as the retry's wait (hints lie), and never past `max_hint` |
/// | `probes` / `probe_successes` | 1 / 1 | one request finds out whether the provider is back, and its success closes the breaker |
/// | `half_open_wait` | 1 s | a call refused while the probe is out is told to come back this soon: the probe answers in about a call's time, and a caller sent away for a whole open time stays away after the breaker closes (the scoreboard's 5xx bursts, six seeds: 60% goodput with 1 s, 52% with no hint, callers falling back to 5 s) |
/// | `latch_on_auth_and_quota` / `latch_reprobe` | true / 10 min | no wait fixes a bad key or an empty account: stop, and let one probe through every 10 minutes, so a fixed key or a topped-up account recovers without a restart or a reset (one call in 10 minutes costs nothing worth saving) |
/// | `max_keys` / `idle_eviction` | 1000 / 10 min | bounded memory whatever the keys |
/// | `patience` | `None` | fail fast, for apps with their own fallback; [`Patience`] makes a refused call wait in a bounded line for the breaker's next chance (the facade turns it on) |
/// | `partial` | `None` | every trip is an outage's; [`PartialTrip`] opens a breaker that tripped while the provider still served calls (a success within the last `window`) for 1.5 s with 3 probes, doubling every 250 ms none fails, until 40 of them fail with none succeeding (the facade turns it on) |
/// | `admission` | `None` | the classic breaker; [`BreakerConfig::adaptive`] sets [`Admission`] (refuse in proportion to the successes, open only for an outage), for a provider whose failures follow the load it is offered |
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Opens after this many provider failures in a row.
    pub consecutive_failures: u32,
    /// The length of the sliding window.
    pub window: Duration,
    /// How many buckets the window is kept in.
    pub buckets: u32,
    /// Rates are judged only once the window holds this many calls.
    pub min_calls: u32,
    /// Opens when this share of the window's calls failed.
    pub failure_rate: f64,
    /// A call that takes at least this long is slow.
    pub slow_call: Duration,
    /// Opens when this share of the window's calls was slow.
    pub slow_rate: f64,
    /// How long the first trip keeps the breaker open.
    pub open_base: Duration,
    /// Growth of the open time on each trip in a row (reset when the breaker closes).
    pub open_growth: f64,
    /// The longest open time from backoff.
    pub open_cap: Duration,
    /// Up to this share is added at random to each open time.
    pub open_jitter: f64,
    /// How far a server's wait hint may stretch the open time: the same policy as the
    /// retry's ([`HintTrust::default`]: up to 5 s past the open time).
    pub hint_trust: HintTrust,
    /// The longest open time a server's wait hint may ask for.
    pub max_hint: Duration,
    /// Probes in flight at once while half-open.
    pub probes: u32,
    /// Successful probes that close the breaker.
    pub probe_successes: u32,
    /// The wait hint of a call refused while half-open (the probes are out): their answers
    /// decide, so come back soon.
    pub half_open_wait: Duration,
    /// Whether auth failures and exhausted quota latch the breaker open until a reset.
    pub latch_on_auth_and_quota: bool,
    /// How long a latched breaker refuses everything before it lets a probe through (its
    /// failure latches it again for as long).
    pub latch_reprobe: Duration,
    /// The most keys tracked; past it, idle keys are evicted, then new keys share one
    /// overflow breaker.
    pub max_keys: usize,
    /// A key unused this long may be evicted.
    pub idle_eviction: Duration,
    /// Admission in proportion to what the provider serves, in place of opening on a
    /// failure rate (`None`: the classic breaker, which opens on `failure_rate`). With it,
    /// the breaker opens only for an outage: `consecutive_failures` in a row with no
    /// success left in the window, or the slow-call rate.
    pub admission: Option<Admission>,
    /// Calls refused while open, half-open or shedding wait for the next chance instead of
    /// failing at once (`None`: fail fast).
    pub patience: Option<Patience>,
    /// A trip while the provider still served calls (a success within the last `window`) opens for
    /// a shorter time and lets more probes through, until so many of them fail that it is
    /// an outage after all (`None`: every trip is an outage's).
    pub partial: Option<PartialTrip>,
}

/// How a breaker that trips on a partial failure (a 5xx burst: a call succeeded within the
/// last `window`) probes: `open` instead of the open time, `probes` instead of
/// [`BreakerConfig::probes`], until `outage_after` probes of the episode have failed with
/// none succeeding, which makes it an outage's (the open time and one probe). A provider in
/// a burst that still serves one call in five is then asked a few calls a second instead of
/// one every open time, and back in use within about a second of the burst's end; a
/// provider that is down costs `outage_after` failed probes before the usual pace.
///
/// While the probes are out and none has failed, their limit grows (`ramp`): failures come
/// back fast, so quiet probes are most likely successes under way. Any probe's success, even
/// one answering after a faster failure reopened the breaker, starts the count of misses
/// again.
///
/// Measured in `BENCHMARKS.md` (the scoreboard, mean of six seeds): 5xx bursts 59.7% ->
/// 65.9% goodput, the overload 25.2% -> 26.6%, the 10-minute outage 1.02 -> 1.03 calls per
/// item; with the ramp and late successes, under the simulator's shared weather, bursts
/// 68.4% -> 69.8% and the overload 26.6% -> 28.2%; with sudden episodes, bursts 69.6% ->
/// 77.2% (1.17 -> 1.47 calls per item) and the overload unchanged.
///
/// ```
/// use std::time::Duration;
/// use ballast_breaker::{BreakerConfig, PartialTrip};
///
/// let config = BreakerConfig { partial: Some(PartialTrip::default()), ..BreakerConfig::patient() };
/// assert_eq!(PartialTrip::default().open, Duration::from_millis(1500));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartialTrip {
    /// How long a partial trip keeps the breaker open (1.5 s, before jitter and hints).
    pub open: Duration,
    /// Probes in flight at once after a partial trip (3).
    pub probes: u32,
    /// Failed probes, with no success, that turn the episode into an outage (40: a
    /// provider failing four calls in five fails 40 in a row about once in 7 500 episodes;
    /// 12 turns about one burst in fifteen into an outage, and cost 7 points of the bursts'
    /// goodput in the sweep (1 s open, 4 probes); a 10-minute outage pays 40 calls for it,
    /// 1.02 -> 1.03 calls per item).
    pub outage_after: u32,
    /// How long the probes may stay out with none failing before the limit on probes
    /// doubles (and again each `ramp` after): failures come back fast, answers take their
    /// time, so quiet probes are taken for a provider serving again and the waiting calls
    /// follow them before their answers come. `None`: the limit stays `probes`. 250 ms:
    /// 100 ms gains in bursts and loses in the overload, 500 ms the other way round
    /// (`BENCHMARKS.md`).
    pub ramp: Option<Duration>,
    /// A trip while at least this share of the window's calls still succeeded starts a
    /// *sudden* episode: failures that began among successes, as a burst's do, where an
    /// overload's trips come after its successes thinned (the scoreboard: 81% of the
    /// window's calls had succeeded at a 5xx burst's trips, 28% at the overload's). A
    /// sudden episode's trips open for `sudden_open` instead of `open`, and let
    /// `sudden_probes` out instead of `probes`; the ramp and `outage_after` are the same.
    /// `None`: every partial trip is as above. 85%: 0.8 gains a point in bursts and loses
    /// the overload's lead, 0.9 gives back most of the gain (`BENCHMARKS.md`).
    pub sudden_share: Option<f64>,
    /// How long a sudden episode's trips keep the breaker open (100 ms, before jitter and
    /// hints): the waiting calls are back, behind the probes, at once.
    pub sudden_open: Duration,
    /// Probes in flight at once in a sudden episode (4: 3 leaves 2 points of the bursts'
    /// goodput, 5 spends more than 1.5 calls per item there).
    pub sudden_probes: u32,
}

impl Default for PartialTrip {
    fn default() -> Self {
        Self {
            open: Duration::from_millis(1500),
            probes: 3,
            outage_after: 40,
            ramp: Some(Duration::from_millis(250)),
            sudden_share: Some(0.85),
            sudden_open: Duration::from_millis(100),
            sudden_probes: 4,
        }
    }
}

/// A refused call waits for the breaker's next chance, within its
/// [`Deadline`](ballast_classify::Deadline), instead of failing at once.
///
/// While the breaker is open, a waiting call sleeps until the open time ends; while the
/// probes are out, until their answer (or `half_open_wait`); while shedding, `half_open_wait`
/// before it draws again. When the probe closes the breaker the waiting calls are let go one
/// after another in the order they came (each wakes the next: no herd, and a throttle below
/// gives them turns in that order); a failed probe sends them back to wait for the next one.
/// A call fails only when its deadline cannot be met (the open time ends after it: the
/// refusal's hint is that open time, never shorter) or when `max_waiting` calls of its key
/// wait already. A dropped waiting call holds nothing: its place and any wake-up it was given
/// pass on. A call that is the probe and fails goes back in line for the next open time
/// (the probe's failure is the breaker's finding; the probes are one per open time whoever
/// sends them), up to `max_probes` times.
///
/// ```
/// use std::time::Duration;
/// use ballast_breaker::{BreakerConfig, Patience};
///
/// let config = BreakerConfig::patient();
/// assert_eq!(config.patience, Some(Patience::default()));
/// assert_eq!(Patience::default().max_wait, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// The most calls of one key waiting at once (256); past it, refused at once.
    pub max_waiting: u32,
    /// The longest wait of a call with no [`Deadline`](ballast_classify::Deadline) (60 s).
    pub max_wait: Duration,
    /// How many times one call may be the breaker's probe (4): a failed probe sends its
    /// call back in line, until this many, so a provider that stays down costs each
    /// waiting call at most this many calls, not one per open time until its deadline. The
    /// probes of a [`PartialTrip`] episode do not count: they have their bound for the whole
    /// episode (`outage_after`), and a burst asks for more of them.
    pub max_probes: u32,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            max_waiting: 256,
            max_wait: Duration::from_secs(60),
            max_probes: 4,
        }
    }
}

/// Client-side adaptive throttling (Google's SRE book, "Handling Overload"): over the
/// window, a call is refused with probability
/// `(requests - multiplier * accepts) / (requests + 1)`, where requests counts every call
/// asked for (those refused here too) and accepts the provider's successes. A provider that
/// serves one call in five keeps getting about `multiplier` calls per success it gives, and
/// the calls beyond that are refused at once instead of failing upstream; as it recovers,
/// accepts rise and the refusals fade without waiting for an open time to pass.
///
/// ```
/// use ballast_breaker::{Admission, BreakerConfig};
///
/// let config = BreakerConfig::adaptive();
/// assert_eq!(config.admission, Some(Admission::default()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    /// Calls allowed per success over the window (the book's K; 2.0).
    pub multiplier: f64,
    /// The largest share refused (0.9): some calls always go, to see a recovery.
    pub max_shed: f64,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            multiplier: 2.0,
            max_shed: 0.9,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            window: Duration::from_secs(10),
            buckets: 10,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call: Duration::from_secs(60),
            slow_rate: 0.5,
            open_base: Duration::from_secs(3),
            open_growth: 2.0,
            open_cap: Duration::from_secs(3),
            open_jitter: 0.2,
            hint_trust: HintTrust::default(),
            max_hint: Duration::from_secs(60),
            probes: 1,
            probe_successes: 1,
            half_open_wait: Duration::from_secs(1),
            latch_on_auth_and_quota: true,
            latch_reprobe: Duration::from_secs(600),
            max_keys: 1000,
            idle_eviction: Duration::from_secs(600),
            admission: None,
            patience: None,
            partial: None,
        }
    }
}

impl BreakerConfig {
    /// The defaults with [`Admission`]: a provider that still serves a share of calls gets
    /// calls in proportion, and the breaker opens only for an outage. Opt-in: the facade
    /// keeps [`BreakerConfig::default`].
    pub fn adaptive() -> Self {
        Self {
            admission: Some(Admission::default()),
            ..Self::default()
        }
    }

    /// The defaults with [`Patience`]: refused calls wait for the next chance within their
    /// deadline.
    pub fn patient() -> Self {
        Self {
            patience: Some(Patience::default()),
            ..Self::default()
        }
    }

    /// The open time for trip number `trip` (1 for the first), before jitter and hints.
    pub fn open_time(&self, trip: u32) -> Duration {
        let exponent = i32::try_from(trip.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.open_base.as_secs_f64() * self.open_growth.max(1.0).powi(exponent);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(Duration::MAX)
            .min(self.open_cap)
    }

    /// The longest the breaker can stay open on backoff alone: the cap plus its jitter.
    pub fn longest_open(&self) -> Duration {
        Duration::try_from_secs_f64(self.open_cap.as_secs_f64() * (1.0 + self.open_jitter.max(0.0)))
            .unwrap_or(Duration::MAX)
    }

    /// The same settings for a provider whose clock runs `scale` times faster than real time
    /// (a simulation's `time_scale`): every duration divided by `scale`. A server's wait hint
    /// is still read in its own time, so it is capped by the scaled `max_hint`. Values that
    /// are not finite and positive leave the settings as they are.
    pub fn time_scaled(mut self, scale: f64) -> Self {
        if !(scale.is_finite() && scale > 0.0) || scale == 1.0 {
            return self;
        }
        let max_wait = self
            .patience
            .as_mut()
            .map(|patience| &mut patience.max_wait);
        let partial = self.partial.as_mut().into_iter().flat_map(|partial| {
            [
                Some(&mut partial.open),
                Some(&mut partial.sudden_open),
                partial.ramp.as_mut(),
            ]
            .into_iter()
            .flatten()
        });
        for duration in [
            &mut self.window,
            &mut self.slow_call,
            &mut self.open_base,
            &mut self.open_cap,
            &mut self.half_open_wait,
            &mut self.max_hint,
            &mut self.idle_eviction,
            &mut self.latch_reprobe,
        ]
        .into_iter()
        .chain(max_wait)
        .chain(partial)
        {
            *duration =
                Duration::try_from_secs_f64(duration.as_secs_f64() / scale).unwrap_or(*duration);
        }
        self
    }

    pub(crate) fn bucket_nanos(&self) -> u64 {
        let buckets = u128::from(self.buckets.max(1));
        u64::try_from((self.window.as_nanos() / buckets).max(1)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_time_grows_and_caps() {
        let config = BreakerConfig::default();
        let secs = Duration::from_secs;
        let times: Vec<_> = (1..=4).map(|t| config.open_time(t)).collect();
        assert_eq!(times, [secs(3); 4]);
        assert_eq!(config.longest_open(), Duration::from_millis(3600));
        let growing = BreakerConfig {
            open_cap: secs(20),
            ..BreakerConfig::default()
        };
        let times: Vec<_> = (1..=4).map(|t| growing.open_time(t)).collect();
        assert_eq!(times, [secs(3), secs(6), secs(12), secs(20)]);
        assert!(
            config.longest_open() < secs(30),
            "first success within 30 s of recovery"
        );
        assert_eq!(config.bucket_nanos(), 1_000_000_000);
    }

    #[test]
    fn time_scaled_divides_every_duration_and_ignores_bad_scales() {
        let config = BreakerConfig::default().time_scaled(10.0);
        let ms = Duration::from_millis;
        assert_eq!(config.window, ms(1000));
        assert_eq!(config.slow_call, ms(6000));
        assert_eq!(config.open_base, ms(300));
        assert_eq!(config.open_cap, ms(300));
        assert_eq!(config.half_open_wait, ms(100));
        assert_eq!(config.max_hint, ms(6000));
        assert_eq!(config.idle_eviction, ms(60_000));
        assert_eq!(config.consecutive_failures, 5);
        let partial = BreakerConfig {
            partial: Some(PartialTrip::default()),
            ..BreakerConfig::default()
        }
        .time_scaled(10.0)
        .partial
        .unwrap();
        assert_eq!(partial.open, ms(150));
        assert_eq!(partial.sudden_open, ms(10));
        assert_eq!(partial.ramp, Some(ms(25)));
        assert_eq!(partial.probes, 3);
        for bad in [0.0, -2.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                BreakerConfig::default().time_scaled(bad),
                BreakerConfig::default()
            );
        }
    }
}
