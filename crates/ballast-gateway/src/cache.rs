//! The answer cache (`BALLAST_CACHE_TTL`, off by default): a call asked again word for
//! word, by the same client key, to the same endpoint, within the time to live, is answered
//! from memory: no provider call, nothing spent, and served while the provider is down or
//! the budget is spent. A loop that sends the same request over and over (the story's bad
//! day) costs one call a time to live.
//!
//! What is kept: answers that succeeded, with the headers the gateway passes on and the
//! target that gave them; a stream once it has ended well (its events kept as they came,
//! and answered again all at once: [`Keeping`]), never one that failed, was cut or was
//! left by its caller. The key is the SHA-256 of the client key's
//! scope, the path, the Anthropic version and betas a Messages call names, and the body as
//! sent: a different model, temperature or message is another key. The caller decides per
//! call with `Cache-Control`: `no-cache` asks the provider and keeps the new answer,
//! `no-store` neither reads nor keeps. Answers say `x-ballast-cache: hit` (with `Age`, the
//! seconds since the answer was kept, and `x-ballast-calls: 0`) or `miss`.
//!
//! Identical calls at once make one provider call ([`AnswerCache::fly`]): the first leads,
//! the others wait for its answer and are answered from the cache when it is kept; when it
//! is not (a failure, a stream, a caller that left), each goes on by itself, at once, not in
//! turn. Streams and `no-cache` calls do not wait. Memory is
//! bounded (`BALLAST_CACHE_MB`, weighed by the bytes kept; a stream is held while it runs
//! up to [`LARGEST`], past which it is not kept); entries are evicted by [`quick_cache`]'s
//! policy when it is full, and read as missing once past their time to live.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use sha2::Digest;
use tokio::time::Instant;

/// The most a stream's events may weigh to be kept (2 MiB: tens of thousands of tokens of
/// events). Each stream that may be kept holds its events until its end, so this bounds
/// what the cache holds per connection besides what it keeps.
pub(crate) const LARGEST: usize = 2 << 20;

/// An answer kept.
#[derive(Debug)]
pub(crate) struct Cached {
    /// Its status.
    pub(crate) status: http::StatusCode,
    /// The headers the gateway passed on with it.
    pub(crate) headers: http::HeaderMap,
    /// Its body.
    pub(crate) body: Bytes,
    /// The target that gave it.
    pub(crate) target: Option<http::HeaderValue>,
    /// When it was kept.
    pub(crate) kept: Instant,
}

/// The cache's key: a SHA-256.
pub(crate) type Key = [u8; 32];

/// Weighs an entry by the bytes it holds.
#[derive(Debug, Clone, Copy)]
struct Bytesize;

impl quick_cache::Weighter<Key, Arc<Cached>> for Bytesize {
    fn weight(&self, _key: &Key, cached: &Arc<Cached>) -> u64 {
        let headers: usize = cached
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        // The entry's own size too: never a weight of 0 (never evicted).
        (cached.body.len() + headers + 128) as u64
    }
}

/// The calls in flight whose answer may be kept, by key, in shards (a lock per shard, held
/// for a map look-up): a later identical call waits on the first one's channel, which
/// closes when the first is done.
struct Flights {
    shards: Box<[Mutex<Shard>]>,
}

/// One shard of [`Flights`]: each leading call's channel, by key.
type Shard = HashMap<Key, tokio::sync::watch::Receiver<()>>;

/// Shards of [`Flights`]: enough that two calls rarely meet on a lock.
const FLIGHT_SHARDS: usize = 16;

impl Flights {
    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        &self.shards[usize::from(key[0]) % self.shards.len()]
    }
}

/// What a call that may be kept does about identical calls in flight.
pub(crate) enum Flight {
    /// It is the first: it leads, and the others wait until this is dropped (after its
    /// answer is kept, or it failed, or its caller left).
    Lead(FlightGuard),
    /// Another leads: wait for it ([`Flight::wait`]), then look in the cache.
    Follow(tokio::sync::watch::Receiver<()>),
}

impl Flight {
    /// Waits until the leading call is done.
    pub(crate) async fn wait(mut receiver: tokio::sync::watch::Receiver<()>) {
        // Nothing is ever sent: this returns when the leader's guard drops the sender.
        let _closed = receiver.changed().await;
    }
}

