//! Wait hints: when the provider says to try again, in every style providers use.
//!
//! A hint is data, not a command. Providers get it wrong (the xAI "try again in X seconds"
//! that started this project is one), so the retry policy decides how far to trust it. This
//! module only reads what was said, safely:
//!
//! - a value that does not parse, or is negative, NaN or infinite, gives **no hint** (`None`);
//! - a date in the past gives a hint of **zero** ("now");
//! - anything above [`MAX_WAIT_HINT`] (24 hours) is **clamped** to it, so "114 hours" stays
//!   representable as "absurdly long" without overflowing any arithmetic downstream.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The longest wait a hint can express; longer ones are clamped to this.
///
/// A day is far beyond any retry deadline, so a clamped hint still reads as "give up", while
/// adding it to an `Instant` can never overflow.
pub const MAX_WAIT_HINT: Duration = Duration::from_secs(24 * 60 * 60);

/// How long the provider asked the caller to wait, and where it said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitHint {
    delay: Duration,
    source: HintSource,
}

impl WaitHint {
    /// A hint of `delay` (clamped to [`MAX_WAIT_HINT`]) read from `source`.
    pub fn new(delay: Duration, source: HintSource) -> Self {
        Self {
            delay: delay.min(MAX_WAIT_HINT),
            source,
        }
    }

    /// How long the provider asked to wait.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Where the hint came from.
    pub fn source(&self) -> HintSource {
        self.source
    }

    /// Reads the best hint from response headers, if any.
    ///
    /// Explicit retry headers win, most precise first: `retry-after-ms`, `x-ms-retry-after-ms`,
    /// `retry-after`. When `rate_limited` is true, the rate-limit reset headers are read too
    /// (OpenAI `x-ratelimit-reset-*`, a bare `x-ratelimit-reset` as an epoch instant or a
    /// delay, Anthropic `anthropic-ratelimit-*-reset`): they ride on
    /// every response, but only say "wait" when a limit was hit. Among those, the reset of an
    /// exhausted limit (its `remaining` is 0) wins; otherwise the longest reset.
    pub fn from_headers(headers: &HeaderMap, rate_limited: bool, now: SystemTime) -> Option<Self> {
        explicit_hint(headers, now).or_else(|| {
            if rate_limited {
                reset_hint(headers, now)
            } else {
                None
            }
        })
    }
}

/// The hint from the explicit retry headers, most precise first.
pub(crate) fn explicit_hint(headers: &HeaderMap, now: SystemTime) -> Option<WaitHint> {
    {
        let explicit = [
            ("retry-after-ms", HintSource::RetryAfterMs),
            ("x-ms-retry-after-ms", HintSource::RetryAfterMs),
        ];
        for (name, source) in explicit {
            if let Some(delay) = header_str(headers, name).and_then(parse_millis) {
                return Some(WaitHint::new(delay, source));
            }
        }
        let delay = parse_retry_after(header_str(headers, "retry-after")?, now)?;
        Some(WaitHint::new(delay, HintSource::RetryAfter))
    }
}

/// Where a [`WaitHint`] was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HintSource {
    /// `retry-after`, as seconds or an HTTP-date.
    RetryAfter,
    /// `retry-after-ms` or `x-ms-retry-after-ms` (Azure OpenAI).
    RetryAfterMs,
    /// OpenAI-style `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens`.
    RateLimitReset,
    /// Anthropic `anthropic-ratelimit-*-reset` (RFC 3339 instants).
    AnthropicReset,
    /// Gemini's `RetryInfo.retryDelay` in the error body.
    RetryInfo,
    /// "try again in 20s" in the error message.
    Message,
    /// A local circuit breaker: when its next probe will be let through.
    CircuitBreaker,
    /// A local spend cap: when its budget window turns.
    BudgetWindow,
    /// A local rate limiter: when its queue is likely to have a turn.
    Throttle,
    /// Another local layer's refusal ([`ClassifiedError::refused`](crate::ClassifiedError::refused)).
    Local,
}

