//! [`Api`]: the API a target speaks, and the translation of OpenAI chat requests (and their
//! answers) for the targets that speak another; a Responses request goes the same way,
//! read as chat first ([`from_responses`](crate::from_responses)), and so does a Messages
//! request for Gemini ([`from_messages`](crate::from_messages) first, its answer back
//! through chat).
//!
//! The translated subset is what chat callers mostly send: system (and developer) messages,
//! user and assistant text messages (a string or text parts), the output cap
//! (`max_completion_tokens` or `max_tokens`), `temperature`, `top_p`, `stop` and `user`;
//! tools too (function definitions, `tool_choice`, `parallel_tool_calls`, an assistant's
//! `tool_calls` and the `tool` messages answering them: see [`tool_use`](crate::tool_use)
//! for Anthropic, [`gemini_tools`](crate::gemini_tools) for Gemini and its thought
//! signatures), and Claude's and Gemini's calls come back as chat's `tool_calls`.
//! What the other API requires and chat leaves out is filled in: Anthropic's `max_tokens`
//! ([`ANTHROPIC_MAX_TOKENS`](crate::ANTHROPIC_MAX_TOKENS) when the request has no cap),
//! and Anthropic's one sampling knob (recent Claude models refuse `temperature` and
//! `top_p` together: `temperature` is kept); messages with empty text, which both refuse,
//! are left out. Streamed requests are translated too, and their events come back as chat
//! chunks (a
//! usage chunk only when the caller asked for one). A request that needs more (images,
//! JSON mode, `n` > 1, logprobs) is not translated: the target is passed over, so the call goes to
//! a target that can take it as it is. Fields with no effect on the answer's meaning
//! (`seed`, penalties, `metadata`, `store`...) are dropped.
//!
//! This is serde_json's `Value` work: only requests for a translating target pay it.

use std::time::{SystemTime, UNIX_EPOCH};

use ballast_classify::{ClassifiedBody, Dialect};

use crate::chat_chunk::ChatStreamWriter;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The API a [`Target`](crate::Target) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Api {
    /// OpenAI's Chat Completions and Responses, as every OpenAI-compatible API speaks them
    /// (xAI, OpenAI, Groq, DeepSeek, OpenRouter): the caller's request goes as it is.
    #[default]
    OpenAi,
    /// Anthropic's Messages API: a Messages request goes as it is; a chat request is
    /// translated to Messages, and its answer (or error) back to chat.
    Anthropic,
    /// Gemini's `generateContent`: a Gemini request goes as it is; a chat request is
    /// translated, and its answer (or error) back.
    Gemini,
}

impl Api {
    /// The caller's dialects it takes as they are.
    pub(crate) fn takes(self, dialect: Dialect) -> bool {
        // A call Ballast has no reading of is never translated.
        if dialect == Dialect::Other {
            return true;
        }
        match self {
            Self::OpenAi => matches!(
                dialect,
                Dialect::Chat | Dialect::Responses | Dialect::Completions | Dialect::Embeddings
            ),
            Self::Anthropic => dialect == Dialect::Messages,
            Self::Gemini => dialect == Dialect::Gemini,
        }
    }

    /// The API a call with no reading of its own ([`Dialect::Other`]) speaks, by its path:
    /// Anthropic's under `/messages/` (its token counts, its message batches), Gemini's for
    /// a `models/{model}:method` path, OpenAI's otherwise (moderations, images, audio,
    /// files, the model list).
    ///
    /// ```
    /// use ballast_route::Api;
    ///
    /// assert_eq!(Api::of_unread("/v1/messages/count_tokens"), Api::Anthropic);
    /// assert_eq!(Api::of_unread("/v1beta/models/gemini-2.5-pro:countTokens"), Api::Gemini);
    /// assert_eq!(Api::of_unread("/v1/moderations"), Api::OpenAi);
    /// ```
    pub fn of_unread(path: &str) -> Self {
        if path.contains("/messages/") {
            Self::Anthropic
        } else if path.contains("models/") && path.contains(':') {
            Self::Gemini
        } else {
            Self::OpenAi
        }
    }

    /// Whether a target speaking this API may serve a call in `dialect`, as it is or
    /// translated: chat and Responses calls for every API; Messages calls for Anthropic, and
    /// for OpenAI-compatible and Gemini targets only when they `name_their_model` (a Claude
    /// model's name means nothing to them). A translation can still refuse what its subset
    /// lacks (images, say). Gemini's own dialect goes to Gemini only. Embeddings go to
    /// OpenAI-compatible targets that ask for the caller's model, never one that names its
    /// own: another model's vectors live in another space, useless beside the caller's.
    /// Legacy completions go to OpenAI-compatible targets only. A call Ballast has no reading
    /// of goes as it is (a route sends it to its first target of the call's API only:
    /// [`Api::of_unread`]).
    ///
    /// ```
    /// use ballast_classify::Dialect;
    /// use ballast_route::Api;
    ///
    /// assert!(Api::Anthropic.may_serve(Dialect::Chat, false));
    /// assert!(!Api::OpenAi.may_serve(Dialect::Messages, false));
    /// assert!(Api::OpenAi.may_serve(Dialect::Messages, true));
    /// assert!(Api::Gemini.may_serve(Dialect::Messages, true));
    /// assert!(!Api::Anthropic.may_serve(Dialect::Gemini, true));
    /// assert!(Api::OpenAi.may_serve(Dialect::Embeddings, false));
    /// assert!(!Api::OpenAi.may_serve(Dialect::Embeddings, true));
    /// assert!(!Api::Gemini.may_serve(Dialect::Embeddings, false));
    /// assert!(!Api::Anthropic.may_serve(Dialect::Completions, true));
    /// ```
    pub fn may_serve(self, dialect: Dialect, name_their_model: bool) -> bool {
        match dialect {
            Dialect::Embeddings => self.takes(dialect) && !name_their_model,
            Dialect::Chat | Dialect::Responses => true,
            Dialect::Messages => self.takes(dialect) || name_their_model,
            // Legacy completions are not translated: OpenAI-compatible targets only.
            Dialect::Gemini | Dialect::Completions | Dialect::Other => self.takes(dialect),
        }
    }
}

/// The output cap a chat request without one is sent to Anthropic with: Messages requires
/// `max_tokens`, chat does not. (The facade writes its own default cap into every request
/// first, so this is for routes built without it.)
pub const ANTHROPIC_MAX_TOKENS: u64 = 4096;

/// Why a target cannot take a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Untranslatable(pub(crate) String);

/// `Err`: `what` "is not translated".
pub(crate) fn refuse<T>(what: &str) -> Result<T, Untranslatable> {
    Err(Untranslatable(format!("{what} is not translated")))
}

/// How a request reaches a target that speaks `api`.
pub(crate) enum Plan {
    /// As it is (the model maybe rewritten).
    AsItIs,
    /// Translated from chat: the new path (under the target's base) and body.
    Translated {
        path: String,
        query: Option<&'static str>,
        body: Bytes,
    },
}

