//! [`BudgetGuard`]: reserve before the call, settle after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::SystemTime;

use ballast_classify::{BoxError, InspectBody, Outcome, OutcomeClass, model_of};
use ballast_cost::{Rate, Usage, Usd, estimate_at};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::{
    BudgetConfig, BudgetExceeded, BudgetScope, BudgetUnavailable, Limits, Reservation, Reserve,
    SpendStore, StoreError, WindowId,
};

pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: BudgetConfig,
    /// Settlements the store refused, kept and retried: spend is never dropped. Touched only
    /// when a store fails.
    pending: Mutex<Vec<(Reservation, Usd)>>,
    has_pending: AtomicBool,
}

impl<St> Shared<St> {
    pub(crate) fn new(store: Arc<St>, config: BudgetConfig) -> Self {
        Self {
            store,
            config,
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
        }
    }

    /// How many settlements wait for the store.
    pub(crate) fn pending(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<St> Shared<St> {
    /// Keeps a settlement the store could not take, for the next call's flush.
    fn keep(&self, reservation: Reservation, actual: Usd) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((reservation, actual));
        self.has_pending.store(true, Ordering::Release);
    }

    /// Keeps a settlement the store refused with `error`, and says so.
    fn keep_refused(&self, error: StoreError, reservation: Reservation, actual: Usd) {
        tracing::warn!(target: "ballast::budget", %error, "settlement kept for retry: the budget store failed");
        self.keep(reservation, actual);
    }
}

impl<St: SpendStore> Shared<St> {
    async fn settle(&self, reservation: Reservation, actual: Usd) {
        if let Err(error) = self.store.settle(&reservation, actual).await {
            self.keep_refused(error, reservation, actual);
        }
    }

    /// Retries kept settlements (one pass; what fails again stays kept).
    pub(crate) async fn flush(&self) {
        if !self.has_pending.load(Ordering::Acquire) {
            return;
        }
        let kept =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        self.has_pending.store(false, Ordering::Release);
        for (reservation, actual) in kept {
            self.settle(reservation, actual).await;
        }
    }
}

/// Holds a reservation until the call settles; dropped unsettled (the caller gave up), it
/// releases the reservation: at once when the store can, else from a spawned task.
pub(crate) struct Held<St: SpendStore> {
    shared: Arc<Shared<St>>,
    reservation: Option<Reservation>,
}

impl<St: SpendStore> Held<St> {
    fn new(shared: &Arc<Shared<St>>, reservation: Reservation) -> Self {
        Self {
            shared: Arc::clone(shared),
            reservation: Some(reservation),
        }
    }

    async fn settle(mut self, actual: Usd) {
        if let Some(reservation) = self.reservation.take() {
            self.shared.settle(reservation, actual).await;
        }
    }

    /// Settles the call's cost without waiting when the store can; else as a drop does.
    pub(crate) fn settle_now<R: InspectBody>(
        mut self,
        rate: &Rate,
        result: &Result<http::Response<R>, BoxError>,
        estimate: Usd,
    ) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let actual = actual_cost(rate, result, estimate);
        release(&self.shared, reservation, actual);
    }
}

impl<St: SpendStore> Drop for Held<St> {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            release(&self.shared, reservation, Usd::ZERO);
        }
    }
}

/// Settles at `actual` outside an async context: at once when the store can, else from a
/// spawned task, else (no runtime) kept for the next call's flush.
fn release<St: SpendStore>(shared: &Arc<Shared<St>>, reservation: Reservation, actual: Usd) {
    match shared.store.settle_now(&reservation, actual) {
        Some(Ok(())) => return,
        Some(Err(error)) => {
            shared.keep_refused(error, reservation, actual);
            return;
        }
        None => {}
    }
    let owned = Arc::clone(shared);
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move { owned.settle(reservation, actual).await });
        }
        // No runtime to settle from: keep it, the next call's flush settles it.
        Err(_) => shared.keep(reservation, actual),
    }
}

/// Reserves each call's worst case before it is sent and settles the actual cost after.
///
/// - The worst case is the prompt bound plus the output cap (the request's, or the
///   configured default) at the model's prices. If it does not fit, the call fails with
///   [`BudgetExceeded`] and is never sent.
/// - After the call: a response with usage settles to its cost (reported, or usage times
///   price). A success without readable usage (a stream) settles at the estimate. A timeout
///   settles at the estimate too: the provider may well have billed it. Any other failure
///   releases the reservation. A call dropped by its caller releases it.
/// - A settlement the store cannot take is kept and retried on later calls, never dropped.
#[derive(Debug)]
pub struct BudgetGuard<S, St> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<St> std::fmt::Debug for Shared<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, St> Clone for BudgetGuard<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, St> BudgetGuard<S, St> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<St>>) -> Self {
        Self { inner, shared }
    }
}

