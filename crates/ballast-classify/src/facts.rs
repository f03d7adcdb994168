//! [`RequestFacts`]: what the layers need to know of a request, read from it once.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The API a request speaks, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// OpenAI's Chat Completions, and every OpenAI-compatible API (xAI, Groq, DeepSeek,
    /// OpenRouter...): any path not named below (`/chat/completions` among them).
    #[default]
    Chat,
    /// OpenAI's Responses API: a path ending in `/responses`.
    Responses,
    /// Anthropic's Messages API: a path ending in `/messages`.
    Messages,
    /// Gemini's `generateContent` family: `models/{model}:generateContent` or
    /// `:streamGenerateContent`, and its embeddings, `:embedContent` and
    /// `:batchEmbedContents` (no output: their cap is 0). The model and the stream flag are
    /// in the path.
    Gemini,
    /// The legacy Completions API (a `prompt` completed as `choices[].text`: fill-in-the-
    /// middle and base models): a path ending in `/completions` but not
    /// `/chat/completions` (`/v1/completions`, Mistral's `/v1/fim/completions`). Its cap is
    /// `max_tokens`.
    Completions,
    /// OpenAI's Embeddings API, as every OpenAI-compatible API serves it: a path ending in
    /// `/embeddings`. No output tokens (its cap is 0), no stream, and no field Ballast may
    /// add (the API refuses unknown ones).
    Embeddings,
    /// A call Ballast has no reading of: a method other than `POST` (listing models,
    /// fetching a file or a stored answer), a token count (`/count_tokens`,
    /// `:countTokens`), or a `POST` to a path not named above whose body is not a chat
    /// request (no `messages`): moderations, images, audio, files, batches, uploads. Sent as
    /// it is (nothing written into it), bounded at nothing (no prompt bound, no output) but
    /// for an image generation (its prompt bound and [`IMAGE_OUTPUT_BOUND`] an image): it is
    /// charged the usage its answer reports, else its bound, or with none logged unpriced
    /// ([`RequestFacts::has_bound`]); every event of its stream is content, and its stream
    /// ends where its body does. A route sends it to its first target of the call's API
    /// only (`ballast_route::Api::of_unread`: files, batches and ids live in one account).
    Other,
}

impl Dialect {
    /// The dialect of a `POST` to `path`. A path not named by a dialect reads as chat (an
    /// OpenAI-compatible API may serve chat anywhere); [`RequestFacts::read`] reads it as
    /// [`Other`](Self::Other) when its body is not a chat request.
    pub fn of_path(path: &str) -> Self {
        // Most paths have no colon: one byte search spares the substring searches.
        if path.contains(':') {
            if path.contains(":generateContent")
                || path.contains(":streamGenerateContent")
                || is_gemini_embedding(path)
            {
                return Self::Gemini;
            }
            if path.ends_with(":countTokens") {
                return Self::Other;
            }
        }
        if path.ends_with("/count_tokens") {
            Self::Other
        } else if path.ends_with("/messages") {
            Self::Messages
        } else if path.ends_with("/responses") {
            Self::Responses
        } else if path.ends_with("/embeddings") {
            Self::Embeddings
        } else if path.ends_with("/completions") && !path.ends_with("/chat/completions") {
            Self::Completions
        } else {
            Self::Chat
        }
    }

    /// Whether a request to `path` asks for embeddings: OpenAI's `/embeddings`, or Gemini's
    /// `:embedContent` and `:batchEmbedContents` (whose dialect is Gemini's).
    pub fn asks_for_embeddings(path: &str) -> bool {
        path.ends_with("/embeddings") || is_gemini_embedding(path)
    }

    /// A stable `snake_case` name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Responses => "responses",
            Self::Messages => "messages",
            Self::Gemini => "gemini",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Other => "other",
        }
    }
}

/// Counts (or bounds) the prompt tokens of a request body. Run once per request, by the
/// layer that reads it ([`ReadRequestLayer`](crate::ReadRequestLayer)).
pub trait TokenEstimator {
    /// The prompt tokens in `body`, rounded up.
    fn prompt_tokens(&self, body: &[u8]) -> u64;
}

