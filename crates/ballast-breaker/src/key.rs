//! Breaker keys: which requests share a breaker.

use std::fmt;
use std::sync::Arc;

use ballast_classify::model_of;

/// The name of one breaker: `host` and `model`, shown as `host/model`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BreakerKey {
    host: Arc<str>,
    model: Arc<str>,
}

impl BreakerKey {
    /// A key.
    pub fn new(host: &str, model: &str) -> Self {
        Self {
            host: Arc::from(host),
            model: Arc::from(model),
        }
    }

    /// The host part.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The model part (empty when the key is per host).
    pub fn model(&self) -> &str {
        &self.model
    }

    pub(crate) fn matches(&self, parts: &KeyParts<'_>) -> bool {
        *self.host == *parts.host && *self.model == *parts.model
    }
}

impl fmt::Display for BreakerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.model.is_empty() {
            f.write_str(&self.host)
        } else {
            write!(f, "{}/{}", self.host, self.model)
        }
    }
}

impl fmt::Debug for BreakerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BreakerKey({self})")
    }
}

/// A key borrowed from a request, so the common case (a known key) allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyParts<'a> {
    /// The host.
    pub host: &'a str,
    /// The model, or `""`.
    pub model: &'a str,
}

/// Chooses the breaker for a request.
pub trait KeyFn<B> {
    /// The key parts of `request`.
    fn key<'a>(&self, request: &'a http::Request<B>) -> KeyParts<'a>;
}

/// One breaker per host and model (the default): a model that is down or overloaded at a
/// provider does not stop the provider's other models.
///
/// The host comes from the URI (or the `host` header); the model from the request's
/// [`RequestFacts`](ballast_classify::RequestFacts) (read once, by
/// [`ReadRequestLayer`](ballast_classify::ReadRequestLayer)).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostAndModel;

impl<B> KeyFn<B> for HostAndModel {
    fn key<'a>(&self, request: &'a http::Request<B>) -> KeyParts<'a> {
        KeyParts {
            host: host_of(request),
            model: model_of(request).unwrap_or(""),
        }
    }
}

/// One breaker per host.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostOnly;

impl<B> KeyFn<B> for HostOnly {
    fn key<'a>(&self, request: &'a http::Request<B>) -> KeyParts<'a> {
        KeyParts {
            host: host_of(request),
            model: "",
        }
    }
}

fn host_of<B>(request: &http::Request<B>) -> &str {
    request
        .uri()
        .host()
        .or_else(|| request.headers().get(http::header::HOST)?.to_str().ok())
        .unwrap_or("")
}
