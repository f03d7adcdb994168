//! [`ReadRequestLayer`]: the request body collected once, under a cap, and its facts read.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::facts::{HalfByteCount, RequestFacts, TokenEstimator};
use crate::read::{ReadBody, ReadError};
use crate::rewrite::{self, ChatCapField};
use crate::{ClassifiedError, Deadline, Outcome, OutcomeClass};

/// A copy of `request` to send again (a retry, a probe sent again, a hedge, another
/// target): method, URI, version, headers, extensions and body; for a [`RequestBody`] the
/// body is a reference count.
pub fn copy_request<B: Clone>(request: &http::Request<B>) -> http::Request<B> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

/// The default cap on a request body: 32 MiB, room for the longest prompts (a 1M-token
/// context is about 4 MB of text).
pub const DEFAULT_REQUEST_LIMIT: usize = 32 * 1024 * 1024;

/// The request body as the layers under [`ReadRequestLayer`] pass it on: the caller's body,
/// collected once. Cloning it (a retry, a hedge) clones a reference count.
///
/// It is an [`http_body::Body`] of one frame, so any HTTP client sends it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestBody {
    data: Bytes,
}

impl RequestBody {
    /// A body of these bytes.
    pub fn new(data: impl Into<Bytes>) -> Self {
        Self { data: data.into() }
    }

    /// The bytes (empty once an HTTP client has sent them).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// The bytes, taken.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }
}

impl From<Bytes> for RequestBody {
    fn from(data: Bytes) -> Self {
        Self { data }
    }
}

impl From<String> for RequestBody {
    fn from(data: String) -> Self {
        Self { data: data.into() }
    }
}

impl From<&'static str> for RequestBody {
    fn from(data: &'static str) -> Self {
        Self { data: data.into() }
    }
}

impl crate::InspectBody for RequestBody {
    fn inspect(&self) -> Option<&[u8]> {
        Some(&self.data)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let data = std::mem::take(&mut self.get_mut().data);
        Poll::Ready((!data.is_empty()).then(|| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

/// A request body longer than [`ReadRequestLayer`]'s cap. Nothing was sent. Its class is
/// [`BadRequest`](OutcomeClass::BadRequest), with status 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTooLarge {
    limit: usize,
}

impl RequestTooLarge {
    /// The cap that was exceeded, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl fmt::Display for RequestTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body exceeds the {} byte limit", self.limit)
    }
}

impl StdError for RequestTooLarge {}

/// The caller's request body failed before it was read whole (its connection broke). Nothing
/// was sent. Its class is [`BadRequest`](OutcomeClass::BadRequest).
#[derive(Debug)]
pub struct RequestBodyError {
    message: Box<str>,
}

impl fmt::Display for RequestBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the request body could not be read: {}", self.message)
    }
}

impl StdError for RequestBodyError {}

pin_project! {
    /// The caller's body, its error made a [`RequestBodyError`] (its text kept) as it is
    /// polled. A named type rather than `MapErr` with a function pointer: a pointer type
    /// that names `BoxError` makes async callers unable to prove their futures `Send`.
    struct CallerBody<B> {
        #[pin]
        body: B,
    }
}

impl<B> Body for CallerBody<B>
where
    B: Body,
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, RequestBodyError>>> {
        self.project()
            .body
            .poll_frame(cx)
            .map_err(|error| RequestBodyError {
                message: error.to_string().into_boxed_str(),
            })
    }
}

/// Reads each request once, outermost: collects its body (any [`http_body::Body`]: axum's,
/// hyper's `Incoming`, a `BoxBody`, `Full`, `String`) under a size cap into a
/// [`RequestBody`], reads its [`RequestFacts`] in one pass, writes a default output cap into
/// requests that name none (when asked), and passes on `http::Request<RequestBody>` with the
/// facts in its extensions.
///
/// ```
/// use ballast_classify::{ReadRequestLayer, RequestBody, RequestFacts};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let service = ServiceBuilder::new()
///     .layer(ReadRequestLayer::new().default_output_cap(1024))
///     .service_fn(|request: http::Request<RequestBody>| async move {
///         let facts = RequestFacts::of(&request);
///         assert_eq!(facts.model(), Some("grok-code-fast-1"));
///         assert_eq!(facts.output_cap(), Some(1024));
///         Ok::<_, ballast_classify::BoxError>(request.into_body().into_bytes())
///     });
/// let body = http_body_util::Full::new(bytes::Bytes::from(r#"{"model":"grok-code-fast-1"}"#));
/// let request = http::Request::post("/v1/chat/completions").body(body)?;
/// let sent = service.oneshot(request).await?;
/// assert_eq!(&sent[..], br#"{"max_tokens":1024,"model":"grok-code-fast-1"}"#);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ReadRequestLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    limit: usize,
    estimator: Arc<dyn TokenEstimator + Send + Sync>,
    default_cap: Option<u64>,
    chat_field: ChatCapField,
    deadline: Option<Duration>,
    stream_usage: bool,
}