/// The default estimator: a cheap, safe upper bound of one token per two bytes of the body.
///
/// Tokenizers average about four bytes per token on English text and code, and rarely fewer
/// than two even on dense text; counting the whole body (JSON and role names included) as
/// prompt adds more margin. A budget reserved from this bound is rarely short. For tighter
/// estimates, implement [`TokenEstimator`] over a real tokenizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct HalfByteCount;

impl TokenEstimator for HalfByteCount {
    fn prompt_tokens(&self, body: &[u8]) -> u64 {
        (body.len() as u64).div_ceil(2)
    }
}

/// A model name. Shared, so the facts clone per attempt without a copy.
///
/// An `Arc<str>` rather than a slice of the body: every layer reads it as `&str`, and a
/// slice would be checked for UTF-8 at each read (measured: more instructions per call than
/// the one allocation).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ModelName(Arc<str>);

impl ModelName {
    /// A model name from a string.
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, shared.
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Debug for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What Ballast's layers know of a request, as a request extension: read in one pass over
/// the collected body by [`ReadRequestLayer`](crate::ReadRequestLayer), and kept in step
/// with the body by the [`rewrite`](crate::rewrite) functions.
///
/// Every layer that keys, prices, paces or reserves by request (breaker, cost log, throttle,
/// budget) reads these; none reads the body. A request without them (a custom stack with no
/// `ReadRequestLayer`) reads as [`RequestFacts::EMPTY`]: no model, no cap, no prompt, which
/// the layers treat as "unknown" (the breaker keys by host, the budget reserves the default
/// cap at the dearest price), and a warning is logged once per process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestFacts {
    pub(crate) dialect: Dialect,
    pub(crate) model: Option<ModelName>,
    pub(crate) stream: bool,
    pub(crate) output_cap: Option<u64>,
    pub(crate) prompt_tokens: u64,
    pub(crate) json_object: bool,
    /// The read layer asked a chat stream for its usage on the caller's behalf: the
    /// usage-only chunk is not the caller's to see.
    pub(crate) usage_added: bool,
    pub(crate) body: Bytes,
    /// The read layer's deadline for the call ([`Deadline::of`](crate::Deadline::of) reads
    /// it with any the caller set): kept here, not as an extension of its own, so that
    /// giving every call a deadline costs a clock read, not an allocation.
    pub(crate) deadline: Option<tokio::time::Instant>,
}

static WARNED: AtomicBool = AtomicBool::new(false);
static EMPTY: RequestFacts = RequestFacts::EMPTY;

impl RequestFacts {
    /// The facts of a request nothing was read from.
    pub const EMPTY: Self = Self {
        dialect: Dialect::Chat,
        model: None,
        stream: false,
        output_cap: None,
        prompt_tokens: 0,
        json_object: false,
        usage_added: false,
        body: Bytes::new(),
        deadline: None,
    };

