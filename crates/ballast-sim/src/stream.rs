//! Streamed answers: the events of each dialect, their pace, their faults, and the bill of
//! what was generated before the stream ended or its client left.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use serde_json::json;
use tokio::sync::mpsc;

use crate::simulator::BoxError;
use crate::{Flavor, SimOutcome, Simulator};

/// The body of a simulated answer: the whole JSON at once, or a stream of events.
#[derive(Debug)]
pub enum SimBody {
    /// A whole answer.
    Full(Full<Bytes>),
    /// Server-sent events, as the provider sends them.
    Events(mpsc::Receiver<Result<Bytes, StreamCut>>),
}

impl From<Full<Bytes>> for SimBody {
    fn from(body: Full<Bytes>) -> Self {
        Self::Full(body)
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Full(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
            Self::Events(events) => events.poll_recv(cx).map(|item| {
                item.map(|result| {
                    result
                        .map(Frame::data)
                        .map_err(|cut| Box::new(cut) as BoxError)
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(body) => body.is_end_stream(),
            Self::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(body) => body.size_hint(),
            Self::Events(_) => SizeHint::default(),
        }
    }
}

/// The connection of a streamed answer was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCut;

impl std::fmt::Display for StreamCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the provider mid-stream")
    }
}

impl std::error::Error for StreamCut {}

/// What goes wrong in one stream, and where: before event `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fault {
    Cut { at: usize },
    Stall { at: usize, for_: Duration },
    ErrorEvent { at: usize },
    Malformed { at: usize },
}

/// Everything decided about one streamed answer.
#[derive(Debug, Clone)]
pub(crate) struct StreamPlan {
    pub(crate) id: u64,
    pub(crate) flavor: Flavor,
    pub(crate) model: String,
    pub(crate) prompt: u64,
    pub(crate) cached: u64,
    /// Output tokens of the answer, delivered in the events.
    pub(crate) completion: u64,
    /// Output tokens of reasoning, all generated before the first content, never shown.
    pub(crate) reasoning: u64,
    pub(crate) hit_cap: bool,
    pub(crate) chunk_tokens: u64,
    /// Simulated time per output token.
    pub(crate) per_token: Duration,
    /// Extra wait before the first content event.
    pub(crate) slow_first: Duration,
    pub(crate) include_usage: bool,
    /// The Responses API's events, not Chat Completions' chunks (OpenAI and xAI).
    pub(crate) responses: bool,
    /// The legacy Completions API's chunks (`choices[].text`), not Chat Completions'.
    pub(crate) legacy: bool,
    pub(crate) no_done: bool,
    pub(crate) fault: Option<Fault>,
    /// The tool the answer calls instead of writing text (chat and Anthropic).
    pub(crate) tool_call: Option<String>,
    /// Ticks per uncached prompt token, cached prompt token, output token.
    pub(crate) prices: (u64, u64, u64),
}

/// One event of a stream: its bytes, the output tokens generated once it is sent, and
/// whether it carries content.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) bytes: Bytes,
    pub(crate) tokens: u64,
    pub(crate) content: bool,
}

