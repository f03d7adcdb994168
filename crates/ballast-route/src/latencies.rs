//! Recent answers' latencies, one record per kind of call (model, streamed or not), from
//! which the hedge reads its delay.
//!
//! A streamed answer is timed to its first content and a whole answer to its end, and one
//! model answers in a second where another takes a minute: a percentile over all of them
//! would hedge the fast kind late and the slow kind early. Each kind keeps its own record.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ballast_classify::RequestFacts;

use crate::HedgeConfig;

/// Buckets per set: four per doubling from 1 ms, the last holding about 55 s and over.
const BUCKETS: usize = 64;

/// The delay is worked out again (a walk over both sets of buckets, about 800
/// instructions: the largest part of what the hedge cost an answer) once per this many
/// answers: a high percentile of hundreds of answers does not move with one more.
const REFRESH_EVERY: u64 = 8;

/// The most kinds with a record of their own; calls of further kinds (a caller naming a
/// new model on every call) share one.
pub(crate) const MAX_KINDS: usize = 32;

/// One kind of call's recent latencies: two rotating sets of 64 logarithmic buckets of
/// atomic counters, so that recording an answer takes no lock (a mutex-guarded histogram,
/// as tower's `hedge` keeps, would be one lock per call on every call's path).
#[derive(Debug)]
pub(crate) struct Latencies {
    /// Two sets of buckets: the current one and the previous period's.
    buckets: [[AtomicU32; BUCKETS]; 2],
    current: AtomicUsize,
    /// When `current` began, in nanoseconds since the layer's epoch.
    since: AtomicU64,
    /// The hedge delay now, in nanoseconds; 0 while there are too few answers.
    delay: AtomicU64,
    /// Answers recorded.
    recorded: AtomicU64,
}

