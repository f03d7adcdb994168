//! [`Scenario`]: every knob of the simulated provider, and the presets.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// One US dollar in xAI's billing ticks (`usage.cost_in_usd_ticks`).
pub const TICKS_PER_USD: u64 = 10_000_000_000;

/// How the simulated provider behaves. Fields are public: start from a preset and change
/// what the test needs.
///
/// ```
/// use std::time::Duration;
/// use ballast_sim::{Flavor, Scenario};
///
/// let scenario = Scenario {
///     seed: 7,
///     flavor: Flavor::Anthropic,
///     ..Scenario::bad_day()
/// };
/// assert_eq!(scenario.advertised_rpm, 480);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// A short name, for reports.
    pub name: String,
    /// Seeds every random choice: the same seed and the same requests give the same run.
    pub seed: u64,
    /// Which provider's wire format the simulator speaks.
    pub flavor: Flavor,
    /// The limit the provider documents and puts in `x-ratelimit-limit-requests`.
    pub advertised_rpm: u32,
    /// The limit it really enforces, as steps over simulated time in order of `from`.
    /// Empty: no limit.
    pub hidden_limit: Vec<LimitStep>,
    /// Whether rejected requests use up the limit too (they do at some providers, which is
    /// what turns naive retries into a lock-out). The debt is capped at one second's worth.
    pub rejections_count: bool,
    /// What the 429s say about when to come back.
    pub wait_hint: HintStyle,
    /// Server errors that come in bursts.
    pub server_errors: BurstModel,
    /// Server errors that grow with the load offered (retries included). `None`: the load
    /// changes nothing.
    pub overload: Option<Overload>,
    /// Windows of simulated time in which every request gets a 503.
    pub outages: Vec<Outage>,
    /// Requests that hang.
    pub hangs: Hangs,
    /// How long answers take.
    pub latency: Latency,
    /// Share of successes whose body arrives as broken JSON. Billed in full, as a real
    /// provider bills the work it did whatever reached the client.
    pub malformed_probability: f64,
    /// Share of successes answered with status 200 and an error object.
    pub error_in_ok_probability: f64,
    /// Whether an error inside a 200 body bills the prompt (the provider read it before it
    /// failed). Default `true`: pessimistic, as the ground truth must be.
    pub bills_errors_in_ok: bool,
    /// Spend after which every request gets the provider's "out of credits" error, in ticks
    /// ([`TICKS_PER_USD`]).
    pub quota_ticks: Option<u64>,
    /// The key the provider accepts. `None`: any key, or none.
    pub api_key: Option<ExpectedKey>,
    /// What one token costs.
    pub price: Price,
    /// Share of prompt tokens served from the provider's prompt cache.
    pub cached_share: f64,
    /// Share of each answer's output tokens that are reasoning (the model thinking before
    /// it answers, as grok-code-fast-1 does): billed as output, reported as each provider
    /// does (xAI beside `completion_tokens`, its total counting them; OpenAI and Anthropic
    /// inside the output count; Gemini as `thoughtsTokenCount`), and, in a stream, all
    /// generated before the first content and billed even if the client leaves then.
    pub reasoning_share: f64,
    /// Output tokens when the request sets no cap.
    pub default_max_tokens: u32,
    /// The model's context window, in tokens; longer prompts get "context too long".
    pub context_window: u32,
    /// Simulated seconds per real second. Keep 1.0 under tokio's paused clock; raise it to
    /// run a long scenario over real sockets in a short time (60.0: an hour in a minute).
    pub time_scale: f64,
    /// Output tokens per content event of a streamed answer.
    pub chunk_tokens: u32,
    /// What goes wrong in streamed answers.
    pub stream_faults: StreamFaults,
}

