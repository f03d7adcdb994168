//! One finished call: its figures, the event it logs and the metrics it feeds.

use std::sync::Arc;
use std::time::Duration;

use ballast_classify::{Dialect, Outcome};
use tokio::time::Instant;

use crate::layer::{Scope, Shared};
use crate::meters::ModelMeters;
use crate::{CallSpend, CostSource, Usage, Usd};

/// Content excerpts are capped: a log line is not a transcript store.
const EXCERPT: usize = 4096;

pub(crate) fn excerpt(bytes: &[u8]) -> Box<str> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT)]);
    text.into_owned().into_boxed_str()
}

/// What is known when the call starts.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) model: Option<Arc<str>>,
    /// The metric handles of the model, found when the call started.
    pub(crate) meters: Arc<ModelMeters>,
    pub(crate) request_bytes: usize,
    pub(crate) attempt: u32,
    pub(crate) at: Instant,
    pub(crate) call_spend: Option<CallSpend>,
    /// The GenAI operation the call is ([`operation`]).
    pub(crate) operation: &'static str,
    pub(crate) prompt: Option<Box<str>>,
    /// The request's prompt estimate, for a stream that ends without usage.
    pub(crate) prompt_bound: u64,
    /// The request's output cap (or the default), for an attempt dropped while out.
    pub(crate) output_cap: u64,
    /// A call Ballast has no reading of (`Dialect::Other`): without usage it is unpriced,
    /// not charged a worst case.
    pub(crate) unread: bool,
    /// The call's or attempt's span (disabled unless a subscriber wants `ballast::gen_ai`
    /// spans, as the gateway's OpenTelemetry export does): fields recorded at the end.
    pub(crate) span: tracing::Span,
}

/// The GenAI semantic conventions' name of the operation a request to `path` in `dialect`
/// is: `embeddings` (OpenAI's or Gemini's), `text_completion` (the legacy Completions API),
/// `generate_content` (Gemini's), or `chat`.
pub(crate) fn operation(dialect: Dialect, path: &str) -> &'static str {
    if Dialect::asks_for_embeddings(path) {
        return "embeddings";
    }
    match dialect {
        Dialect::Completions => "text_completion",
        Dialect::Gemini => "generate_content",
        Dialect::Other => other_operation(path),
        _ => "chat",
    }
}

/// The name of a call Ballast has no reading of, by its path (not one of the conventions'
/// well-known values, which name none of these): `moderations`, `images`, `audio`,
/// `count_tokens`, or `other`.
fn other_operation(path: &str) -> &'static str {
    if path.ends_with("/moderations") {
        "moderations"
    } else if path.contains("/images/") {
        "images"
    } else if path.contains("/audio/") {
        "audio"
    } else if path.ends_with("/count_tokens") || path.ends_with(":countTokens") {
        "count_tokens"
    } else {
        "other"
    }
}

/// The span of a call or an attempt, with the GenAI semantic conventions' names (the span
/// `{operation} {model}`; `gen_ai.usage.cost` is ours while its convention is pending); the
/// fields known only at the end are recorded then.
pub(crate) fn span(
    shared: &Shared,
    operation: &'static str,
    model: Option<&str>,
    attempt: u32,
) -> tracing::Span {
    use tracing::field::Empty;
    let model = model.unwrap_or("");
    let scope = shared.scope.as_str();
    // At debug: a subscriber logging at info (the usual) neither builds it nor prints it
    // before every line; an exporter asks for it by target.
    tracing::debug_span!(
        target: "ballast::gen_ai",
        "gen_ai",
        otel.name = %format_args!("{operation} {model}"),
        otel.kind = if shared.scope == Scope::Attempt { "client" } else { "internal" },
        otel.status_code = Empty,
        gen_ai.operation.name = operation,
        gen_ai.provider.name = shared.provider.name(),
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cost = Empty,
        error.type = Empty,
        ballast.scope = scope,
        ballast.attempt = attempt,
        ballast.cost_source = Empty,
    )
}

impl Started {
    /// What an attempt the provider had may cost at most: the prompt estimate and the cap.
    pub(crate) fn worst(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_bound,
            output_tokens: self.output_cap,
            ..Usage::default()
        }
    }
}

/// What is known when it ends.
pub(crate) struct Finished {
    started: Started,
    /// When it ended: the one clock read of the ending, shared by duration, spend and health.
    ended: Instant,
    outcome: Outcome,
    duration: Duration,
    usage: Option<Usage>,
    cost: Usd,
    source: Option<CostSource>,
    response_bytes: usize,
    attempts: u32,
    completion: Option<Box<str>>,
    /// A streamed answer: time to its first content, and output tokens per second after it.
    stream: Option<(Option<Duration>, Option<f64>)>,
    /// Charged at its worst case: the cost counts, the tokens were never reported.
    worst: bool,
}