    /// Reads the facts of a request to `path` with this `body`, in one pass.
    ///
    /// The body fields are what a JSON parser (`serde_json`) reads from a top-level object,
    /// the last of duplicate names winning as it does; a body that is not a JSON object has
    /// none of them. Per dialect:
    ///
    /// | dialect | model | stream | output cap |
    /// |---|---|---|---|
    /// | chat | `"model"` | `"stream": true` | the larger of `max_completion_tokens`, `max_tokens` |
    /// | responses | `"model"` | `"stream": true` | `max_output_tokens` |
    /// | messages | `"model"` | `"stream": true` | `max_tokens` |
    /// | gemini | the path's `models/{model}:` | `:streamGenerateContent` in the path | the larger of `maxOutputTokens` and `max_output_tokens` in `generationConfig` and in `generation_config` (protobuf JSON takes both spellings); 0 for `:embedContent` and `:batchEmbedContents` |
    /// | completions | `"model"` | `"stream": true` | `max_tokens` |
    /// | embeddings | `"model"` | never | 0: an embedding has no output tokens |
    /// | other | `"model"` (or a form's `model` part) | `"stream": true` | 0, and no prompt bound (see [`Dialect::Other`]); an image generation's `n` (1 to 10) times [`IMAGE_OUTPUT_BOUND`], with its prompt bound |
    ///
    /// A path no dialect names is read as chat when its body has `messages`, else as
    /// other. A request without a body whose method is not `POST` is other whatever its
    /// path (see [`for_method`](Self::for_method)).
    ///
    /// A cap is a non-negative integer that fits `u64`; anything else is no cap.
    pub fn read(path: &str, body: &Bytes, estimator: &dyn TokenEstimator) -> Self {
        let dialect = Dialect::of_path(path);
        let mut found = Found::default();
        // JSON is UTF-8 (RFC 8259): checked first, then one validating walk hands over the
        // top-level members; only the few the facts need are parsed, from their slices.
        if let Ok(text) = std::str::from_utf8(body) {
            let walked = crate::scan::members(text, |name, value| {
                // The usual values (a string without escapes, a plain integer) are read from
                // their text; anything else by `serde_json`, which says what they are.
                let loose = || serde_json::from_str::<Loose<'_>>(value).ok();
                let count = || plain_count(value).or_else(|| loose().and_then(Loose::count));
                // The last of duplicate names wins, as in serde_json's own `Value`.
                match name {
                    "model" => {
                        found.model = match plain_string(value) {
                            Some(plain) => Some(Cow::Borrowed(plain)),
                            None => loose().and_then(Loose::string),
                        }
                    }
                    "stream" => found.stream = value == "true",
                    "max_tokens" => found.max_tokens = count(),
                    "max_completion_tokens" => found.max_completion_tokens = count(),
                    "max_output_tokens" => found.max_output_tokens = count(),
                    "n" => found.n = count(),
                    "generationConfig" => found.generation_config = gemini_cap(value.as_bytes()),
                    "generation_config" => {
                        found.generation_config_snake = gemini_cap(value.as_bytes());
                    }
                    "messages" => found.messages = true,
                    _ => {}
                }
            });
            match walked {
                Some(crate::scan::Document::Object) => found.object = true,
                Some(crate::scan::Document::Other) => {}
                None => found = Found::default(),
            }
        }
        // A path no dialect names is chat's only for a chat request.
        let dialect = if dialect == Dialect::Chat
            && !found.messages
            && !path.ends_with("/chat/completions")
        {
            Dialect::Other
        } else {
            dialect
        };
        let images = if dialect == Dialect::Other {
            images_asked(path, &found)
        } else {
            None
        };
        let (model, stream, output_cap) = match dialect {
            Dialect::Gemini => (
                gemini_model(path).map(ModelName::new),
                path.contains(":streamGenerateContent"),
                if is_gemini_embedding(path) {
                    Some(0)
                } else {
                    found.generation_config.max(found.generation_config_snake)
                },
            ),
            Dialect::Embeddings => (
                found.model.map(|name| ModelName::new(&name)),
                false,
                Some(0),
            ),
            Dialect::Other => (
                match found.model {
                    Some(name) => Some(ModelName::new(&name)),
                    // A form (a transcription, an image edit) names its model in a part.
                    None if !found.object => form_model(body).map(ModelName::new),
                    None => None,
                },
                found.stream,
                // An image generation is bounded: its images at their largest.
                Some(images.map_or(0, |images| images * IMAGE_OUTPUT_BOUND)),
            ),
            _ => (
                found.model.map(|name| ModelName::new(&name)),
                found.stream,
                match dialect {
                    Dialect::Chat => found.max_completion_tokens.max(found.max_tokens),
                    Dialect::Responses => found.max_output_tokens,
                    _ => found.max_tokens,
                },
            ),
        };
        Self {
            dialect,
            model,
            stream,
            output_cap,
            // Nothing bounds what a call Ballast has no reading of is billed for but an
            // image generation's prompt and images; its answer's usage says (see
            // `Dialect::Other`).
            prompt_tokens: if dialect != Dialect::Other || images.is_some() {
                estimator.prompt_tokens(body)
            } else {
                0
            },
            json_object: found.object,
            usage_added: false,
            body: body.clone(),
            deadline: None,
        }
    }

