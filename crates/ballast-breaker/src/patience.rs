//! Patience: a refused call waits in its key's line for the breaker's next chance.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::future::Permit;
use crate::registry::emit;
use crate::state::{KeyBreaker, PermitKind, Refusal};
use crate::{BreakerOpen, BreakerState};

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
/// open time; else (probes out, shedding) a recheck after `half_open_wait`, or sooner when
/// the line is woken.
fn next_chance(refusal: &Refusal, now: Instant, half_open_wait: std::time::Duration) -> Instant {
    match refusal.state {
        BreakerState::Open { retry_in } => now + retry_in,
        _ => now + half_open_wait,
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

/// Waits in `breaker`'s line until a call is let through (the permit) or `deadline` cannot be
/// met (the last refusal, whose hint is the time to the next chance).
pub(crate) async fn admitted(
    breaker: Arc<KeyBreaker>,
    place: Place,
    deadline: Instant,
) -> Result<Permit, BreakerOpen> {
    let config = Arc::clone(&breaker.config);
    let mut woken = pin!(breaker.line.notified());
    loop {
        // In line before looking, so a wake-up between the look and the wait is not lost.
        woken.as_mut().enable();
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
                return Ok(Permit::new(Arc::clone(&breaker), kind, now));
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
