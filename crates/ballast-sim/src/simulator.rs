//! [`Simulator`]: the in-process face of the simulated provider.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;
use tower_service::Service;

use crate::stream::{Fault, SimBody, StreamPlan};
use crate::wire::{self, Usage, WireError};
use crate::{Flavor, HintStyle, Ledger, LedgerEntry, Scenario, SimOutcome};

/// The error type of the simulator: only reading the request body can fail.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest request body the simulator reads.
pub(crate) const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// A simulated LLM provider as a `tower::Service`. Clones share one provider.
///
/// Create it inside the tokio runtime that will drive it: its clock starts at creation and
/// follows tokio's, so under a paused clock a simulated hour runs in milliseconds.
///
/// State sits behind one mutex, held only for the synchronous decision on each request;
/// this is a test double, not a hot path.
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    scenario: Scenario,
    start: Instant,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rng: StdRng,
    /// Draws the steps of a time-stepped burst chain, and nothing else: the provider's bad
    /// spells then fall at the same times whoever calls and however often, so that every
    /// client run against one seed meets the same weather.
    spells: StdRng,
    bucket: Bucket,
    burst_bad: bool,
    /// Simulated time the burst chain has been stepped to.
    burst_stepped: Duration,
    billed: u64,
    entries: Vec<LedgerEntry>,
    /// Arrival times of the last minute's requests, for the (lying) advertised headers.
    recent: VecDeque<Duration>,
    /// Arrival times within the overload window.
    offered: VecDeque<Duration>,
}

/// The hidden limiter: a token bucket holding one second of the per-minute rate, which is
/// how "per-second enforcement of a per-minute limit" feels from outside.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Duration,
    rpm: Option<u32>,
}

impl Bucket {
    /// Refills to `now` at `rpm`; returns (rate per second, capacity).
    fn refill(&mut self, now: Duration, rpm: u32) -> (f64, f64) {
        let rate = f64::from(rpm.max(1)) / 60.0;
        let capacity = rate.max(1.0);
        if self.rpm.is_none() {
            self.tokens = capacity;
        }
        self.rpm = Some(rpm);
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.last = now;
        (rate, capacity)
    }
}

struct Plan {
    id: u64,
    response: Response<Full<Bytes>>,
    /// How long to wait before answering, in simulated time; `None`: never answer.
    delay: Option<Duration>,
    /// A request that never answers: what it bills when the client leaves.
    hang: Option<HangBill>,
    /// A streamed answer: its events, sent from `delay` on; billed as they go.
    stream: Option<StreamPlan>,
}

/// What a request that never answers bills by the time its client leaves: its prompt, and
/// the tokens generated so far.
#[derive(Debug, Clone, Copy)]
struct HangBill {
    decided: Duration,
    prompt_ticks: u64,
    output_price: u64,
    per_output_token: Duration,
    completion: u64,
}

/// Bills a hung request when its client goes away (the future is dropped).
struct OnLeave<'a> {
    sim: &'a Simulator,
    id: u64,
    bill: Option<HangBill>,
}

impl Drop for OnLeave<'_> {
    fn drop(&mut self) {
        let Some(bill) = self.bill else {
            return;
        };
        let elapsed = self.sim.now().saturating_sub(bill.decided);
        let generated = match bill.per_output_token.as_nanos() {
            0 => bill.completion,
            per => (elapsed.as_nanos() / per).min(u128::from(bill.completion)) as u64,
        };
        let ticks = bill
            .prompt_ticks
            .saturating_add(generated.saturating_mul(bill.output_price));
        let mut state = self.sim.lock();
        if let Some(entry) = usize::try_from(self.id)
            .ok()
            .and_then(|i| state.entries.get_mut(i))
        {
            entry.completion_tokens = generated;
            entry.reasoning_tokens = entry.reasoning_tokens.min(generated);
            entry.billed_ticks = ticks;
        }
        state.billed = state.billed.saturating_add(ticks);
    }
}