impl Finished {
    pub(crate) fn new(
        shared: &Shared,
        started: Started,
        outcome: Outcome,
        usage: Option<Usage>,
        body: Option<&[u8]>,
        attempts: u32,
    ) -> Self {
        let (cost, source) = match &usage {
            Some(usage) => {
                let (cost, source) = shared.prices.cost(started.model.as_deref(), usage);
                (cost, Some(source))
            }
            None => (Usd::ZERO, None),
        };
        let ended = Instant::now();
        Self {
            ended,
            duration: ended.saturating_duration_since(started.at),
            completion: shared.log_content.then(|| body.map(excerpt)).flatten(),
            response_bytes: body.map_or(0, <[u8]>::len),
            started,
            outcome,
            usage,
            cost,
            source,
            attempts,
            stream: None,
            worst: false,
        }
    }

    /// Charged at the worst case its usage holds (no usage was reported): the cost counts
    /// in the spend, as the budget's, and is logged `cost_source="worst_case"`; no tokens
    /// are counted or logged for it. A call Ballast has no reading of has no worst case: it
    /// is logged `cost_source="unpriced"` at nothing.
    pub(crate) fn worst_case(mut self) -> Self {
        self.worst = true;
        self.source = Some(if self.started.unread {
            CostSource::Unpriced
        } else {
            CostSource::WorstCase
        });
        self
    }

    /// A streamed answer's figures: time to first content, output tokens per second from
    /// then to the end, and the content bytes as the response's size.
    pub(crate) fn with_stream(mut self, summary: &ballast_classify::StreamSummary) -> Self {
        let output = self.usage.map_or(0, |u| u.output_tokens);
        let rate = summary.first_content.and_then(|first| {
            let generating = summary.duration.saturating_sub(first).as_secs_f64();
            (generating > 0.0).then(|| output as f64 / generating)
        });
        self.stream = Some((summary.first_content, rate));
        self.response_bytes = usize::try_from(summary.content_bytes).unwrap_or(usize::MAX);
        self
    }

    pub(crate) fn emit(self, shared: &Shared) {
        let scope = shared.scope;
        // At call scope, the attempts below already counted their tokens and spend.
        let counted_below = scope == Scope::Call
            && self
                .started
                .call_spend
                .as_ref()
                .is_some_and(CallSpend::attempts_logged);
        let cost = if counted_below {
            self.started
                .call_spend
                .as_ref()
                .map_or(self.cost, CallSpend::total)
        } else {
            self.cost
        };
        if scope == Scope::Attempt
            && let Some(spend) = &self.started.call_spend
        {
            spend.add(self.cost);
        }
        let model = self.started.model.as_deref().unwrap_or("");
        match self.source {
            Some(CostSource::UnknownPrice) if !counted_below => {
                self.started.meters.warn_unknown_price(model);
            }
            // A model the table knows (a moderation model, free) is priced there: only the
            // others may be billed by a unit Ballast does not count.
            Some(CostSource::Unpriced)
                if !model.is_empty() && !counted_below && shared.prices.get(model).is_none() =>
            {
                self.started.meters.warn_unpriced(model);
            }
            _ => {}
        }
        // Every call is counted in requests and durations at its own scope; tokens and
        // spend only where they were not counted already (by the attempts below).
        self.count_request(shared);
        let today = if counted_below {
            // The attempt logger's count of today, not this logger's own (which holds
            // nothing its attempts counted).
            self.started
                .call_spend
                .as_ref()
                .map_or_else(|| shared.spend.total_at(self.ended), CallSpend::today)
        } else {
            self.count(shared)
        };
        if scope == Scope::Attempt
            && let Some(spend) = &self.started.call_spend
        {
            spend.note_today(today);
        }
        // A call its caller dropped, or a local layer refused (nothing was sent), says
        // nothing of the provider's health.
        let class = self.outcome.class();
        if scope == Scope::Call
            && class != ballast_classify::OutcomeClass::Cancelled
            && !class.is_local_refusal()
            && let Some(health) = &shared.health
        {
            health.record_at(
                self.ended,
                self.started.model.as_deref(),
                !self.outcome.is_success(),
                self.duration,
            );
        }
        self.record_span(scope, model, cost);
        self.log(shared, model, cost, today);
    }

    /// The span's end fields: usage, cost, the model that answered (at attempt scope, the
    /// one asked of the provider), and the error class when it failed.
    fn record_span(&self, scope: Scope, model: &str, cost: Usd) {
        let span = &self.started.span;
        if span.is_disabled() {
            return;
        }
        let usage = self.reported_usage();
        span.record("gen_ai.usage.input_tokens", usage.prompt_tokens());
        span.record("gen_ai.usage.output_tokens", usage.output_tokens);
        span.record("gen_ai.usage.cost", cost.as_f64());
        if let Some(source) = self.source {
            span.record("ballast.cost_source", source.as_str());
        }
        if scope == Scope::Attempt && !model.is_empty() && self.outcome.is_success() {
            span.record("gen_ai.response.model", model);
        }
        if !self.outcome.is_success() {
            span.record("error.type", self.outcome.class().as_str());
            span.record("otel.status_code", "ERROR");
        }
    }

