//! [`ChatClient`]: send a prompt, get text, usage, cost and attempts, in any dialect.

use std::fmt;
use std::sync::Arc;

use ballast_classify::{Attempt, BoxError, ClassifiedBody, InspectBody, Outcome};
use ballast_cost::{CostSource, PriceTable, Usage, Usd};
use ballast_route::Served;
use serde_json::{Value, json};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::{Config, Fallback, Preset};

/// The service a [`ChatClient`] sends through: a [`StackService`](crate::StackService) or a
/// [`RouteService`](crate::RouteService), boxed.
type ChatService<R> =
    BoxCloneSyncService<http::Request<String>, http::Response<ClassifiedBody<R>>, BoxError>;

/// A small typed helper over a built stack: one user prompt in, the reply out.
///
/// The raw [`StackService`](crate::StackService) stays available for anything richer (tools, streaming, system
/// prompts); this covers the common call and speaks each preset's dialect: OpenAI-style
/// `chat/completions` (xAI, OpenAI, compatibles), Anthropic `messages`, Gemini
/// `generateContent`.
#[derive(Debug)]
pub struct ChatClient<R> {
    service: ChatService<R>,
    preset: Preset,
    base_url: Arc<str>,
    model: Arc<str>,
    max_tokens: u64,
    prices: Arc<PriceTable>,
}

impl<R> Clone for ChatClient<R> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            preset: self.preset,
            base_url: Arc::clone(&self.base_url),
            model: Arc::clone(&self.model),
            max_tokens: self.max_tokens,
            prices: Arc::clone(&self.prices),
        }
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    /// The text the model produced.
    pub text: String,
    /// Token usage, when the provider reported it.
    pub usage: Option<Usage>,
    /// What the call cost (reported, or usage times price).
    pub cost: Usd,
    /// Where the cost came from.
    pub cost_source: Option<CostSource>,
    /// Attempts made, the first included.
    pub attempts: u32,
}

/// A chat call that did not produce a reply.
#[derive(Debug)]
pub struct ChatError {
    outcome: Outcome,
    source: Option<BoxError>,
}

impl ChatError {
    /// The outcome of the last attempt.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// A user-safe answer for web apps.
    pub fn fallback(&self) -> Fallback {
        Fallback::from_outcome(&self.outcome)
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chat call failed: {}", self.outcome.class())?;
        if let Some(status) = self.outcome.status() {
            write!(f, " (HTTP {})", status.as_u16())?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ChatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl<R> ChatClient<R>
where
    R: Send + 'static,
{
    /// A client over `service` (a [`StackService`](crate::StackService), or a
    /// [`RouteService`](crate::RouteService)) for the preset, base URL and defaults in
    /// `config`, asking `model`.
    pub fn new<S>(service: S, config: &Config, model: &str) -> Self
    where
        S: Service<http::Request<String>, Response = http::Response<ClassifiedBody<R>>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Self {
            service: BoxCloneSyncService::new(service.map_err(Into::into)),
            preset: config.preset,
            base_url: Arc::from(config.base_url.to_string().trim_end_matches('/')),
            model: Arc::from(model),
            max_tokens: config.max_tokens_default,
            prices: Arc::new(PriceTable::builtin()),
        }
    }

    /// The request for `prompt` in the preset's dialect.
    pub fn request(&self, prompt: &str) -> http::Request<String> {
        let (path, body) = match self.preset {
            Preset::Anthropic => (
                "/messages".to_owned(),
                json!({
                    "model": &*self.model,
                    "max_tokens": self.max_tokens,
                    "messages": [{"role": "user", "content": prompt}],
                }),
            ),
            Preset::Gemini => (
                format!("/models/{}:generateContent", self.model),
                json!({
                    "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                    "generationConfig": {"maxOutputTokens": self.max_tokens},
                }),
            ),
            _ => (
                "/chat/completions".to_owned(),
                json!({
                    "model": &*self.model,
                    "max_tokens": self.max_tokens,
                    "messages": [{"role": "user", "content": prompt}],
                }),
            ),
        };
        let mut request = http::Request::new(body.to_string());
        *request.method_mut() = http::Method::POST;
        if let Ok(uri) = format!("{}{path}", self.base_url).parse() {
            *request.uri_mut() = uri;
        }
        let headers = request.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if self.preset == Preset::Anthropic {
            headers.insert(
                "anthropic-version",
                http::HeaderValue::from_static("2023-06-01"),
            );
        }
        request
    }

    /// Sends `prompt` through the stack.
    pub async fn chat(&self, prompt: &str) -> Result<ChatReply, ChatError> {
        let result = self.service.clone().oneshot(self.request(prompt)).await;
        let outcome = Outcome::from_result(&result);
        let response = match result {
            Ok(response) if outcome.is_success() => response,
            Ok(_) => {
                return Err(ChatError {
                    outcome,
                    source: None,
                });
            }
            Err(source) => {
                return Err(ChatError {
                    outcome,
                    source: Some(source),
                });
            }
        };
        let attempts = Attempt::of_response(&response).get();
        let body = response.body().inspect().unwrap_or_default();
        let usage = Usage::from_body(body);
        // Priced as the model that answered: a route's fallback may have been asked for
        // another.
        let model = Served::of(&response)
            .and_then(|served| served.model.as_deref())
            .unwrap_or(&self.model);
        let (cost, cost_source) = match &usage {
            Some(usage) => {
                let (cost, source) = self.prices.cost(Some(model), usage);
                (cost, Some(source))
            }
            None => (Usd::ZERO, None),
        };
        Ok(ChatReply {
            text: reply_text(body),
            usage,
            cost,
            cost_source,
            attempts,
        })
    }
}

/// The text of a reply in any of the three dialects.
fn reply_text(body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let texts = |parts: Option<&Value>, key: &str| -> String {
        parts
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|part| part.get(key).and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(content) = json
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
    {
        return content.to_owned();
    }
    if json.get("content").is_some() {
        return texts(json.get("content"), "text");
    }
    texts(json.pointer("/candidates/0/content/parts"), "text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_every_dialect() {
        let openai = br#"{"choices":[{"message":{"role":"assistant","content":"hello"}}]}"#;
        let anthropic =
            br#"{"content":[{"type":"text","text":"hel"},{"type":"text","text":"lo"}]}"#;
        let gemini = br#"{"candidates":[{"content":{"parts":[{"text":"hello"}],"role":"model"}}]}"#;
        for body in [&openai[..], &anthropic[..], &gemini[..]] {
            assert_eq!(reply_text(body), "hello");
        }
        assert_eq!(reply_text(b"not json"), "");
    }
}