fn sse(event: Option<&str>, data: &serde_json::Value) -> Bytes {
    match event {
        Some(name) => Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

/// The tokens a streamed answer is made of, in order, cycled: from one byte to seven, ASCII
/// and not. A real tokenizer's tokens are never shorter than one byte, and digits,
/// punctuation and newlines often take one each; the answer starts with a run of them, so a
/// client's estimate of tokens from bytes is tried where it is weakest.
const TOKENS: [&str; 12] = [
    "4", "2", ",", "\n", "x", "The", " answer", " is", " 語", "é", ".", " ok",
];

/// The text of the first `tokens` tokens of every simulated streamed answer (its content,
/// as a client reassembles it from the events).
pub fn completion_text(tokens: u64) -> String {
    (0..tokens).map(token_text).collect()
}

fn token_text(index: u64) -> &'static str {
    TOKENS[(index % TOKENS.len() as u64) as usize]
}

impl StreamPlan {
    /// The content chunks: (text, tokens after it).
    fn chunks(&self) -> Vec<(String, u64)> {
        let step = self.chunk_tokens.max(1);
        let mut chunks = Vec::new();
        let mut done = 0;
        while done < self.completion {
            let n = step.min(self.completion - done);
            chunks.push(((done..done + n).map(token_text).collect(), done + n));
            done += n;
        }
        chunks
    }

    /// A tool call's arguments ([`TOOL_INPUT`](crate::TOOL_INPUT)) in three pieces, each
    /// with the answer's tokens generated once it is sent.
    fn argument_pieces(&self) -> Vec<(&'static str, u64)> {
        let input = crate::tools::TOOL_INPUT;
        let (a, b) = (input.len() / 3, 2 * input.len() / 3);
        [&input[..a], &input[a..b], &input[b..]]
            .into_iter()
            .enumerate()
            .map(|(i, piece)| (piece, self.completion * (i as u64 + 1) / 3))
            .collect()
    }

    /// The events in order, faults aside.
    pub(crate) fn events(&self) -> Vec<Event> {
        let (id, model) = (format!("sim-{}", self.id), self.model.as_str());
        let chunks = self.chunks();
        let plain = |bytes: Bytes, tokens: u64| Event {
            bytes,
            tokens,
            content: false,
        };
        let mut events = Vec::new();
        match self.flavor {
            Flavor::XAi | Flavor::OpenAi if self.responses => {
                self.responses_events(&chunks, &mut events);
            }
            Flavor::XAi | Flavor::OpenAi if self.legacy => {
                let chunk = |text: &str, finish: Option<&str>| {
                    json!({"id": format!("cmpl-sim{}", self.id), "object": "text_completion",
                           "created": 1_764_000_000u64, "model": model,
                           "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]})
                };
                for (text, tokens) in &chunks {
                    events.push(Event {
                        bytes: sse(None, &chunk(text, None)),
                        tokens: *tokens,
                        content: true,
                    });
                }
                let finish = if self.hit_cap { "length" } else { "stop" };
                events.push(plain(sse(None, &chunk("", Some(finish))), self.completion));
                let id = format!("cmpl-sim{}", self.id);
                self.usage_and_done(&id, "text_completion", &mut events);
            }
            Flavor::XAi | Flavor::OpenAi => {
                let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                    json!({"id": id, "object": "chat.completion.chunk", "created": 1_764_000_000u64,
                           "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                };
                events.push(plain(
                    sse(
                        None,
                        &chunk(json!({"role": "assistant", "content": ""}), None),
                    ),
                    0,
                ));
                if let Some(name) = &self.tool_call {
                    // The call's id and name, then its arguments in pieces.
                    let call = json!({"tool_calls": [{"index": 0, "id": format!("call_sim{}", self.id),
                        "type": "function", "function": {"name": name, "arguments": ""}}]});
                    events.push(Event {
                        bytes: sse(None, &chunk(call, None)),
                        tokens: 0,
                        content: true,
                    });
                    for (piece, tokens) in self.argument_pieces() {
                        let delta =
                            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
                        events.push(Event {
                            bytes: sse(None, &chunk(delta, None)),
                            tokens,
                            content: true,
                        });
                    }
                } else {
                    for (text, tokens) in &chunks {
                        events.push(Event {
                            bytes: sse(None, &chunk(json!({"content": text}), None)),
                            tokens: *tokens,
                            content: true,
                        });
                    }
                }
                let finish = match (&self.tool_call, self.hit_cap) {
                    (Some(_), _) => "tool_calls",
                    (None, true) => "length",
                    (None, false) => "stop",
                };
                events.push(plain(
                    sse(None, &chunk(json!({}), Some(finish))),
                    self.completion,
                ));
                self.usage_and_done(&id, "chat.completion.chunk", &mut events);
            }
            Flavor::Anthropic => {
                let start = json!({"type": "message_start", "message": {"id": format!("msg_sim{}", self.id),
                    "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": null, "usage": {"input_tokens": self.prompt - self.cached,
                    "cache_read_input_tokens": self.cached, "cache_creation_input_tokens": 0, "output_tokens": 1}}});
                events.push(plain(sse(Some("message_start"), &start), 0));
                let block = match &self.tool_call {
                    Some(name) => json!({"type": "tool_use", "id": format!("toolu_sim{}", self.id),
                        "name": name, "input": {}}),
                    None => json!({"type": "text", "text": ""}),
                };
                events.push(plain(
                    sse(
                        Some("content_block_start"),
                        &json!({"type": "content_block_start", "index": 0, "content_block": block}),
                    ),
                    0,
                ));
                events.push(plain(sse(Some("ping"), &json!({"type": "ping"})), 0));
                let deltas: Vec<(serde_json::Value, u64)> = match &self.tool_call {
                    Some(_) => self
                        .argument_pieces()
                        .into_iter()
                        .map(|(piece, tokens)| {
                            (
                                json!({"type": "input_json_delta", "partial_json": piece}),
                                tokens,
                            )
                        })
                        .collect(),
                    None => chunks
                        .iter()
                        .map(|(text, tokens)| {
                            (json!({"type": "text_delta", "text": text}), *tokens)
                        })
                        .collect(),
                };
                for (delta, tokens) in deltas {
                    events.push(Event {
                        bytes: sse(
                            Some("content_block_delta"),
                            &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
                        ),
                        tokens,
                        content: true,
                    });
                }
                events.push(plain(
                    sse(
                        Some("content_block_stop"),
                        &json!({"type": "content_block_stop", "index": 0}),
                    ),
                    self.completion,
                ));
                let stop = match (&self.tool_call, self.hit_cap) {
                    (Some(_), _) => "tool_use",
                    (None, true) => "max_tokens",
                    (None, false) => "end_turn",
                };
                events.push(plain(
                    sse(
                        Some("message_delta"),
                        &json!({"type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": null},
                        "usage": {"output_tokens": self.output(self.completion)}}),
                    ),
                    self.completion,
                ));
                events.push(plain(
                    sse(Some("message_stop"), &json!({"type": "message_stop"})),
                    self.completion,
                ));
            }
            Flavor::Gemini => {
                // Gemini sends a call whole, in one chunk, once it is generated.
                let parts: Vec<(serde_json::Value, u64)> = match &self.tool_call {
                    Some(name) => vec![(crate::wire::gemini_call(self.id, name), self.completion)],
                    None => chunks
                        .iter()
                        .map(|(text, tokens)| (json!({ "text": text }), *tokens))
                        .collect(),
                };
                let last = parts.len().saturating_sub(1);
                for (i, (part, tokens)) in parts.into_iter().enumerate() {
                    let mut candidate =
                        json!({"content": {"parts": [part], "role": "model"}, "index": 0});
                    if i == last {
                        candidate["finishReason"] =
                            json!(if self.hit_cap && self.tool_call.is_none() {
                                "MAX_TOKENS"
                            } else {
                                "STOP"
                            });
                    }
                    events.push(Event {
                        bytes: sse(
                            None,
                            &json!({"candidates": [candidate],
                            "usageMetadata": crate::wire::gemini_usage(&self.usage(), tokens),
                            "modelVersion": model, "responseId": format!("sim{}", self.id)}),
                        ),
                        tokens,
                        content: true,
                    });
                }
            }
        }
        events
    }

    /// The Responses API's events: the response created and in progress, its message and
    /// text part opened, a text delta per chunk, the part and message closed, and
    /// `response.completed` (or `response.incomplete` at the cap) with the usage. Each event
    /// is named and numbered.
    fn responses_events(&self, chunks: &[(String, u64)], events: &mut Vec<Event>) {
        let (id, item) = (
            format!("resp_sim{}", self.id),
            format!("msg_sim{}", self.id),
        );
        let model = self.model.as_str();
        let mut sequence = 0u64;
        let mut push = |kind: &str, mut data: serde_json::Value, tokens: u64, content: bool| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(sequence);
            sequence += 1;
            events.push(Event {
                bytes: sse(Some(kind), &data),
                tokens,
                content,
            });
        };
        let response = |status: &str, usage: serde_json::Value| {
            json!({"id": id, "object": "response", "created_at": 1_764_000_000u64,
                   "status": status, "model": model, "output": [], "usage": usage})
        };
        push(
            "response.created",
            json!({"response": response("in_progress", serde_json::Value::Null)}),
            0,
            false,
        );
        push(
            "response.in_progress",
            json!({"response": response("in_progress", serde_json::Value::Null)}),
            0,
            false,
        );
        push(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": item, "type": "message", "status": "in_progress",
                   "role": "assistant", "content": []}}),
            0,
            false,
        );
        push(
            "response.content_part.added",
            json!({"item_id": item, "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}),
            0,
            false,
        );
        for (text, tokens) in chunks {
            push(
                "response.output_text.delta",
                json!({"item_id": item, "output_index": 0, "content_index": 0, "delta": text}),
                *tokens,
                true,
            );
        }
        let whole = completion_text(self.completion);
        let done = self.completion;
        push(
            "response.output_text.done",
            json!({"item_id": item, "output_index": 0, "content_index": 0, "text": whole}),
            done,
            false,
        );
        let part = json!({"type": "output_text", "text": whole, "annotations": []});
        push(
            "response.content_part.done",
            json!({"item_id": item, "output_index": 0, "content_index": 0, "part": part}),
            done,
            false,
        );
        let status = if self.hit_cap {
            "incomplete"
        } else {
            "completed"
        };
        push(
            "response.output_item.done",
            json!({"output_index": 0, "item": {"id": item, "type": "message", "status": status,
                   "role": "assistant", "content": [part]}}),
            done,
            false,
        );
        let usage = json!({"input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output(self.completion),
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.prompt + self.output(self.completion)});
        let (kind, status) = if self.hit_cap {
            ("response.incomplete", "incomplete")
        } else {
            ("response.completed", "completed")
        };
        push(
            kind,
            json!({"response": response(status, usage)}),
            done,
            false,
        );
    }

    /// What the provider bills once `tokens` of the answer are generated: the prompt, the
    /// reasoning before them, and them.
    pub(crate) fn ticks(&self, tokens: u64) -> u64 {
        let (input, cached, output) = self.prices;
        (self.prompt - self.cached)
            .saturating_mul(input)
            .saturating_add(self.cached.saturating_mul(cached))
            .saturating_add(self.output(tokens).saturating_mul(output))
    }

    /// Output tokens billed once `tokens` of the answer are generated: the reasoning too.
    pub(crate) fn output(&self, tokens: u64) -> u64 {
        self.reasoning.saturating_add(tokens)
    }

    /// The usage in the answer's own counts, as the wire module writes it.
    fn usage(&self) -> crate::wire::Usage {
        crate::wire::Usage {
            prompt: self.prompt,
            cached: self.cached,
            completion: self.completion,
            reasoning: self.reasoning,
            ticks: self.ticks(self.completion),
            hit_cap: self.hit_cap,
        }
    }

    /// The end of an OpenAI-style stream: the usage-only chunk when it was asked for, then
    /// `[DONE]` unless the plan leaves it out.
    fn usage_and_done(&self, id: &str, object: &str, events: &mut Vec<Event>) {
        let end = |bytes| Event {
            bytes,
            tokens: self.completion,
            content: false,
        };
        if self.include_usage {
            let usage = json!({"id": id, "object": object, "model": self.model, "choices": [],
                "usage": crate::wire::chat_usage(self.flavor, &self.usage())});
            events.push(end(sse(None, &usage)));
        }
        if !self.no_done {
            events.push(end(Bytes::from_static(b"data: [DONE]\n\n")));
        }
    }

    /// The error event of this dialect.
    fn error_event(&self) -> Bytes {
        if self.responses {
            return sse(
                Some("error"),
                &json!({"type": "error", "code": "server_error",
                    "message": "The server had an error while processing your request. Sorry about that!",
                    "param": null, "sequence_number": 0}),
            );
        }
        match self.flavor {
            Flavor::Anthropic => sse(
                Some("error"),
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
            Flavor::Gemini => sse(
                None,
                &json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
            ),
            _ => sse(
                None,
                &json!({"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error"}}),
            ),
        }
    }
}

/// Sends `plan`'s events at their pace into `send`, strikes its fault, and bills the
/// ledger entry when it ends or its client leaves.
pub(crate) async fn produce(
    sim: Simulator,
    plan: StreamPlan,
    send: mpsc::Sender<Result<Bytes, StreamCut>>,
) {
    let events = plan.events();
    let gap = plan
        .per_token
        .saturating_mul(u32::try_from(plan.chunk_tokens).unwrap_or(u32::MAX));
    let mut sent_tokens = 0;
    let mut first_content = true;
    for (i, event) in events.iter().enumerate() {
        match plan.fault {
            Some(Fault::Cut { at }) if at == i => {
                let _ = send.send(Err(StreamCut)).await;
                sim.bill_stream(
                    plan.id,
                    SimOutcome::StreamCut,
                    plan.ticks(sent_tokens),
                    plan.output(sent_tokens),
                    false,
                );
                return;
            }
            Some(Fault::ErrorEvent { at }) if at == i => {
                let _ = send.send(Ok(plan.error_event())).await;
                sim.bill_stream(
                    plan.id,
                    SimOutcome::StreamError,
                    plan.ticks(sent_tokens),
                    plan.output(sent_tokens),
                    false,
                );
                return;
            }
            Some(Fault::Stall { at, for_ }) if at == i => sleep(&sim, for_).await,
            Some(Fault::Malformed { at }) if at == i => {
                let broken =
                    Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"to\n\n");
                if send.send(Ok(broken)).await.is_err() {
                    sim.bill_stream(
                        plan.id,
                        SimOutcome::Success,
                        plan.ticks(sent_tokens),
                        plan.output(sent_tokens),
                        false,
                    );
                    return;
                }
            }
            _ => {}
        }
        if event.content {
            let mut wait = gap;
            if first_content {
                first_content = false;
                wait = wait.saturating_add(plan.slow_first);
            }
            sleep(&sim, wait).await;
        }
        // The provider generated this event's tokens whether or not its client is there.
        if send.send(Ok(event.bytes.clone())).await.is_err() {
            sim.bill_stream(
                plan.id,
                SimOutcome::Success,
                plan.ticks(event.tokens),
                plan.output(event.tokens),
                false,
            );
            return;
        }
        sent_tokens = event.tokens;
    }
    sim.bill_stream(
        plan.id,
        SimOutcome::Success,
        plan.ticks(plan.completion),
        plan.output(plan.completion),
        true,
    );
}

async fn sleep(sim: &Simulator, simulated: Duration) {
    if !simulated.is_zero() {
        tokio::time::sleep(sim.real_duration(simulated)).await;
    }
}
