//! `POST /v1/messages/count_tokens`: Anthropic's token count, which Claude Code asks for
//! every turn (and dozens of times at start) to manage its context window.
//!
//! Sent as it is to the first Anthropic target of the provider's chain, with the gateway's
//! key and the caller's `anthropic-version` and `anthropic-beta`, and its answer handed
//! back. Not through the stack: the count is free (nothing to budget or price), has a rate
//! limit of its own at Anthropic (the throttle paces Messages calls, which these must not
//! slow), and is not worth a retry (a client that gets no count estimates one itself). An
//! upstream error comes back in Anthropic's shape with its message masked; no answer
//! within [`TIMEOUT`] is a 504. A gateway with no Anthropic target answers 404, on which
//! Claude Code counts with its own estimate (a made-up count would be trusted, and a zero
//! would keep it from ever compacting its context).

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use ballast::classify::{BoxError, Dialect, ProviderError, RequestBody};
use ballast::{Config, HttpsClient, Preset, error_answer};
use bytes::Bytes;

/// How long a count may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// Where counts go: the first Anthropic target's endpoint and key.
pub(crate) struct Counter {
    client: HttpsClient,
    uri: http::Uri,
    key: Option<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Counter")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Counter {
    /// The counter of the first Anthropic target among `targets`, if any.
    pub(crate) fn first_anthropic<'a>(
        targets: impl IntoIterator<Item = &'a Config>,
    ) -> Result<Option<Self>, BoxError> {
        let Some(target) = targets
            .into_iter()
            .find(|config| config.preset == Preset::Anthropic)
        else {
            return Ok(None);
        };
        let base = target.base_url.to_string();
        Ok(Some(Self {
            client: ballast::https_client()?,
            uri: format!("{}/messages/count_tokens", base.trim_end_matches('/')).parse()?,
            key: target
                .api_key
                .as_ref()
                .map(|key| key.header(Preset::Anthropic.provider())),
        }))
    }

    /// Counts `body`'s tokens at Anthropic: its answer, or an error in Anthropic's shape.
    pub(crate) async fn count(&self, headers: &http::HeaderMap, body: Bytes) -> Response {
        let mut request = http::Request::new(RequestBody::from(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        let sent = request.headers_mut();
        sent.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        crate::app::anthropic_headers(headers, sent);
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
        let refuse = |status: http::StatusCode, kind: &str, message: &str| {
            error_answer(Dialect::Messages, status, kind, None, message).map(Body::from)
        };
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
                // The provider's message, masked, in Anthropic's shape.
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