    /// Counts the call and its duration, by class.
    fn count_request(&self, shared: &Shared) {
        let class = self.outcome.class();
        self.started.meters.requests(class).increment(1);
        if let Some((Some(first_token), _)) = self.stream {
            self.started
                .meters
                .first_token()
                .record(first_token.as_secs_f64());
        }
        shared
            .meters
            .duration(class)
            .record(self.duration.as_secs_f64());
    }

    /// Feeds the metrics with tokens and spend; returns today's spend.
    fn count(&self, shared: &Shared) -> Usd {
        let usage = self.reported_usage();
        let meters = &self.started.meters;
        meters.input.increment(usage.input_tokens);
        meters.cached_input.increment(usage.cached_input_tokens);
        meters.output.increment(usage.output_tokens);
        meters.cost_picos.increment(self.cost.picos());
        let today = shared.spend.add_at(self.ended, self.cost, self.worst);
        // Only a logger that counted money moves the gauge: a call-scope logger whose call
        // cost nothing (refused locally, its attempts counted below) would otherwise write
        // its own zero over the attempt logger's total.
        if self.cost != Usd::ZERO {
            shared.meters.spend_today().set(today.as_f64());
        }
        today
    }

    /// The usage the provider reported (none for a worst-case charge).
    fn reported_usage(&self) -> Usage {
        if self.worst {
            Usage::default()
        } else {
            self.usage.unwrap_or_default()
        }
    }

    fn log(&self, shared: &Shared, model: &str, cost: Usd, today: Usd) {
        let usage = self.reported_usage();
        let status = self.outcome.status().map_or(0, |s| s.as_u16());
        let source = self.source.map_or("none", CostSource::as_str);
        let prompt = self.started.prompt.as_deref().unwrap_or("");
        let completion = self.completion.as_deref().unwrap_or("");
        let (first_token, output_rate) = self.stream.unwrap_or((None, None));
        let first_token = first_token.map(|d| d.as_millis() as u64);
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: "ballast::cost",
                    $level,
                    "gen_ai.system" = shared.provider.name(),
                    "gen_ai.operation.name" = self.started.operation,
                    "gen_ai.request.model" = model,
                    "gen_ai.usage.input_tokens" = usage.prompt_tokens(),
                    "gen_ai.usage.output_tokens" = usage.output_tokens,
                    "ballast.usage.cached_input_tokens" = usage.cached_input_tokens,
                    "ballast.usage.reasoning_tokens" = usage.reasoning_tokens,
                    "ballast.cost_usd" = cost.as_f64(),
                    "ballast.cost_source" = source,
                    "ballast.spend_today_usd" = today.as_f64(),
                    "ballast.duration_ms" = self.duration.as_millis() as u64,
                    "ballast.request_bytes" = self.started.request_bytes as u64,
                    "ballast.response_bytes" = self.response_bytes as u64,
                    "ballast.outcome" = self.outcome.class().as_str(),
                    "ballast.attempt" = self.started.attempt,
                    "ballast.attempts" = self.attempts,
                    "ballast.scope" = shared.scope.as_str(),
                    "http.response.status_code" = status,
                    "ballast.stream.time_to_first_token_ms" = first_token,
                    "ballast.stream.output_tokens_per_s" = output_rate,
                    "gen_ai.prompt" = prompt,
                    "gen_ai.completion" = completion,
                    "llm {} {} in {} ms, {}",
                    shared.scope.as_str(),
                    self.outcome.class(),
                    self.duration.as_millis(),
                    cost
                )
            };
        }
        if self.outcome.is_success() {
            event!(tracing::Level::INFO);
        } else {
            event!(tracing::Level::WARN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each API's calls are named by the GenAI conventions' operation, their spans too.
    #[test]
    fn each_call_is_named_by_its_operation() {
        let named = |path: &str| operation(Dialect::of_path(path), path);
        assert_eq!(named("/v1/chat/completions"), "chat");
        assert_eq!(named("/v1/messages"), "chat");
        assert_eq!(named("/v1/responses"), "chat");
        assert_eq!(named("/v1/embeddings"), "embeddings");
        assert_eq!(named("/v1/completions"), "text_completion");
        assert_eq!(
            named("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            "generate_content"
        );
        assert_eq!(
            named("/v1beta/models/gemini-embedding-001:batchEmbedContents"),
            "embeddings"
        );
    }
}