/// What goes wrong in a streamed answer (a request with `"stream": true`, or Gemini's
/// `:streamGenerateContent`). At most one fault per stream, drawn in this order; where it
/// strikes is drawn uniformly from before the first content event to after the last.
/// A stream is billed for the prompt and the tokens generated until it ended, or until
/// its client left (the chunk being sent then included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamFaults {
    /// Share of streams whose connection is cut (the body fails).
    pub cut: f64,
    /// Share of streams that go silent for `stall_for`, then go on.
    pub stall: f64,
    /// How long a stall lasts.
    pub stall_for: Duration,
    /// Share of streams that end with an error event (an overloaded provider), without
    /// their terminal events.
    pub error_event: f64,
    /// Share of streams with one event of broken JSON among the others.
    pub malformed_event: f64,
    /// Share of chat streams that end without `data: [DONE]` (the finish reason still
    /// comes).
    pub no_done: f64,
    /// Share of streams whose first content comes `slow_first` after the preamble.
    pub slow_first_share: f64,
    /// How late a slow first content comes.
    pub slow_first: Duration,
}

impl StreamFaults {
    /// No faults.
    pub const NONE: Self = Self {
        cut: 0.0,
        stall: 0.0,
        stall_for: Duration::ZERO,
        error_event: 0.0,
        malformed_event: 0.0,
        no_done: 0.0,
        slow_first_share: 0.0,
        slow_first: Duration::ZERO,
    };
}

impl Default for Scenario {
    fn default() -> Self {
        Self::healthy()
    }
}

/// Mixed into the scenario's seed for the generator of the burst chain's spells.
const SPELLS_SEED: u64 = 0x5be1_15ba_d5be_115a;

/// The most steps [`Scenario::bad_share`] walks (a year of one-second steps is 31.5 million).
const MAX_SHARE_STEPS: u128 = 100_000_000;