/// The leading call's hold on its key: dropped, it lets the waiting calls go. While it
/// lives, the key's entry is its own (only this drop removes it).
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    key: Key,
    _sender: tokio::sync::watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.flights
            .shard(&self.key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
        // The sender drops after this: the waiting calls wake.
    }
}

/// Answers kept for a time, by [`Key`]; clones share the answers.
#[derive(Clone)]
pub(crate) struct AnswerCache {
    entries: Arc<quick_cache::sync::Cache<Key, Arc<Cached>, Bytesize>>,
    flights: Arc<Flights>,
    ttl: Duration,
    /// The most one answer (a stream's events, or a whole body) may weigh to be kept:
    /// [`LARGEST`], or an eighth of the cache if less.
    largest: usize,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("entries", &self.entries.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// What a call asks of the cache (its `Cache-Control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// Read it, and keep a new answer.
    Use,
    /// `no-cache`: ask the provider, and keep its answer.
    Refresh,
    /// `no-store`: neither.
    Bypass,
}

impl Asked {
    /// What `headers` ask: `no-store` over `no-cache` over the default.
    pub(crate) fn of(headers: &http::HeaderMap) -> Self {
        let mut asked = Self::Use;
        for directive in headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
        {
            if directive.eq_ignore_ascii_case("no-store") {
                return Self::Bypass;
            }
            if directive.eq_ignore_ascii_case("no-cache") {
                asked = Self::Refresh;
            }
        }
        asked
    }
}

impl AnswerCache {
    /// A cache keeping answers for `ttl`, up to about `bytes` of them.
    pub(crate) fn new(ttl: Duration, bytes: u64) -> Self {
        // quick_cache wants an estimate of the number of items: answers of about 2 KB.
        let items = usize::try_from(bytes / 2048).unwrap_or(usize::MAX).max(16);
        Self {
            entries: Arc::new(quick_cache::sync::Cache::with_weighter(
                items, bytes, Bytesize,
            )),
            flights: Arc::new(Flights {
                shards: (0..FLIGHT_SHARDS).map(|_| Mutex::default()).collect(),
            }),
            ttl,
            largest: usize::try_from(bytes / 8).map_or(LARGEST, |eighth| eighth.min(LARGEST)),
        }
    }

