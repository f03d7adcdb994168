//! Patience: a refused call waits in its key's line for the breaker's next chance.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ballast_classify::{BoxError, Outcome, copy_request};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::{Permit, ResponseFuture};
use crate::registry::{DISABLED, FORCED_OPEN, Registry, emit};
use crate::state::{KeyBreaker, PermitKind, Refusal};
use crate::{BreakerOpen, BreakerState, Patience};

/// Where a patient call starts: in its key's line, or let through already as a probe.
pub(crate) enum Start {
    InLine(Place),
    Probe(Permit),
}

/// A patient call: waits in line for its permit, makes the call, and, when it was the
/// breaker's probe and the probe failed, goes back in line for the next one while its
/// deadline allows, up to [`Patience::max_probes`] times (a failed probe is the breaker's
/// finding, not the caller's failure: it costs the caller none of its attempts; the probes
/// are one per open time whoever sends them). The failed probe was a real call: the layers
/// below logged and settled it.
pub(crate) async fn patient_call<S, B, R>(
    registry: Arc<Registry>,
    breaker: Arc<KeyBreaker>,
    mut inner: S,
    mut request: http::Request<B>,
    mut start: Start,
    deadline: Instant,
    patience: Patience,
) -> Result<http::Response<R>, BoxError>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Error: Into<BoxError>,
    B: Clone,
    R: ballast_classify::InspectBody,
{
    let mut probes = 0;
    loop {
        let permit = match start {
            Start::Probe(permit) => Some(permit),
            Start::InLine(place) => admitted(&registry, Arc::clone(&breaker), place, deadline)
                .await
                .map_err(|refusal| -> BoxError { Box::new(refusal.into_classified()) })?,
        };
        poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        // Only a probe may go again, up to `max_probes` times: copied (a reference count
        // for a read body) once per open time at most.
        // The probes of a partial trip are bounded for the whole episode instead
        // (`PartialTrip::outage_after`): they do not use up the call's.
        let probe = permit.as_ref().is_some_and(Permit::is_probe);
        probes += u32::from(probe && !breaker.partial_episode());
        let again = (probe && probes < patience.max_probes).then(|| copy_request(&request));
        let result = ResponseFuture::called(inner.call(request), permit).await;
        if let Some(again) = again
            && provider_failed(&result)
            && let Some(place) = back_in_line(&breaker, deadline, patience.max_waiting)
        {
            request = again;
            start = Start::InLine(place);
            continue;
        }
        return result;
    }
}

/// Whether the provider failed the call (what reopens a breaker).
fn provider_failed<R>(result: &Result<http::Response<R>, BoxError>) -> bool {
    Outcome::from_result(result).class().is_provider_failure()
}

/// A place in line after a failed probe, if the next chance comes before `deadline`.
fn back_in_line(breaker: &Arc<KeyBreaker>, deadline: Instant, max_waiting: u32) -> Option<Place> {
    let refusal = Refusal {
        state: breaker.state(breaker.now()),
        retry_in: None,
    };
    worth_waiting(
        &refusal,
        Instant::now(),
        deadline,
        breaker.config.half_open_wait,
    )
    .then(|| Place::take(breaker, max_waiting))
    .flatten()
}

/// A call's place in its key's line, counted while it exists (the cap on waiting calls).
#[derive(Debug)]
pub(crate) struct Place {
    breaker: Arc<KeyBreaker>,
}

impl Place {
    /// A place, unless `max_waiting` calls of this key wait already.
    pub(crate) fn take(breaker: &Arc<KeyBreaker>, max_waiting: u32) -> Option<Self> {
        breaker
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_waiting).then_some(n + 1)
            })
            .ok()?;
        Some(Self {
            breaker: Arc::clone(breaker),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.breaker.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a refusal in this state can be waited out.
pub(crate) fn can_wait(state: BreakerState) -> bool {
    matches!(
        state,
        BreakerState::Open { .. } | BreakerState::HalfOpen | BreakerState::Shedding
    )
}

/// When a call refused in `state` could next be let through, from `now`: the end of the
/// open time; else (probes out, shedding) a recheck after the refusal's hint (at most
/// `half_open_wait`; sooner when a partial trip's ramp lets more probes out), or sooner
/// when the line is woken.
fn next_chance(refusal: &Refusal, now: Instant, half_open_wait: std::time::Duration) -> Instant {
    match refusal.state {
        BreakerState::Open { retry_in } => now + retry_in,
        _ => now + refusal.retry_in.unwrap_or(half_open_wait),
    }
}

/// Whether a call refused with `refusal` at `now` may wait for its next chance before
/// `deadline`: an open time that ends after the deadline cannot be waited out.
pub(crate) fn worth_waiting(
    refusal: &Refusal,
    now: Instant,
    deadline: Instant,
    half_open_wait: std::time::Duration,
) -> bool {
    can_wait(refusal.state)
        && now < deadline
        && (!matches!(refusal.state, BreakerState::Open { .. })
            || next_chance(refusal, now, half_open_wait) <= deadline)
}

/// Waits in `breaker`'s line until a call is let through (the permit; none when the
/// handle disabled the breakers) or `deadline` cannot be met (the last refusal, whose hint is
/// the time to the next chance).
async fn admitted(
    registry: &Registry,
    breaker: Arc<KeyBreaker>,
    place: Place,
    deadline: Instant,
) -> Result<Option<Permit>, BreakerOpen> {
    let config = Arc::clone(&breaker.config);
    let mut woken = pin!(breaker.line.notified());
    loop {
        // In line before looking, so a wake-up between the look and the wait is not lost.
        woken.as_mut().enable();
        match registry.mode() {
            DISABLED => return Ok(None),
            FORCED_OPEN => {
                let key = breaker.key().clone();
                return Err(BreakerOpen::new(key, BreakerState::ForcedOpen, None));
            }
            _ => {}
        }
        let now = breaker.now();
        let refusal = match breaker.admit(&config, now) {
            Ok((kind, transition)) => {
                if let Some(transition) = transition {
                    emit(breaker.key(), &transition);
                }
                drop(place);
                // Let through closed: the next in line may be too. A probe's answer decides
                // for the others.
                if kind == PermitKind::Closed {
                    breaker.line.notify_one();
                }
                return Ok(Some(Permit::new(Arc::clone(&breaker), kind, now)));
            }
            Err(refusal) => refusal,
        };
        let clock = Instant::now();
        if !worth_waiting(&refusal, clock, deadline, config.half_open_wait) {
            return Err(BreakerOpen::new(
                breaker.key().clone(),
                refusal.state,
                refusal.retry_in,
            ));
        }
        let wake = next_chance(&refusal, clock, config.half_open_wait).min(deadline);
        if tokio::time::timeout_at(wake, woken.as_mut()).await.is_ok() {
            // Woken: a new place at the back is taken only if this call is refused again.
            woken.set(breaker.line.notified());
        }
    }
}
