//! The answer cache (`BALLAST_CACHE_TTL`, off by default): a call asked again word for
//! word, by the same client key, to the same endpoint, within the time to live, is answered
//! from memory: no provider call, nothing spent, and served while the provider is down or
//! the budget is spent. A loop that sends the same request over and over (the story's bad
//! day) costs one call a time to live.
//!
//! What is kept: whole answers (not streams) that succeeded, with the headers the gateway
//! passes on and the target that gave them. The key is the SHA-256 of the client key's
//! scope, the path, the Anthropic version and betas a Messages call names, and the body as
//! sent: a different model, temperature or message is another key. The caller decides per
//! call with `Cache-Control`: `no-cache` asks the provider and keeps the new answer,
//! `no-store` neither reads nor keeps. Answers say `x-ballast-cache: hit` (with `Age`, the
//! seconds since the answer was kept, and `x-ballast-calls: 0`) or `miss`.
//!
//! Two identical calls at once both reach the provider: the cache is not a lock. Memory is
//! bounded (`BALLAST_CACHE_MB`, weighed by the bytes kept); entries are evicted by
//! [`quick_cache`]'s policy when it is full, and read as missing once past their time to
//! live.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::Digest;
use tokio::time::Instant;

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

/// Answers kept for a time, by [`Key`].
pub(crate) struct AnswerCache {
    entries: quick_cache::sync::Cache<Key, Arc<Cached>, Bytesize>,
    ttl: Duration,
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
            entries: quick_cache::sync::Cache::with_weighter(items, bytes, Bytesize),
            ttl,
        }
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

    /// Keeps `cached` under `key`.
    pub(crate) fn put(&self, key: Key, cached: Cached) {
        self.entries.insert(key, Arc::new(cached));
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
    }
}