impl HintSource {
    /// Whether the provider said it (a header or its body), rather than a Ballast layer
    /// from its own clock. Under a simulation's time scale the two differ in unit: the
    /// provider's hints are in provider time, a time-scaled local layer's in real time.
    ///
    /// ```
    /// use ballast_classify::HintSource;
    ///
    /// assert!(HintSource::RetryAfter.is_provider());
    /// assert!(!HintSource::CircuitBreaker.is_provider());
    /// ```
    pub const fn is_provider(self) -> bool {
        match self {
            Self::RetryAfter
            | Self::RetryAfterMs
            | Self::RateLimitReset
            | Self::AnthropicReset
            | Self::RetryInfo
            | Self::Message => true,
            Self::CircuitBreaker | Self::BudgetWindow | Self::Throttle | Self::Local => false,
        }
    }

    /// A stable `snake_case` name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RetryAfter => "retry_after",
            Self::RetryAfterMs => "retry_after_ms",
            Self::RateLimitReset => "ratelimit_reset",
            Self::AnthropicReset => "anthropic_reset",
            Self::RetryInfo => "retry_info",
            Self::Message => "message",
            Self::CircuitBreaker => "circuit_breaker",
            Self::Local => "local",
            Self::BudgetWindow => "budget_window",
            Self::Throttle => "throttle",
        }
    }
}

/// How far to trust the provider's wait hint ([`WaitHint`]): one policy for every layer that
/// reads hints (the retry's wait, the breaker's open time).
///
/// Providers get hints wrong: xAI's "try again in X seconds" was the bug that started this
/// project. The default treats a hint as untrusted and clamps it: `Clamp { slack: 5 s }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintTrust {
    /// Use the computed backoff; ignore hints.
    Ignore,
    /// Wait exactly what the hint says (still never past the maximum delay).
    Honour,
    /// Wait at least the hint, longer if the backoff says so.
    Floor,
    /// Wait the hint clamped to `[backoff, backoff + slack]`, as AWS's SDKs do with 5 s.
    Clamp {
        /// How far past the computed backoff a hint may stretch the wait.
        slack: Duration,
    },
}

impl HintTrust {
    /// The wait for a jittered `backoff` and an optional `hint`, and whether the hint made it
    /// longer than the backoff.
    pub fn apply(self, backoff: Duration, hint: Option<Duration>) -> (Duration, bool) {
        let Some(hint) = hint else {
            return (backoff, false);
        };
        let wait = match self {
            Self::Ignore => backoff,
            Self::Honour => hint,
            Self::Floor => backoff.max(hint),
            Self::Clamp { slack } => hint.clamp(backoff, backoff.saturating_add(slack)),
        };
        (wait, wait > backoff)
    }
}

