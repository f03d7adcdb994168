//! Streamed answers: how a `text/event-stream` response is watched as it passes, how it
//! ends, and what the layers above hear of its end.
//!
//! The classifier holds a streamed answer back until its first content event (the status
//! line and the role preamble are all the caller would have had): an error event, a cut or
//! a silence before then is the attempt's outcome, so retry and failover handle it as any
//! failed call. From the first content on, the bytes pass as the provider sends them, each
//! event read once for content, usage and the end; the end is
//! the stream's outcome: a terminal event ends it as a success; a cut, a stall or an error
//! event ends it as a failure, which the caller gets as an `Err` item ([`StreamError`])
//! after the provider's bytes, and the layers get through the hooks they set on the body
//! ([`ClassifiedBody::on_end`](crate::ClassifiedBody::on_end)).

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::events::{self, StreamUsage};
use crate::sse::Framer;
use crate::{Dialect, Outcome, OutcomeClass};

/// The longest event held while it is read (1 MiB): a longer one is not read (its bytes
/// still reach the caller) and counted in [`StreamSummary::overflows`].
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// The longest event of a stream with no reading of its own (`Dialect::Other`) held while it
/// is read (16 MiB): an image stream's events carry whole images in base64, and its last one
/// the usage the call is charged.
pub const MAX_UNREAD_EVENT_BYTES: usize = 16 << 20;

/// How long a stream may keep the caller waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTimeouts {
    /// From the response's headers to its first content event (20 s). Past it the attempt
    /// fails as a timeout before anything reached the caller, so it can be retried.
    pub first_content: Duration,
    /// The longest gap between two frames once content flows (30 s). Past it the stream
    /// ends as a timeout.
    pub idle: Duration,
}

impl Default for StreamTimeouts {
    fn default() -> Self {
        Self {
            first_content: Duration::from_secs(20),
            idle: Duration::from_secs(30),
        }
    }
}

impl StreamTimeouts {
    /// The timeouts for a stream in `dialect`: these, or for a stream with no reading of its
    /// own (`Dialect::Other`: an image's, whose first event may come after a minute of
    /// drawing, an audio stream's) six times the first-content timeout and four times the
    /// idle one (two minutes each by default).
    pub fn for_dialect(self, dialect: Dialect) -> Self {
        if dialect != Dialect::Other {
            return self;
        }
        Self {
            first_content: self.first_content.saturating_mul(6),
            idle: self.idle.saturating_mul(4),
        }
    }

    /// The same timeouts for a clock `scale` times faster (a simulation's `time_scale`).
    pub fn time_scaled(self, scale: f64) -> Self {
        if !(scale.is_finite() && scale > 0.0) {
            return self;
        }
        let scaled =
            |d: Duration| Duration::try_from_secs_f64(d.as_secs_f64() / scale).unwrap_or(d);
        Self {
            first_content: scaled(self.first_content),
            idle: scaled(self.idle),
        }
    }
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Its terminal event came (`[DONE]`, a finish reason, `message_stop`,
    /// `response.completed`, Gemini's `finishReason`): the answer is whole.
    Finished,
    /// The body ended, or failed, before a terminal event.
    Cut,
    /// No frame for the idle timeout.
    Stalled,
    /// The provider sent an error event; its class.
    Failed(OutcomeClass),
    /// The caller dropped the body before its end.
    Dropped,
}

impl StreamEnd {
    /// The outcome this end gives the call: success, or the failure's class (`network` for
    /// a cut, `timeout` for a stall, `cancelled` for a caller that left).
    pub fn outcome(self) -> Outcome {
        Outcome::new(match self {
            Self::Finished => OutcomeClass::Success,
            Self::Cut => OutcomeClass::Network,
            Self::Stalled => OutcomeClass::Timeout,
            Self::Failed(class) => class,
            Self::Dropped => OutcomeClass::Cancelled,
        })
    }
}

/// What a stream told, at its end: the hooks on the body get it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    /// How it ended.
    pub end: StreamEnd,
    /// The token counts it reported, when it did (usage chunk, `message_delta`,
    /// `usageMetadata`).
    pub usage: Option<StreamUsage>,
    /// Bytes of content it delivered (text, tool arguments, refusals).
    pub content_bytes: u64,
    /// The most content bytes one event carried.
    pub largest_content: u64,
    /// Events read.
    pub events: u64,
    /// Events longer than [`MAX_EVENT_BYTES`], passed on unread.
    pub overflows: u64,
    /// Their bytes: content they may have carried, unread.
    pub overflow_bytes: u64,
    /// From the response's headers to the first content event.
    pub first_content: Option<Duration>,
    /// From the response's headers to the end.
    pub duration: Duration,
}