impl fmt::Debug for ReadRequestLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadRequestLayer")
            .field("limit", &self.config.limit)
            .field("default_cap", &self.config.default_cap)
            .field("chat_field", &self.config.chat_field)
            .field("deadline", &self.config.deadline)
            .field("stream_usage", &self.config.stream_usage)
            .finish_non_exhaustive()
    }
}

impl Default for ReadRequestLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadRequestLayer {
    /// A layer with the [`DEFAULT_REQUEST_LIMIT`], the [`HalfByteCount`] prompt bound, and
    /// no default cap.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                limit: DEFAULT_REQUEST_LIMIT,
                estimator: Arc::new(HalfByteCount),
                default_cap: None,
                chat_field: ChatCapField::MaxTokens,
                deadline: None,
                stream_usage: false,
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The largest request body read, in bytes; a longer one fails at once as
    /// [`RequestTooLarge`] and nothing is sent.
    pub fn limit(mut self, bytes: usize) -> Self {
        self.config_mut().limit = bytes;
        self
    }

    /// How prompt tokens are bounded (default [`HalfByteCount`]; a tokenizer is tighter).
    pub fn estimator(mut self, estimator: impl TokenEstimator + Send + Sync + 'static) -> Self {
        self.config_mut().estimator = Arc::new(estimator);
        self
    }

    /// Writes `tokens` as the output cap of JSON requests that name none, in their dialect's
    /// field (see [`rewrite::default_output_cap`]), so a reservation of that cap bounds what the
    /// provider can bill.
    pub fn default_output_cap(mut self, tokens: u64) -> Self {
        self.config_mut().default_cap = Some(tokens);
        self
    }

    /// Gives every call a [`Deadline`] `within` from when its body is read (an earlier
    /// deadline the caller set wins), so the layers that make calls wait know how long they
    /// may. It is kept in the [`RequestFacts`]; [`Deadline::of`] reads both.
    pub fn deadline(mut self, within: Duration) -> Self {
        self.config_mut().deadline = Some(within);
        self
    }

    /// Asks streamed chat requests for their usage when the caller did not (see
    /// [`rewrite::stream_usage`]): the stream's cost is then read, not estimated, and the
    /// usage-only chunk is kept from the caller.
    pub fn stream_usage(mut self, on: bool) -> Self {
        self.config_mut().stream_usage = on;
        self
    }

    /// The field a chat request's default cap goes in (default `max_tokens`; OpenAI's
    /// newer models want `max_completion_tokens`).
    pub fn chat_cap_field(mut self, field: ChatCapField) -> Self {
        self.config_mut().chat_field = field;
        self
    }
}

impl<S> Layer<S> for ReadRequestLayer {
    type Service = ReadRequest<S>;

    fn layer(&self, inner: S) -> ReadRequest<S> {
        ReadRequest {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`ReadRequestLayer`].
#[derive(Clone)]
pub struct ReadRequest<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for ReadRequest<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadRequest")
            .field("inner", &self.inner)
            .field("limit", &self.config.limit)
            .finish_non_exhaustive()
    }
}

impl<S> ReadRequest<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