    /// These facts for a request with `method`: a request without a body that is not a
    /// `POST` (a `GET` of a model list, a stored answer, a file; a `DELETE`) generates
    /// nothing and is [`Dialect::Other`] whatever its path. (One with a body is read as its
    /// body says: `http::Request::new` makes a `GET`.)
    pub fn for_method(self, method: &http::Method) -> Self {
        if method == http::Method::POST || !self.body.is_empty() || self.dialect == Dialect::Other {
            return self;
        }
        Self {
            dialect: Dialect::Other,
            stream: false,
            output_cap: Some(0),
            prompt_tokens: 0,
            ..self
        }
    }

    /// Reads the facts of a request whose body is already in memory and puts them in its
    /// extensions: what [`ReadRequestLayer`](crate::ReadRequestLayer) does, for tests and
    /// for stacks that hold `String` or `Bytes` bodies and want no collecting layer. The
    /// body is copied once (the facts keep a reference to it).
    pub fn note<B: crate::InspectBody>(request: &mut http::Request<B>) {
        let body = Bytes::copy_from_slice(request.body().inspect().unwrap_or_default());
        let facts =
            Self::read(request.uri().path(), &body, &HalfByteCount).for_method(request.method());
        request.extensions_mut().insert(facts);
    }

    /// The facts of `request`, or [`EMPTY`](Self::EMPTY) (with a warning, once per process)
    /// when nothing read it.
    pub fn of<B>(request: &http::Request<B>) -> &Self {
        match request.extensions().get::<Self>() {
            Some(facts) => facts,
            None => {
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "ballast",
                        "a request reached a Ballast layer without RequestFacts: put \
                         ReadRequestLayer outermost, or the layers cannot see its model, cap \
                         or prompt size"
                    );
                }
                &EMPTY
            }
        }
    }

    /// The API the request speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The model it asks for.
    pub fn model(&self) -> Option<&str> {
        self.model.as_ref().map(ModelName::as_str)
    }

    /// The model it asks for, shared (cloning it is a reference count).
    pub fn model_name(&self) -> Option<&ModelName> {
        self.model.as_ref()
    }

    /// Whether it asks for a streamed answer.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Whether a worst case bounds what the call may be billed: every call but one with no
    /// reading of its own ([`Dialect::Other`]), and of those an image generation (its prompt
    /// bound, and [`IMAGE_OUTPUT_BOUND`] output tokens an image). A call without a bound is
    /// charged what its answer reports, or nothing (logged unpriced).
    pub fn has_bound(&self) -> bool {
        self.dialect != Dialect::Other || self.output_cap != Some(0)
    }

    /// The output cap it sets, in its dialect's field.
    pub fn output_cap(&self) -> Option<u64> {
        self.output_cap
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> u64 {
        self.body.len() as u64
    }

    /// An upper bound of its prompt tokens (the reading layer's [`TokenEstimator`]).
    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens
    }

    /// The body as it is sent (a reference count, not a copy), for what must show the prompt
    /// itself: content logging. Layers read the facts above, never this, to decide.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Whether a layer asked this chat stream for its usage (`stream_options.include_usage`)
    /// when the caller did not: the caller is not sent the usage-only chunk.
    pub fn stream_usage_added(&self) -> bool {
        self.usage_added
    }

    /// Whether the body is a JSON object (only such bodies are rewritten).
    pub fn is_json_object(&self) -> bool {
        self.json_object
    }

    /// These facts with `model` as the model (for callers and tests that set facts by hand).
    pub fn with_model(mut self, model: &str) -> Self {
        self.model = Some(ModelName::new(model));
        self
    }

    /// These facts with `cap` as the output cap.
    pub fn with_output_cap(mut self, cap: Option<u64>) -> Self {
        self.output_cap = cap;
        self
    }

    /// These facts with `tokens` as the prompt bound.
    pub fn with_prompt_tokens(mut self, tokens: u64) -> Self {
        self.prompt_tokens = tokens;
        self
    }
}

