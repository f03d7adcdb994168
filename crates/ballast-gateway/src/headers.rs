//! Which upstream headers reach a caller.

/// The upstream headers a caller gets: the content type, request ids and the rate-limit
/// and retry hints; nothing else (no `server`, `www-authenticate`, cookies, or a header a
/// provider may echo a key in).
pub(crate) fn is_allowed_header(name: &http::HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "content-type"
            | "content-length"
            | "x-request-id"
            | "request-id"
            | "retry-after"
            | "retry-after-ms"
            | "openai-processing-ms"
            | "openai-version"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("anthropic-ratelimit-")
}

/// Removes every header [`is_allowed_header`] does not allow.
pub(crate) fn keep_allowed_headers(headers: &mut http::HeaderMap) {
    let dropped: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| !is_allowed_header(name))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}