struct Parsed {
    model: String,
    max_tokens: Option<u64>,
    key: Option<String>,
    /// A streamed answer asked for.
    stream: bool,
    /// `stream_options.include_usage`.
    include_usage: bool,
    /// OpenAI's Responses API (a path ending in `/responses`), not Chat Completions.
    responses: bool,
    /// The legacy Completions API (a path ending in `/completions` but not
    /// `/chat/completions`): a `prompt`, answered with `choices[].text`.
    legacy: bool,
    /// The tool the answer calls (see [`crate::tools`]).
    tool_call: Option<String>,
    /// An embeddings request (a path ending in `/embeddings`): what it asks for.
    embed: Option<crate::embeddings::Embed>,
    /// An image generation (a path ending in `/images/generations`): how many images.
    images: Option<u64>,
}

impl Parsed {
    /// A request for `model` with `key` that asks for nothing more: no cap, no stream, no
    /// other API.
    fn plain(model: String, key: Option<String>) -> Self {
        Self {
            model,
            max_tokens: None,
            key,
            stream: false,
            include_usage: false,
            responses: false,
            legacy: false,
            tool_call: None,
            embed: None,
            images: None,
        }
    }
}

impl Simulator {
    /// A provider behaving as `scenario` says, its clock starting now.
    pub fn new(scenario: Scenario) -> Self {
        let state = State {
            rng: StdRng::seed_from_u64(scenario.seed),
            spells: scenario.spells(),
            bucket: Bucket {
                tokens: 0.0,
                last: Duration::ZERO,
                rpm: None,
            },
            burst_bad: false,
            burst_stepped: Duration::ZERO,
            billed: 0,
            entries: Vec::new(),
            recent: VecDeque::new(),
            offered: VecDeque::new(),
        };
        Self {
            shared: Arc::new(Shared {
                scenario,
                start: Instant::now(),
                state: Mutex::new(state),
            }),
        }
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    /// Simulated time since creation.
    pub fn now(&self) -> Duration {
        scale_duration(self.shared.start.elapsed(), self.time_scale())
    }

    /// The real (tokio) duration that `simulated` takes at the scenario's time scale.
    pub fn real_duration(&self, simulated: Duration) -> Duration {
        scale_duration(simulated, 1.0 / self.time_scale())
    }

    /// The scenario's time scale, or 1.0 when it is not a positive finite number.
    fn time_scale(&self) -> f64 {
        let scale = self.shared.scenario.time_scale;
        if scale > 0.0 && scale.is_finite() {
            scale
        } else {
            1.0
        }
    }

    /// Answers one request whose body is already read: decides, waits the simulated latency,
    /// and marks the answer delivered. If the future is dropped first, the ledger shows the
    /// request as not delivered (and still billed, as a real provider would).
    pub async fn respond(&self, request: Request<Bytes>) -> Response<Full<Bytes>> {
        if let Some(answer) = self.count_tokens(&request).or_else(|| self.free(&request)) {
            return answer;
        }
        let plan = self.planned(request).await;
        if let Some(stream) = plan.stream {
            // All its events at once, whole: billed as a whole answer.
            let body: Vec<u8> = stream
                .events()
                .iter()
                .flat_map(|e| e.bytes.to_vec())
                .collect();
            let ticks = stream.ticks(stream.completion);
            self.bill_stream(plan.id, SimOutcome::Success, ticks, stream.completion, true);
            let (parts, _) = plan.response.into_parts();
            return Response::from_parts(parts, Full::new(Bytes::from(body)));
        }
        self.mark_delivered(plan.id);
        plan.response
    }

    /// Answers `request`, streaming when it asks for a stream: the events come at the pace
    /// of generation, with the scenario's stream faults, and are billed as they go. What
    /// [`streaming`](Self::streaming) and [`SimServer`](crate::SimServer) serve.
    pub async fn respond_events(&self, request: Request<Bytes>) -> Response<SimBody> {
        if let Some(answer) = self.count_tokens(&request).or_else(|| self.free(&request)) {
            return answer.map(SimBody::from);
        }
        let plan = self.planned(request).await;
        let Some(stream) = plan.stream else {
            self.mark_delivered(plan.id);
            return plan.response.map(SimBody::from);
        };
        // One event in flight: a client that stops reading is seen at the next event.
        let (send, receive) = tokio::sync::mpsc::channel(1);
        tokio::spawn(crate::stream::produce(self.clone(), stream, send));
        let (parts, _) = plan.response.into_parts();
        Response::from_parts(parts, SimBody::Events(receive))
    }

    /// This simulator as a service that streams the answers asked for as streams (the
    /// plain service sends a streamed answer's events all at once, without faults).
    pub fn streaming(&self) -> Streaming {
        Streaming { sim: self.clone() }
    }

    /// Bills streamed answer `id` at its end: `ticks` for `tokens` output tokens; `outcome`
    /// (a success keeps a hung request's `Hung`).
    pub(crate) fn bill_stream(
        &self,
        id: u64,
        outcome: SimOutcome,
        ticks: u64,
        tokens: u64,
        delivered: bool,
    ) {
        let mut state = self.lock();
        state.billed = state.billed.saturating_add(ticks);
        if let Some(entry) = usize::try_from(id)
            .ok()
            .and_then(|i| state.entries.get_mut(i))
        {
            if !(outcome == SimOutcome::Success && entry.outcome == SimOutcome::Hung) {
                entry.outcome = outcome;
            }
            entry.billed_ticks = ticks;
            entry.completion_tokens = tokens;
            entry.delivered = delivered;
        }
    }

    /// Decides `request` and waits until it is answered (for ever for a hang; a client
    /// leaving a hang bills what it generated).
    async fn planned(&self, request: Request<Bytes>) -> Plan {
        let (parts, body) = request.into_parts();
        let plan = self.decide(&parts, &body);
        let _billing = OnLeave {
            sim: self,
            id: plan.id,
            bill: plan.hang,
        };
        match plan.delay {
            Some(delay) => tokio::time::sleep(self.real_duration(delay)).await,
            None => std::future::pending::<()>().await,
        }
        plan
    }

    /// A snapshot of every request received so far.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.lock().entries.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-updated in a way that matters to a
        // test double; keep serving rather than poisoning every later request.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_delivered(&self, id: u64) {
        let mut state = self.lock();
        if let Some(entry) = usize::try_from(id)
            .ok()
            .and_then(|i| state.entries.get_mut(i))
        {
            entry.delivered = true;
        }
    }