impl Scenario {
    /// The generator of a time-stepped burst chain's spells: its own, seeded from the
    /// scenario's seed, so every client run on one seed meets the same weather.
    pub(crate) fn spells(&self) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ SPELLS_SEED)
    }

    /// The share of the first `over` of simulated time that the time-stepped burst chain
    /// spends in its bad state: the weather every client run on this seed meets, whoever
    /// calls and however often (as long as some call reaches the provider every 10 000
    /// steps). `None` when the chain steps per request (its spells then follow the calls)
    /// or `over` is shorter than a step. Walks at most 100 million steps.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ballast_sim::{BurstModel, Scenario};
    ///
    /// let scenario = Scenario {
    ///     server_errors: BurstModel {
    ///         enter_bad: 0.05,
    ///         leave_bad: 0.1,
    ///         fail_when_good: 0.02,
    ///         fail_when_bad: 0.8,
    ///         step: Some(Duration::from_secs(1)),
    ///     },
    ///     ..Scenario::healthy()
    /// };
    /// let share = scenario.bad_share(Duration::from_secs(1800)).unwrap();
    /// // Spells of 10 s on average, one every 20 s of good weather: about a third.
    /// assert!((0.2..0.45).contains(&share));
    /// assert_eq!(Scenario::healthy().bad_share(Duration::from_secs(1800)), None);
    /// ```
    pub fn bad_share(&self, over: Duration) -> Option<f64> {
        let step = self.server_errors.step?.max(Duration::from_millis(1));
        let steps = (over.as_nanos() / step.as_nanos()).min(MAX_SHARE_STEPS);
        if steps == 0 {
            return None;
        }
        let mut spells = self.spells();
        let mut bad = false;
        let mut bad_steps = 0u64;
        // Over the k-th step's span the chain is in the state its first k draws left:
        // the first span is good, as the provider starts.
        for _ in 0..steps {
            bad_steps += u64::from(bad);
            bad = self.server_errors.next_state(bad, spells.random());
        }
        Some(bad_steps as f64 / steps as f64)
    }

    /// A provider with no limits and no faults, with grok-code-fast-1's prices and speed.
    pub fn healthy() -> Self {
        Self {
            name: "healthy".into(),
            seed: 1,
            flavor: Flavor::XAi,
            advertised_rpm: 480,
            hidden_limit: Vec::new(),
            rejections_count: false,
            wait_hint: HintStyle::Truthful,
            server_errors: BurstModel::NONE,
            overload: None,
            outages: Vec::new(),
            hangs: Hangs::NONE,
            latency: Latency::default(),
            malformed_probability: 0.0,
            error_in_ok_probability: 0.0,
            bills_errors_in_ok: true,
            quota_ticks: None,
            api_key: None,
            price: Price::GROK_CODE_FAST_1,
            cached_share: 0.0,
            reasoning_share: 0.0,
            default_max_tokens: 400,
            context_window: 256_000,
            time_scale: 1.0,
            chunk_tokens: 5,
            stream_faults: StreamFaults::NONE,
        }
    }

    /// Every request gets a 503, for ever.
    pub fn total_outage() -> Self {
        Self {
            name: "total_outage".into(),
            outages: vec![Outage {
                start: Duration::ZERO,
                duration: Duration::MAX,
            }],
            ..Self::healthy()
        }
    }

    /// Healthy, except for a total outage from `start` lasting `duration`.
    pub fn outage_then_recovery(start: Duration, duration: Duration) -> Self {
        Self {
            name: "outage_then_recovery".into(),
            outages: vec![Outage { start, duration }],
            ..Self::healthy()
        }
    }

    /// Documents 480 requests/min, enforces 250, then 150 after 10 minutes, then 200 after
    /// 20, per second; and its wait hints are random.
    pub fn lying_rate_limits() -> Self {
        Self {
            name: "lying_rate_limits".into(),
            hidden_limit: vec![
                LimitStep::new(Duration::ZERO, 250),
                LimitStep::new(Duration::from_secs(600), 150),
                LimitStep::new(Duration::from_secs(1200), 200),
            ],
            wait_hint: HintStyle::Random {
                max: Duration::from_secs(30),
            },
            ..Self::healthy()
        }
    }

    /// The week from DEVELOPERS.md in one scenario: lying rate limits with wrong hints,
    /// 5xx in bursts, one request in a hundred hanging for two and a half minutes, and the
    /// odd broken body or error inside a 200. The bursts follow the clock (a second's step:
    /// about 2.5 s bad, failing three calls in five, in every 22 s), as a real provider's
    /// do: a client that holds back does not hold the burst back with it.
    pub fn bad_day() -> Self {
        Self {
            name: "bad_day".into(),
            server_errors: BurstModel {
                enter_bad: 0.05,
                leave_bad: 0.4,
                fail_when_good: 0.02,
                fail_when_bad: 0.6,
                step: Some(Duration::from_secs(1)),
            },
            hangs: Hangs {
                probability: 0.01,
                answer_after: Some(Duration::from_secs(150)),
            },
            malformed_probability: 0.005,
            error_in_ok_probability: 0.005,
            cached_share: 0.3,
            ..Self::lying_rate_limits()
        }
    }

    /// The enforced limit at simulated time `at`, in requests per minute.
    pub fn hidden_rpm_at(&self, at: Duration) -> Option<u32> {
        self.hidden_limit
            .iter()
            .take_while(|step| step.from <= at)
            .last()
            .map(|step| step.rpm)
    }

    /// Whether simulated time `at` falls in an outage.
    pub fn in_outage(&self, at: Duration) -> bool {
        self.outages
            .iter()
            .any(|o| at >= o.start && at - o.start < o.duration)
    }
}

/// Which provider's wire format the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// xAI: OpenAI-shaped successes with `usage.cost_in_usd_ticks`; flat
    /// `{"code", "error"}` errors; a bad key is a 400; hints in the message.
    XAi,
    /// OpenAI: `{"error": {...}}` errors, hints in `x-ratelimit-reset-requests` and the message.
    OpenAi,
    /// Anthropic Messages API: `{"type": "error", ...}` errors, 529 when overloaded, hints in
    /// `retry-after`.
    Anthropic,
    /// Gemini: `usageMetadata`, `RESOURCE_EXHAUSTED` with `RetryInfo.retryDelay`.
    Gemini,
}