impl Default for HintTrust {
    fn default() -> Self {
        Self::Clamp {
            slack: Duration::from_secs(5),
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// The hint from rate-limit reset headers: an exhausted limit's reset, else the longest.
pub(crate) fn reset_hint(headers: &HeaderMap, now: SystemTime) -> Option<WaitHint> {
    // (remaining header, reset header, parser, source)
    type Parse = fn(&str, SystemTime) -> Option<Duration>;
    const PAIRS: [(&str, &str, Parse, HintSource); 7] = [
        (
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            parse_reset,
            HintSource::RateLimitReset,
        ),
        (
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            |v, _| parse_go_duration(v),
            HintSource::RateLimitReset,
        ),
        (
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
            |v, _| parse_go_duration(v),
            HintSource::RateLimitReset,
        ),
        (
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
            parse_rfc3339_delay,
            HintSource::AnthropicReset,
        ),
        (
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
            parse_rfc3339_delay,
            HintSource::AnthropicReset,
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-input-tokens-reset",
            parse_rfc3339_delay,
            HintSource::AnthropicReset,
        ),
        (
            "anthropic-ratelimit-output-tokens-remaining",
            "anthropic-ratelimit-output-tokens-reset",
            parse_rfc3339_delay,
            HintSource::AnthropicReset,
        ),
    ];
    let mut exhausted: Option<WaitHint> = None;
    let mut longest: Option<WaitHint> = None;
    for (remaining, reset, parse, source) in PAIRS {
        let Some(delay) = header_str(headers, reset).and_then(|v| parse(v, now)) else {
            continue;
        };
        let hint = WaitHint::new(delay, source);
        let is_exhausted =
            header_str(headers, remaining).and_then(|v| v.trim().parse::<u64>().ok()) == Some(0);
        let slot = if is_exhausted {
            &mut exhausted
        } else {
            &mut longest
        };
        if slot.is_none_or(|h| h.delay < hint.delay) {
            *slot = Some(hint);
        }
    }
    exhausted.or(longest)
}

/// Parses a bare `x-ratelimit-reset` (OpenRouter, Groq's and GitHub's style): seconds to
/// wait, a Go duration (`"20s"`), or an instant since the Unix epoch, in seconds (from 1e9,
/// September 2001) or milliseconds (from 1e12). A past instant gives zero.
pub fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let Some(number) = parse_non_negative(value) else {
        return parse_go_duration(value);
    };
    let epoch_secs = if number >= 1e12 {
        number / 1000.0
    } else if number >= 1e9 {
        number
    } else {
        return Some(secs_f64_clamped(number));
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    Some(secs_f64_clamped((epoch_secs - now).max(0.0)))
}

/// Parses a `retry-after` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
///
/// Fractional seconds (`"1.5"`) are accepted because some gateways send them. A date in the
/// past gives zero. Negative, empty or garbage values give `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(delay) = parse_seconds(value) {
        return Some(delay);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_WAIT_HINT),
    )
}

/// Parses a millisecond count (`retry-after-ms: 1500`, `"250.5"`).
pub fn parse_millis(value: &str) -> Option<Duration> {
    let ms = parse_non_negative(value.trim())?;
    Some(secs_f64_clamped(ms / 1000.0))
}

/// Parses a plain count of seconds (`"30"`, `"1.5"`).
fn parse_seconds(value: &str) -> Option<Duration> {
    parse_non_negative(value).map(secs_f64_clamped)
}

fn parse_non_negative(value: &str) -> Option<f64> {
    // Rust's float parser accepts "inf", "NaN" and exponents; a hint is digits and one dot.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    value.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn secs_f64_clamped(secs: f64) -> Duration {
    if secs >= MAX_WAIT_HINT.as_secs_f64() {
        MAX_WAIT_HINT
    } else {
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// Parses a Go-style duration as OpenAI's reset headers and Gemini's `retryDelay` use:
/// `"1m30s"`, `"6m0s"`, `"250ms"`, `"1.5s"`, `"2h"`, `"20us"`.
///
/// Units: `h`, `m`, `s`, `ms`, `us` / `µs`, `ns`. A bare number is read as seconds.
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Some(delay) = parse_seconds(value) {
        return Some(delay);
    }
    let mut rest = value;
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number = parse_non_negative(&rest[..number_len])?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    total.is_finite().then(|| secs_f64_clamped(total))
}

/// Parses an RFC 3339 instant (`"2026-11-25T12:00:30Z"`) as a delay from `now`.
///
/// A past instant gives zero.
pub fn parse_rfc3339_delay(value: &str, now: SystemTime) -> Option<Duration> {
    let at =
        time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc3339)
            .ok()?;
    let now = time::OffsetDateTime::from(now);
    let delta = at - now;
    if delta.is_negative() {
        return Some(Duration::ZERO);
    }
    Some(
        Duration::try_from(delta)
            .unwrap_or(MAX_WAIT_HINT)
            .min(MAX_WAIT_HINT),
    )
}