    /// Whether a call under `key` leads, or follows an identical one in flight.
    pub(crate) fn fly(&self, key: Key) -> Flight {
        let mut shard = self
            .flights
            .shard(&key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(leader) = shard.get(&key) {
            return Flight::Follow(leader.clone());
        }
        let (sender, receiver) = tokio::sync::watch::channel(());
        shard.insert(key, receiver);
        Flight::Lead(FlightGuard {
            flights: Arc::clone(&self.flights),
            key,
            _sender: sender,
        })
    }

    /// The key of a call: its client key's scope (`""` on a gateway without client keys),
    /// its path, the Anthropic headers that change a Messages answer, its body. Each part is
    /// written with its length first, so no two calls share a key by where parts end.
    pub(crate) fn key(scope: &str, path: &str, headers: &http::HeaderMap, body: &[u8]) -> Key {
        let mut hash = sha2::Sha256::new();
        let mut part = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        part(scope.as_bytes());
        part(path.as_bytes());
        for name in ["anthropic-version", "anthropic-beta"] {
            for value in headers.get_all(name) {
                part(value.as_bytes());
            }
        }
        part(body);
        hash.finalize().into()
    }

    /// The answer kept under `key`, if it is younger than the time to live.
    pub(crate) fn get(&self, key: &Key, now: Instant) -> Option<Arc<Cached>> {
        let cached = self.entries.get(key)?;
        if now.saturating_duration_since(cached.kept) >= self.ttl {
            self.entries.remove(key);
            return None;
        }
        Some(cached)
    }

    /// Keeps `cached` under `key`, unless it weighs more than one answer may (a batch of
    /// embeddings can be a hundred megabytes: it would push every other answer out).
    pub(crate) fn put(&self, key: Key, cached: Cached) {
        if cached.body.len() > self.largest {
            return;
        }
        self.entries.insert(key, Arc::new(cached));
    }
}

pin_project! {
    /// A stream's body that keeps its events as they pass, and puts them in the cache when
    /// the stream ends well (its last frame read, no error). An error (a cut, a stall, an
    /// error event: the classifier's `StreamError`), a stream past the cache's share for
    /// one answer, or a drop before the end keeps nothing.
    pub(crate) struct Keeping<B> {
        #[pin]
        body: B,
        kept: Option<(AnswerCache, Key, Cached, BytesMut)>,
    }
}

impl<B> Keeping<B> {
    /// Wraps `body`, to be kept under `key` with `answer`'s status, headers and target.
    pub(crate) fn new(body: B, cache: AnswerCache, key: Key, answer: Cached) -> Self {
        Self {
            body,
            kept: Some((cache, key, answer, BytesMut::new())),
        }
    }
}

impl<B> Body for Keeping<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some((cache, .., events)), Some(data)) =
                    (this.kept.as_mut(), frame.data_ref())
                {
                    if events.len() + data.len() > cache.largest {
                        *this.kept = None;
                    } else {
                        events.extend_from_slice(data);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => *this.kept = None,
            Poll::Ready(None) => {
                if let Some((cache, key, mut answer, events)) = this.kept.take() {
                    answer.body = events.freeze();
                    answer.kept = Instant::now();
                    cache.put(key, answer);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Its end must be read (`None`) for the stream to be kept.
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &'static str, kept: Instant) -> Cached {
        Cached {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            target: None,
            kept,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_kept_for_its_time_to_live() {
        let cache = AnswerCache::new(Duration::from_secs(60), 1 << 20);
        let key = AnswerCache::key("", "/v1/chat/completions", &http::HeaderMap::new(), b"{}");
        cache.put(key, answer("kept", Instant::now()));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(&cache.get(&key, Instant::now()).unwrap().body[..], b"kept");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get(&key, Instant::now()).is_none());
        assert!(
            cache.entries.is_empty(),
            "an expired answer is dropped when read"
        );
    }

    #[test]
    fn keys_differ_by_scope_path_headers_and_body() {
        let none = http::HeaderMap::new();
        let base = AnswerCache::key("a", "/v1/messages", &none, b"{}");
        assert_eq!(base, AnswerCache::key("a", "/v1/messages", &none, b"{}"));
        assert_ne!(base, AnswerCache::key("b", "/v1/messages", &none, b"{}"));
        assert_ne!(base, AnswerCache::key("a", "/v1/responses", &none, b"{}"));
        assert_ne!(base, AnswerCache::key("a", "/v1/messages", &none, b"{ }"));
        let mut beta = http::HeaderMap::new();
        beta.insert("anthropic-beta", "x".parse().unwrap());
        assert_ne!(base, AnswerCache::key("a", "/v1/messages", &beta, b"{}"));
        // Where one part ends is part of the key.
        assert_ne!(
            AnswerCache::key("ab", "/v1", &none, b""),
            AnswerCache::key("a", "b/v1", &none, b"")
        );
    }

    #[test]
    fn cache_control_says_what_a_call_asks() {
        let asked = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CACHE_CONTROL, value.parse().unwrap());
            Asked::of(&headers)
        };
        assert_eq!(Asked::of(&http::HeaderMap::new()), Asked::Use);
        assert_eq!(asked("max-age=0, No-Cache"), Asked::Refresh);
        assert_eq!(asked("no-cache, no-store"), Asked::Bypass);
        assert_eq!(asked("private"), Asked::Use);
    }

    /// The first of identical calls leads; the others wait until it is done (kept, failed
    /// or left alike), and the key is free for the next call after it.
    #[tokio::test(start_paused = true)]
    async fn identical_calls_wait_for_the_first() {
        let cache = AnswerCache::new(Duration::from_secs(60), 1 << 20);
        let key = AnswerCache::key("", "/v1/chat/completions", &http::HeaderMap::new(), b"{}");
        let Flight::Lead(leader) = cache.fly(key) else {
            panic!("the first call leads");
        };
        let followers: Vec<_> = (0..3)
            .map(|_| match cache.fly(key) {
                Flight::Follow(leader) => tokio::spawn(Flight::wait(leader)),
                Flight::Lead(_) => panic!("a call in flight is followed"),
            })
            .collect();
        // Another key is not held up.
        let other = AnswerCache::key("", "/v1/chat/completions", &http::HeaderMap::new(), b"[]");
        assert!(matches!(cache.fly(other), Flight::Lead(_)));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(followers.iter().all(|f| !f.is_finished()));
        // The leader's answer kept, then its guard dropped: they wake, and find it.
        let now = Instant::now();
        cache.put(key, answer("kept", now));
        drop(leader);
        for follower in followers {
            follower.await.unwrap();
        }
        assert_eq!(&cache.get(&key, now).unwrap().body[..], b"kept");
        // The key is free: the next call leads (here, one whose leader left: the follower
        // wakes all the same).
        let Flight::Lead(next) = cache.fly(key) else {
            panic!("a finished flight leaves its key free");
        };
        let Flight::Follow(waiting) = cache.fly(key) else {
            panic!("followed");
        };
        let waiting = tokio::spawn(Flight::wait(waiting));
        drop(next);
        waiting.await.unwrap();
        assert!(matches!(cache.fly(key), Flight::Lead(_)));
    }

    /// Memory is bounded by the bytes kept.
    #[test]
    fn the_cache_holds_about_its_bytes() {
        let cache = AnswerCache::new(Duration::from_secs(60), 64 << 10);
        let now = Instant::now();
        let body = "x".repeat(1000);
        for i in 0..1000u32 {
            let key = AnswerCache::key("", "/", &http::HeaderMap::new(), &i.to_le_bytes());
            cache.put(
                key,
                Cached {
                    body: Bytes::from(body.clone()),
                    ..answer("", now)
                },
            );
        }
        assert!(
            cache.entries.weight() <= 64 << 10,
            "{}",
            cache.entries.weight()
        );
        assert!(cache.entries.len() < 100, "{}", cache.entries.len());
        // An answer past an eighth of the cache is not kept, and pushes nothing out.
        let before = cache.entries.len();
        let key = AnswerCache::key("", "/", &http::HeaderMap::new(), b"large");
        cache.put(
            key,
            Cached {
                body: Bytes::from(vec![b'x'; (8 << 10) + 1]),
                ..answer("", now)
            },
        );
        assert!(cache.get(&key, now).is_none());
        assert_eq!(cache.entries.len(), before);
    }

    /// The events of a stream that ends well are kept, whole; a stream that fails, one
    /// past the share one answer may take, and one its caller left are not.
    #[tokio::test]
    async fn a_stream_is_kept_only_once_it_has_ended_well() {
        use http_body_util::BodyExt;
        type Frames = Vec<Result<Frame<Bytes>, &'static str>>;
        let body = |frames: Frames| http_body_util::StreamBody::new(futures::stream::iter(frames));
        let events = || -> Frames {
            vec![
                Ok(Frame::data(Bytes::from_static(b"data: 1\n\n"))),
                Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))),
            ]
        };
        let cache = AnswerCache::new(Duration::from_secs(60), 1 << 20);
        let keeping = |frames: Frames, key: u8| {
            Keeping::new(
                body(frames),
                cache.clone(),
                [key; 32],
                answer("", Instant::now()),
            )
        };

        let read = keeping(events(), 1).collect().await.unwrap().to_bytes();
        assert_eq!(&read[..], b"data: 1\n\ndata: [DONE]\n\n");
        let kept = cache.get(&[1; 32], Instant::now()).unwrap();
        assert_eq!(kept.body, read, "the events as they came");

        let mut failed = events();
        failed[1] = Err("cut");
        assert!(keeping(failed, 2).collect().await.is_err());
        assert!(cache.get(&[2; 32], Instant::now()).is_none());

        let mut left = keeping(events(), 3);
        let first = left.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"data: 1\n\n"[..]));
        drop(left);
        assert!(cache.get(&[3; 32], Instant::now()).is_none());

        let small = AnswerCache::new(Duration::from_secs(60), 64);
        let large = Keeping::new(
            body(events()),
            small.clone(),
            [4; 32],
            answer("", Instant::now()),
        );
        let _ = large.collect().await.unwrap();
        assert!(
            small.get(&[4; 32], Instant::now()).is_none(),
            "past 64 / 8 bytes"
        );
    }
}