// No bound here names `BoxError` (`S::Error: Into<BoxError>`, `Error = BoxError`, a body
// error `Into<BoxError>`): inside an async caller, rustc then cannot prove the caller's
// future `Send` (it must equate the box's erased lifetime with `'static`). The errors this
// layer makes go into the inner service's error type through `From<ClassifiedError>`
// (`BoxError` has it), and the body's error needs only `Display`.
impl<S, B> Service<http::Request<B>> for ReadRequest<S>
where
    S: Service<http::Request<RequestBody>> + Clone,
    S::Error: From<ClassifiedError>,
    B: Body,
    B::Error: fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<B, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let limit = self.config.limit;
        // A body that says it is too long is refused before a byte of it is read.
        if body.size_hint().lower() > limit as u64 {
            return ResponseFuture::failed(too_large(limit));
        }
        // A body already in memory (`String`, `Bytes`, `Full`, and most small requests off a
        // connection) is read here, and the service made ready for this call is called at
        // once: no clone of the stack below (measured: the clone of the facade's stack cost
        // about 1 000 instructions, the box about 200). A body not ready yet is kept, pinned
        // in its box, for the future, and polled again there with the caller's waker.
        let mut body = Box::pin(ReadBody::new(CallerBody { body }, limit));
        match body
            .as_mut()
            .poll_read(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Ok(data)) => {
                let request = prepare(&self.config, parts, data);
                ResponseFuture {
                    state: State::Calling {
                        future: self.inner.call(request),
                    },
                }
            }
            Poll::Ready(Err(error)) => ResponseFuture::failed(read_error(error, limit)),
            Poll::Pending => {
                // The ready service goes with this call; a clone takes its place (tower's
                // pattern).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Reading {
                        body,
                        parts: Some(parts),
                        inner: Some(inner),
                        config: Arc::clone(&self.config),
                    },
                }
            }
        }
    }
}

/// The refusal for a body that could not be read: too long, or broken.
fn read_error(error: ReadError, limit: usize) -> ClassifiedError {
    match error {
        ReadError::TooLarge => too_large(limit),
        ReadError::Body(source) => {
            ClassifiedError::new(Outcome::new(OutcomeClass::BadRequest), Some(source))
        }
    }
}

fn too_large(limit: usize) -> ClassifiedError {
    let outcome =
        Outcome::new(OutcomeClass::BadRequest).with_status(http::StatusCode::PAYLOAD_TOO_LARGE);
    ClassifiedError::new(outcome, Some(Box::new(RequestTooLarge { limit })))
}

/// The read body with its facts, and the default cap written when asked.
fn prepare(
    config: &Config,
    parts: http::request::Parts,
    data: Bytes,
) -> http::Request<RequestBody> {
    let mut facts = RequestFacts::read(parts.uri.path(), &data, config.estimator.as_ref())
        .for_method(&parts.method);
    if let Some(within) = config.deadline {
        // A request read before (a route's copy to one of its targets) keeps the sooner.
        let own = Deadline::after(within).instant();
        let earlier = parts
            .extensions
            .get::<RequestFacts>()
            .and_then(|facts| facts.deadline);
        facts.deadline = Some(earlier.map_or(own, |earlier| earlier.min(own)));
    }
    // Written before the facts go in the request: no extension lookups on the way.
    let capped = matches!(config.default_cap, Some(tokens)
        if rewrite::write_output_cap(&mut facts, tokens, config.chat_field));
    let asked = config.stream_usage && rewrite::write_stream_usage(&mut facts);
    let mut parts = parts;
    let data = if capped || asked {
        // A caller's `content-length` is wrong for the rewritten body; the client sets one
        // from the body's exact size. (Every rewrite drops it: see `rewrite`.)
        parts.headers.remove(http::header::CONTENT_LENGTH);
        facts.body.clone()
    } else {
        data
    };
    let mut request = http::Request::from_parts(parts, RequestBody { data });
    request.extensions_mut().insert(facts);
    request
}