impl Flavor {
    /// A well-formed request in this provider's own API for `model`, asking for at most
    /// `max_tokens` with one user message `prompt`: the path (under `/v1`, or `/v1beta` for
    /// Gemini), the JSON body and, for Anthropic, its `anthropic-version`. No key: the
    /// caller adds its own.
    pub fn request(self, model: &str, max_tokens: u64, prompt: &str) -> http::Request<String> {
        let (path, body) = match self {
            Self::XAi | Self::OpenAi => (
                "/v1/chat/completions".to_owned(),
                serde_json::json!({
                    "model": model,
                    "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": prompt}],
                }),
            ),
            Self::Anthropic => (
                "/v1/messages".to_owned(),
                serde_json::json!({
                    "model": model,
                    "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": prompt}],
                }),
            ),
            Self::Gemini => (
                format!("/v1beta/models/{model}:generateContent"),
                serde_json::json!({
                    "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                    "generationConfig": {"maxOutputTokens": max_tokens},
                }),
            ),
        };
        let mut request = http::Request::new(body.to_string());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = path.parse().unwrap_or_default();
        let headers = request.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if self == Self::Anthropic {
            headers.insert(
                "anthropic-version",
                http::HeaderValue::from_static("2023-06-01"),
            );
        }
        request
    }

    /// A well-formed request to OpenAI's Responses API (`/v1/responses`, `input` and
    /// `max_output_tokens`) for `model`: OpenAI and xAI serve it; the simulator answers it
    /// with a `response` object, or with the Responses API's named events when streamed.
    pub fn responses_request(model: &str, max_tokens: u64, prompt: &str) -> http::Request<String> {
        let body = serde_json::json!({
            "model": model,
            "max_output_tokens": max_tokens,
            "input": prompt,
        });
        let mut request = http::Request::new(body.to_string());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = http::Uri::from_static("/v1/responses");
        request.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        request
    }
}

/// From simulated time `from` on, the provider enforces `rpm` requests per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStep {
    /// When the step starts, in simulated time since the simulator was created.
    pub from: Duration,
    /// The enforced limit.
    pub rpm: u32,
}

impl LimitStep {
    /// A step.
    pub const fn new(from: Duration, rpm: u32) -> Self {
        Self { from, rpm }
    }
}

/// What a 429 says about when to come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HintStyle {
    /// No hint.
    None,
    /// The true time until the limiter would accept a request.
    Truthful,
    /// The true time multiplied by a factor (0.1: ten times too short).
    Scaled(f64),
    /// A uniformly random time up to `max`, unrelated to the truth.
    Random {
        /// The longest hint.
        max: Duration,
    },
    /// Always the same.
    Fixed(Duration),
}

/// Server errors as a two-state Markov chain: in the good state requests fail with
/// `fail_when_good`, in the bad state with `fail_when_bad`. The chain steps once per request
/// (`step: None`), or once per `step` of simulated time, as a provider's bad spells last
/// whether or not anyone is calling (a client that stops calling does not end a burst
/// sooner, nor make it last longer). A time-stepped chain draws from a generator of its own,
/// so its spells fall at the same times whoever calls: clients compared on one seed meet
/// the same weather.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstModel {
    /// Chance per request of moving from good to bad.
    pub enter_bad: f64,
    /// Chance per request of moving from bad to good.
    pub leave_bad: f64,
    /// Failure chance in the good state.
    pub fail_when_good: f64,
    /// Failure chance in the bad state.
    pub fail_when_bad: f64,
    /// `None`: the chain steps on each request (the probabilities are per request).
    /// `Some(d)`: it steps every `d` of simulated time (the probabilities are per `d`).
    pub step: Option<Duration>,
}

impl BurstModel {
    /// No server errors.
    pub const NONE: Self = Self {
        enter_bad: 0.0,
        leave_bad: 1.0,
        fail_when_good: 0.0,
        fail_when_bad: 0.0,
        step: None,
    };

    /// The chain's state after a step that drew `roll` (uniform in `[0, 1)`) from `bad`.
    pub(crate) fn next_state(&self, bad: bool, roll: f64) -> bool {
        if bad {
            roll >= self.leave_bad
        } else {
            roll < self.enter_bad
        }
    }
}

