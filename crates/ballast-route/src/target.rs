//! [`Target`]: one place a call can be served, and how a call is addressed to it.

use std::sync::Arc;

use ballast_classify::{BoxError, FailFast, RequestBody, copy_request, rewrite};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

/// A target's stack, boxed: one service type whatever each target's stack is.
pub(crate) type TargetService<R> =
    BoxCloneSyncService<http::Request<RequestBody>, http::Response<R>, BoxError>;

/// Headers that carry a caller's or another target's credentials: never forwarded to a
/// target, whose own stack sets its key.
const CREDENTIALS: [http::HeaderName; 4] = [
    http::header::AUTHORIZATION,
    http::HeaderName::from_static("x-api-key"),
    http::HeaderName::from_static("api-key"),
    http::HeaderName::from_static("x-goog-api-key"),
];

/// One target of a route: a name, the base URL its API lives under (with its version
/// segment, e.g. `https://api.openai.com/v1`), the model to ask it for (`None`: the
/// caller's), and the service that reaches it: its own whole stack (breaker, throttle,
/// budget, key, prices), as `ballast::StackBuilder` builds it.
///
/// `R` is the response body, the same for every target of a route.
pub struct Target<R> {
    pub(crate) name: Arc<str>,
    base: http::Uri,
    pub(crate) model: Option<Arc<str>>,
    pub(crate) service: TargetService<R>,
}

impl<R> Clone for Target<R> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            base: self.base.clone(),
            model: self.model.clone(),
            service: self.service.clone(),
        }
    }
}

impl<R> std::fmt::Debug for Target<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl<R> Target<R> {
    /// A target named `name` reached through `service` at `base`.
    pub fn new<S>(name: impl Into<Arc<str>>, base: http::Uri, service: S) -> Self
    where
        S: Service<http::Request<RequestBody>, Response = http::Response<R>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Self {
            name: name.into(),
            base,
            model: None,
            service: BoxCloneSyncService::new(service.map_err(Into::into)),
        }
    }

    /// Asks this target for `model` instead of the caller's (body and facts rewritten).
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `request` addressed to this target: its base URL (the path after the caller's
    /// version segment kept), its model, no credentials, and [`FailFast`] unless it is the
    /// last target (an open breaker then sends the call on rather than holding it).
    pub(crate) fn address(
        &self,
        request: &http::Request<RequestBody>,
        last: bool,
    ) -> http::Request<RequestBody> {
        let mut copy = copy_request(request);
        *copy.uri_mut() = self.uri_for(request.uri());
        for name in &CREDENTIALS {
            copy.headers_mut().remove(name);
        }
        if last {
            copy.extensions_mut().remove::<FailFast>();
        } else {
            copy.extensions_mut().insert(FailFast);
        }
        if let Some(model) = &self.model {
            rewrite::model(&mut copy, model);
        }
        copy
    }

    /// The base URL with the caller's path after its first segment (`/v1/chat/completions`
    /// → `{base}/chat/completions`) and its query.
    fn uri_for(&self, uri: &http::Uri) -> http::Uri {
        let path = uri.path();
        let rest = match path.strip_prefix('/').and_then(|p| p.find('/')) {
            Some(slash) => &path[slash + 1..],
            None => "",
        };
        let base = self.base.path().trim_end_matches('/');
        let path_and_query = match uri.query() {
            Some(query) => format!("{base}{rest}?{query}"),
            None => format!("{base}{rest}"),
        };
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        http::Uri::from_parts(parts).unwrap_or_else(|_| self.base.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(base: &'static str) -> Target<()> {
        let service = tower::service_fn(|_: http::Request<RequestBody>| async {
            Ok::<_, BoxError>(http::Response::new(()))
        });
        Target::new("t", http::Uri::from_static(base), service)
    }

    #[test]
    fn the_path_after_the_version_goes_under_the_base() {
        let uri = |s: &'static str| http::Uri::from_static(s);
        let openai = target("https://api.openai.com/v1");
        assert_eq!(
            openai.uri_for(&uri("https://api.x.ai/v1/chat/completions")),
            uri("https://api.openai.com/v1/chat/completions")
        );
        assert_eq!(
            openai.uri_for(&uri("/v1/chat/completions?x=1")),
            uri("https://api.openai.com/v1/chat/completions?x=1")
        );
        let slash = target("http://127.0.0.1:9/v1/");
        assert_eq!(
            slash.uri_for(&uri("/v1/models")),
            uri("http://127.0.0.1:9/v1/models")
        );
    }

    #[test]
    fn credentials_stay_behind_and_fail_fast_is_set_but_on_the_last() {
        let mut request = http::Request::post("http://a.invalid/v1/chat/completions")
            .header("authorization", "Bearer xai-secret")
            .header("x-api-key", "sk-ant-secret")
            .header("x-request-id", "r1")
            .body(RequestBody::new(r#"{"model":"a"}"#))
            .unwrap();
        request.extensions_mut().insert(FailFast);
        let t = target("https://b.invalid/v1");
        let first = t.address(&request, false);
        assert!(first.headers().get("authorization").is_none());
        assert!(first.headers().get("x-api-key").is_none());
        assert_eq!(first.headers()["x-request-id"], "r1");
        assert!(FailFast::is_set(&first));
        assert!(!FailFast::is_set(&t.address(&request, true)));
    }
}