/// How a request in `dialect` with this `body` reaches a target speaking `api`, asking for
/// `model` (`None`: the request's own `fallback_model`).
pub(crate) fn plan(
    api: Api,
    dialect: Dialect,
    stream: bool,
    body: &[u8],
    model: Option<&str>,
    fallback_model: Option<&str>,
) -> Result<Plan, Untranslatable> {
    if api.takes(dialect) {
        return Ok(Plan::AsItIs);
    }
    let model = model
        .or(fallback_model)
        .ok_or_else(|| Untranslatable("no model to ask for".into()))?;
    if dialect == Dialect::Messages && api == Api::OpenAi {
        return Ok(Plan::Translated {
            path: "/chat/completions".to_owned(),
            query: None,
            body: crate::from_messages::to_chat(body, model, stream)?,
        });
    }
    let gemini_messages = dialect == Dialect::Messages && api == Api::Gemini;
    if !(matches!(dialect, Dialect::Chat | Dialect::Responses) || gemini_messages)
        || api == Api::OpenAi
    {
        return Err(Untranslatable(format!(
            "a {} request is not translated for {api:?}",
            dialect.as_str()
        )));
    }
    // A Messages request for Gemini is translated to chat first, and from there on.
    let chat;
    let body = if gemini_messages {
        chat = crate::from_messages::to_chat(body, model, false)?;
        &chat[..]
    } else {
        body
    };
    let request: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| Untranslatable("the body is not a JSON object".into()))?;
    // A Responses request is read as the chat request it amounts to.
    let request = if dialect == Dialect::Responses {
        crate::from_responses::to_chat(&request)?
    } else {
        request
    };
    let chat = Chat::read(&request)?;
    let (path, query, body) = match api {
        Api::Anthropic => {
            let mut body = chat.to_messages(model);
            if stream {
                body["stream"] = json!(true);
            }
            ("/messages".to_owned(), None, body)
        }
        _ if stream => (
            format!("/models/{model}:streamGenerateContent"),
            Some("alt=sse"),
            chat.to_gemini()?,
        ),
        _ => (
            format!("/models/{model}:generateContent"),
            None,
            chat.to_gemini()?,
        ),
    };
    Ok(Plan::Translated {
        path,
        query,
        body: Bytes::from(body.to_string()),
    })
}

/// The translated subset of a chat request.
struct Chat<'a> {
    /// The system texts, each with the prompt-caching breakpoint a caller marked it with.
    system: Vec<(&'a str, Option<&'a Value>)>,
    turns: Vec<Turn<'a>>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<&'a Value>,
    stop: Vec<&'a str>,
    user: Option<&'a str>,
    /// Anthropic's tool definitions and choice (see [`tool_use`](crate::tool_use)).
    tools: Vec<Value>,
    tool_choice: Option<Value>,
}

