//! Reservation ids that stay unique across restarts and a store's data loss.
//!
//! A server-side counter restarts when a store without persistence does, and a restarted
//! counter hands out ids that are already in the settled set: their settlements are then
//! skipped as "already settled" and their cost is never counted. So ids are made by the
//! process instead: a random 64-bit nonce per store instance in the high half, a counter
//! in the low half.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Hands out ids: `nonce << 64 | counter`.
#[derive(Debug)]
pub(crate) struct IdSource {
    nonce: u64,
    next: AtomicU64,
}

impl IdSource {
    /// A source with a fresh random nonce.
    pub(crate) fn new() -> Self {
        Self {
            nonce: random_nonce(),
            next: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub(crate) fn next(&self) -> u128 {
        let counter = self.next.fetch_add(1, Ordering::Relaxed);
        (u128::from(self.nonce) << 64) | u128::from(counter)
    }

    /// The nonce, the high half of every id it hands out (the Redis store names its epoch
    /// by it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Whether `id` came from this source.
    pub(crate) fn issued(&self, id: u128) -> bool {
        (id >> 64) as u64 == self.nonce
    }
}

/// 64 random bits: std's `RandomState` is keyed from the operating system's randomness
/// once per process and stepped per instance; the time and process id are mixed in too.
fn random_nonce() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_two_sources_never_meet() {
        let (a, b) = (IdSource::new(), IdSource::new());
        assert_ne!(a.nonce, b.nonce);
        let first = a.next();
        assert_eq!(a.next(), first + 1);
        assert!(a.issued(first));
        assert!(!b.issued(first));
        assert_ne!(b.next() >> 64, first >> 64);
    }
}