/// The contents of a JSON string value without escapes (`"grok-4"`); `None` for any other
/// value. The walk has checked the value, so a quote at both ends is the whole string.
fn plain_string(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// A JSON value that is only digits (the walk has checked it is a number): its value when it
/// fits `u64`. `None` for anything else (signs, fractions, exponents, larger integers),
/// which `serde_json` then reads.
fn plain_count(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The model in a Gemini path: `.../models/{model}:method`.
/// Whether a Gemini path asks for embeddings (`:embedContent`, `:batchEmbedContents`).
fn is_gemini_embedding(path: &str) -> bool {
    path.ends_with(":embedContent") || path.ends_with(":batchEmbedContents")
}

/// The output tokens of one image at its largest: `gpt-image-1`'s high quality at 1536x1024
/// or 1024x1536, 6 240 tokens (1024x1024 at medium quality is 1 056). An image generation's
/// output cap is this times the images it asks for: a bound of what it may be billed, for
/// the budget's reservation and the worst-case charge of an answer that reports no usage.
pub const IMAGE_OUTPUT_BOUND: u64 = 6_240;

/// The images an image generation (`POST .../images/generations`, a JSON body) asks for:
/// its `n` (1 to 10; 1 when absent), `None` for any other call.
fn images_asked(path: &str, found: &Found<'_>) -> Option<u64> {
    (found.object && path.ends_with("/images/generations"))
        .then(|| found.n.unwrap_or(1).clamp(1, 10))
}

/// The `model` part of a `multipart/form-data` body (OpenAI's transcriptions, translations
/// and image edits), when it is plain text: the part's value, between its headers' blank
/// line and the next line break.
fn form_model(body: &[u8]) -> Option<&str> {
    let name = memchr::memmem::find(body, b"name=\"model\"")?;
    let rest = &body[name..];
    let value = &rest[memchr::memmem::find(rest, b"\r\n\r\n")? + 4..];
    let end = memchr::memmem::find(value, b"\r\n")?;
    let model = std::str::from_utf8(&value[..end]).ok()?.trim();
    (!model.is_empty() && model.len() <= 256).then_some(model)
}

fn gemini_model(path: &str) -> Option<&str> {
    let (_, rest) = path.rsplit_once("models/")?;
    let (model, _) = rest.split_once(':')?;
    (!model.is_empty()).then_some(model)
}

/// What the pass found in a top-level object.
#[derive(Default)]
struct Found<'a> {
    object: bool,
    model: Option<Cow<'a, str>>,
    stream: bool,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    /// `n`: how many images an image generation asks for.
    n: Option<u64>,
    generation_config: Option<u64>,
    generation_config_snake: Option<u64>,
    /// A `messages` member: what makes a body at a path no dialect names a chat request.
    messages: bool,
}

/// Any JSON value, kept only when it is one of the shapes a fact can take.
enum Loose<'a> {
    Str(Cow<'a, str>),
    Count(Option<u64>),
    Other,
}

impl<'a> Loose<'a> {
    fn string(self) -> Option<Cow<'a, str>> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    fn count(self) -> Option<u64> {
        match self {
            Self::Count(n) => n,
            _ => None,
        }
    }
}

impl<'de> de::Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Owned(s)))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Loose<'de>, E> {
        let _ = b;
        Ok(Loose::Other)
    }
    fn visit_u64<E>(self, n: u64) -> Result<Loose<'de>, E> {
        Ok(Loose::Count(Some(n)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Loose<'de>, E> {
        Ok(Loose::Count(u64::try_from(n).ok()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Loose<'de>, E> {
        Ok(Loose::Other)
    }
    fn visit_unit<E>(self) -> Result<Loose<'de>, E> {
        Ok(Loose::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Loose<'de>, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Loose::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Loose<'de>, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Loose::Other)
    }
}

/// The output cap in a Gemini generation config (a valid JSON value's slice).
fn gemini_cap(value: &[u8]) -> Option<u64> {
    serde_json::from_slice::<GenerationConfig>(value).ok()?.0
}

/// Gemini's `generationConfig`: its output cap, when it is an object that has one.
struct GenerationConfig(Option<u64>);

impl<'de> de::Deserialize<'de> for GenerationConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(GenerationConfigVisitor)
    }
}