/// One turn of a chat conversation.
enum Turn<'a> {
    /// `user` or `assistant` text, and its parts as Anthropic text blocks when a caller
    /// marked any with a prompt-caching breakpoint (see [`Content`]).
    Text(&'a str, String, Option<Vec<Value>>),
    /// An assistant's tool calls (as `tool_use` blocks), after its text (maybe empty), and
    /// each call's thought signature (Gemini's, see [`gemini_tools`](crate::gemini_tools)).
    Calls(String, Vec<Value>, Vec<Option<&'a str>>),
    /// A tool's result: the call's id, the text, a prompt-caching breakpoint.
    Result(&'a str, String, Option<&'a Value>),
}

/// Fields whose meaning a translation would lose: such a request is not translated.
const UNTRANSLATED: [&str; 9] = [
    "functions",
    "function_call",
    "audio",
    "prediction",
    "logit_bias",
    "top_logprobs",
    "web_search_options",
    "reasoning_effort",
    "modalities",
];

impl<'a> Chat<'a> {
    fn read(request: &'a Map<String, Value>) -> Result<Self, Untranslatable> {
        for field in UNTRANSLATED {
            if request.get(field).is_some_and(|v| !v.is_null()) {
                return refuse(field);
            }
        }
        if request.get("n").and_then(Value::as_u64).unwrap_or(1) != 1 {
            return refuse("n other than 1");
        }
        if request.get("logprobs").and_then(Value::as_bool) == Some(true) {
            return refuse("logprobs");
        }
        if let Some(format) = request.get("response_format")
            && format.get("type").and_then(Value::as_str) != Some("text")
        {
            return refuse("response_format");
        }
        let Some(messages) = request.get("messages").and_then(Value::as_array) else {
            return refuse("a request without messages");
        };
        let mut chat = Chat {
            system: Vec::new(),
            turns: Vec::new(),
            max_tokens: ["max_completion_tokens", "max_tokens"]
                .iter()
                .find_map(|f| request.get(*f).and_then(Value::as_u64)),
            temperature: request.get("temperature").and_then(Value::as_f64),
            top_p: request.get("top_p").filter(|v| v.is_number()),
            stop: match request.get("stop") {
                Some(Value::String(one)) => vec![one.as_str()],
                Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            },
            user: request.get("user").and_then(Value::as_str),
            tools: match request.get("tools").and_then(Value::as_array) {
                Some(tools) => crate::tool_use::to_anthropic_tools(tools)?,
                None => Vec::new(),
            },
            tool_choice: crate::tool_use::to_anthropic_choice(
                request.get("tool_choice"),
                request.get("parallel_tool_calls").and_then(Value::as_bool),
            )?,
        };
        for message in messages {
            let role = message.get("role").and_then(Value::as_str).unwrap_or("");
            if message.get("function_call").is_some_and(|v| !v.is_null()) {
                return refuse("a function call");
            }
            if let Some(calls) = message.get("tool_calls").and_then(Value::as_array)
                && !calls.is_empty()
            {
                if role != "assistant" {
                    return refuse("tool calls outside an assistant message");
                }
                let text = match message.get("content") {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .map(text_part)
                        .collect::<Result<Vec<_>, _>>()?
                        .concat(),
                    _ => String::new(),
                };
                let uses = calls
                    .iter()
                    .map(crate::tool_use::to_tool_use)
                    .collect::<Result<Vec<_>, _>>()?;
                let signatures = calls.iter().map(crate::gemini_tools::signature).collect();
                chat.turns.push(Turn::Calls(text, uses, signatures));
                continue;
            }
            match role {
                "system" | "developer" => match message.get("content") {
                    Some(Value::String(text)) => chat.system.push((text, None)),
                    Some(Value::Array(parts)) => {
                        for part in parts {
                            chat.system.push((text_part(part)?, breakpoint(part)));
                        }
                    }
                    _ => return refuse("a system message without text"),
                },
                "user" | "assistant" => {
                    let Some(content) = message.get("content").filter(|c| !c.is_null()) else {
                        return refuse("a message without text");
                    };
                    let content = Content::read(content)?;
                    // Both APIs refuse an empty text (chat takes one, say an earlier
                    // empty answer); it says nothing, so it is left out.
                    if !content.text.is_empty() {
                        let marked = content.marked_blocks();
                        chat.turns.push(Turn::Text(role, content.text, marked));
                    }
                }
                "tool" => {
                    let Some(id) = message.get("tool_call_id").and_then(Value::as_str) else {
                        return refuse("a tool message without its call's id");
                    };
                    let content = match message.get("content").filter(|c| !c.is_null()) {
                        Some(content) => Content::read(content)?,
                        None => Content::default(),
                    };
                    let mark = content.parts.iter().rev().find_map(|(_, mark)| *mark);
                    chat.turns.push(Turn::Result(id, content.text, mark));
                }
                _ => {
                    return refuse("a message of role other than system, user, assistant or tool");
                }
            }
        }
        if !chat
            .turns
            .iter()
            .any(|turn| matches!(turn, Turn::Text(..) | Turn::Calls(..)))
        {
            return refuse("a request without user or assistant messages");
        }
        Ok(chat)
    }

    /// The turns as Messages: an assistant's tool calls as `tool_use` blocks after its
    /// text, and the tool results that answer them as `tool_result` blocks of the next
    /// user message (a user's text right after them joins that message, after them).
    fn messages(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        // Whether the last message is a user's made of tool results, still open.
        let mut results_open = false;
        for turn in &self.turns {
            match turn {
                Turn::Text(role, text, marked) => {
                    if *role == "user"
                        && results_open
                        && let Some(Value::Array(open)) =
                            out.last_mut().and_then(|m| m.get_mut("content"))
                    {
                        match marked {
                            Some(blocks) => open.extend(blocks.iter().cloned()),
                            None => open.push(json!({"type": "text", "text": text})),
                        }
                    } else {
                        let content = match marked {
                            Some(blocks) => json!(blocks),
                            None => json!(text),
                        };
                        out.push(json!({"role": role, "content": content}));
                    }
                    results_open = false;
                }
                Turn::Calls(text, uses, _) => {
                    let mut blocks = Vec::with_capacity(uses.len() + 1);
                    if !text.is_empty() {
                        blocks.push(json!({"type": "text", "text": text}));
                    }
                    blocks.extend(uses.iter().cloned());
                    out.push(json!({"role": "assistant", "content": blocks}));
                    results_open = false;
                }
                Turn::Result(id, text, mark) => {
                    let mut block = json!({"type": "tool_result", "tool_use_id": id});
                    if !text.is_empty() {
                        block["content"] = json!(text);
                    }
                    if let Some(mark) = mark {
                        block["cache_control"] = (*mark).clone();
                    }
                    match out.last_mut().and_then(|m| m.get_mut("content")) {
                        Some(Value::Array(blocks)) if results_open => blocks.push(block),
                        _ => out.push(json!({"role": "user", "content": [block]})),
                    }
                    results_open = true;
                }
            }
        }
        out
    }

    /// The system texts joined.
    fn system_text(&self) -> String {
        let texts: Vec<&str> = self.system.iter().map(|(text, _)| *text).collect();
        texts.join("\n\n")
    }

    /// As an Anthropic Messages request. Temperature is Anthropic's 0 to 1 (OpenAI's 0 to
    /// 2, clamped), and `top_p` goes only without it; the cap is required.
    fn to_messages(&self, model: &str) -> Value {
        let mut out = json!({
            "model": model,
            "messages": self.messages(),
        });
        if !self.tools.is_empty() {
            out["tools"] = json!(self.tools);
        }
        if let Some(choice) = &self.tool_choice {
            out["tool_choice"] = choice.clone();
        }
        out["max_tokens"] = json!(self.max_tokens.unwrap_or(ANTHROPIC_MAX_TOKENS));
        if self.system.iter().any(|(_, mark)| mark.is_some()) {
            // Text blocks, each with the breakpoint it was marked with.
            let blocks: Vec<Value> = self
                .system
                .iter()
                .map(|(text, mark)| text_block(text, *mark))
                .collect();
            out["system"] = Value::Array(blocks);
        } else if !self.system.is_empty() {
            out["system"] = json!(self.system_text());
        }
        match (self.temperature, self.top_p) {
            (Some(t), _) => out["temperature"] = json!(t.clamp(0.0, 1.0)),
            (None, Some(p)) => out["top_p"] = p.clone(),
            (None, None) => {}
        }
        if !self.stop.is_empty() {
            out["stop_sequences"] = json!(self.stop);
        }
        if let Some(user) = self.user {
            out["metadata"] = json!({ "user_id": user });
        }
        out
    }

    /// The turns as Gemini contents: an assistant's calls as `functionCall` parts after its
    /// text, the tool results that answer them as `functionResponse` parts of the next
    /// user content (a user's text right after them joins it, after them); see
    /// [`gemini_tools`](crate::gemini_tools).
    fn contents(&self) -> Result<Vec<Value>, Untranslatable> {
        let mut out: Vec<Value> = Vec::with_capacity(self.turns.len());
        // Whether the last content is a user's made of function responses, still open.
        let mut results_open = false;
        for (at, turn) in self.turns.iter().enumerate() {
            match turn {
                Turn::Text("user", text, _) if results_open => {
                    push_part(&mut out, json!({ "text": text }));
                    results_open = false;
                }
                Turn::Text(role, text, _) => {
                    let role = if *role == "assistant" {
                        "model"
                    } else {
                        "user"
                    };
                    out.push(json!({"role": role, "parts": [{ "text": text }]}));
                    results_open = false;
                }
                Turn::Calls(text, uses, signatures) => {
                    let parts = crate::gemini_tools::call_parts(text, uses, signatures);
                    out.push(json!({"role": "model", "parts": parts}));
                    results_open = false;
                }
                Turn::Result(id, text, _) => {
                    let earlier = self.turns[..at].iter().flat_map(|turn| match turn {
                        Turn::Calls(_, uses, _) => uses.as_slice(),
                        _ => &[],
                    });
                    let name = crate::gemini_tools::name_of(earlier, id)?;
                    let part = crate::gemini_tools::response_part(name, text);
                    if results_open {
                        push_part(&mut out, part);
                    } else {
                        out.push(json!({"role": "user", "parts": [part]}));
                        results_open = true;
                    }
                }
            }
        }
        Ok(out)
    }

    /// As a Gemini `generateContent` request (the model goes in the path).
    fn to_gemini(&self) -> Result<Value, Untranslatable> {
        let mut config = Map::new();
        if let Some(cap) = self.max_tokens {
            config.insert("maxOutputTokens".into(), json!(cap));
        }
        if let Some(t) = self.temperature {
            config.insert("temperature".into(), json!(t));
        }
        if let Some(p) = self.top_p {
            config.insert("topP".into(), p.clone());
        }
        if !self.stop.is_empty() {
            config.insert("stopSequences".into(), json!(self.stop));
        }
        let mut out = json!({ "contents": self.contents()? });
        if !self.tools.is_empty() {
            out["tools"] = crate::gemini_tools::declarations(&self.tools);
        }
        if let Some(tool_config) = self
            .tool_choice
            .as_ref()
            .and_then(crate::gemini_tools::config)
        {
            out["toolConfig"] = tool_config;
        }
        if !self.system.is_empty() {
            out["systemInstruction"] = json!({"parts": [{"text": self.system_text()}]});
        }
        if !config.is_empty() {
            out["generationConfig"] = Value::Object(config);
        }
        Ok(out)
    }
}

/// Adds `part` to the last content's parts.
fn push_part(contents: &mut [Value], part: Value) {
    if let Some(Value::Array(parts)) = contents.last_mut().and_then(|c| c.get_mut("parts")) {
        parts.push(part);
    }
}

/// A message's content: its text parts, each with the prompt-caching breakpoint
/// (`cache_control`) a caller marked it with, as LiteLLM's and Portkey's chat APIs take it
/// for Anthropic models; and the parts joined.
#[derive(Default)]
struct Content<'a> {
    parts: Vec<(&'a str, Option<&'a Value>)>,
    text: String,
}

