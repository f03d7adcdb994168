//! The caller's own timeout, read from its headers: the deadline its call is served by.
//!
//! A caller that gives up after 30 s gains nothing from a call served at 40 s, and loses
//! the honest answer it could have had at 29 (a refusal with its `Retry-After`, or a
//! fallback's answer). The gateway reads the timeout a caller sends and gives the stack the
//! sooner deadline, so no breaker's patience, throttle line, retry, hedge or fallback waits
//! past the moment the caller stops listening.

use std::time::Duration;

/// The headers a caller's timeout is read from, in seconds: Ballast's own, and the ones the
/// Stainless-generated SDKs send (OpenAI's and Anthropic's: `x-stainless-timeout`, the whole
/// call; `x-stainless-read-timeout`, the longest silence, which for an answer held until its
/// first content is the time to that content).
const TIMEOUT_HEADERS: [&str; 3] = [
    "x-ballast-timeout",
    "x-stainless-timeout",
    "x-stainless-read-timeout",
];

/// The longest timeout read: a day (a longer one is no deadline the stack's own would not
/// beat).
const LONGEST: f64 = 86_400.0;

/// The share of the caller's timeout the stack may use: the rest is the answer's way back.
const SHARE: f64 = 0.95;

/// How long the stack has to answer the caller of these headers: the shortest timeout they
/// give, in seconds (`x-ballast-timeout: 30`, `x-stainless-read-timeout: 600.0`), less the
/// answer's way back (5%). A value that is not a positive number of seconds (the SDK's
/// `NOT_GIVEN`, say) is ignored, as is a header sent twice; `None` when no header gives one.
pub(crate) fn callers_time(headers: &http::HeaderMap) -> Option<Duration> {
    TIMEOUT_HEADERS
        .iter()
        .filter_map(|name| {
            let mut values = headers.get_all(*name).iter();
            let value = values.next()?;
            if values.next().is_some() {
                return None;
            }
            let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
            (seconds.is_finite() && seconds > 0.0).then_some(seconds.min(LONGEST))
        })
        .min_by(f64::total_cmp)
        .map(|seconds| Duration::from_secs_f64(seconds * SHARE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_shortest_timeout_a_caller_sends_less_the_way_back() {
        assert_eq!(callers_time(&headers(&[])), None);
        assert_eq!(
            callers_time(&headers(&[("x-ballast-timeout", "20")])),
            Some(Duration::from_secs(19))
        );
        assert_eq!(
            callers_time(&headers(&[
                ("x-stainless-read-timeout", "600.0"),
                ("x-stainless-timeout", "40"),
            ])),
            Some(Duration::from_secs(38))
        );
        assert_eq!(
            callers_time(&headers(&[("x-stainless-read-timeout", "1e9")])),
            Some(Duration::from_secs_f64(LONGEST * SHARE))
        );
    }

    #[test]
    fn what_is_not_a_positive_number_of_seconds_is_ignored() {
        for bad in ["NOT_GIVEN", "", "-5", "0", "NaN", "inf", "30s", "0x10"] {
            assert_eq!(
                callers_time(&headers(&[("x-ballast-timeout", bad)])),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(
            callers_time(&headers(&[
                ("x-ballast-timeout", "NOT_GIVEN"),
                ("x-stainless-timeout", "10"),
            ])),
            Some(Duration::from_millis(9500))
        );
        let twice = headers(&[("x-ballast-timeout", "5"), ("x-ballast-timeout", "50")]);
        assert_eq!(callers_time(&twice), None);
        let mut odd = http::HeaderMap::new();
        odd.insert(
            "x-ballast-timeout",
            http::HeaderValue::from_bytes(b"\xff1").unwrap(),
        );
        assert_eq!(callers_time(&odd), None);
    }
}
