//! [`ChatStreamWriter`]: what turns a chat completion stream into another API's events
//! ([`from_messages`](crate::from_messages), [`from_responses`](crate::from_responses)),
//! each chat event read once here ([`ChatEvent`]).

use bytes::BytesMut;
use serde_json::Value;

/// A writer of another API's events from a chat stream's parts; [`on`](Self::on) reads
/// each chat event and calls the parts it has, in order.
pub(crate) trait ChatStreamWriter {
    /// The stream's first chunk with a choice (`None`: the end came first).
    fn start(&mut self, chunk: Option<&ChatChunk>, out: &mut BytesMut);
    /// A content delta.
    fn text(&mut self, text: &str, out: &mut BytesMut);
    /// A tool call's delta.
    fn call(&mut self, call: &Value, out: &mut BytesMut);
    /// What it keeps for the end.
    fn kept(&mut self) -> &mut Kept;
    /// The end (`[DONE]`).
    fn done(&mut self, out: &mut BytesMut);
    /// An error the provider sent mid-stream.
    fn error(&mut self, message: &str, out: &mut BytesMut);

    /// Writes what the caller gets for the chat event `data` (of type `event`).
    fn on(&mut self, event: &str, data: &str, out: &mut BytesMut) {
        match ChatEvent::read(event, data) {
            None => {}
            Some(ChatEvent::Done) => {
                self.start(None, out);
                self.done(out);
            }
            Some(ChatEvent::Error(message)) => self.error(&message, out),
            Some(ChatEvent::Chunk(chunk)) => {
                if let Some(usage) = chunk.usage() {
                    self.kept().usage = Some(usage.clone());
                }
                if !chunk.has_choice() {
                    return;
                }
                self.start(Some(&chunk), out);
                if let Some(text) = chunk.text() {
                    self.text(text, out);
                }
                for call in chunk.tool_calls() {
                    self.call(call, out);
                }
                if let Some(finish) = chunk.finish() {
                    self.kept().finish = Some(finish.to_owned());
                }
            }
        }
    }
}

/// What a [`ChatStreamWriter`] keeps of a chat stream for its end.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// The usage chunk's usage.
    pub(crate) usage: Option<Value>,
    /// The finish reason.
    pub(crate) finish: Option<String>,
}

/// One event of a chat stream.
pub(crate) enum ChatEvent {
    /// `[DONE]`: the stream's end.
    Done,
    /// An error (an `error` event, or a chunk with an `error`): its message.
    Error(String),
    /// A chunk.
    Chunk(ChatChunk),
}

impl ChatEvent {
    /// The event of type `event` with `data`; `None` for data that is not JSON.
    pub(crate) fn read(event: &str, data: &str) -> Option<Self> {
        if data.trim() == "[DONE]" {
            return Some(Self::Done);
        }
        let json: Value = serde_json::from_str(data).ok()?;
        if event == "error" || json.get("error").is_some_and(|e| !e.is_null()) {
            let message = json
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("the provider failed mid-stream");
            return Some(Self::Error(message.to_owned()));
        }
        Some(Self::Chunk(ChatChunk(json)))
    }
}

/// A chat completion chunk.
pub(crate) struct ChatChunk(pub(crate) Value);

impl ChatChunk {
    /// Its usage (the chunk `include_usage` asks for).
    pub(crate) fn usage(&self) -> Option<&Value> {
        self.0.get("usage").filter(|u| !u.is_null())
    }

    /// Whether it has a choice (a usage-only chunk has none).
    pub(crate) fn has_choice(&self) -> bool {
        self.0.pointer("/choices/0").is_some()
    }

    /// Its `id`.
    pub(crate) fn id(&self) -> Option<&str> {
        self.0.get("id").and_then(Value::as_str)
    }

    /// Its `model`.
    pub(crate) fn model(&self) -> Option<&str> {
        self.0.get("model").and_then(Value::as_str)
    }

    /// Its content delta, when not empty.
    pub(crate) fn text(&self) -> Option<&str> {
        self.0
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    }

    /// Its tool-call deltas.
    pub(crate) fn tool_calls(&self) -> &[Value] {
        self.0
            .pointer("/choices/0/delta/tool_calls")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Its finish reason.
    pub(crate) fn finish(&self) -> Option<&str> {
        self.0
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
    }
}