impl<'a> Content<'a> {
    /// A string, or an array of text parts.
    fn read(content: &'a Value) -> Result<Self, Untranslatable> {
        match content {
            Value::String(text) => Ok(Self {
                parts: vec![(text, None)],
                text: text.clone(),
            }),
            Value::Array(parts) => {
                let parts = parts
                    .iter()
                    .map(|part| Ok((text_part(part)?, breakpoint(part))))
                    .collect::<Result<Vec<_>, Untranslatable>>()?;
                let text = parts.iter().map(|(text, _)| *text).collect();
                Ok(Self { parts, text })
            }
            _ => refuse("a message without text"),
        }
    }

    /// Its parts as Anthropic text blocks, when any is marked (a breakpoint stays on its
    /// part, so that the prefix cached is the one the caller chose); `None` otherwise.
    fn marked_blocks(&self) -> Option<Vec<Value>> {
        self.parts.iter().any(|(_, mark)| mark.is_some()).then(|| {
            self.parts
                .iter()
                .filter(|(text, _)| !text.is_empty())
                .map(|(text, mark)| text_block(text, *mark))
                .collect()
        })
    }
}

/// A part's prompt-caching breakpoint (`cache_control`, an object), if marked.
fn breakpoint(part: &Value) -> Option<&Value> {
    part.get("cache_control").filter(|mark| mark.is_object())
}

/// An Anthropic text block, with its breakpoint.
fn text_block(text: &str, mark: Option<&Value>) -> Value {
    let mut block = json!({"type": "text", "text": text});
    if let Some(mark) = mark {
        block["cache_control"] = mark.clone();
    }
    block
}

fn text_part(part: &Value) -> Result<&str, Untranslatable> {
    match (part.get("type").and_then(Value::as_str), part.get("text")) {
        (Some("text"), Some(Value::String(text))) => Ok(text),
        _ => Err(Untranslatable("a content part other than text".into())),
    }
}

/// Whether a chat request asked for a usage chunk in its stream.
pub(crate) fn asked_usage(body: &[u8]) -> bool {
    ballast_classify::json::top_level(body, "stream_options")
        .and_then(|options| serde_json::from_slice::<Value>(options).ok())
        .is_some_and(|options| options.get("include_usage") == Some(&Value::Bool(true)))
}

/// A translated target's answer in the caller's `dialect`. For a chat caller: a success as
/// a chat completion (its `model` the one that answered, usage in chat's fields), a stream
/// as chat chunks (a usage chunk when `asked_usage`), an error in OpenAI's error shape; for
/// a Messages caller of an OpenAI-compatible target, Anthropic's message, events and error
/// shape ([`from_messages`](crate::from_messages)). A body that is not the API's JSON is
/// left as it is.
pub(crate) fn answer_back<B>(
    api: Api,
    dialect: Dialect,
    mut response: http::Response<ClassifiedBody<B>>,
    model: &str,
    asked_usage: bool,
) -> http::Response<ClassifiedBody<B>> {
    if response.body().is_streaming() {
        match (dialect, api) {
            // Chat chunks as Messages events.
            (Dialect::Messages, Api::OpenAi) => {
                let mut events = crate::from_messages::Events::new(model);
                let _ = response
                    .body_mut()
                    .rewrite_events(Box::new(move |event, data, out| {
                        events.on(event, data, out)
                    }));
            }
            (Dialect::Messages, _) => {
                let writer = crate::from_messages::Events::new(model);
                stream_through_chat(api, &mut response, model, writer);
            }
            (Dialect::Responses, _) => {
                let writer = crate::from_responses::Events::new(model);
                stream_through_chat(api, &mut response, model, writer);
            }
            _ => {
                let mut chunks = Chunks::new(api, model, asked_usage);
                let _ = response
                    .body_mut()
                    .rewrite_events(Box::new(move |event, data, out| {
                        chunks.on(event, data, out)
                    }));
            }
        }
        return response;
    }
    let Some(bytes) = response.body().bytes() else {
        return response;
    };
    if dialect == Dialect::Messages && !response.status().is_success() {
        // Any error body, in Anthropic's shape, with the provider's message (or none).
        let parsed = ballast_classify::ProviderError::parse(bytes);
        let message = parsed
            .as_ref()
            .and_then(ballast_classify::ProviderError::message)
            .unwrap_or("The provider refused the request.");
        let error =
            ballast_classify::error_body(Dialect::Messages, response.status(), "", None, message);
        return with_body(response, error);
    }
    let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
        return response;
    };
    let translated = if response.status().is_success() {
        let completion = match api {
            Api::Anthropic => completion_from_messages(&body, model),
            Api::Gemini => completion_from_gemini(&body, model),
            // An OpenAI-compatible target's answer is a chat completion already.
            Api::OpenAi => None,
        };
        match dialect {
            Dialect::Messages => crate::from_messages::message_from_completion(
                completion.as_ref().unwrap_or(&body),
                model,
            ),
            Dialect::Responses => completion.and_then(|completion| {
                crate::from_responses::response_from_completion(&completion)
            }),
            _ => completion,
        }
    } else {
        // The Responses API's errors are in chat's shape too.
        error_back(&body)
    };
    match translated {
        Some(translated) => with_body(response, translated.to_string()),
        None => response,
    }
}

/// `response` with `body` in place of its own (its length no longer said).
fn with_body<B>(
    response: http::Response<ClassifiedBody<B>>,
    body: String,
) -> http::Response<ClassifiedBody<B>> {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    http::Response::from_parts(parts, ClassifiedBody::buffered(Bytes::from(body)))
}