impl StreamSummary {
    /// An upper bound of the output tokens a model that shows all it generates generated,
    /// for a stream that did not report them (reasoning it did not show is not bounded
    /// here: the cost layer charges a stream left before its end its worst case instead):
    /// one per byte of content seen (no tokenizer makes a token of less than a
    /// byte; digits, punctuation and newlines often take one each), plus two events as large
    /// as the largest seen (one on its way, one being generated when the stream ended), plus
    /// one. Pessimistic on purpose: English prose runs about four bytes a token, so this is
    /// up to four times what was generated, and it is charged only to streams that ended
    /// without their usage. Events too long to read count as content, every byte.
    pub fn output_bound(&self) -> u64 {
        self.content_bytes
            .saturating_add(self.overflow_bytes)
            .saturating_add(self.largest_content.saturating_mul(2))
            .saturating_add(1)
    }
}

impl StreamSummary {
    /// What was seen of the stream an attempt's `result` was, when it failed before its
    /// first content (on the failure response, or in its error) or is a watched stream
    /// that has ended: `None` for any other result. Layers that charge an attempt read it
    /// to charge a stream from what it told.
    pub fn of_result<R>(result: &Result<http::Response<R>, crate::BoxError>) -> Option<Self> {
        match result {
            Ok(response) => response.extensions().get::<Self>().copied(),
            Err(error) => {
                let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
                while let Some(err) = current {
                    if let Some(classified) = err.downcast_ref::<crate::ClassifiedError>() {
                        return classified.stream().copied();
                    }
                    current = err.source();
                }
                None
            }
        }
    }
}

/// The error a watched stream's body yields, after the provider's bytes, when the stream did
/// not end as the provider meant it to: the caller never takes a truncated answer for a
/// whole one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamError {
    end: StreamEnd,
}

impl StreamError {
    pub(crate) fn new(end: StreamEnd) -> Self {
        Self { end }
    }

    /// How the stream ended.
    pub fn end(&self) -> StreamEnd {
        self.end
    }

    /// Its outcome (class `network`, `timeout`, or the error event's).
    pub fn outcome(&self) -> Outcome {
        self.end.outcome()
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            StreamEnd::Cut => f.write_str("the stream ended before its terminal event"),
            StreamEnd::Stalled => f.write_str("the stream went silent past its idle timeout"),
            StreamEnd::Failed(class) => write!(f, "the provider sent an error event ({class})"),
            StreamEnd::Finished | StreamEnd::Dropped => f.write_str("the stream ended"),
        }
    }
}

impl std::error::Error for StreamError {}

/// A hook run once at a stream's end with its summary.
pub type EndHook = Box<dyn FnOnce(&StreamSummary) + Send + Sync>;

/// Reads a stream's bytes as the classifier does, outside any service: for tools that read
/// recorded streams, and for fuzzing. Feed it the bytes in any chunks; the summary is the
/// same however they were split.
///
/// ```
/// use ballast_classify::stream::Reader;
/// use ballast_classify::{Dialect, StreamEnd};
///
/// let mut reader = Reader::new(Dialect::Chat);
/// reader.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\nda");
/// reader.feed(b"ta: [DONE]\n\n");
/// assert!(reader.is_finished());
/// let summary = reader.summary(StreamEnd::Finished);
/// assert_eq!((summary.content_bytes, summary.events), (2, 2));
/// ```
#[derive(Debug)]
pub struct Reader {
    watch: Watch,
}

impl Reader {
    /// A reader of a stream in `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            watch: Watch::new(dialect, false),
        }
    }

    /// Reads the stream's next bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.watch.feed(bytes);
    }

    /// Whether its terminal event came.
    pub fn is_finished(&self) -> bool {
        self.watch.told.finished
    }

    /// The class of the error event it sent, if it sent one.
    pub fn failed(&self) -> Option<OutcomeClass> {
        self.watch.told.failed
    }

    /// What it told so far, as if it ended `end` now.
    pub fn summary(&self, end: StreamEnd) -> StreamSummary {
        self.watch.summary(end)
    }
}

/// What a stream told so far.
#[derive(Debug)]
pub(crate) struct Told {
    started: Instant,
    usage: Option<StreamUsage>,
    content_bytes: u64,
    largest_content: u64,
    events: u64,
    first_content: Option<Duration>,
    /// A terminal event came.
    pub(crate) finished: bool,
    /// An error event came: its class (the first one).
    pub(crate) failed: Option<OutcomeClass>,
}

impl Told {
    /// Takes in what one event said.
    fn take(&mut self, said: events::Said) {
        self.events += 1;
        if said.content > 0 {
            self.content_bytes += said.content;
            self.largest_content = self.largest_content.max(said.content);
            if self.first_content.is_none() {
                self.first_content = Some(self.started.elapsed());
            }
        }
        said.count_into(&mut self.usage);
        self.finished |= said.end;
        if self.failed.is_none() {
            self.failed = said.error;
        }
    }
}

/// The reading of one stream: its framing, what it told so far, and the hooks to run at
/// its end.
pub(crate) struct Watch {
    dialect: Dialect,
    framer: Framer,
    pub(crate) told: Told,
    hooks: Vec<EndHook>,
    ended: bool,
    /// Whole events rewritten on their way to the caller: the bytes of an event not yet
    /// whole, held until its blank line, and what is done with each.
    reframe: Option<(BytesMut, Rewrite)>,
}