    /// Anthropic's token count (`POST /v1/messages/count_tokens`), answered at once: free,
    /// so not in the ledger, as the real API bills it; the prompt counted as a Messages
    /// call's is (a token per four bytes of the body), after the same key and version
    /// checks. `None` for any other request.
    fn count_tokens(&self, request: &Request<Bytes>) -> Option<Response<Full<Bytes>>> {
        let scenario = &self.shared.scenario;
        if scenario.flavor == Flavor::Gemini && request.uri().path().ends_with(":countTokens") {
            return Some(self.gemini_count(request));
        }
        if scenario.flavor != Flavor::Anthropic
            || !request.uri().path().ends_with("/messages/count_tokens")
        {
            return None;
        }
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        if let Some(expected) = &scenario.api_key
            && header("x-api-key") != Some(expected.0.as_str())
        {
            return Some(wire::error_response(Flavor::Anthropic, WireError::BadKey));
        }
        if header("anthropic-version").is_none() {
            return Some(wire::error_response(
                Flavor::Anthropic,
                WireError::BadRequest("anthropic-version: header is required"),
            ));
        }
        if serde_json::from_slice::<serde_json::Value>(request.body())
            .ok()
            .and_then(|json| json.get("messages").cloned())
            .is_none()
        {
            return Some(wire::error_response(
                Flavor::Anthropic,
                WireError::BadRequest("messages: Field required"),
            ));
        }
        let tokens = (request.body().len() as u64).div_ceil(4);
        Some(json_response(
            200,
            Bytes::from(format!(r#"{{"input_tokens":{tokens}}}"#)),
        ))
    }

    /// A free call (the model list, a moderation: see [`crate::other`]), answered at once
    /// after the key check and kept out of the ledger; `None` for any other request.
    fn free(&self, request: &Request<Bytes>) -> Option<Response<Full<Bytes>>> {
        let scenario = &self.shared.scenario;
        let flavor = scenario.flavor;
        let answer = crate::other::free(
            flavor,
            request.method(),
            request.uri().path(),
            request.body(),
        )?;
        let key = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(expected) = &scenario.api_key
            && key != Some(expected.0.as_str())
        {
            return Some(wire::error_response(flavor, WireError::BadKey));
        }
        Some(match answer {
            Ok(body) => json_response(200, body),
            Err(message) => wire::error_response(flavor, WireError::BadRequest(message)),
        })
    }

    /// Gemini's token count (`models/{model}:countTokens`), answered at once and free, as
    /// Anthropic's: the key checked, `contents` (or a `generateContentRequest`) required,
    /// the prompt counted as a call's is.
    fn gemini_count(&self, request: &Request<Bytes>) -> Response<Full<Bytes>> {
        let scenario = &self.shared.scenario;
        let key = request
            .headers()
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok());
        if let Some(expected) = &scenario.api_key
            && key != Some(expected.0.as_str())
        {
            return wire::error_response(Flavor::Gemini, WireError::BadKey);
        }
        let asks = serde_json::from_slice::<serde_json::Value>(request.body())
            .ok()
            .is_some_and(|json| {
                json.get("contents").is_some() || json.get("generateContentRequest").is_some()
            });
        if !asks {
            return wire::error_response(
                Flavor::Gemini,
                WireError::BadRequest("* CountTokensRequest.contents: contents is not specified"),
            );
        }
        let tokens = (request.body().len() as u64).div_ceil(4);
        json_response(200, Bytes::from(format!(r#"{{"totalTokens":{tokens}}}"#)))
    }

    /// Decides everything about one request, synchronously, and records it.
    fn decide(&self, parts: &http::request::Parts, body: &[u8]) -> Plan {
        let scenario = &self.shared.scenario;
        let flavor = scenario.flavor;
        let now = self.now();
        let mut state = self.lock();
        let state = &mut *state;
        let id = state.entries.len() as u64;
        let hidden_rpm = scenario.hidden_rpm_at(now);
        let mut entry = LedgerEntry {
            id,
            at: now,
            outcome: SimOutcome::BadRequest,
            status: None,
            model: String::new(),
            prompt_tokens: 0,
            cached_tokens: 0,
            completion_tokens: 0,
            reasoning_tokens: 0,
            billed_ticks: 0,
            delivered: false,
            hidden_rpm,
        };
        let error_delay = Some(scenario.latency.error);

        let request = match parse_request(parts, body, flavor) {
            Ok(request) => request,
            Err(message) => {
                let response = wire::error_response(flavor, WireError::BadRequest(message));
                return answer(state, entry, SimOutcome::BadRequest, response, error_delay);
            }
        };
        entry.model.clone_from(&request.model);

        if let Some(expected) = &scenario.api_key
            && request.key.as_deref() != Some(expected.0.as_str())
        {
            return answer(
                state,
                entry,
                SimOutcome::BadKey,
                wire::error_response(flavor, WireError::BadKey),
                error_delay,
            );
        }

        if scenario.in_outage(now) {
            return answer(
                state,
                entry,
                SimOutcome::Outage,
                wire::error_response(flavor, WireError::Server(503)),
                error_delay,
            );
        }

        if let Some(rpm) = hidden_rpm {
            let (rate, capacity) = state.bucket.refill(now, rpm);
            if state.bucket.tokens >= 1.0 {
                state.bucket.tokens -= 1.0;
            } else {
                if scenario.rejections_count {
                    state.bucket.tokens = (state.bucket.tokens - 1.0).max(-capacity);
                }
                let truth = Duration::from_secs_f64((1.0 - state.bucket.tokens) / rate);
                let hint = match scenario.wait_hint {
                    HintStyle::None => None,
                    HintStyle::Truthful => Some(truth),
                    HintStyle::Scaled(factor) => Some(scale_duration(truth, factor.max(0.0))),
                    HintStyle::Random { max } => {
                        Some(scale_duration(max, state.rng.random::<f64>()))
                    }
                    HintStyle::Fixed(hint) => Some(hint),
                };
                return answer(
                    state,
                    entry,
                    SimOutcome::RateLimited,
                    wire::error_response(flavor, WireError::RateLimited { hint }),
                    error_delay,
                );
            }
        }

        if scenario
            .quota_ticks
            .is_some_and(|quota| state.billed >= quota)
        {
            return answer(
                state,
                entry,
                SimOutcome::QuotaExhausted,
                wire::error_response(flavor, WireError::Quota),
                error_delay,
            );
        }

        // A quarter of the request's bytes: a stable stand-in for a tokenizer.
        let prompt = (body.len() as u64).div_ceil(4);
        if prompt > u64::from(scenario.context_window) {
            entry.prompt_tokens = prompt;
            let error = WireError::ContextTooLong {
                tokens: prompt,
                window: scenario.context_window,
            };
            let response = wire::error_response(flavor, error);
            return answer(
                state,
                entry,
                SimOutcome::ContextTooLong,
                response,
                error_delay,
            );
        }

        if let Some(overload) = scenario.overload {
            let since = now.saturating_sub(overload.window);
            while state.offered.front().is_some_and(|&at| at < since) {
                state.offered.pop_front();
            }
            state.offered.push_back(now);
            let capacity = f64::from(overload.capacity_rpm) * overload.window.as_secs_f64() / 60.0;
            let arrivals = state.offered.len() as f64;
            if arrivals > capacity && state.rng.random::<f64>() >= (capacity / arrivals).powi(2) {
                let status = match flavor {
                    Flavor::Anthropic => 529,
                    _ => 503,
                };
                return answer(
                    state,
                    entry,
                    SimOutcome::ServerError,
                    wire::error_response(flavor, WireError::Server(status)),
                    error_delay,
                );
            }
        }

        let burst = scenario.server_errors;
        let (steps, rng) = match burst.step {
            None => (1, &mut state.rng),
            Some(step) => {
                let step = step.max(Duration::from_millis(1));
                let due = now.saturating_sub(state.burst_stepped);
                let steps = due.as_nanos() / step.as_nanos();
                state.burst_stepped += step * u32::try_from(steps).unwrap_or(u32::MAX);
                // A long quiet spell has long forgotten the state it started in.
                (steps.min(10_000) as u32, &mut state.spells)
            }
        };
        for _ in 0..steps {
            state.burst_bad = burst.next_state(state.burst_bad, rng.random());
        }
        let fail_chance = if state.burst_bad {
            burst.fail_when_bad
        } else {
            burst.fail_when_good
        };
        if state.rng.random::<f64>() < fail_chance {
            let codes: [u16; 3] = match flavor {
                Flavor::Anthropic => [500, 529, 503],
                _ => [500, 502, 503],
            };
            let status = codes[state.rng.random_range(0..codes.len())];
            return answer(
                state,
                entry,
                SimOutcome::ServerError,
                wire::error_response(flavor, WireError::Server(status)),
                error_delay,
            );
        }

        // A success, perhaps spoiled.
        let cap = request
            .max_tokens
            .unwrap_or(u64::from(scenario.default_max_tokens))
            .max(1);
        // An embedding has no output, and no cache discount; an image's output is its
        // tokens (a model billed by the image is billed apart, below).
        let (completion, cached) = match (request.embed, request.images) {
            (Some(_), _) => (0, 0),
            (None, Some(images)) => (images * crate::other::IMAGE_TOKENS, 0),
            (None, None) => (
                state.rng.random_range((cap / 4).max(1)..=cap),
                (prompt as f64 * scenario.cached_share.clamp(0.0, 1.0)) as u64,
            ),
        };
        // Of the output, the reasoning (generated first, billed alike).
        let reasoning = (completion as f64 * scenario.reasoning_share.clamp(0.0, 1.0)) as u64;
        let price = scenario.price;
        let ticks = match request.images {
            Some(images) if !crate::other::billed_by_tokens(&request.model) => {
                images.saturating_mul(crate::other::PER_IMAGE_TICKS)
            }
            _ => (prompt - cached)
                .saturating_mul(price.input)
                .saturating_add(cached.saturating_mul(price.cached_input))
                .saturating_add(completion.saturating_mul(price.output)),
        };
        let usage = Usage {
            prompt,
            cached,
            completion: completion - reasoning,
            reasoning,
            ticks,
            hit_cap: completion == cap,
        };
        entry.prompt_tokens = prompt;
        entry.cached_tokens = cached;
        entry.completion_tokens = completion;
        entry.reasoning_tokens = reasoning;
        let jitter = 0.8 + 0.4 * state.rng.random::<f64>();
        let generation = scenario
            .latency
            .per_output_token
            .saturating_mul(u32::try_from(completion).unwrap_or(u32::MAX));
        let latency = scale_duration(scenario.latency.base.saturating_add(generation), jitter);

        // The answer, whole or (malformed) cut in half.
        let body = match request.embed {
            Some(embed) => crate::embeddings::body(id, &request.model, embed, prompt),
            None if let Some(images) = request.images => {
                crate::other::images_body(&request.model, images, prompt, completion)
            }
            None if request.legacy => wire::legacy_body(id, &request.model, usage),
            None => wire::success_body(
                flavor,
                request.responses,
                id,
                &request.model,
                usage,
                request.tool_call.as_deref(),
            ),
        };
        let spoil: f64 = state.rng.random();
        if spoil < scenario.malformed_probability {
            let broken = body.slice(..body.len() / 2);
            entry.billed_ticks = ticks;
            state.billed = state.billed.saturating_add(ticks);
            return answer(
                state,
                entry,
                SimOutcome::Malformed,
                json_response(200, broken),
                Some(latency),
            );
        }
        if spoil < scenario.malformed_probability + scenario.error_in_ok_probability {
            entry.completion_tokens = 0;
            entry.reasoning_tokens = 0;
            if scenario.bills_errors_in_ok {
                let read = (prompt - cached)
                    .saturating_mul(price.input)
                    .saturating_add(cached.saturating_mul(price.cached_input));
                entry.billed_ticks = read;
                state.billed = state.billed.saturating_add(read);
            }
            return answer(
                state,
                entry,
                SimOutcome::ErrorInOk,
                wire::error_response(flavor, WireError::ErrorInOk),
                Some(latency),
            );
        }

        let mut delay = Some(latency);
        entry.outcome = SimOutcome::Success;
        if state.rng.random::<f64>() < scenario.hangs.probability {
            entry.outcome = SimOutcome::Hung;
            delay = scenario.hangs.answer_after;
        }
        let hang = match delay {
            Some(_) => {
                entry.billed_ticks = ticks;
                state.billed = state.billed.saturating_add(ticks);
                None
            }
            None => Some(HangBill {
                decided: now,
                prompt_ticks: (prompt - cached)
                    .saturating_mul(price.input)
                    .saturating_add(cached.saturating_mul(price.cached_input)),
                output_price: price.output,
                per_output_token: scenario.latency.per_output_token,
                completion,
            }),
        };
        state.recent.push_back(now);
        while state
            .recent
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= Duration::from_secs(60))
        {
            state.recent.pop_front();
        }
        let remaining =
            u64::from(scenario.advertised_rpm).saturating_sub(state.recent.len() as u64);
        let mut response = json_response(200, body);
        let headers = response.headers_mut();
        headers.insert(
            "x-ratelimit-limit-requests",
            HeaderValue::from(scenario.advertised_rpm),
        );
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from(remaining),
        );
        // A streamed answer: headers after the time to first token, then its events at the
        // pace of generation; billed as it goes (see `stream::produce`), not here.
        let stream = if request.stream && hang.is_none() {
            if entry.outcome == SimOutcome::Success {
                delay = Some(scale_duration(scenario.latency.base, jitter));
            }
            entry.billed_ticks = 0;
            state.billed = state.billed.saturating_sub(ticks);
            let faults = scenario.stream_faults;
            let chunks =
                (completion - reasoning).div_ceil(u64::from(scenario.chunk_tokens.max(1))) as usize;
            let plan = StreamPlan {
                id,
                flavor,
                model: request.model.clone(),
                prompt,
                cached,
                completion: completion - reasoning,
                reasoning,
                hit_cap: completion == cap,
                chunk_tokens: u64::from(scenario.chunk_tokens.max(1)),
                per_token: scenario.latency.per_output_token,
                slow_first: Duration::ZERO,
                include_usage: request.include_usage,
                responses: request.responses,
                legacy: request.legacy,
                no_done: false,
                fault: None,
                tool_call: request.tool_call.clone(),
                prices: (price.input, price.cached_input, price.output),
            };
            // Where a fault strikes: from before the first content to after the last.
            let first = plan.events().iter().position(|e| e.content).unwrap_or(0);
            let at = first + state.rng.random_range(0..=chunks);
            let roll: f64 = state.rng.random();
            let mut edge = 0.0;
            let mut hit = |share: f64| {
                edge += share;
                roll < edge
            };
            let (fault, no_done, slow) = if hit(faults.cut) {
                (Some(Fault::Cut { at }), false, false)
            } else if hit(faults.stall) {
                let for_ = faults.stall_for;
                (Some(Fault::Stall { at, for_ }), false, false)
            } else if hit(faults.error_event) {
                (Some(Fault::ErrorEvent { at }), false, false)
            } else if hit(faults.malformed_event) {
                (Some(Fault::Malformed { at }), false, false)
            } else if hit(faults.no_done) {
                (None, true, false)
            } else if hit(faults.slow_first_share) {
                (None, false, true)
            } else {
                (None, false, false)
            };
            Some(StreamPlan {
                fault,
                no_done,
                slow_first: if slow {
                    faults.slow_first
                } else {
                    Duration::ZERO
                },
                ..plan
            })
        } else {
            None
        };
        if stream.is_some() {
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        let mut plan = record(state, entry, response, delay);
        plan.hang = hang;
        plan.stream = stream;
        plan
    }
}

/// `duration * factor`, saturating instead of panicking on overflow.
fn scale_duration(duration: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// Records `entry` as `outcome`, answered with `response` after `delay`.
fn answer(
    state: &mut State,
    mut entry: LedgerEntry,
    outcome: SimOutcome,
    response: Response<Full<Bytes>>,
    delay: Option<Duration>,
) -> Plan {
    entry.outcome = outcome;
    record(state, entry, response, delay)
}

fn record(
    state: &mut State,
    mut entry: LedgerEntry,
    mut response: Response<Full<Bytes>>,
    delay: Option<Duration>,
) -> Plan {
    let id = entry.id;
    entry.status = delay.map(|_| response.status().as_u16());
    response
        .headers_mut()
        .insert("x-request-id", HeaderValue::from(id));
    state.entries.push(entry);
    Plan {
        id,
        response,
        delay,
        hang: None,
        stream: None,
    }
}

fn json_response(status: u16, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn parse_request(
    parts: &http::request::Parts,
    body: &[u8],
    flavor: Flavor,
) -> Result<Parsed, &'static str> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "The request body is not valid JSON.")?;
    if !json.is_object() {
        return Err("The request body must be a JSON object.");
    }
    let model = match flavor {
        // Gemini names the model in the path: /v1beta/models/{model}:generateContent.
        Flavor::Gemini => parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .and_then(|last| last.split(':').next())
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        _ => json
            .get("model")
            .and_then(|m| m.as_str())
            .map(str::to_owned),
    }
    .ok_or("The request names no model.")?;
    let max_tokens = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| json.get(k).and_then(serde_json::Value::as_u64))
        .or_else(|| json.pointer("/generationConfig/maxOutputTokens")?.as_u64());
    let headers = &parts.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let key = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| header("x-api-key"))
        .or_else(|| header("x-goog-api-key"))
        .map(str::to_owned);
    let path = parts.uri.path();
    let gemini_embeds = path.ends_with(":embedContent") || path.ends_with(":batchEmbedContents");
    if path.ends_with("/embeddings") || (flavor == Flavor::Gemini && gemini_embeds) {
        // OpenAI's Embeddings API (OpenAI, xAI), Gemini's own methods; Anthropic has none.
        let embed = match (flavor, json.as_object()) {
            (Flavor::OpenAi | Flavor::XAi, Some(object)) => crate::embeddings::check(object)?,
            (Flavor::Gemini, Some(object)) if gemini_embeds => {
                crate::embeddings::check_gemini(path, object)?
            }
            _ => return Err("This API has no /embeddings endpoint."),
        };
        return Ok(Parsed {
            embed: Some(embed),
            ..Parsed::plain(model, key)
        });
    }
    if path.ends_with("/images/generations") {
        let images = match (flavor, json.as_object()) {
            (Flavor::OpenAi | Flavor::XAi, Some(object)) => crate::other::check_images(object)?,
            _ => return Err("This API has no /images/generations endpoint."),
        };
        return Ok(Parsed {
            images: Some(images),
            ..Parsed::plain(model, key)
        });
    }
    let responses =
        matches!(flavor, Flavor::OpenAi | Flavor::XAi) && parts.uri.path().ends_with("/responses");
    let legacy = matches!(flavor, Flavor::OpenAi | Flavor::XAi)
        && parts.uri.path().ends_with("/completions")
        && !parts.uri.path().ends_with("/chat/completions");
    if legacy
        && !json
            .get("prompt")
            .is_some_and(|p| p.is_string() || p.is_array())
    {
        return Err("Missing required parameter: 'prompt'.");
    }
    // Chat's newer cap field is not the legacy API's.
    if legacy && json.get("max_completion_tokens").is_some() {
        return Err("Unrecognized request argument supplied: max_completion_tokens");
    }
    // Each API refuses what it does not take, as the real one does (a translation that
    // gets it wrong fails here, not in production).
    match flavor {
        Flavor::Anthropic => {
            if header("anthropic-version").is_none() {
                return Err("anthropic-version: header is required");
            }
            if max_tokens.is_none() {
                return Err("max_tokens: Field required");
            }
            // Claude models since Sonnet 4.5 take one sampling knob, not both.
            if json.get("temperature").is_some() && json.get("top_p").is_some() {
                return Err(
                    "`temperature` and `top_p` cannot both be specified for this model. Please use only one.",
                );
            }
            let turns = json
                .get("messages")
                .and_then(serde_json::Value::as_array)
                .ok_or("messages: Field required")?;
            if turns.is_empty() {
                return Err("messages: at least one message is required");
            }
            let empty = |m: &serde_json::Value| match m.get("content") {
                Some(serde_json::Value::String(text)) => text.is_empty(),
                Some(serde_json::Value::Array(blocks)) => blocks.is_empty(),
                _ => true,
            };
            if turns.iter().any(empty) {
                return Err(
                    "messages: all messages must have non-empty content except for the optional final assistant message",
                );
            }
            // Prompt-caching breakpoints: at most four, each of type `ephemeral`.
            fn blocks(value: Option<&serde_json::Value>) -> &[serde_json::Value] {
                value
                    .and_then(serde_json::Value::as_array)
                    .map_or(&[], Vec::as_slice)
            }
            let marks: Vec<&serde_json::Value> = blocks(json.get("system"))
                .iter()
                .chain(blocks(json.get("tools")))
                .chain(turns.iter().flat_map(|m| blocks(m.get("content"))))
                .filter_map(|block| block.get("cache_control"))
                .collect();
            if marks.len() > 4 {
                return Err("A maximum of 4 blocks with cache_control may be provided.");
            }
            if marks
                .iter()
                .any(|mark| mark.get("type").and_then(|t| t.as_str()) != Some("ephemeral"))
            {
                return Err("cache_control.type: Input should be 'ephemeral'");
            }
            let role =
                |m: &serde_json::Value| m.get("role").and_then(|r| r.as_str()).map(str::to_owned);
            if turns
                .iter()
                .any(|m| !matches!(role(m).as_deref(), Some("user" | "assistant")))
            {
                return Err(
                    "messages: roles must be user or assistant; system goes in the top-level system field",
                );
            }
        }
        Flavor::Gemini
            if json
                .get("contents")
                .and_then(serde_json::Value::as_array)
                .is_none_or(Vec::is_empty) =>
        {
            return Err("* GenerateContentRequest.contents: contents is not specified");
        }
        Flavor::Gemini
            if json
                .pointer("/contents")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|content| content.get("parts")?.as_array())
                .flatten()
                .any(|part| part.get("text").and_then(serde_json::Value::as_str) == Some("")) =>
        {
            return Err(
                "Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again.",
            );
        }
        Flavor::OpenAi | Flavor::XAi if responses && json.get("input").is_none() => {
            return Err("Missing required parameter: 'input'.");
        }
        _ => {}
    }
    let tool_call = if responses || legacy {
        None
    } else {
        crate::tools::check(flavor, &json)?
    };
    let stream = match flavor {
        Flavor::Gemini => parts.uri.path().contains(":streamGenerateContent"),
        _ => json.get("stream").and_then(serde_json::Value::as_bool) == Some(true),
    };
    let include_usage = json
        .pointer("/stream_options/include_usage")
        .and_then(serde_json::Value::as_bool)
        == Some(true);
    Ok(Parsed {
        model,
        max_tokens,
        key,
        stream,
        include_usage,
        responses,
        legacy,
        tool_call,
        embed: None,
        images: None,
    })
}

impl<B> Service<Request<B>> for Simulator
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let sim = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(err) => return Err(err),
            };
            Ok(sim.respond(Request::from_parts(parts, body)).await)
        })
    }
}

/// A [`Simulator`] that streams: see [`Simulator::streaming`].
#[derive(Debug, Clone)]
pub struct Streaming {
    sim: Simulator,
}

impl Streaming {
    /// The simulator (its ledger, its clock).
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }
}

impl<B> Service<Request<B>> for Streaming
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<SimBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let sim = self.sim.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(err) => return Err(err),
            };
            Ok(sim.respond_events(Request::from_parts(parts, body)).await)
        })
    }
}