/// An Anthropic or Gemini target's stream for a caller of another API than chat: its
/// events as chat chunks (the usage chunk always: Responses and Messages report usage),
/// those written by `writer` as the caller's API's events.
fn stream_through_chat<B>(
    api: Api,
    response: &mut http::Response<ClassifiedBody<B>>,
    model: &str,
    mut writer: impl ChatStreamWriter + Send + Sync + 'static,
) {
    let mut chunks = Chunks::new(api, model, true);
    let mut scratch = bytes::BytesMut::new();
    let _ = response
        .body_mut()
        .rewrite_events(Box::new(move |event, data, out| {
            chunks.on(event, data, &mut scratch);
            let written = scratch.split().freeze();
            for chunk in written.split(|b| *b == b'\n') {
                if let Some(data) = chunk.strip_prefix(b"data: ")
                    && let Ok(data) = std::str::from_utf8(data)
                {
                    writer.on("", data, out);
                }
            }
        }));
}

fn completion_from_messages(body: &Value, model: &str) -> Option<Value> {
    let content = body.get("content")?.as_array()?;
    let of_type = |kind: &'static str| {
        content
            .iter()
            .filter(move |part| part.get("type").and_then(Value::as_str) == Some(kind))
    };
    let text: String = of_type("text")
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect();
    let calls: Vec<Value> = of_type("tool_use")
        .map(crate::tool_use::to_tool_call)
        .collect();
    let finish = anthropic_finish(body.get("stop_reason").and_then(Value::as_str));
    let usage = body.get("usage");
    let (prompt, cached) = anthropic_prompt(usage);
    let mut completion = completion_body(
        body.get("id").and_then(Value::as_str).unwrap_or("msg"),
        body.get("model").and_then(Value::as_str).unwrap_or(model),
        &text,
        finish,
        (prompt, cached, count(usage, "output_tokens")),
    );
    with_calls(&mut completion, &text, calls);
    Some(completion)
}

/// A Gemini answer as a chat completion, its `functionCall` parts as `tool_calls` (see
/// [`gemini_tools`](crate::gemini_tools)). A prompt Gemini blocked (`promptFeedback`'s
/// `blockReason`, no candidate) is chat's filtered answer: no content, `content_filter`.
fn completion_from_gemini(body: &Value, model: &str) -> Option<Value> {
    let candidate = body.get("candidates").and_then(|c| c.get(0));
    let id = body
        .get("responseId")
        .and_then(Value::as_str)
        .unwrap_or("gemini");
    let calls = candidate
        .map(|candidate| crate::gemini_tools::tool_calls(candidate, id, 0))
        .unwrap_or_default();
    let finish = match candidate {
        // Gemini says `STOP` after calls; chat says `tool_calls`.
        Some(_) if !calls.is_empty() => "tool_calls",
        Some(candidate) => gemini_finish(candidate.get("finishReason").and_then(Value::as_str)),
        None if gemini_blocked(body) => "content_filter",
        None => return None,
    };
    let text = candidate.map(gemini_text).unwrap_or_default();
    let mut completion = completion_body(
        id,
        body.get("modelVersion")
            .and_then(Value::as_str)
            .unwrap_or(model),
        &text,
        finish,
        gemini_usage(body.get("usageMetadata")),
    );
    with_calls(&mut completion, &text, calls);
    Some(completion)
}

/// Puts `calls` in a completion's message (its content `null` when it has no text).
fn with_calls(completion: &mut Value, text: &str, calls: Vec<Value>) {
    if !calls.is_empty() {
        let message = &mut completion["choices"][0]["message"];
        message["tool_calls"] = Value::Array(calls);
        if text.is_empty() {
            message["content"] = Value::Null;
        }
    }
}

/// A count in a usage object; 0 when it is not there.
fn count(usage: Option<&Value>, field: &str) -> u64 {
    usage
        .and_then(|u| u.get(field))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// An Anthropic stop reason as chat's finish reason.
fn anthropic_finish(reason: Option<&str>) -> &'static str {
    match reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic's prompt tokens as chat counts them, and the cached ones: Anthropic counts
/// cache reads and writes apart from `input_tokens`, chat's `prompt_tokens` holds them all.
fn anthropic_prompt(usage: Option<&Value>) -> (u64, u64) {
    let cached = count(usage, "cache_read_input_tokens");
    let prompt =
        count(usage, "input_tokens") + cached + count(usage, "cache_creation_input_tokens");
    (prompt, cached)
}

/// A Gemini candidate's text, its thoughts left out.
fn gemini_text(candidate: &Value) -> String {
    candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether Gemini blocked the prompt (`promptFeedback`'s `blockReason`): no candidate
/// comes.
fn gemini_blocked(body: &Value) -> bool {
    body.pointer("/promptFeedback/blockReason").is_some()
}

/// A Gemini finish reason as chat's.
fn gemini_finish(reason: Option<&str>) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII") => {
            "content_filter"
        }
        _ => "stop",
    }
}

/// Gemini's `usageMetadata` as (prompt, cached prompt, completion) tokens: chat's
/// `completion_tokens` includes reasoning, Gemini counts thoughts apart.
fn gemini_usage(usage: Option<&Value>) -> (u64, u64, u64) {
    (
        count(usage, "promptTokenCount"),
        count(usage, "cachedContentTokenCount"),
        count(usage, "candidatesTokenCount") + count(usage, "thoughtsTokenCount"),
    )
}

/// Seconds since the epoch, for a completion's `created`.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Anthropic or Gemini stream events as chat completion chunks, one stream's worth.
pub(crate) struct Chunks {
    api: Api,
    id: String,
    model: String,
    created: u64,
    asked_usage: bool,
    started: bool,
    /// (prompt, cached prompt, completion) tokens as reported so far.
    usage: (u64, u64, u64),
    /// The Messages block index of each tool call so far: chat numbers them from 0.
    tool_blocks: Vec<u64>,
    /// Gemini's calls so far (chat numbers them from 0; they end the stream `tool_calls`).
    gemini_calls: usize,
}

