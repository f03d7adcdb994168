//! How long to wait before a retry: [`Backoff`] and [`Jitter`]; how far to trust a server's
//! hint is [`HintTrust`], one policy for every layer, in `ballast-classify`.

pub use ballast_classify::HintTrust;

use std::time::Duration;

use rand::RngExt;
use rand::rngs::SmallRng;

/// The wait before retry `k` (k = 1 for the first retry), before jitter:
/// `first * factor^(k-1)`, never above `ceiling`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub first: Duration,
    /// The growth per retry: 2.0 doubles, 1.0 keeps it constant.
    pub factor: f64,
    /// The longest wait this backoff produces.
    pub ceiling: Duration,
}

impl Backoff {
    /// Doubling from `first` up to `ceiling`.
    pub const fn exponential(first: Duration, ceiling: Duration) -> Self {
        Self {
            first,
            factor: 2.0,
            ceiling,
        }
    }

    /// Always `wait`.
    pub const fn constant(wait: Duration) -> Self {
        Self {
            first: wait,
            factor: 1.0,
            ceiling: wait,
        }
    }

    /// The wait before retry `k` (1-based), before jitter.
    pub fn raw(&self, k: u32) -> Duration {
        let exponent = i32::try_from(k.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.first.as_secs_f64() * self.factor.max(0.0).powi(exponent);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(Duration::MAX)
            .min(self.ceiling)
    }
}

/// How a computed wait is randomised, so that clients who failed together do not retry
/// together. The names follow Marc Brooker's "Exponential Backoff And Jitter" (AWS, 2015).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Exactly the computed wait. Synchronised clients stay synchronised.
    None,
    /// Uniform in `[0, wait)`. The default: fewest calls under contention.
    Full,
    /// Uniform in `[wait/2, wait)`.
    Equal,
    /// Uniform in `[first, previous * 3)`, capped at the ceiling: grows from the last wait
    /// rather than from the retry count.
    Decorrelated,
    /// The computed wait plus uniform in `[0, extra)`: the story's `2^n + U(0, 1)`.
    Add(Duration),
}

impl Jitter {
    /// Applies the jitter to retry `k` of `backoff`, given the previous wait of this call:
    /// every jitter is uniform between its [`bounds`](Self::bounds).
    pub fn apply(
        self,
        backoff: &Backoff,
        k: u32,
        previous: Option<Duration>,
        rng: &mut SmallRng,
    ) -> Duration {
        let (low, high) = self.bounds(backoff, k, previous);
        low + (high - low).mul_f64(rng.random::<f64>())
    }

    /// The bounds `[low, high]` a wait from [`apply`](Self::apply) falls in.
    pub fn bounds(
        self,
        backoff: &Backoff,
        k: u32,
        previous: Option<Duration>,
    ) -> (Duration, Duration) {
        let raw = backoff.raw(k);
        match self {
            Self::None => (raw, raw),
            Self::Full => (Duration::ZERO, raw),
            Self::Equal => (raw / 2, raw),
            Self::Decorrelated => {
                let low = backoff.first.min(backoff.ceiling);
                let high = previous
                    .unwrap_or(low)
                    .saturating_mul(3)
                    .min(backoff.ceiling)
                    .max(low);
                (low, high)
            }
            Self::Add(extra) => (raw, raw.saturating_add(extra)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn exponential_and_constant() {
        let b = Backoff::exponential(secs(2), secs(60));
        let waits: Vec<_> = (1..=7).map(|k| b.raw(k)).collect();
        assert_eq!(
            waits,
            [
                secs(2),
                secs(4),
                secs(8),
                secs(16),
                secs(32),
                secs(60),
                secs(60)
            ]
        );
        assert_eq!(b.raw(u32::MAX), secs(60));
        assert_eq!(Backoff::constant(secs(5)).raw(9), secs(5));
    }

    #[test]
    fn hint_trust_modes() {
        let backoff = secs(2);
        assert_eq!(
            HintTrust::Ignore.apply(backoff, Some(secs(30))),
            (secs(2), false)
        );
        assert_eq!(
            HintTrust::Honour.apply(backoff, Some(secs(30))),
            (secs(30), true)
        );
        assert_eq!(
            HintTrust::Honour.apply(backoff, Some(secs(1))),
            (secs(1), false)
        );
        assert_eq!(
            HintTrust::Floor.apply(backoff, Some(secs(1))),
            (secs(2), false)
        );
        assert_eq!(
            HintTrust::Floor.apply(backoff, Some(secs(9))),
            (secs(9), true)
        );
        let clamp = HintTrust::Clamp { slack: secs(5) };
        assert_eq!(clamp.apply(backoff, Some(secs(30))), (secs(7), true));
        assert_eq!(clamp.apply(backoff, Some(secs(4))), (secs(4), true));
        assert_eq!(clamp.apply(backoff, Some(secs(0))), (secs(2), false));
        assert_eq!(clamp.apply(backoff, None), (secs(2), false));
    }

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
            (0u64..10_000).prop_map(|ms| Jitter::Add(Duration::from_millis(ms))),
        ]
    }

    proptest! {
        /// Every jittered wait falls within its jitter's bounds, which lie within the
        /// backoff's ceiling (plus the added extra, for `Add`).
        #[test]
        fn waits_stay_within_bounds(
            jitter in jitter(),
            first_ms in 0u64..120_000,
            factor in 1.0..4.0f64,
            ceiling_ms in 0u64..600_000,
            k in 1u32..40,
            previous_ms in prop::option::of(0u64..600_000),
            seed in any::<u64>(),
        ) {
            let backoff = Backoff { first: Duration::from_millis(first_ms), factor, ceiling: Duration::from_millis(ceiling_ms) };
            let previous = previous_ms.map(Duration::from_millis);
            let mut rng = SmallRng::seed_from_u64(seed);
            let wait = jitter.apply(&backoff, k, previous, &mut rng);
            let (low, high) = jitter.bounds(&backoff, k, previous);
            prop_assert!(low <= wait && wait <= high, "{wait:?} not in [{low:?}, {high:?}]");
            let extra = match jitter { Jitter::Add(extra) => extra, _ => Duration::ZERO };
            prop_assert!(high <= backoff.ceiling + extra);
        }
    }
}
