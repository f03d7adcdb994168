//! Token counts: `POST /v1/messages/count_tokens`, Anthropic's, which Claude Code asks for
//! every turn (and dozens of times at start) to manage its context window; and Gemini's
//! `models/{model}:countTokens`, which Google's Gen AI SDKs ask for.
//!
//! Sent as it is to the first target of the provider's chain that speaks the count's API,
//! with the gateway's key (and for Anthropic the caller's `anthropic-version` and
//! `anthropic-beta`), and its answer handed back. Not through the stack: a count is free
//! (nothing to budget or price), has a rate limit of its own (the throttle paces the
//! generation calls, which counts must not slow), and is not worth a retry (a client that
//! gets no count estimates one itself). An upstream error comes back in the API's shape
//! with its message masked; no answer within [`TIMEOUT`] is a 504. A gateway with no such
//! target answers 404, on which Claude Code counts with its own estimate (a made-up count
//! would be trusted, and a zero would keep it from ever compacting its context).

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use ballast::classify::{BoxError, Dialect, ProviderError, RequestBody};
use ballast::{Config, HttpsClient, Preset, error_answer};
use bytes::Bytes;

/// How long a count may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// Where counts go: the first target of one API, its base URL and key.
pub(crate) struct Counter {
    client: HttpsClient,
    /// Anthropic or Gemini.
    preset: Preset,
    /// The base URL, without its trailing slash.
    base: String,
    key: Option<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Counter")
            .field("preset", &self.preset)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Counter {
    /// The counter of the first target of `preset` (Anthropic or Gemini) among `targets`,
    /// if any.
    pub(crate) fn first_of<'a>(
        preset: Preset,
        targets: impl IntoIterator<Item = &'a Config>,
    ) -> Result<Option<Self>, BoxError> {
        let Some(target) = targets.into_iter().find(|config| config.preset == preset) else {
            return Ok(None);
        };
        Ok(Some(Self {
            client: ballast::https_client()?,
            preset,
            base: target.base_url.to_string().trim_end_matches('/').to_owned(),
            key: target
                .api_key
                .as_ref()
                .map(|key| key.header(preset.provider())),
        }))
    }

    /// The dialect its answers and errors speak.
    fn dialect(&self) -> Dialect {
        if self.preset == Preset::Gemini {
            Dialect::Gemini
        } else {
            Dialect::Messages
        }
    }

    /// Counts `body`'s tokens: at Anthropic, or at Gemini for `call` (`{model}:countTokens`,
    /// the path's last segment); its answer, or an error in the API's shape.
    pub(crate) async fn count(
        &self,
        headers: &http::HeaderMap,
        body: Bytes,
        call: Option<&str>,
    ) -> Response {
        let dialect = self.dialect();
        let refuse = |status: http::StatusCode, kind: &str, message: &str| {
            error_answer(dialect, status, kind, None, message).map(Body::from)
        };
        let uri = match call {
            Some(call) if self.preset == Preset::Gemini => {
                format!("{}/models/{call}", self.base)
            }
            _ => format!("{}/messages/count_tokens", self.base),
        };
        let Ok(uri) = uri.parse::<http::Uri>() else {
            return refuse(
                http::StatusCode::NOT_FOUND,
                "not_found",
                "The model's name is not one this gateway can ask for.",
            );
        };
        let mut request = http::Request::new(RequestBody::from(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        let sent = request.headers_mut();
        sent.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if self.preset == Preset::Anthropic {
            crate::app::anthropic_headers(headers, sent);
        }
        if let Some((name, value)) = &self.key {
            sent.insert(name, value.clone());
        }
        let answer = tokio::time::timeout(TIMEOUT, async {
            let response = tower::ServiceExt::oneshot(self.client.clone(), request).await?;
            let (parts, body) = response.into_parts();
            let bytes =
                http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 1 << 20))
                    .await?
                    .to_bytes();
            Ok::<_, BoxError>((parts.status, bytes))
        })
        .await;
        match answer {
            Ok(Ok((status, bytes))) if status.is_success() => {
                let mut answer = Response::new(Body::from(bytes));
                answer.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                answer
            }
            Ok(Ok((status, bytes))) => {
                // The provider's message, masked, in the API's shape.
                let detail = ProviderError::parse(&bytes);
                let message = detail
                    .as_ref()
                    .and_then(ProviderError::message)
                    .unwrap_or("The provider refused the count.");
                refuse(status, "", message)
            }
            Ok(Err(_)) => refuse(
                http::StatusCode::BAD_GATEWAY,
                "api_error",
                "The provider could not be reached to count the tokens.",
            ),
            Err(_) => refuse(
                http::StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                "The provider did not count the tokens in time.",
            ),
        }
    }
}