/// Finds a wait in an error message: "Please try again in 20s.", "try again in 1.5 seconds",
/// "retry after 30 seconds", "Please retry in 34.5s", "try again in 6ms".
///
/// Matching is case-insensitive and looks only at the number and unit right after the phrase.
pub fn parse_message(message: &str) -> Option<Duration> {
    const PHRASES: [&str; 4] = ["try again in ", "retry after ", "retry in ", "wait "];
    let lower = message.to_ascii_lowercase();
    PHRASES.iter().find_map(|phrase| {
        let start = lower.find(phrase)? + phrase.len();
        parse_spelled_duration(&lower[start..])
    })
}

/// A wait spelled out after a phrase: one or more number-and-unit parts, run together
/// (`1m30s`, Go style) or apart (`1 minute 30 seconds`, `2m and 5s`), summed; a bare number
/// is seconds. Reading stops at the first part that is not one (`20s. Visit ...`).
fn parse_spelled_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0.0_f64;
    let mut parts = 0;
    while let Some((secs, after)) = number_and_unit(rest) {
        total += secs;
        parts += 1;
        let next = after.trim_start();
        let next = next.strip_prefix("and ").unwrap_or(next).trim_start();
        if !next.starts_with(|c: char| c.is_ascii_digit()) {
            break;
        }
        rest = next;
    }
    (parts > 0 && total.is_finite()).then(|| secs_f64_clamped(total))
}