impl Latencies {
    /// An empty record whose first period begins at `now` (nanoseconds since the epoch).
    fn new(now: u64) -> Self {
        Self {
            buckets: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(0))),
            current: AtomicUsize::new(0),
            since: AtomicU64::new(now),
            delay: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
        }
    }

    /// Records a successful answer's latency at `now`, and works out the delay again on
    /// every answer while there are few, then on every `REFRESH_EVERY`th and when the
    /// period turns.
    pub(crate) fn record(&self, config: &HedgeConfig, now: u64, latency: Duration) {
        let since = self.since.load(Ordering::Acquire);
        let period = u64::try_from(config.period.as_nanos()).unwrap_or(u64::MAX);
        let turned = now.saturating_sub(since) > period
            && self
                .since
                .compare_exchange(since, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if turned {
            // This caller turns the period: the older set is cleared and becomes current.
            let next = 1 - self.current.load(Ordering::Acquire);
            for bucket in &self.buckets[next] {
                bucket.store(0, Ordering::Relaxed);
            }
            self.current.store(next, Ordering::Release);
        }
        let set = self.current.load(Ordering::Acquire);
        self.buckets[set][bucket_of(latency)].fetch_add(1, Ordering::Relaxed);
        let n = self.recorded.fetch_add(1, Ordering::Relaxed);
        if turned || n < 2 * u64::from(config.min_samples) || n.is_multiple_of(REFRESH_EVERY) {
            self.delay
                .store(self.percentile_nanos(config), Ordering::Relaxed);
        }
    }

    /// The configured percentile of the remembered latencies (an upper bucket bound), in
    /// nanoseconds; 0 below `min_samples`.
    fn percentile_nanos(&self, config: &HedgeConfig) -> u64 {
        let counts: [u64; BUCKETS] = std::array::from_fn(|i| {
            u64::from(self.buckets[0][i].load(Ordering::Relaxed))
                + u64::from(self.buckets[1][i].load(Ordering::Relaxed))
        });
        let total: u64 = counts.iter().sum();
        if total < u64::from(config.min_samples.max(1)) {
            return 0;
        }
        let wanted = (config.percentile.clamp(0.0, 1.0) * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= wanted.max(1) {
                let bound = upper_bound(i).max(config.min_delay);
                return u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
            }
        }
        0
    }

    /// The delay before hedging a call of this kind, if it may be hedged at all.
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.delay.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

/// Bucket `i` holds latencies up to `2^((i + 1) / 4)` ms: four buckets per doubling, from
/// 1 ms to about 55 s (longer ones share the last).
fn bucket_of(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1_000.0;
    ((ms.max(1.0).log2() * 4.0) as usize).min(BUCKETS - 1)
}

fn upper_bound(bucket: usize) -> Duration {
    Duration::from_secs_f64(2f64.powf((bucket + 1) as f64 / 4.0) / 1_000.0)
}

/// A kind of call: its model (as the request's facts name it) and whether it streams.
#[derive(Debug)]
struct Kind {
    model: Option<Arc<str>>,
    stream: bool,
}

impl Kind {
    fn is(&self, model: Option<&str>, stream: bool) -> bool {
        self.stream == stream && self.model.as_deref() == model
    }
}

/// The records of every kind seen, in slots filled in order and read without a lock (a
/// call looks at the filled slots, an atomic load each, and compares its kind with a few);
/// a kind seen for the first time takes the next slot under a lock only such calls take.
/// Measured against a list behind an `ArcSwap` (a load and a reference count per call):
/// about 600 instructions a call fewer (`bash benches/instructions.sh
/// ballast_facade_with_throttle`: 39 775 against 40 377).
#[derive(Debug)]
pub(crate) struct ByKind {
    slots: [OnceLock<Box<(Kind, Latencies)>>; MAX_KINDS],
    /// The record calls of kinds past [`MAX_KINDS`] share.
    others: Latencies,
    /// Taken to fill a slot, so that one kind never takes two.
    adding: Mutex<()>,
}

impl ByKind {
    pub(crate) fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| OnceLock::new()),
            others: Latencies::new(0),
            adding: Mutex::new(()),
        }
    }

    /// Which record the kind of a request with these facts (their model and stream flag)
    /// has, for [`ByKind::get`]; one is made, its first period beginning `now()`, for the
    /// first call of a kind.
    pub(crate) fn of(&self, facts: &RequestFacts, now: impl FnOnce() -> u64) -> usize {
        let (model, stream) = (facts.model_name().map(|m| m.shared()), facts.is_stream());
        let name = model.map(|m| &**m);
        // A kind seen before, or every slot taken (a caller naming a new model on every
        // call): no lock.
        if let Ok(index) | Err(index @ MAX_KINDS) = self.find(name, stream) {
            return index;
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match self.find(name, stream) {
            Ok(index) | Err(index @ MAX_KINDS) => return index,
            Err(empty) => empty,
        };
        let kind = Kind {
            model: model.cloned(),
            stream,
        };
        // Slots are filled only under `adding`: this one is still empty.
        let _ = self.slots[index].set(Box::new((kind, Latencies::new(now()))));
        index
    }

    /// The record numbered `index` by [`ByKind::of`].
    pub(crate) fn get(&self, index: usize) -> &Latencies {
        match self.slots.get(index).and_then(OnceLock::get) {
            Some(entry) => &entry.1,
            None => &self.others,
        }
    }

    /// The slot of a kind among the filled slots (they fill in order), or else how many
    /// are filled: the next empty slot, [`MAX_KINDS`] when none is.
    fn find(&self, model: Option<&str>, stream: bool) -> Result<usize, usize> {
        for (index, slot) in self.slots.iter().enumerate() {
            match slot.get() {
                Some(entry) if entry.0.is(model, stream) => return Ok(index),
                Some(_) => {}
                None => return Err(index),
            }
        }
        Err(MAX_KINDS)
    }

    /// How many kinds have a record of their own.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.get().is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_classify::RequestBody;

    fn request(body: &str) -> http::Request<RequestBody> {
        let mut request = http::Request::post("http://p.invalid/v1/chat/completions")
            .body(RequestBody::new(body.to_owned()))
            .unwrap();
        RequestFacts::note(&mut request);
        request
    }

    /// One record per model and stream flag, found again by the next call of the kind; a
    /// request without facts is a kind of its own (no model, not streamed).
    #[test]
    fn each_model_and_stream_flag_has_a_record() {
        let by_kind = ByKind::new();
        let a = by_kind.of(RequestFacts::of(&request(r#"{"model":"a"}"#)), || 0);
        let a_stream = by_kind.of(
            RequestFacts::of(&request(r#"{"model":"a","stream":true}"#)),
            || 0,
        );
        let b = by_kind.of(RequestFacts::of(&request(r#"{"model":"b"}"#)), || 0);
        let none = by_kind.of(RequestFacts::of(&http::Request::new(())), || 0);
        assert_eq!((a, a_stream, b, none), (0, 1, 2, 3));
        assert_eq!(
            by_kind.of(RequestFacts::of(&request(r#"{"model":"a","n":1}"#)), || 5),
            0
        );
        assert_eq!(
            by_kind.of(RequestFacts::of(&http::Request::new(())), || 5),
            3
        );
        assert_eq!(by_kind.len(), 4);
        assert!(!std::ptr::eq(by_kind.get(0), by_kind.get(1)));
    }

    /// Past `MAX_KINDS` kinds, new ones share one record, and no slot is taken.
    #[test]
    fn kinds_past_the_cap_share_one_record() {
        let by_kind = ByKind::new();
        for i in 0..MAX_KINDS {
            assert_eq!(
                by_kind.of(
                    RequestFacts::of(&request(&format!(r#"{{"model":"m{i}"}}"#))),
                    || 0
                ),
                i
            );
        }
        let late = by_kind.of(RequestFacts::of(&request(r#"{"model":"late"}"#)), || 0);
        let later = by_kind.of(RequestFacts::of(&request(r#"{"model":"later"}"#)), || 0);
        assert_eq!((late, later), (MAX_KINDS, MAX_KINDS));
        assert!(std::ptr::eq(by_kind.get(late), &by_kind.others));
        assert_eq!(by_kind.len(), MAX_KINDS);

        // Known kinds and, once every slot is taken, new ones are found without the lock
        // that filling a slot takes: held here, it does not stop them.
        let by_kind = Arc::new(by_kind);
        let _held = by_kind.adding.lock().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let looking = Arc::clone(&by_kind);
        std::thread::spawn(move || {
            let known = looking.of(RequestFacts::of(&request(r#"{"model":"m3"}"#)), || 0);
            let new = looking.of(RequestFacts::of(&request(r#"{"model":"newer"}"#)), || 0);
            let _ = done.send((known, new));
        });
        let found = finished.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(found, Ok((3, MAX_KINDS)));
    }
}
