//! The breakers of all keys, bounded, and the events their transitions emit.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use foldhash::HashMap;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::state::{KeyBreaker, Transition};
use crate::{BreakerConfig, BreakerKey, BreakerState, KeyParts};

pub(crate) const NORMAL: u8 = 0;
pub(crate) const FORCED_OPEN: u8 = 1;
pub(crate) const DISABLED: u8 = 2;

/// How often a key's last use is written: writing on every call would make every call touch
/// one shared cache line.
const TOUCH_EVERY: u64 = 1_000_000_000;

#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) config: Arc<BreakerConfig>,
    epoch: Instant,
    mode: AtomicU8,
    /// Keyed by a hash of (host, model), so a lookup allocates nothing; the breaker checks
    /// its own key, and a collision falls back to the overflow breaker. Read-mostly: a lookup
    /// is a lock-free snapshot load, and the rare new key copies the map.
    keys: ArcSwap<HashMap<u64, Arc<KeyBreaker>>>,
    overflow: Arc<KeyBreaker>,
    seed: u64,
    /// Hashes a key's parts to the map's key (a collision is caught by `matches`).
    hasher: foldhash::fast::FixedState,
    created: AtomicU64,
}

impl Registry {
    pub(crate) fn new(config: BreakerConfig, seed: u64) -> Self {
        let config = Arc::new(config);
        let epoch = Instant::now();
        let overflow = Arc::new(KeyBreaker::new(
            BreakerKey::new("(overflow)", ""),
            Arc::clone(&config),
            epoch,
            seed,
            0,
        ));
        Self {
            config,
            epoch,
            mode: AtomicU8::new(NORMAL),
            keys: ArcSwap::from_pointee(HashMap::default()),
            overflow,
            seed,
            hasher: foldhash::fast::FixedState::with_seed(seed),
            created: AtomicU64::new(1),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn mode(&self) -> u8 {
        self.mode.load(Ordering::Acquire)
    }

    pub(crate) fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::Release);
        // Patient calls look again: let through when disabled, refused when forced open.
        self.for_each(|breaker| breaker.line.notify_waiters());
    }

    /// The breaker for `parts`, created on first use.
    pub(crate) fn breaker(&self, parts: KeyParts<'_>, now: u64) -> Arc<KeyBreaker> {
        let hash = self.hasher.hash_one(parts);
        if let Some(found) = self.keys.load().get(&hash) {
            if !found.key().matches(&parts) {
                return Arc::clone(&self.overflow);
            }
            if now.saturating_sub(found.last_used.load(Ordering::Relaxed)) > TOUCH_EVERY {
                found.last_used.store(now, Ordering::Relaxed);
            }
            return Arc::clone(found);
        }
        self.insert(hash, parts, now)
    }

    /// Adds a key; when the map is full, evicts idle keys first, and past that hands out
    /// the overflow breaker.
    fn insert(&self, hash: u64, parts: KeyParts<'_>, now: u64) -> Arc<KeyBreaker> {
        let seed = self.seed ^ self.created.fetch_add(1, Ordering::Relaxed);
        let fresh = Arc::new(KeyBreaker::new(
            BreakerKey::new(parts.host, parts.model),
            Arc::clone(&self.config),
            self.epoch,
            seed,
            now,
        ));
        let idle = u64::try_from(self.config.idle_eviction.as_nanos()).unwrap_or(u64::MAX);
        let mut chosen = Arc::clone(&self.overflow);
        self.keys.rcu(|keys| {
            let mut keys = HashMap::clone(keys);
            if let Some(existing) = keys.get(&hash) {
                chosen = Arc::clone(existing);
                return keys;
            }
            if keys.len() >= self.config.max_keys {
                keys.retain(|_, b| now.saturating_sub(b.last_used.load(Ordering::Relaxed)) < idle);
            }
            chosen = if keys.len() < self.config.max_keys {
                keys.insert(hash, Arc::clone(&fresh));
                Arc::clone(&fresh)
            } else {
                Arc::clone(&self.overflow)
            };
            keys
        });
        chosen
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&KeyBreaker)) {
        for breaker in self.keys.load().values() {
            f(breaker);
        }
        f(&self.overflow);
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.load().len()
    }
}

/// Logs a transition and feeds the metrics.
pub(crate) fn emit(key: &BreakerKey, transition: &Transition) {
    let Transition { from, to, totals } = transition;
    match to {
        BreakerState::Closed | BreakerState::HalfOpen => tracing::info!(
            target: "ballast::breaker",
            breaker = %key,
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker {to}"
        ),
        _ => tracing::warn!(
            target: "ballast::breaker",
            breaker = %key,
            from = from.as_str(),
            to = to.as_str(),
            calls = totals.calls,
            failures = totals.failures,
            slow = totals.slow,
            "circuit breaker {to}"
        ),
    }
    let label = key.to_string();
    metrics::counter!(
        "ballast_breaker_transitions_total",
        "breaker" => label.clone(),
        "to" => to.as_str()
    )
    .increment(1);
    metrics::gauge!("ballast_breaker_closed", "breaker" => label).set(
        if matches!(to, BreakerState::Closed) {
            1.0
        } else {
            0.0
        },
    );
}