/// A provider with room for `capacity_rpm` requests a minute that collapses past it: over
/// the last `window`, once the arrivals pass what the window holds at capacity, a request
/// succeeds with probability `(capacity / arrivals)^2` and fails (503, Anthropic's 529)
/// otherwise. What it serves, `capacity^2 / arrivals`, falls as the load grows (the work
/// spent on requests it then fails), as an overloaded server's does. Every request that
/// gets this far counts as an arrival, so retries feed the overload.
///
/// ```
/// use std::time::Duration;
/// use ballast_sim::{Overload, Scenario};
///
/// let scenario = Scenario {
///     overload: Some(Overload { capacity_rpm: 120, window: Duration::from_secs(10) }),
///     ..Scenario::healthy()
/// };
/// assert!(scenario.overload.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    /// What the provider serves well, per minute.
    pub capacity_rpm: u32,
    /// How far back arrivals count.
    pub window: Duration,
}

/// A window of total outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When it starts, in simulated time.
    pub start: Duration,
    /// How long it lasts (`Duration::MAX`: for ever).
    pub duration: Duration,
}

/// Requests that hang.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hangs {
    /// Chance that an otherwise successful request hangs.
    pub probability: f64,
    /// When the hung request finally answers (and is billed in full); `None`: never. A
    /// request that never answers is billed for its prompt and the tokens generated until
    /// the client went away (at `Latency::per_output_token`, up to the completion drawn).
    pub answer_after: Option<Duration>,
}

impl Hangs {
    /// No hangs.
    pub const NONE: Self = Self {
        probability: 0.0,
        answer_after: None,
    };
}

/// How long answers take, in simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Time to first token.
    pub base: Duration,
    /// Added per output token: latency follows output length, not load.
    pub per_output_token: Duration,
    /// How long an error answer takes.
    pub error: Duration,
}

impl Latency {
    /// Answers in a millisecond, whatever the length: for tests over real sockets.
    pub const INSTANT: Self = Self {
        base: Duration::from_millis(1),
        per_output_token: Duration::ZERO,
        error: Duration::ZERO,
    };
}

impl Default for Latency {
    /// 400 ms to first token, 8 ms per token (about 125 tokens/s), 50 ms for errors.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(400),
            per_output_token: Duration::from_millis(8),
            error: Duration::from_millis(50),
        }
    }
}

/// Prices per token, in ticks ([`TICKS_PER_USD`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// An uncached input token.
    pub input: u64,
    /// A cached input token.
    pub cached_input: u64,
    /// An output token.
    pub output: u64,
}

impl Price {
    /// grok-code-fast-1 at launch: $0.20 input, $0.02 cached input, $1.50 output per
    /// million tokens.
    pub const GROK_CODE_FAST_1: Self = Self {
        input: 2_000,
        cached_input: 200,
        output: 15_000,
    };

    /// grok-4-fast (up to 128k prompt tokens): $0.20 input, $0.05 cached input, $0.50
    /// output per million tokens. A simulator standing for a fallback asked for that model
    /// bills at this price.
    pub const GROK_4_FAST: Self = Self {
        input: 2_000,
        cached_input: 500,
        output: 5_000,
    };
}

/// The API key the simulated provider accepts. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ExpectedKey(pub String);

impl fmt::Debug for ExpectedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExpectedKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_steps_and_outages() {
        let s = Scenario::lying_rate_limits();
        assert_eq!(s.hidden_rpm_at(Duration::ZERO), Some(250));
        assert_eq!(s.hidden_rpm_at(Duration::from_secs(599)), Some(250));
        assert_eq!(s.hidden_rpm_at(Duration::from_secs(600)), Some(150));
        assert_eq!(s.hidden_rpm_at(Duration::from_secs(5000)), Some(200));
        assert_eq!(Scenario::healthy().hidden_rpm_at(Duration::ZERO), None);

        let s = Scenario::outage_then_recovery(Duration::from_secs(60), Duration::from_secs(600));
        assert!(!s.in_outage(Duration::from_secs(59)));
        assert!(s.in_outage(Duration::from_secs(60)));
        assert!(s.in_outage(Duration::from_secs(659)));
        assert!(!s.in_outage(Duration::from_secs(660)));
        assert!(Scenario::total_outage().in_outage(Duration::from_secs(1 << 40)));
    }

    #[test]
    fn key_is_not_in_debug() {
        let s = Scenario {
            api_key: Some(ExpectedKey("xai-CANARY".into())),
            ..Scenario::healthy()
        };
        assert!(!format!("{s:?}").contains("CANARY"));
    }
}
