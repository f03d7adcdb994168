//! [`BudgetGuard`]: reserve before the call, settle after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use ballast_classify::{BoxError, InspectBody, RequestFacts};
use ballast_cost::{Charge, Rate, Usd, estimate_at};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::outbox::{Kept, Outbox};
use crate::{
    BudgetConfig, BudgetExceeded, BudgetScope, BudgetUnavailable, Limits, Reservation, Reserve,
    SpendStore, StoreError, WindowId,
};

/// Settlements the store refused, and the outbox that keeps them on disk.
#[derive(Debug, Default)]
struct KeptList {
    list: Vec<Kept>,
    outbox: Option<Outbox>,
}

pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: BudgetConfig,
    /// Settlements the store refused, kept and retried: spend is never dropped. Touched only
    /// when a store fails.
    kept: Mutex<KeptList>,
    has_pending: AtomicBool,
    /// A flush is running (at most one at a time).
    flushing: AtomicBool,
}

impl<St> Shared<St> {
    pub(crate) fn new(store: Arc<St>, config: BudgetConfig) -> Self {
        let mut kept = KeptList::default();
        if let Some(path) = &config.outbox {
            let (outbox, list) = Outbox::open(path);
            kept = KeptList {
                list,
                outbox: Some(outbox),
            };
        }
        Self {
            store,
            config,
            has_pending: AtomicBool::new(!kept.list.is_empty()),
            kept: Mutex::new(kept),
            flushing: AtomicBool::new(false),
        }
    }

    fn lock_kept(&self) -> std::sync::MutexGuard<'_, KeptList> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many settlements wait for the store.
    pub(crate) fn pending(&self) -> usize {
        self.lock_kept().list.len()
    }

    /// Keeps a settlement the store could not take, on disk too when there is an outbox,
    /// for the next flush.
    fn keep(&self, reservation: Reservation, actual: Usd) {
        let entry = (reservation, actual);
        let mut kept = self.lock_kept();
        if let Some(outbox) = kept.outbox.as_mut()
            && let Err(error) = outbox.append(&entry)
        {
            tracing::error!(target: "ballast::budget", path = %outbox.path().display(), %error, "outbox write failed: the settlement is kept in memory only");
        }
        kept.list.push(entry);
        self.has_pending.store(true, Ordering::Release);
    }

    /// Keeps a settlement the store refused with `error`, and says so.
    fn keep_refused(&self, error: &StoreError, reservation: Reservation, actual: Usd) {
        tracing::warn!(target: "ballast::budget", %error, "settlement kept for retry: the budget store failed");
        self.keep(reservation, actual);
    }

    /// The store failed or did not answer in time: the typed refusal, or (failing open)
    /// no reservation.
    fn store_failed<T>(&self, error: StoreError) -> Result<Option<T>, BoxError> {
        if self.config.fail_open {
            tracing::error!(target: "ballast::budget", %error, "budget store failed; the call goes through UNCOUNTED (fail open)");
            return Ok(None);
        }
        Err(Box::new(BudgetUnavailable(error).into_classified()))
    }

    fn too_slow(&self) -> StoreError {
        StoreError::new(
            format!(
                "the budget store did not answer within {:?}",
                self.config.store_deadline
            ),
            None,
        )
    }
}

impl<St: SpendStore> Shared<St> {
    /// Settles with the store, within the store deadline.
    async fn settle_within(
        &self,
        reservation: &Reservation,
        actual: Usd,
    ) -> Result<(), StoreError> {
        tokio::time::timeout(
            self.config.store_deadline,
            self.store.settle(reservation, actual),
        )
        .await
        .unwrap_or_else(|_| Err(self.too_slow()))
    }

    async fn settle(&self, reservation: Reservation, actual: Usd) {
        if let Err(error) = self.settle_within(&reservation, actual).await {
            self.keep_refused(&error, reservation, actual);
        }
    }

    /// Retries kept settlements (one pass; what fails again stays kept), then writes the
    /// outbox anew with what is still waiting.
    pub(crate) async fn flush(&self) {
        if !self.has_pending.load(Ordering::Acquire) || self.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let taken = std::mem::take(&mut self.lock_kept().list);
        self.has_pending.store(false, Ordering::Release);
        for (reservation, actual) in taken {
            self.settle(reservation, actual).await;
        }
        let mut kept = self.lock_kept();
        let KeptList { list, outbox } = &mut *kept;
        if let Some(outbox) = outbox
            && let Err(error) = outbox.rewrite(list)
        {
            tracing::warn!(target: "ballast::budget", path = %outbox.path().display(), %error, "outbox not rewritten: settled entries stay in it (they land once all the same)");
        }
        drop(kept);
        self.flushing.store(false, Ordering::Release);
    }
}

