//! [`Target`]: one place a call can be served, and how a call is addressed to it.

use std::sync::Arc;

use ballast_classify::{
    BoxError, ClassifiedBody, Dialect, FailFast, RequestBody, RequestFacts, copy_request, rewrite,
};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use crate::translate::{self, Api, Plan, Untranslatable};

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
///
/// A target speaks OpenAI's API unless told otherwise ([`speaks`](Self::speaks)): a target
/// speaking Anthropic's or Gemini's gets chat requests translated, and answers back.
pub struct Target<R> {
    pub(crate) name: Arc<str>,
    base: http::Uri,
    pub(crate) model: Option<Arc<str>>,
    /// The model a translated request asks for when the target names none.
    translation_model: Option<Arc<str>>,
    pub(crate) service: TargetService<R>,
    api: Api,
    /// Turns a translated answer back into the caller's dialect (set with the API).
    back: Option<AnswerBack<R>>,
}

type AnswerBack<R> = fn(Api, Dialect, http::Response<R>, &str, bool) -> http::Response<R>;

impl<R> Clone for Target<R> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            base: self.base.clone(),
            model: self.model.clone(),
            translation_model: self.translation_model.clone(),
            service: self.service.clone(),
            api: self.api,
            back: self.back,
        }
    }
}

impl<R> std::fmt::Debug for Target<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("model", &self.model)
            .field("translation_model", &self.translation_model)
            .field("api", &self.api)
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
            translation_model: None,
            service: BoxCloneSyncService::new(service.map_err(Into::into)),
            api: Api::OpenAi,
            back: None,
        }
    }

    /// Asks this target for `model` instead of the caller's (body and facts rewritten).
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Asks this target for `model` when a request is translated for it and it names no model
    /// of its own ([`model`](Self::model)): the caller's model means nothing to another API,
    /// and a translation needs one (its API's default, say). A request in the target's own
    /// dialect keeps the caller's model: a Gemini SDK asking Gemini for `gemini-2.5-pro` gets
    /// `gemini-2.5-pro`.
    pub fn translation_model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.translation_model = Some(model.into());
        self
    }

    /// The model a request translated for this target asks for: its own, else its
    /// translation model.
    fn model_when_translated(&self) -> Option<&Arc<str>> {
        self.model.as_ref().or(self.translation_model.as_ref())
    }

    /// The model `request` asks this target for when the route changes it: its own, or for
    /// a translated request its translation model.
    pub(crate) fn asked_model(&self, request: &http::Request<RequestBody>) -> Option<Arc<str>> {
        let dialect = RequestFacts::of(request).dialect();
        if dialect == Dialect::Other {
            // Sent as it was asked.
            None
        } else if self.api.takes(dialect) {
            self.model.clone()
        } else {
            self.model_when_translated().cloned()
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API it speaks.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Whether it may take `request`: its dialect, or one it translates (chat for an
    /// Anthropic or Gemini target; Messages for an OpenAI-compatible one that names its
    /// model, as a Claude model's name means nothing to it; a translation can still
    /// refuse what the subset lacks, e.g. images). Embeddings only when it asks for the
    /// caller's model: another model's vectors are useless beside the caller's.
    pub(crate) fn may_take(&self, request: &http::Request<RequestBody>) -> bool {
        let facts = RequestFacts::of(request);
        let dialect = facts.dialect();
        if Dialect::asks_for_embeddings(request.uri().path()) {
            // OpenAI's embeddings, or Gemini's (in its own dialect): never translated, and
            // never from another model.
            let renames = self
                .model
                .as_deref()
                .is_some_and(|model| facts.model() != Some(model));
            return self.api.takes(dialect) && !renames;
        }
        // A translation needs its way back.
        self.api.takes(dialect)
            || (self.back.is_some()
                && self
                    .api
                    .may_serve(dialect, self.model_when_translated().is_some()))
    }

    /// `request` addressed to this target: its base URL (the path after the caller's
    /// version segment kept, or the translated API's path), its model, no credentials, and
    /// [`FailFast`] unless it is the last target (an open breaker then sends the call on
    /// rather than holding it). `Err` when this target cannot take the request (a dialect it
    /// does not speak, and no translation for it).
    pub(crate) fn address(
        &self,
        request: &http::Request<RequestBody>,
        last: bool,
    ) -> Result<http::Request<RequestBody>, Untranslatable> {
        let facts = RequestFacts::of(request);
        if !self.may_take(request) {
            // A translation with no way back (a target built without `speaks`) would
            // answer the caller in another API.
            return Err(Untranslatable(format!(
                "a {} request is not translated for this target",
                facts.dialect().as_str()
            )));
        }
        let plan = translate::plan(
            self.api,
            facts.dialect(),
            facts.is_stream(),
            request.body().bytes(),
            self.model_when_translated().map(|model| &**model),
            facts.model(),
        )?;
        let mut copy = copy_request(request);
        for name in &CREDENTIALS {
            copy.headers_mut().remove(name);
        }
        if last {
            copy.extensions_mut().remove::<FailFast>();
        } else {
            copy.extensions_mut().insert(FailFast);
        }
        match plan {
            Plan::AsItIs => {
                *copy.uri_mut() = self.uri_for(request.uri(), facts.dialect());
                if let Some(model) = &self.model {
                    rewrite::model(&mut copy, model);
                }
            }
            Plan::Translated { path, query, body } => {
                let uri = self.under_base(&path, query);
                rewrite::replace(&mut copy, uri, body);
                if self.api == Api::Anthropic {
                    copy.headers_mut().insert(
                        http::HeaderName::from_static("anthropic-version"),
                        http::HeaderValue::from_static(ANTHROPIC_VERSION),
                    );
                } else {
                    // A Messages call translated away from Anthropic: its headers mean
                    // nothing there.
                    copy.headers_mut().remove("anthropic-version");
                    copy.headers_mut().remove("anthropic-beta");
                }
            }
        }
        Ok(copy)
    }

    /// The target's answer in the caller's dialect: translated back when the request was.
    pub(crate) fn answer(
        &self,
        request: &http::Request<RequestBody>,
        response: http::Response<R>,
    ) -> http::Response<R> {
        let facts = RequestFacts::of(request);
        match self.back {
            Some(back) if !self.api.takes(facts.dialect()) => {
                let model = (self.model_when_translated().map(|model| &**model))
                    .or(facts.model())
                    .unwrap_or_default();
                let asked_usage = translate::asked_usage(request.body().bytes());
                back(self.api, facts.dialect(), response, model, asked_usage)
            }
            _ => response,
        }
    }

    /// The base URL with the caller's path after its first segment (`/v1/chat/completions`
    /// → `{base}/chat/completions`) and its query; a Gemini path names this target's model
    /// when it has one.
    fn uri_for(&self, uri: &http::Uri, dialect: Dialect) -> http::Uri {
        let path = uri.path();
        let rest = match path.strip_prefix('/').and_then(|p| p.find('/')) {
            Some(slash) => &path[slash + 1..],
            None => "",
        };
        match (&self.model, dialect) {
            (Some(model), Dialect::Gemini) => {
                self.under_base(&gemini_model_path(rest, model), uri.query())
            }
            _ => self.under_base(rest, uri.query()),
        }
    }

    /// `path` (starting with `/`) under the base URL, with `query`.
    fn under_base(&self, path: &str, query: Option<&str>) -> http::Uri {
        let base = self.base.path().trim_end_matches('/');
        let path_and_query = match query {
            Some(query) => format!("{base}{path}?{query}"),
            None => format!("{base}{path}"),
        };
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        http::Uri::from_parts(parts).unwrap_or_else(|_| self.base.clone())
    }
}

impl<B> Target<ClassifiedBody<B>> {
    /// This target speaks `api`: a chat request is translated for Anthropic's Messages or
    /// Gemini's `generateContent` (the common subset: see [`Api`]), and its answer or error
    /// comes back as a chat completion or an OpenAI error; a Messages request is translated
    /// for an OpenAI-compatible target, its answer back as Anthropic's; a request in the
    /// target's own dialect goes as it is; any other is passed over to the next target.
    pub fn speaks(mut self, api: Api) -> Self {
        self.api = api;
        self.back = Some(translate::answer_back::<B>);
        self
    }
}

/// The `anthropic-version` a translated request is sent with.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A Gemini path (`/models/{model}:{method}`) naming `model` instead.
fn gemini_model_path(path: &str, model: &str) -> String {
    match (path.find("/models/"), path.rfind(':')) {
        (Some(start), Some(colon)) if colon > start => {
            format!("{}/models/{model}{}", &path[..start], &path[colon..])
        }
        _ => path.to_owned(),
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
            openai.uri_for(&uri("https://api.x.ai/v1/chat/completions"), Dialect::Chat),
            uri("https://api.openai.com/v1/chat/completions")
        );
        assert_eq!(
            openai.uri_for(&uri("/v1/chat/completions?x=1"), Dialect::Chat),
            uri("https://api.openai.com/v1/chat/completions?x=1")
        );
        let slash = target("http://127.0.0.1:9/v1/");
        assert_eq!(
            slash.uri_for(&uri("/v1/models"), Dialect::Chat),
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
        let first = t.address(&request, false).unwrap();
        assert!(first.headers().get("authorization").is_none());
        assert!(first.headers().get("x-api-key").is_none());
        assert_eq!(first.headers()["x-request-id"], "r1");
        assert!(FailFast::is_set(&first));
        assert!(!FailFast::is_set(&t.address(&request, true).unwrap()));
    }
}