pin_project! {
    /// The future of [`ReadRequest`]: reads the body, then calls the inner service.
    pub struct ResponseFuture<B, S>
    where
        B: Body,
        S: Service<http::Request<RequestBody>>,
    {
        #[pin]
        state: State<B, S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, S>
    where
        B: Body,
        S: Service<http::Request<RequestBody>>,
    {
        Reading {
            body: Pin<Box<ReadBody<CallerBody<B>>>>,
            parts: Option<http::request::Parts>,
            inner: Option<S>,
            config: Arc<Config>,
        },
        Calling { #[pin] future: S::Future },
        Failed { error: Option<ClassifiedError> },
    }
}

impl<B, S> ResponseFuture<B, S>
where
    B: Body,
    S: Service<http::Request<RequestBody>>,
{
    fn failed(error: ClassifiedError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<B, S> fmt::Debug for ResponseFuture<B, S>
where
    B: Body,
    S: Service<http::Request<RequestBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<B, S> Future for ResponseFuture<B, S>
where
    S: Service<http::Request<RequestBody>>,
    S::Error: From<ClassifiedError>,
    B: Body,
    B::Error: fmt::Display,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let request = match state.as_mut().project() {
                StateProj::Reading {
                    body,
                    parts,
                    inner,
                    config,
                } => {
                    let read = ready!(body.as_mut().poll_read(cx));
                    let (Some(parts), Some(inner)) = (parts.take(), inner.take()) else {
                        unreachable!("the body is read once");
                    };
                    match read {
                        Ok(data) => (inner, prepare(config, parts, data)),
                        Err(error) => {
                            return Poll::Ready(Err(read_error(error, config.limit).into()));
                        }
                    }
                }
                StateProj::Calling { future } => {
                    return future.poll(cx);
                }
                StateProj::Failed { error } => {
                    let error = error.take().unwrap_or_else(|| {
                        ClassifiedError::new(Outcome::new(OutcomeClass::Unknown), None)
                    });
                    return Poll::Ready(Err(error.into()));
                }
            };
            let (mut inner, request) = request;
            let future = inner.call(request);
            state.set(State::Calling { future });
        }
    }
}

/// Whether `error` is one of this layer's refusals (nothing was sent).
pub(crate) fn is_read_refusal(error: &(dyn StdError + 'static)) -> bool {
    error.is::<RequestTooLarge>() || error.is::<RequestBodyError>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// How often the inner service was cloned and called.
    #[derive(Default)]
    struct Counts {
        clones: AtomicUsize,
        calls: AtomicUsize,
    }

    /// An inner service that counts its clones and calls, and answers with the body sent.
    struct Inner(Arc<Counts>);

    impl Clone for Inner {
        fn clone(&self) -> Self {
            self.0.clones.fetch_add(1, Ordering::SeqCst);
            Self(Arc::clone(&self.0))
        }
    }

    impl Service<http::Request<RequestBody>> for Inner {
        type Response = Bytes;
        type Error = ClassifiedError;
        type Future = std::future::Ready<Result<Bytes, ClassifiedError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ClassifiedError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(request.into_body().into_bytes()))
        }
    }

    /// A body that is not ready at its first poll (it wakes its caller), then is.
    struct Late {
        data: Option<Bytes>,
        waited: bool,
    }

    impl Body for Late {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let this = self.get_mut();
            if !this.waited {
                this.waited = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(this.data.take().map(|data| Ok(Frame::data(data))))
        }
    }

    const BODY: &[u8] = br#"{"model":"grok-4"}"#;

    fn late() -> Late {
        Late {
            data: Some(Bytes::from_static(BODY)),
            waited: false,
        }
    }

    fn request<B>(body: B) -> http::Request<B> {
        http::Request::post("/v1/chat/completions")
            .body(body)
            .expect("a valid request")
    }

    /// Sends `body` through the layer; the inner service's clones and calls.
    async fn clones_and_calls<B>(body: B) -> (usize, usize)
    where
        B: Body + Send + 'static,
        B::Error: fmt::Display,
    {
        let counts = Arc::new(Counts::default());
        let service = ReadRequestLayer::new().layer(Inner(Arc::clone(&counts)));
        let sent = service.oneshot(request(body)).await.expect("an answer");
        assert_eq!(&sent[..], BODY);
        (
            counts.clones.load(Ordering::SeqCst),
            counts.calls.load(Ordering::SeqCst),
        )
    }

    /// A body already in memory is read in `call`, and the service made ready is called
    /// there: the stack below is not cloned.
    #[tokio::test]
    async fn a_body_in_memory_calls_the_ready_service_without_a_clone() {
        let body = http_body_util::Full::new(Bytes::from_static(BODY));
        assert_eq!(clones_and_calls(body).await, (0, 1));
    }

    /// A body not ready yet is read by the future, which calls a clone of the service (the
    /// one made ready) once it is whole.
    #[tokio::test]
    async fn a_body_not_ready_is_read_by_the_future() {
        assert_eq!(clones_and_calls(late()).await, (1, 1));
    }

    /// A call dropped while its body is still coming sends nothing.
    #[tokio::test]
    async fn a_call_dropped_before_its_body_is_whole_sends_nothing() {
        let counts = Arc::new(Counts::default());
        let mut service = ReadRequestLayer::new().layer(Inner(Arc::clone(&counts)));
        let body = late();
        let ready = ServiceExt::<http::Request<Late>>::ready(&mut service).await;
        let future = ready.expect("ready").call(request(body));
        drop(future);
        assert_eq!(counts.calls.load(Ordering::SeqCst), 0);
    }
}