impl<S, St, B, R> Service<http::Request<B>> for BudgetGuard<S, St>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    St: SpendStore,
    B: InspectBody + Send + 'static,
    R: InspectBody + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, St, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let shared = &self.shared;
        let config = &shared.config;
        let rate = config.prices.rate(model_of(&request));
        let body = request.body().inspect().unwrap_or_default();
        let worst = estimate_at(
            &rate,
            body,
            config.estimator.as_ref(),
            config.default_max_tokens,
        );
        if !worst.cap_in_request
            && let Some(field) = config.write_cap
        {
            write_cap(request.body_mut(), field, config.default_max_tokens);
        }
        let scope = request
            .extensions()
            .get::<BudgetScope>()
            .map(|s| Arc::clone(&s.0));
        let limits = Limits {
            global: config.global,
            scope: scope.and_then(|s| config.scope_limit_of(&s).map(|limit| (s, limit))),
        };
        let now = SystemTime::now();
        let window = config.window.at(now);
        let ask = Ask {
            cost: worst.cost,
            window,
            now,
        };
        // A store that answers at once (in memory), with nothing kept to flush: no boxed
        // future, and the ready inner service is called right here.
        if !shared.has_pending.load(Ordering::Acquire)
            && let Some(answer) =
                shared
                    .store
                    .reserve_now(window, &limits, worst.cost, config.lease, now)
        {
            return match decide(shared, answer, &ask) {
                Ok(held) => {
                    ResponseFuture::direct(self.inner.call(request), held, rate, worst.cost)
                }
                Err(refusal) => ResponseFuture::refused(refusal),
            };
        }
        // The ready service goes with this call; a clone takes its place (tower's pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(shared);
        ResponseFuture::boxed(Box::pin(async move {
            shared.flush().await;
            let config = &shared.config;
            let answer = shared
                .store
                .reserve(window, &limits, worst.cost, config.lease, now)
                .await;
            let held = decide(&shared, answer, &ask)?;
            let result = inner.call(request).await.map_err(Into::into);
            if let Some(held) = held {
                let actual = actual_cost(&rate, &result, worst.cost);
                held.settle(actual).await;
            }
            result
        }))
    }
}

/// What one call asks of the store.
struct Ask {
    cost: Usd,
    window: WindowId,
    now: SystemTime,
}

/// The store's answer as the guard acts on it: a reservation to hold (`None` when failing
/// open), or the typed refusal.
fn decide<St: SpendStore>(
    shared: &Arc<Shared<St>>,
    answer: Result<Reserve, StoreError>,
    ask: &Ask,
) -> Result<Option<Held<St>>, BoxError> {
    match answer {
        Ok(Reserve::Granted(reservation)) => Ok(Some(Held::new(shared, reservation))),
        Ok(Reserve::Refused {
            scope,
            limit,
            committed,
        }) => {
            let refusal = BudgetExceeded {
                scope,
                limit,
                committed,
                asked: ask.cost,
                resets_in: ask.window.remaining(ask.now),
            };
            Err(Box::new(refusal.into_classified()))
        }
        Err(error) if shared.config.fail_open => {
            tracing::error!(target: "ballast::budget", %error, "budget store failed; the call goes through UNCOUNTED (fail open)");
            Ok(None)
        }
        Err(error) => Err(Box::new(BudgetUnavailable(error).into_classified())),
    }
}

/// Writes `"field": tokens` as the first member of a JSON object body.
fn write_cap<B: InspectBody>(body: &mut B, field: &str, tokens: u64) {
    let Some(bytes) = body.inspect() else {
        return;
    };
    let Some(open) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
        return;
    };
    if bytes[open] != b'{' {
        return;
    }
    let empty = bytes[open + 1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    let member = format!("\"{field}\":{tokens}{}", if empty { "" } else { "," });
    let mut rewritten = Vec::with_capacity(bytes.len() + member.len());
    rewritten.extend_from_slice(&bytes[..=open]);
    rewritten.extend_from_slice(member.as_bytes());
    rewritten.extend_from_slice(&bytes[open + 1..]);
    body.replace(rewritten);
}

/// What a finished call is settled at.
fn actual_cost<R: InspectBody>(
    rate: &Rate,
    result: &Result<http::Response<R>, BoxError>,
    estimate: Usd,
) -> Usd {
    let outcome = Outcome::from_result(result);
    let usage = result.as_ref().ok().and_then(Usage::of_response);
    match usage {
        Some(usage) => rate.cost(&usage).0,
        None if outcome.is_success() || outcome.class() == OutcomeClass::Timeout => estimate,
        None => Usd::ZERO,
    }
}