impl Chunks {
    pub(crate) fn new(api: Api, model: &str, asked_usage: bool) -> Self {
        Self {
            api,
            id: "chatcmpl-translated".into(),
            model: model.to_owned(),
            created: now_secs(),
            asked_usage,
            started: false,
            usage: (0, 0, 0),
            tool_blocks: Vec::new(),
            gemini_calls: 0,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut bytes::BytesMut) {
        let chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
    }

    fn start(&mut self, out: &mut bytes::BytesMut) {
        if !self.started {
            self.started = true;
            self.chunk(json!({"role": "assistant", "content": ""}), None, out);
        }
    }

    /// The end: the finish chunk, the usage chunk if asked for, `[DONE]`.
    fn finish(&mut self, reason: &str, out: &mut bytes::BytesMut) {
        self.start(out);
        self.chunk(json!({}), Some(reason), out);
        if self.asked_usage {
            let (prompt, cached, completion) = self.usage;
            let usage = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion,
                          "prompt_tokens_details": {"cached_tokens": cached}},
            });
            out.extend_from_slice(format!("data: {usage}\n\n").as_bytes());
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    pub(crate) fn on(&mut self, event: &str, data: &str, out: &mut bytes::BytesMut) {
        let Ok(json) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if event == "error" || json.get("error").is_some_and(|e| !e.is_null()) {
            if let Some(error) = error_back(&json) {
                out.extend_from_slice(format!("data: {error}\n\n").as_bytes());
            }
            return;
        }
        match self.api {
            Api::Anthropic => match json.get("type").and_then(Value::as_str).unwrap_or("") {
                "message_start" => {
                    if let Some(id) = json.pointer("/message/id").and_then(Value::as_str) {
                        self.id = id.to_owned();
                    }
                    if let Some(model) = json.pointer("/message/model").and_then(Value::as_str) {
                        self.model = model.to_owned();
                    }
                    let (prompt, cached) = anthropic_prompt(json.pointer("/message/usage"));
                    self.usage = (prompt, cached, 0);
                    self.start(out);
                }
                "content_block_start" => {
                    let block = json.get("content_block").unwrap_or(&Value::Null);
                    if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                        let index = self.tool_blocks.len();
                        self.tool_blocks
                            .push(json.get("index").and_then(Value::as_u64).unwrap_or(0));
                        let mut call = crate::tool_use::to_tool_call(block);
                        // The input comes in the deltas that follow.
                        call["function"]["arguments"] = json!("");
                        call["index"] = json!(index);
                        self.start(out);
                        self.chunk(json!({"tool_calls": [call]}), None, out);
                    }
                }
                "content_block_delta" => {
                    if let Some(text) = json.pointer("/delta/text").and_then(Value::as_str) {
                        self.start(out);
                        self.chunk(json!({"content": text}), None, out);
                    } else if let Some(partial) =
                        json.pointer("/delta/partial_json").and_then(Value::as_str)
                    {
                        let block = json.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let Some(index) = self.tool_blocks.iter().position(|b| *b == block) {
                            self.chunk(
                                json!({"tool_calls": [{"index": index, "function": {"arguments": partial}}]}),
                                None,
                                out,
                            );
                        }
                    }
                }
                "message_delta" => {
                    self.usage.2 = count(json.get("usage"), "output_tokens");
                    let reason = json.pointer("/delta/stop_reason").and_then(Value::as_str);
                    self.finish(anthropic_finish(reason), out);
                }
                _ => {}
            },
            Api::Gemini | Api::OpenAi => {
                if let Some(model) = json.get("modelVersion").and_then(Value::as_str) {
                    self.model = model.to_owned();
                }
                if let Some(id) = json.get("responseId").and_then(Value::as_str) {
                    id.clone_into(&mut self.id);
                }
                if let Some(usage) = json.get("usageMetadata") {
                    self.usage = gemini_usage(Some(usage));
                }
                let candidate = json.pointer("/candidates/0");
                let text = candidate.map(gemini_text).unwrap_or_default();
                self.start(out);
                if !text.is_empty() {
                    self.chunk(json!({"content": text}), None, out);
                }
                // Gemini sends each call whole: one chunk with all its arguments.
                let calls = candidate
                    .map(|c| crate::gemini_tools::tool_calls(c, &self.id, self.gemini_calls))
                    .unwrap_or_default();
                for mut call in calls {
                    call["index"] = json!(self.gemini_calls);
                    self.gemini_calls += 1;
                    self.chunk(json!({"tool_calls": [call]}), None, out);
                }
                if let Some(reason) = candidate
                    .and_then(|c| c.get("finishReason"))
                    .and_then(Value::as_str)
                {
                    let finish = if self.gemini_calls > 0 {
                        "tool_calls"
                    } else {
                        gemini_finish(Some(reason))
                    };
                    self.finish(finish, out);
                } else if candidate.is_none() && gemini_blocked(&json) {
                    // A blocked prompt: no candidate will come.
                    self.finish("content_filter", out);
                }
            }
        }
    }
}

/// A chat completion; `usage` is (prompt, cached prompt, completion) tokens.
fn completion_body(
    id: &str,
    model: &str,
    text: &str,
    finish: &str,
    (prompt, cached, completion): (u64, u64, u64),
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    })
}