struct GenerationConfigVisitor;

impl<'de> Visitor<'de> for GenerationConfigVisitor {
    type Value = GenerationConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GenerationConfig, A::Error> {
        let (mut camel, mut snake) = (None, None);
        while let Some(key) = map.next_key::<Loose<'de>>()? {
            let key = key.string();
            match key.as_deref() {
                Some("maxOutputTokens") => camel = map.next_value::<Loose<'de>>()?.count(),
                Some("max_output_tokens") => snake = map.next_value::<Loose<'de>>()?.count(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(GenerationConfig(camel.max(snake)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<GenerationConfig, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| GenerationConfig(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<GenerationConfig, E> {
        Ok(GenerationConfig(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<GenerationConfig, E> {
        Ok(GenerationConfig(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<GenerationConfig, E> {
        Ok(GenerationConfig(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<GenerationConfig, E> {
        Ok(GenerationConfig(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<GenerationConfig, E> {
        Ok(GenerationConfig(None))
    }
    fn visit_unit<E>(self) -> Result<GenerationConfig, E> {
        Ok(GenerationConfig(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(path: &str, body: &str) -> RequestFacts {
        RequestFacts::read(path, &Bytes::from(body.to_owned()), &HalfByteCount)
    }

    /// What has no reading: a body that is not a chat request at a path no dialect names,
    /// a token count, and a request without a body that is not a `POST`; its facts bound
    /// nothing (cap 0, no prompt bound) but keep its model, except an image generation's
    /// (its images at their largest, and its prompt bound). A chat body at such a path is
    /// chat.
    #[test]
    fn what_has_no_reading_is_other() {
        let moderation = facts(
            "/v1/moderations",
            r#"{"model":"omni-moderation-latest","input":"a cat"}"#,
        );
        assert_eq!(moderation.dialect(), Dialect::Other);
        assert_eq!(
            (
                moderation.model(),
                moderation.output_cap(),
                moderation.prompt_tokens()
            ),
            (Some("omni-moderation-latest"), Some(0), 0)
        );
        assert!(!moderation.has_bound());
        // 46 bytes: a bound of 23 prompt tokens; 3 images at 6 240 tokens each.
        let body = r#"{"model":"gpt-image-1","prompt":"a cat","n":3}"#;
        let image = facts("/v1/images/generations", body);
        assert_eq!(image.dialect(), Dialect::Other);
        assert_eq!(
            (image.model(), image.output_cap(), image.prompt_tokens()),
            (Some("gpt-image-1"), Some(3 * IMAGE_OUTPUT_BOUND), 23)
        );
        assert!(image.has_bound());
        // `n` absent is one image; past the API's 10, ten.
        let one = facts("/v1/images/generations", r#"{"prompt":"a cat"}"#);
        assert_eq!(one.output_cap(), Some(IMAGE_OUTPUT_BOUND));
        let many = facts("/v1/images/generations", r#"{"prompt":"a cat","n":99}"#);
        assert_eq!(many.output_cap(), Some(10 * IMAGE_OUTPUT_BOUND));
        let transcription = facts(
            "/v1/audio/transcriptions",
            "--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--x--\r\n",
        );
        assert_eq!(
            (transcription.dialect(), transcription.model()),
            (Dialect::Other, Some("whisper-1"))
        );
        let unnamed = facts("/v1/audio/transcriptions", "--x\r\nname=\"file\"\r\n\r\n");
        assert_eq!(unnamed.model(), None);
        for path in [
            "/v1/messages/count_tokens",
            "/v1beta/models/gemini-2.5-pro:countTokens",
        ] {
            let counted = facts(path, r#"{"model":"m","messages":[],"contents":[]}"#);
            assert_eq!(counted.dialect(), Dialect::Other, "{path}");
        }
        let chat = r#"{"model":"llama3","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(facts("/api/chat", chat).dialect(), Dialect::Chat);
        let listed = facts("/v1/chat/completions", "").for_method(&http::Method::GET);
        assert_eq!(
            (
                listed.dialect(),
                listed.output_cap(),
                listed.prompt_tokens()
            ),
            (Dialect::Other, Some(0), 0)
        );
        // `http::Request::new` makes a GET: one with a body is read as its body says.
        let with_body = facts("/v1/chat/completions", chat).for_method(&http::Method::GET);
        assert_eq!(with_body.dialect(), Dialect::Chat);
    }

    #[test]
    fn each_dialect_reads_its_own_fields() {
        let chat = facts(
            "/v1/chat/completions",
            r#"{"model":"grok-code-fast-1","max_tokens":500,"max_output_tokens":9,"stream":true}"#,
        );
        assert_eq!(chat.dialect(), Dialect::Chat);
        assert_eq!(chat.model(), Some("grok-code-fast-1"));
        assert_eq!(chat.output_cap(), Some(500));
        assert!(chat.is_stream());

        let both = facts(
            "/v1/chat/completions",
            r#"{"max_completion_tokens":64,"max_tokens":32}"#,
        );
        assert_eq!(both.output_cap(), Some(64));

        let responses = facts(
            "/v1/responses",
            r#"{"model":"gpt-5","max_output_tokens":7,"max_tokens":900}"#,
        );
        assert_eq!(responses.output_cap(), Some(7));

        let messages = facts(
            "/v1/messages",
            r#"{"model":"claude","max_tokens":1024,"max_completion_tokens":5}"#,
        );
        assert_eq!(messages.output_cap(), Some(1024));

        let gemini = facts(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            r#"{"model":"ignored","contents":[],"generationConfig":{"temperature":0.2,"maxOutputTokens":900}}"#,
        );
        assert_eq!(gemini.dialect(), Dialect::Gemini);
        assert_eq!(gemini.model(), Some("gemini-2.5-flash"));
        assert!(gemini.is_stream());
        assert_eq!(gemini.output_cap(), Some(900));

        let embeddings = facts(
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":["a","b"],"stream":true,"max_tokens":9}"#,
        );
        assert_eq!(embeddings.dialect(), Dialect::Embeddings);
        assert_eq!(embeddings.model(), Some("text-embedding-3-small"));
        assert!(!embeddings.is_stream());
        assert_eq!(embeddings.output_cap(), Some(0));
    }

    #[test]
    fn what_a_parser_would_not_read_is_not_a_fact() {
        let bad = facts("/v1/messages", r#"{"model":"m","max_tokens":5"#);
        assert_eq!(
            (bad.model(), bad.output_cap(), bad.is_json_object()),
            (None, None, false)
        );
        assert_eq!(
            facts("/v1/chat/completions", r#"{"max_tokens":-1}"#).output_cap(),
            None
        );
        assert_eq!(
            facts("/v1/chat/completions", r#"{"max_tokens":5.0}"#).output_cap(),
            None
        );
        assert_eq!(
            facts(
                "/v1/chat/completions",
                r#"{"max_tokens":5,"max_tokens":"x"}"#
            )
            .output_cap(),
            None
        );
        assert!(!facts("/v1/chat/completions", r#"{"stream":"true"}"#).is_stream());
        assert_eq!(
            facts(
                "/v1/chat/completions",
                r#"{"messages":[{"model":"inner"}],"model":"outer"}"#
            )
            .model(),
            Some("outer")
        );
        assert_eq!(
            facts("/v1/chat/completions", r#"{"mod\u0065l":"esc\"aped"}"#).model(),
            Some("esc\"aped")
        );
        assert_eq!(
            facts("/v1/chat/completions", r#"[{"model":"m"}]"#).model(),
            None
        );
    }

    #[test]
    fn sizes_are_the_bodys() {
        let body = Bytes::from_static(br#"{"model":"grok-code-fast-1"}"#);
        let facts = RequestFacts::read("/v1/chat/completions", &body, &HalfByteCount);
        assert_eq!(facts.model(), Some("grok-code-fast-1"));
        assert_eq!(facts.body_len(), 28);
        assert_eq!(facts.prompt_tokens(), 14);
    }
}
