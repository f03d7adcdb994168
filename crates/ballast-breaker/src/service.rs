//! [`Breaker`]: the circuit breaker service.

use std::sync::Arc;
use std::task::{Context, Poll};

use ballast_classify::{BoxError, Deadline, FailFast};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::{Permit, ResponseFuture};
use crate::patience::{Place, Start, patient_call, worth_waiting};
use crate::registry::{DISABLED, FORCED_OPEN, Registry, emit};
use crate::state::{KeyBreaker, PermitKind};
use crate::{BreakerOpen, BreakerState, HostAndModel, KeyFn, Patience};

/// Fails fast while the provider is unhealthy; lets probes find out when it is back.
///
/// Readiness is the inner service's: a refusal happens in `call`, never in `poll_ready`
/// (tower's `Buffer` treats a readiness error as fatal for the whole service). A refused call
/// never reaches the inner service and returns [`BreakerOpen`] inside a
/// [`ClassifiedError`](ballast_classify::ClassifiedError) of class `CircuitOpen`.
#[derive(Debug, Clone)]
pub struct Breaker<S, K = HostAndModel> {
    inner: S,
    registry: Arc<Registry>,
    key_fn: K,
}

impl<S, K> Breaker<S, K> {
    pub(crate) fn new(inner: S, registry: Arc<Registry>, key_fn: K) -> Self {
        Self {
            inner,
            registry,
            key_fn,
        }
    }
}

impl<S, K, B, R> Service<http::Request<B>> for Breaker<S, K>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    K: KeyFn<B>,
    B: Clone + Send + 'static,
    R: ballast_classify::InspectBody + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let registry = &*self.registry;
        let mode = registry.mode();
        if mode == DISABLED {
            return ResponseFuture::called(self.inner.call(request), None);
        }
        let now = registry.now();
        let breaker = registry.breaker(self.key_fn.key(&request), now);
        if mode == FORCED_OPEN {
            let refusal = BreakerOpen::new(breaker.key().clone(), BreakerState::ForcedOpen, None);
            return ResponseFuture::refused(refusal);
        }
        match breaker.admit(&registry.config, now) {
            Ok((kind, transition)) => {
                if let Some(transition) = transition {
                    emit(breaker.key(), &transition);
                }
                let permit = Permit::new(breaker, kind, now);
                // A patient probe goes again if it fails and its deadline allows.
                if matches!(kind, PermitKind::Probe(_))
                    && let Some(patience) = registry.config.patience
                    && !FailFast::is_set(&request)
                {
                    let deadline = deadline(&request, patience.max_wait);
                    let breaker = Arc::clone(permit.breaker());
                    return self.patient(
                        breaker,
                        request,
                        Start::Probe(permit),
                        deadline,
                        patience,
                    );
                }
                ResponseFuture::called(self.inner.call(request), Some(permit))
            }
            Err(refusal) => {
                // Patient: wait in line for the next chance, when the deadline allows it and
                // the line has room; else refused at once.
                if let Some(patience) = registry.config.patience
                    && !FailFast::is_set(&request)
                {
                    let deadline = deadline(&request, patience.max_wait);
                    if worth_waiting(
                        &refusal,
                        Instant::now(),
                        deadline,
                        registry.config.half_open_wait,
                    ) && let Some(place) = Place::take(&breaker, patience.max_waiting)
                    {
                        let start = Start::InLine(place);
                        return self.patient(breaker, request, start, deadline, patience);
                    }
                }
                ResponseFuture::refused(BreakerOpen::new(
                    breaker.key().clone(),
                    refusal.state,
                    refusal.retry_in,
                ))
            }
        }
    }
}

impl<S, K> Breaker<S, K> {
    /// The future of a patient call (see [`patient_call`]), boxed: only a refused call or a
    /// probe pays for it.
    fn patient<B, R>(
        &self,
        breaker: Arc<KeyBreaker>,
        request: http::Request<B>,
        start: Start,
        deadline: Instant,
        patience: Patience,
    ) -> ResponseFuture<S::Future, R>
    where
        S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: Clone + Send + 'static,
        R: ballast_classify::InspectBody + Send + 'static,
    {
        let registry = Arc::clone(&self.registry);
        let inner = self.inner.clone();
        ResponseFuture::waiting(Box::pin(patient_call(
            registry, breaker, inner, request, start, deadline, patience,
        )))
    }
}

/// The request's [`Deadline`], or `max_wait` from now for a request without one.
fn deadline<B>(request: &http::Request<B>, max_wait: std::time::Duration) -> Instant {
    Deadline::of(request).map_or_else(|| Instant::now() + max_wait, Deadline::instant)
}