/// An Anthropic (`{"type":"error","error":{"type","message"}}`) or Gemini
/// (`{"error":{"code","message","status"}}`) error in OpenAI's shape.
fn error_back(body: &Value) -> Option<Value> {
    let error = body.get("error")?;
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let kind = error
        .get("type")
        .or_else(|| error.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    Some(json!({
        "error": {"message": message, "type": kind, "param": null, "code": kind},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(api: Api, body: &str) -> Result<(String, Value), Untranslatable> {
        match plan(api, Dialect::Chat, false, body.as_bytes(), Some("m"), None)? {
            Plan::Translated { path, body, .. } => {
                Ok((path, serde_json::from_slice(&body).unwrap()))
            }
            Plan::AsItIs => panic!("not translated"),
        }
    }

    const CHAT: &str = r#"{"model":"grok-code-fast-1","max_tokens":64,"temperature":1.5,
        "stop":"END","user":"u1","seed":7,
        "messages":[{"role":"system","content":"Be brief."},
                    {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]},
                    {"role":"assistant","content":"Hello."},
                    {"role":"user","content":"Sum 2+2"}]}"#;

    #[test]
    fn chat_to_messages() {
        let (path, body) = translated(Api::Anthropic, CHAT).unwrap();
        assert_eq!(path, "/messages");
        assert_eq!(
            body,
            json!({
                "model": "m",
                "max_tokens": 64,
                "system": "Be brief.",
                "temperature": 1.0,
                "stop_sequences": ["END"],
                "metadata": {"user_id": "u1"},
                "messages": [
                    {"role": "user", "content": "Hi there"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Sum 2+2"},
                ],
            })
        );
    }

    /// What Messages requires and chat may leave out: the cap is filled in, and of
    /// `temperature` and `top_p` (refused together by recent Claude models) only the
    /// temperature goes; alone, `top_p` goes as it is. Gemini takes both.
    #[test]
    fn messages_get_a_cap_and_one_sampling_knob() {
        let both = r#"{"temperature":0.5,"top_p":0.9,"messages":[{"role":"user","content":"x"}]}"#;
        let (_, body) = translated(Api::Anthropic, both).unwrap();
        assert_eq!(body["max_tokens"], 4096);
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body.get("top_p"), None);
        let top_p = r#"{"top_p":0.9,"messages":[{"role":"user","content":"x"}]}"#;
        let (_, body) = translated(Api::Anthropic, top_p).unwrap();
        assert_eq!(
            (body.get("temperature"), &body["top_p"]),
            (None, &json!(0.9))
        );
        let (_, body) = translated(Api::Gemini, both).unwrap();
        assert_eq!(
            body["generationConfig"],
            json!({"temperature": 0.5, "topP": 0.9})
        );
    }

    /// An empty message (an earlier empty answer, say) is left out: Messages and Gemini
    /// refuse empty text. A request left with nothing to say is not translated.
    #[test]
    fn empty_messages_are_left_out() {
        let body = r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":""},
            {"role":"user","content":[]},{"role":"user","content":"b"}]}"#;
        let (_, messages) = translated(Api::Anthropic, body).unwrap();
        assert_eq!(
            messages["messages"],
            json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
        );
        let (_, gemini) = translated(Api::Gemini, body).unwrap();
        assert_eq!(gemini["contents"].as_array().unwrap().len(), 2);
        let empty = r#"{"messages":[{"role":"user","content":""}]}"#;
        assert!(translated(Api::Anthropic, empty).is_err());
    }

    #[test]
    fn chat_to_gemini() {
        let (path, body) = translated(Api::Gemini, CHAT).unwrap();
        assert_eq!(path, "/models/m:generateContent");
        assert_eq!(
            body,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "generationConfig": {"maxOutputTokens": 64, "temperature": 1.5, "stopSequences": ["END"]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi there"}]},
                    {"role": "model", "parts": [{"text": "Hello."}]},
                    {"role": "user", "parts": [{"text": "Sum 2+2"}]},
                ],
            })
        );
    }

    /// Tools go to Anthropic: definitions and choice, an assistant's calls as `tool_use`
    /// blocks after its text, the tools' results (two, one after the other) as the next
    /// user message's `tool_result` blocks, a user's text after them in the same message.
    /// And to Gemini: declarations and mode (`parallel_tool_calls: false` has no
    /// counterpart), the calls as `functionCall` parts (the first signed for history from
    /// another model), the results as `functionResponse` parts named by their calls.
    #[test]
    fn tools_go_to_anthropic_and_gemini() {
        let body = json!({
            "model": "gpt", "max_tokens": 50, "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "messages": [
                {"role": "user", "content": "Find it."},
                {"role": "assistant", "content": "Looking.", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":\"a\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "look", "arguments": "{\"q\":\"b\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "A"},
                {"role": "tool", "tool_call_id": "c2", "content": ""},
                {"role": "user", "content": "And?"},
            ],
        })
        .to_string();
        let (_, messages) = translated(Api::Anthropic, &body).unwrap();
        assert_eq!(
            messages,
            json!({
                "model": "m", "max_tokens": 50,
                "tools": [{"name": "look", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
                "messages": [
                    {"role": "user", "content": "Find it."},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Looking."},
                        {"type": "tool_use", "id": "c1", "name": "look", "input": {"q": "a"}},
                        {"type": "tool_use", "id": "c2", "name": "look", "input": {"q": "b"}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "c1", "content": "A"},
                        {"type": "tool_result", "tool_use_id": "c2"},
                        {"type": "text", "text": "And?"},
                    ]},
                ],
            })
        );
        let (_, gemini) = translated(Api::Gemini, &body).unwrap();
        assert_eq!(
            gemini,
            json!({
                "generationConfig": {"maxOutputTokens": 50},
                "tools": [{"functionDeclarations": [
                    {"name": "look", "parametersJsonSchema": {"type": "object"}},
                ]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
                "contents": [
                    {"role": "user", "parts": [{"text": "Find it."}]},
                    {"role": "model", "parts": [
                        {"text": "Looking."},
                        {"functionCall": {"name": "look", "args": {"q": "a"}},
                         "thoughtSignature": crate::gemini_tools::UNSIGNED},
                        {"functionCall": {"name": "look", "args": {"q": "b"}}},
                    ]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "look", "response": {"output": "A"}}},
                        {"functionResponse": {"name": "look", "response": {"output": ""}}},
                        {"text": "And?"},
                    ]},
                ],
            })
        );
    }

    /// Prompt-caching breakpoints a chat caller marks (`cache_control` on a system or
    /// message part, a tool, a tool result's part: LiteLLM's and Portkey's extension) go to
    /// Anthropic where they were, so the prefix cached is the one the caller chose; Gemini,
    /// which caches on its own, gets none.
    #[test]
    fn prompt_caching_breakpoints_go_to_anthropic_where_they_were() {
        let mark = json!({"type": "ephemeral"});
        let body = json!({
            "model": "gpt", "max_tokens": 50,
            "tools": [{"type": "function", "function": {"name": "look"}, "cache_control": mark}],
            "messages": [
                {"role": "system", "content": [
                    {"type": "text", "text": "Long rules.", "cache_control": mark}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "A long document.", "cache_control": mark},
                    {"type": "text", "text": " What does it say?"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": [
                    {"type": "text", "text": "found", "cache_control": mark}]},
            ],
        })
        .to_string();
        let (_, messages) = translated(Api::Anthropic, &body).unwrap();
        assert_eq!(
            messages,
            json!({
                "model": "m", "max_tokens": 50,
                "tools": [{"name": "look", "input_schema": {"type": "object", "properties": {}},
                           "cache_control": mark}],
                "system": [{"type": "text", "text": "Long rules.", "cache_control": mark}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "A long document.", "cache_control": mark},
                        {"type": "text", "text": " What does it say?"},
                    ]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "c1", "name": "look", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "c1", "content": "found",
                         "cache_control": mark},
                    ]},
                ],
            })
        );
        let (_, gemini) = translated(Api::Gemini, &body).unwrap();
        assert!(!gemini.to_string().contains("cache_control"), "{gemini}");
        assert_eq!(
            gemini["contents"][0],
            json!({"role": "user", "parts": [{"text": "A long document. What does it say?"}]})
        );
    }

    /// A call Gemini signed goes back with its signature; a result whose call is not in
    /// the conversation cannot be named, and the target is passed over.
    #[test]
    fn gemini_signatures_go_back_and_orphan_results_are_refused() {
        let body = json!({
            "model": "gpt",
            "messages": [
                {"role": "user", "content": "Find it."},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"},
                     "extra_content": {"google": {"thought_signature": "c2ln"}}},
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "A"},
            ],
        });
        let (_, gemini) = translated(Api::Gemini, &body.to_string()).unwrap();
        assert_eq!(
            gemini["contents"][1],
            json!({"role": "model", "parts": [
                {"functionCall": {"name": "look", "args": {}}, "thoughtSignature": "c2ln"},
            ]})
        );
        let mut orphan = body;
        orphan["messages"][2]["tool_call_id"] = json!("c9");
        assert_eq!(
            translated(Api::Gemini, &orphan.to_string()).map(|_| ()),
            Err(Untranslatable(
                "a tool result whose call is not in the conversation is not translated".into()
            ))
        );
    }

    #[test]
    fn what_would_lose_meaning_is_not_translated() {
        for body in [
            r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#,
            r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}"#,
            r#"{"messages":[{"role":"tool","content":"42","tool_call_id":"c"}]}"#,
            r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{}]}]}"#,
            r#"{"model":"m"}"#,
            r#"{"messages":[{"role":"system","content":"only a system prompt"}]}"#,
            r#"[1]"#,
        ] {
            assert!(translated(Api::Anthropic, body).is_err(), "{body}");
        }
        // A stream is translated to the streaming endpoint.
        let stream = plan(
            Api::Gemini,
            Dialect::Chat,
            true,
            CHAT.as_bytes(),
            Some("m"),
            None,
        );
        assert!(matches!(
            stream,
            Ok(Plan::Translated { ref path, query: Some("alt=sse"), .. })
                if path == "/models/m:streamGenerateContent"
        ));
        // Another dialect than chat is taken only by its own API.
        assert!(plan(Api::OpenAi, Dialect::Messages, false, b"{}", None, None).is_err());
        assert!(matches!(
            plan(Api::Anthropic, Dialect::Messages, false, b"{}", None, None),
            Ok(Plan::AsItIs)
        ));
    }

    fn back(api: Api, status: u16, body: Value) -> Value {
        let response = http::Response::builder()
            .status(status)
            .header("content-length", "999")
            .body(ClassifiedBody::<()>::buffered(Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let response = answer_back(api, Dialect::Chat, response, "asked", false);
        assert!(response.headers().get("content-length").is_none());
        let mut value: Value = serde_json::from_slice(response.body().bytes().unwrap()).unwrap();
        if let Some(created) = value.get_mut("created") {
            *created = json!(0);
        }
        value
    }

    #[test]
    fn answers_come_back_as_chat_completions() {
        let messages = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "4"}], "stop_reason": "max_tokens",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5,
                      "cache_creation_input_tokens": 2, "output_tokens": 3},
        });
        assert_eq!(
            back(Api::Anthropic, 200, messages),
            json!({
                "id": "msg_1", "object": "chat.completion", "created": 0,
                "model": "claude-sonnet-4-5",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"},
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20,
                          "prompt_tokens_details": {"cached_tokens": 5}},
            })
        );
        let gemini = json!({
            "candidates": [{"content": {"parts": [{"text": "thinking", "thought": true},
                                                  {"text": "4"}], "role": "model"},
                            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 1,
                              "thoughtsTokenCount": 4, "totalTokenCount": 13},
        });
        assert_eq!(
            back(Api::Gemini, 200, gemini),
            json!({
                "id": "gemini", "object": "chat.completion", "created": 0, "model": "asked",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13,
                          "prompt_tokens_details": {"cached_tokens": 0}},
            })
        );
        // A prompt Gemini blocked: chat's filtered answer, its prompt counted.
        let blocked = json!({
            "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        });
        assert_eq!(
            back(Api::Gemini, 200, blocked),
            json!({
                "id": "gemini", "object": "chat.completion", "created": 0, "model": "asked",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                             "finish_reason": "content_filter"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 0, "total_tokens": 8,
                          "prompt_tokens_details": {"cached_tokens": 0}},
            })
        );
    }

    /// Claude's tool calls come back as chat's: `tool_calls` (the input as the arguments
    /// string), no content when it said nothing, `finish_reason: tool_calls`; streamed, a
    /// `tool_use` block's start is the call's first chunk (id, name, empty arguments) and
    /// each `input_json_delta` its arguments' next piece, the calls numbered from 0 as chat
    /// numbers them whatever their block's index.
    #[test]
    fn tool_calls_come_back_as_chats() {
        let messages = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": "a"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 3},
        });
        let answer = back(Api::Anthropic, 200, messages);
        assert_eq!(
            answer["choices"][0],
            json!({"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null, "tool_calls": [{
                    "id": "toolu_1", "type": "function",
                    "function": {"name": "look", "arguments": "{\"q\":\"a\"}"},
                }],
            }})
        );

        let mut chunks = Chunks::new(Api::Anthropic, "asked", false);
        let mut out = bytes::BytesMut::new();
        for (event, data) in [
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_2", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Looking."}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "look", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"q\":"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"a\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ] {
            chunks.on(event, &data.to_string(), &mut out);
        }
        let text = String::from_utf8(out.to_vec()).unwrap();
        let deltas: Vec<Value> = text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str::<Value>(data).unwrap()["choices"][0].clone())
            .collect();
        assert_eq!(deltas[1]["delta"], json!({"content": "Looking."}));
        assert_eq!(
            deltas[2]["delta"],
            json!({"tool_calls": [{"index": 0, "id": "toolu_2", "type": "function",
                                   "function": {"name": "look", "arguments": ""}}]})
        );
        let arguments: String = deltas
            .iter()
            .filter_map(|d| {
                d.pointer("/delta/tool_calls/0/function/arguments")?
                    .as_str()
            })
            .collect();
        assert_eq!(arguments, "{\"q\":\"a\"}");
        assert_eq!(deltas.last().unwrap()["finish_reason"], "tool_calls");
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    /// Gemini's calls come back as chat's: the answer's `tool_calls` (ids from the
    /// response's, the signature where Gemini's own OpenAI-compatible API puts it,
    /// `tool_calls` for Gemini's `STOP`), and in a stream a chunk per call, whole.
    #[test]
    fn gemini_calls_come_back_as_tool_calls() {
        let answer = json!({
            "responseId": "r1", "modelVersion": "gemini-3-flash",
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "look", "args": {"q": "a"}}, "thoughtSignature": "c2ln"},
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5},
        });
        let completion = back(Api::Gemini, 200, answer.clone());
        assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            completion["choices"][0]["message"],
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_r1_0", "type": "function",
                "function": {"name": "look", "arguments": "{\"q\":\"a\"}"},
                "extra_content": {"google": {"thought_signature": "c2ln"}},
            }]})
        );
        let mut chunks = Chunks::new(Api::Gemini, "asked", false);
        let mut out = bytes::BytesMut::new();
        chunks.on("", &answer.to_string(), &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect();
        assert_eq!(events.len(), 3, "{text}");
        assert_eq!(
            events[1]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "call_r1_0", "type": "function",
                "function": {"name": "look", "arguments": "{\"q\":\"a\"}"},
                "extra_content": {"google": {"thought_signature": "c2ln"}}}])
        );
        assert_eq!(events[2]["choices"][0]["finish_reason"], "tool_calls");
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    /// A streamed prompt Gemini blocked ends as chat's filtered stream: the role chunk, the
    /// `content_filter` finish, the usage chunk asked for, `[DONE]`.
    #[test]
    fn a_blocked_gemini_stream_ends_filtered() {
        let mut chunks = Chunks::new(Api::Gemini, "asked", true);
        let mut out = bytes::BytesMut::new();
        let blocked = json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        });
        chunks.on("", &blocked.to_string(), &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let events: Vec<&str> = text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .collect();
        assert_eq!(events.len(), 4, "{text}");
        let json = |i: usize| serde_json::from_str::<Value>(events[i]).unwrap();
        assert_eq!(json(0)["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(json(1)["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(json(2)["usage"]["prompt_tokens"], 8);
        assert_eq!(events[3], "[DONE]");
    }

    #[test]
    fn errors_come_back_in_openai_shape() {
        let anthropic = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert_eq!(
            back(Api::Anthropic, 529, anthropic),
            json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": "overloaded_error"}})
        );
        let gemini =
            json!({"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}});
        assert_eq!(
            back(Api::Gemini, 429, gemini),
            json!({"error": {"message": "Quota", "type": "RESOURCE_EXHAUSTED", "param": null, "code": "RESOURCE_EXHAUSTED"}})
        );
    }
}