/// One number and its unit at the start of `text`, in seconds, and what follows.
fn number_and_unit(text: &str) -> Option<(f64, &str)> {
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number = parse_non_negative(text[..number_len].trim_end_matches('.'))?;
    let unit = text[number_len..].trim_start();
    let unit_len = unit
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(unit.len());
    let scale = match &unit[..unit_len] {
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "s" | "sec" | "secs" | "second" | "seconds" | "" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        _ => return None,
    };
    Some((number * scale, &unit[unit_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_764_072_000; // 2025-11-25T12:00:00Z

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = at(NOW);
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        let future = httpdate::fmt_http_date(at(NOW + 90));
        assert_eq!(
            parse_retry_after(&future, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(at(NOW - 90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn bad_values_give_no_hint() {
        let now = at(NOW);
        for bad in [
            "",
            "-5",
            "abc",
            "NaN",
            "inf",
            "1e3",
            "1..2",
            "Wed, 99 Foo 2025",
            "+3",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
            assert_eq!(parse_millis(bad), None, "{bad:?}");
        }
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration("m"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_rfc3339_delay("yesterday", now), None);
    }

    #[test]
    fn absurd_values_clamp() {
        let now = at(NOW);
        // The 114 hours from the bad day.
        assert_eq!(parse_retry_after("410400", now), Some(MAX_WAIT_HINT));
        assert_eq!(
            parse_retry_after("99999999999999999999999999999", now),
            Some(MAX_WAIT_HINT)
        );
        assert_eq!(parse_millis("1e400"), None);
        assert_eq!(parse_go_duration("114h"), Some(MAX_WAIT_HINT));
        assert_eq!(
            parse_rfc3339_delay("9999-12-31T23:59:59Z", now),
            Some(MAX_WAIT_HINT)
        );
        assert_eq!(
            WaitHint::new(Duration::MAX, HintSource::Message).delay(),
            MAX_WAIT_HINT
        );
    }

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("1m30s"), Some(ms(90_000)));
        assert_eq!(parse_go_duration("6m0s"), Some(ms(360_000)));
        assert_eq!(parse_go_duration("250ms"), Some(ms(250)));
        assert_eq!(parse_go_duration("1.5s"), Some(ms(1500)));
        assert_eq!(parse_go_duration("2h"), Some(ms(7_200_000)));
        assert_eq!(parse_go_duration("34s"), Some(ms(34_000)));
        assert_eq!(parse_go_duration("0.034s"), Some(ms(34)));
        assert_eq!(parse_go_duration("12"), Some(ms(12_000)));
        assert_eq!(parse_go_duration("20us"), Some(Duration::from_micros(20)));
    }

    #[test]
    fn rfc3339_instants() {
        let now = at(NOW);
        assert_eq!(
            parse_rfc3339_delay("2025-11-25T12:00:30Z", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_rfc3339_delay("2025-11-25T13:00:30+01:00", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_rfc3339_delay("2025-11-25T11:00:00Z", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn message_hints() {
        let ms = Duration::from_millis;
        let cases = [
            (
                "Rate limit reached. Please try again in 20s.",
                Some(ms(20_000)),
            ),
            ("Please try again in 1.5 seconds", Some(ms(1500))),
            ("try again in 6ms. Visit ...", Some(ms(6))),
            (
                "Please retry in 34.123456s.",
                Some(Duration::from_secs_f64(34.123456)),
            ),
            ("Retry after 2 minutes", Some(ms(120_000))),
            ("Try again in 3.", Some(ms(3000))),
            ("try again in a moment", None),
            ("try again in -4 seconds", None),
            ("no hint here", None),
            ("try again in 410400 seconds", Some(MAX_WAIT_HINT)),
            // Parts run together (Go style) or apart, summed: once read as their first.
            ("Please try again in 1m30s.", Some(ms(90_000))),
            ("Please try again in 1m30.5s. Visit", Some(ms(90_500))),
            ("try again in 1 minute 30 seconds", Some(ms(90_000))),
            ("retry after 2m and 5s", Some(ms(125_000))),
            ("try again in 1h2m3s", Some(ms(3_723_000))),
            ("try again in 20s. 5 requests left", Some(ms(20_000))),
        ];
        for (message, want) in cases {
            assert_eq!(parse_message(message), want, "{message:?}");
        }
    }

    #[test]
    fn header_priority() {
        let now = at(NOW);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        headers.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1m"));
        let hint = WaitHint::from_headers(&headers, true, now).unwrap();
        assert_eq!(hint.delay(), Duration::from_secs(7));
        assert_eq!(hint.source(), HintSource::RetryAfter);

        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        let hint = WaitHint::from_headers(&headers, true, now).unwrap();
        assert_eq!(hint.delay(), Duration::from_millis(1500));
        assert_eq!(hint.source(), HintSource::RetryAfterMs);
    }

    #[test]
    fn reset_headers_only_when_rate_limited_and_exhausted_wins() {
        let now = at(NOW);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        headers.insert("x-ratelimit-reset-requests", HeaderValue::from_static("2s"));
        headers.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("9000"),
        );
        headers.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("1m"));
        assert_eq!(WaitHint::from_headers(&headers, false, now), None);
        let hint = WaitHint::from_headers(&headers, true, now).unwrap();
        assert_eq!(hint.delay(), Duration::from_secs(2));
        assert_eq!(hint.source(), HintSource::RateLimitReset);

        let mut headers = HeaderMap::new();
        headers.insert(
            "anthropic-ratelimit-tokens-reset",
            HeaderValue::from_static("2025-11-25T12:00:45Z"),
        );
        headers.insert(
            "anthropic-ratelimit-requests-reset",
            HeaderValue::from_static("2025-11-25T12:00:05Z"),
        );
        let hint = WaitHint::from_headers(&headers, true, now).unwrap();
        assert_eq!(
            hint.delay(),
            Duration::from_secs(45),
            "longest when none exhausted"
        );
        assert_eq!(hint.source(), HintSource::AnthropicReset);

        // A bare `x-ratelimit-reset`: an epoch instant in seconds or milliseconds, or a delay.
        for (value, want) in [
            (format!("{}", NOW + 30), 30_000),
            (format!("{}", (NOW + 12) * 1000 + 500), 12_500),
            (format!("{}", NOW - 5), 0),
            ("7".to_owned(), 7_000),
            ("1m5s".to_owned(), 65_000),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-reset", HeaderValue::from_str(&value).unwrap());
            let hint = WaitHint::from_headers(&headers, true, now).unwrap();
            assert_eq!(hint.delay(), Duration::from_millis(want), "{value}");
            assert_eq!(hint.source(), HintSource::RateLimitReset);
        }
    }

    #[test]
    fn non_utf8_header_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(WaitHint::from_headers(&headers, true, at(NOW)), None);
    }
}