/// What a rewrite does with one whole event: called with its type and data, it writes what
/// the caller gets instead (nothing, to drop it). For a route's translation of a streamed
/// answer into the caller's dialect.
pub type EventRewrite = Box<dyn FnMut(&str, &str, &mut BytesMut) + Send + Sync>;

/// How whole events are rewritten.
enum Rewrite {
    /// Usage-only chunks kept from a caller that did not ask for them; the rest as it came.
    StripUsage,
    /// Each event through a caller's rewrite.
    Events(EventRewrite),
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("dialect", &self.dialect)
            .field("told", &self.told)
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl Watch {
    pub(crate) fn new(dialect: Dialect, strip_usage: bool) -> Self {
        Self {
            reframe: strip_usage.then(|| (BytesMut::new(), Rewrite::StripUsage)),
            dialect,
            framer: Framer::new(if dialect == Dialect::Other {
                MAX_UNREAD_EVENT_BYTES
            } else {
                MAX_EVENT_BYTES
            }),
            told: Told {
                started: Instant::now(),
                usage: None,
                content_bytes: 0,
                largest_content: 0,
                events: 0,
                first_content: None,
                finished: false,
                failed: None,
            },
            hooks: Vec::new(),
            ended: false,
        }
    }

    /// Reads `bytes`, the stream's next ones.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let dialect = self.dialect;
        let told = &mut self.told;
        self.framer.feed(bytes, &mut |event, data| {
            told.take(events::read(dialect, event, data));
        });
    }

    /// What of `data` (the stream's next bytes) goes on to the caller: all of it, unless
    /// usage-only chunks are kept back; then the whole events in it, less those, the rest
    /// held until its event is whole. (Written here, not taken from the SSE parser: the
    /// caller must get the provider's bytes, and the parser gives events, not spans.)
    pub(crate) fn forward(&mut self, data: Bytes) -> Bytes {
        let Some((pending, rewrite)) = self.reframe.as_mut() else {
            return data;
        };
        pending.extend_from_slice(&data);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(pending) {
            let event = pending.split_to(end);
            match rewrite {
                Rewrite::StripUsage => {
                    if !is_usage_only(&event) {
                        out.extend_from_slice(&event);
                    }
                }
                Rewrite::Events(rewrite) => {
                    let mut framer = Framer::new(MAX_EVENT_BYTES);
                    framer.feed(&event, &mut |kind, data| rewrite(kind, data, &mut out));
                }
            }
        }
        out.freeze()
    }

    /// Rewrites each whole event from here on with `rewrite` (in place of any other).
    pub(crate) fn rewrite_events(&mut self, rewrite: EventRewrite) {
        let pending = self
            .reframe
            .take()
            .map(|(pending, _)| pending)
            .unwrap_or_default();
        self.reframe = Some((pending, Rewrite::Events(rewrite)));
    }

    /// The bytes held at the end of the stream (an event without its blank line): passed on
    /// as they came, unless events are rewritten (then it is no event).
    pub(crate) fn rest(&mut self) -> Bytes {
        match self.reframe.as_mut() {
            Some((pending, Rewrite::StripUsage)) => pending.split().freeze(),
            Some((pending, Rewrite::Events(_))) => {
                pending.clear();
                Bytes::new()
            }
            None => Bytes::new(),
        }
    }

    /// Whether content has come.
    pub(crate) fn has_content(&self) -> bool {
        self.told.first_content.is_some()
    }

    pub(crate) fn push_hook(&mut self, hook: EndHook) {
        self.hooks.push(hook);
    }

    /// Ends the stream as `end` (the first end only): runs the hooks.
    pub(crate) fn end(&mut self, end: StreamEnd) {
        if self.ended {
            return;
        }
        self.ended = true;
        // A block the body's last bytes left without its blank line is not an event.
        self.framer.finish();
        let summary = self.summary(end);
        for hook in self.hooks.drain(..) {
            hook(&summary);
        }
    }

    /// What was seen so far, as if it ended `end` now (no hooks run).
    pub(crate) fn summary(&self, end: StreamEnd) -> StreamSummary {
        let told = &self.told;
        StreamSummary {
            end,
            usage: told.usage,
            content_bytes: told.content_bytes,
            largest_content: told.largest_content,
            events: told.events,
            overflows: self.framer.overflows(),
            overflow_bytes: self.framer.overflow_bytes(),
            first_content: told.first_content,
            duration: told.started.elapsed(),
        }
    }
}

/// Where the first whole event in `bytes` ends (after its blank line), if one is whole.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(bytes, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(bytes, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a raw event is a chat stream's usage-only chunk (`"choices": []` and a `usage`
/// object).
fn is_usage_only(event: &[u8]) -> bool {
    if memchr::memmem::find(event, b"\"usage\"").is_none() {
        return false;
    }
    let Ok(text) = std::str::from_utf8(event) else {
        return false;
    };
    let data: String = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect::<Vec<_>>()
        .join("\n");
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&data) else {
        return false;
    };
    json.get("usage").is_some_and(serde_json::Value::is_object)
        && json
            .get("choices")
            .and_then(serde_json::Value::as_array)
            .is_some_and(Vec::is_empty)
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.end(StreamEnd::Dropped);
    }
}