impl<St: SpendStore> Shared<St> {
    /// Flushes kept settlements from a task of their own, so no caller waits on a store
    /// that may still be down.
    fn flush_in_background(self: &Arc<Self>) {
        if !self.has_pending.load(Ordering::Acquire) || self.flushing.load(Ordering::Acquire) {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(self);
            handle.spawn(async move { shared.flush().await });
        }
    }
}

/// Holds a reservation until the call settles. Dropped unsettled (the caller gave up), it
/// settles at `on_drop`: nothing while the attempt cannot have reached the provider, the
/// whole reservation once it may have (the provider may be billing it), or the actual cost
/// once that is known; at once when the store can, else from a spawned task.
pub(crate) struct Held<St: SpendStore> {
    shared: Arc<Shared<St>>,
    reservation: Option<Reservation>,
    on_drop: Usd,
}

impl<St: SpendStore> Held<St> {
    fn new(shared: &Arc<Shared<St>>, reservation: Reservation) -> Self {
        Self {
            shared: Arc::clone(shared),
            reservation: Some(reservation),
            on_drop: Usd::ZERO,
        }
    }

    /// The attempt is about to be sent: from here a drop charges the reservation.
    fn sent(&mut self) {
        if let Some(reservation) = &self.reservation {
            self.on_drop = reservation.amount;
        }
    }

    fn reserved(&self) -> Usd {
        self.reservation.as_ref().map_or(Usd::ZERO, |r| r.amount)
    }

    /// Settles at `actual`, awaiting the store. Dropped while the store works, the
    /// settlement is sent again from a task (stores settle once by id).
    async fn settle(mut self, actual: Usd) {
        self.on_drop = actual;
        let Some(reservation) = &self.reservation else {
            return;
        };
        match self.shared.settle_within(reservation, actual).await {
            Ok(()) => self.reservation = None,
            Err(error) => {
                if let Some(reservation) = self.reservation.take() {
                    self.shared.keep_refused(&error, reservation, actual);
                }
            }
        }
    }

    /// Settles the call's cost without waiting when the store can; else as a drop does. A
    /// watched stream keeps the reservation until its end, then settles by
    /// [`Charge::of_stream`]: at its usage when read to its end, at the reservation when
    /// left before it (dropped unread included).
    pub(crate) fn settle_now<R: InspectBody>(
        mut self,
        rate: &Rate,
        prompt_bound: u64,
        result: &mut Result<http::Response<R>, BoxError>,
    ) {
        if let Ok(response) = result
            && response.body().watches_stream()
        {
            let rate = rate.clone();
            let hook = Box::new(move |summary: &ballast_classify::StreamSummary| {
                let actual = match Charge::of_stream(summary, prompt_bound) {
                    Charge::Usage(usage) => rate.cost(&usage).0,
                    _ => self.reserved(),
                };
                if let Some(reservation) = self.reservation.take() {
                    release(&self.shared, reservation, actual);
                }
            });
            // Watched: the hook is taken, and holds the reservation until the end.
            let _ = response.body_mut().on_end(hook);
            return;
        }
        let actual = charge(rate, result, self.reserved(), prompt_bound);
        if let Some(reservation) = self.reservation.take() {
            release(&self.shared, reservation, actual);
        }
    }
}

impl<St: SpendStore> Drop for Held<St> {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            release(&self.shared, reservation, self.on_drop);
        }
    }
}

/// Settles at `actual` outside an async context: at once when the store can, else from a
/// spawned task, else (no runtime) kept for the next flush.
fn release<St: SpendStore>(shared: &Arc<Shared<St>>, reservation: Reservation, actual: Usd) {
    match shared.store.settle_now(&reservation, actual) {
        Some(Ok(())) => return,
        Some(Err(error)) => {
            shared.keep_refused(&error, reservation, actual);
            return;
        }
        None => {}
    }
    let owned = Arc::clone(shared);
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move { owned.settle(reservation, actual).await });
        }
        // No runtime to settle from: keep it, the next flush settles it.
        Err(_) => shared.keep(reservation, actual),
    }
}

