//! [`CostLog`]: the service that logs and counts every call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ballast_classify::{
    Attempt, BoxError, InspectBody, Outcome, OutcomeClass, RequestFacts, Sent, StreamSummary,
};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use crate::layer::{Scope, Shared};
use crate::record::{Finished, Started};
use crate::{CallSpend, Charge, CostTally, Usage};

/// Logs and counts every call through it; see [`CostLogLayer`](crate::CostLogLayer).
#[derive(Debug, Clone)]
pub struct CostLog<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> CostLog<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S, B, R> Service<http::Request<B>> for CostLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Error: Into<BoxError>,
    R: InspectBody,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let facts = RequestFacts::of(&request);
        let prompt = shared
            .log_content
            .then(|| crate::record::excerpt(facts.body()));
        let meters = shared.meters.model(facts.model().unwrap_or(""));
        // The facts' own name: an `Arc` clone, not a copy per call.
        let model = facts.model_name().map(|name| Arc::clone(name.shared()));
        let attempt = Attempt::of_request(&request).get();
        let operation = crate::record::operation(facts.dialect(), request.uri().path());
        let started = Started {
            model,
            meters,
            request_bytes: facts.body_len() as usize,
            attempt,
            at: Instant::now(),
            call_spend: None,
            operation,
            prompt,
            prompt_bound: facts.prompt_tokens(),
            output_cap: facts.output_cap().unwrap_or(shared.default_max_tokens),
            unread: !facts.has_bound(),
            span: crate::record::span(&shared, operation, facts.model(), attempt),
        };
        let call_spend = match shared.scope {
            Scope::Call => {
                let spend = match request.extensions().get::<CostTally>() {
                    Some(tally) => CallSpend::counting_into(tally.clone()),
                    None => CallSpend::default(),
                };
                request.extensions_mut().insert(spend.clone());
                Some(spend)
            }
            Scope::Attempt => {
                // Below the local lines: the attempt leaves now (a hedge above times it
                // from here).
                Sent::mark_request(&request, started.at);
                request.extensions().get::<CallSpend>().cloned()
            }
        };
        // Layers below that start work in `call` (tower's `Retry` starts the first attempt)
        // do it inside this span.
        let inner = {
            let _entered = started.span.enter();
            self.inner.call(request)
        };
        ResponseFuture {
            inner,
            pending: Pending {
                started: Some(Started {
                    call_spend,
                    ..started
                }),
                shared,
            },
        }
    }
}

pin_project! {
    /// The future of [`CostLog`]: logs when the inner call ends, or, dropped before (the
    /// caller gave up), logs and counts the call as `cancelled`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // After `inner`: fields drop in order, so a dropped call's attempts below log (and
        // add to its spend) before the call does.
        pending: Pending,
    }
}

/// A call not logged yet; logged as `cancelled` if dropped so.
struct Pending {
    started: Option<Started>,
    shared: Arc<Shared>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(started) = self.started.take() {
            let attempts = started.attempt;
            let outcome = Outcome::new(OutcomeClass::Cancelled);
            // An attempt was with the provider, which may bill it whole: its worst case, as
            // the budget settles it. A call counts what its attempts logged.
            if self.shared.scope == Scope::Attempt {
                let worst = started.worst();
                Finished::new(&self.shared, started, outcome, Some(worst), None, attempts)
                    .worst_case()
                    .emit(&self.shared);
            } else {
                Finished::new(&self.shared, started, outcome, None, None, attempts)
                    .emit(&self.shared);
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    E: Into<BoxError>,
    R: InspectBody,
{
    type Output = Result<http::Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let pending = this.pending;
        // The layers below work inside this call's span (a retry's later attempts are
        // children of it).
        let polled = match pending.started.as_ref() {
            Some(started) if !started.span.is_disabled() => {
                let _entered = started.span.enter();
                this.inner.poll(cx)
            }
            _ => this.inner.poll(cx),
        };
        let mut result = ready!(polled).map_err(Into::into);
        // A watched stream is logged at its end, with what it told.
        if let Ok(response) = &mut result
            && response.body().watches_stream()
            && let Some(started) = pending.started.take()
        {
            let shared = Arc::clone(&pending.shared);
            let attempts = Attempt::of_response(response).get();
            let status = Outcome::from_response(response).status();
            let hook = Box::new(move |summary: &StreamSummary| {
                let charge = Charge::of_stream(summary, started.prompt_bound);
                let mut outcome = summary.end.outcome();
                if let Some(status) = status {
                    outcome = outcome.with_status(status);
                }
                let finished = match charge {
                    Charge::Usage(usage) => {
                        Finished::new(&shared, started, outcome, Some(usage), None, attempts)
                    }
                    _ => {
                        let worst = started.worst();
                        Finished::new(&shared, started, outcome, Some(worst), None, attempts)
                            .worst_case()
                    }
                };
                finished.with_stream(summary).emit(&shared);
            });
            // Watched: the hook is taken.
            let _ = response.body_mut().on_end(hook);
            return Poll::Ready(result);
        }
        if let Some(started) = pending.started.take() {
            let outcome = Outcome::from_result(&result);
            // A stream's summary on an attempt that did not return its stream: charged by
            // `Charge::of_stream` (`None` here for its worst case, which is every stream
            // not read to its end): looked for only when there is no usage, so an ordinary
            // answer pays nothing.
            let prompt_bound = started.prompt_bound;
            let seen =
                |summary: Option<StreamSummary>| match Charge::of_stream(&summary?, prompt_bound) {
                    Charge::Usage(usage) => Some(usage),
                    _ => None,
                };
            // An attempt that may have been billed with nothing to say what is charged its
            // worst case, by the rule the budget settles by ([`Charge`]); a call counts what
            // its attempts logged.
            let attempt_scope = pending.shared.scope == Scope::Attempt;
            let (read, charged, body, attempts) = match &mut result {
                Ok(response) => {
                    let noted = response.extensions().get::<Usage>().copied();
                    let read = noted
                        .or_else(|| Usage::of_body(response.body()))
                        .or_else(|| seen(response.extensions().get::<StreamSummary>().copied()));
                    if let (None, Some(usage)) = (noted, read) {
                        // Read once: the layers above take it from here.
                        response.extensions_mut().insert(usage);
                    }
                    // A 2xx that said nothing of its usage may still have been billed.
                    let charged = read.is_none()
                        && Outcome::from_response(response)
                            .status()
                            .is_none_or(|status| status.is_success());
                    let body = response.body().inspect();
                    (read, charged, body, Attempt::of_response(response).get())
                }
                Err(error) => {
                    let attempts =
                        Attempt::of_error(&**error).map_or(started.attempt, Attempt::get);
                    let (read, charged) = match Charge::of(&result, prompt_bound) {
                        Charge::Usage(usage) => (Some(usage), false),
                        Charge::Worst => (None, true),
                        Charge::Nothing => (None, false),
                    };
                    (read, charged, None, attempts)
                }
            };
            let finished = if charged && attempt_scope {
                let worst = started.worst();
                Finished::new(
                    &pending.shared,
                    started,
                    outcome,
                    Some(worst),
                    body,
                    attempts,
                )
                .worst_case()
            } else {
                Finished::new(&pending.shared, started, outcome, read, body, attempts)
            };
            finished.emit(&pending.shared);
        }
        Poll::Ready(result)
    }
}