/// Reserves each call's worst case before it is sent and settles the actual cost after.
///
/// - The worst case is the prompt bound plus the output cap (the request's, or the
///   configured default) at the model's prices. If it does not fit, the call fails with
///   [`BudgetExceeded`] and is never sent.
/// - After the call: a response with usage settles to its cost; a streamed answer keeps
///   its reservation until its end and settles at what it told (its usage; or, cut,
///   stalled or dropped, its prompt estimate and the content seen). Without usage, an
///   attempt that may have reached the provider settles at its reservation: a 2xx with an
///   error inside, a timeout, a reset or cut body, an
///   unreadable answer. An error status from the provider (4xx, 5xx) and an attempt that
///   provably never left (refused locally, connection refused) release it.
/// - A call dropped by its caller after its attempt was sent settles at its reservation,
///   the provider may be billing it; dropped before (waiting on the store), it releases.
/// - Store calls have a deadline ([`BudgetConfig::store_deadline`], 250 ms): past it the
///   call is refused with [`BudgetUnavailable`] (or let through, failing open).
/// - A settlement the store cannot take is kept (in the outbox file too, when configured)
///   and retried, never dropped.
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
    B: Send + 'static,
    R: InspectBody + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, St, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let shared = &self.shared;
        let config = &shared.config;
        let facts = RequestFacts::of(&request);
        let rate = config.prices.rate(facts.model());
        let worst = estimate_at(&rate, facts, config.default_max_tokens);
        let prompt_bound = facts.prompt_tokens();
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
            lease: config.lease,
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
                Ok(mut held) => {
                    if let Some(held) = held.as_mut() {
                        held.sent();
                    }
                    ResponseFuture::direct(self.inner.call(request), held, rate, prompt_bound)
                }
                Err(refusal) => ResponseFuture::refused(refusal),
            };
        }
        // The ready service goes with this call; a clone takes its place (tower's pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(shared);
        ResponseFuture::boxed(Box::pin(async move {
            shared.flush_in_background();
            let mut held = reserve_within(&shared, limits, ask).await?;
            if let Some(held) = held.as_mut() {
                held.sent();
            }
            let mut result = inner.call(request).await.map_err(Into::into);
            if let Some(held) = held {
                match &result {
                    // A watched stream settles at its end.
                    Ok(response) if response.body().watches_stream() => {
                        held.settle_now(&rate, prompt_bound, &mut result);
                    }
                    _ => {
                        let actual = charge(&rate, &result, held.reserved(), prompt_bound);
                        held.settle(actual).await;
                    }
                }
            }
            result
        }))
    }
}

/// What one call asks of the store.
#[derive(Debug, Clone, Copy)]
struct Ask {
    cost: Usd,
    window: WindowId,
    now: SystemTime,
    lease: Duration,
}

/// Reserves with a store that must be awaited, within the store deadline.
///
/// The store call runs in a task of its own, and a granted reservation comes back as a
/// [`Held`]: if this future is dropped or the deadline passes while the store works, the
/// reservation it grants later is dropped with the channel, which releases it. Nothing stays
/// reserved for a caller that left.
async fn reserve_within<St: SpendStore>(
    shared: &Arc<Shared<St>>,
    limits: Limits,
    ask: Ask,
) -> Result<Option<Held<St>>, BoxError> {
    let deadline = shared.config.store_deadline;
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime to spawn on (the guard driven by hand): ask in line.
        let answer = tokio::time::timeout(
            deadline,
            shared
                .store
                .reserve(ask.window, &limits, ask.cost, ask.lease, ask.now),
        )
        .await;
        return match answer {
            Ok(answer) => decide(shared, answer, &ask),
            Err(_) => shared.store_failed(shared.too_slow()),
        };
    };
    let (send, receive) = tokio::sync::oneshot::channel();
    let task = Arc::clone(shared);
    runtime.spawn(async move {
        let answer = task
            .store
            .reserve(ask.window, &limits, ask.cost, ask.lease, ask.now)
            .await;
        // A refusal is built here too; a grant dropped with an unread channel releases.
        let _ = send.send(decide(&task, answer, &ask));
    });
    match tokio::time::timeout(deadline, receive).await {
        Ok(Ok(decided)) => decided,
        Ok(Err(_)) => shared.store_failed(StoreError::new(
            "the budget store's task ended without an answer",
            None,
        )),
        Err(_) => shared.store_failed(shared.too_slow()),
    }
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
        Err(error) => shared.store_failed(error),
    }
}

/// What a finished attempt is settled at, given what was `reserved` for it: the one rule
/// the attempt logger counts by too ([`Charge`](ballast_cost::Charge)): its usage, what was
/// seen of a stream, nothing for an error status or a request that never left, else the
/// reservation.
pub(crate) fn charge<R: InspectBody>(
    rate: &Rate,
    result: &Result<http::Response<R>, BoxError>,
    reserved: Usd,
    prompt_bound: u64,
) -> Usd {
    match Charge::of(result, prompt_bound) {
        Charge::Usage(usage) => rate.cost(&usage).0,
        Charge::Worst => reserved,
        Charge::Nothing => Usd::ZERO,
    }
}
