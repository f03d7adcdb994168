//! [`Classify`]: the service that classifies every response of an HTTP client.

use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::{DEFAULT_BODY_LIMIT, DEFAULT_EMBEDDINGS_BODY_LIMIT};
use crate::stream::StreamTimeouts;
use crate::{
    BoxError, ClassifiedBody, ClassifiedError, ClassifyResponse, Dialect, Provider, RequestFacts,
};

/// Classifies every response of an inner HTTP client service.
///
/// - A response is buffered up to the body limit (the embeddings limit for an embeddings
///   request), classified, and returned with its
///   [`Outcome`](crate::Outcome) (and, for failures with an error body, the
///   [`ProviderError`](crate::ProviderError)) in its extensions. HTTP failures stay `Ok`:
///   the status and body are the caller's to read, and the outcome says what they mean.
/// - A 2xx `text/event-stream` response is held back until its first content event and
///   then passed on as it comes, watched ([`stream`](crate::stream)): an error event, a cut
///   or a silence before the first content is the attempt's failure; after it, the body
///   ends with an `Err` item when the stream does not end as the provider meant it to. Any
///   other streamed response is classified from status and headers and passed through.
/// - A transport error, a body cut off, or a body over the limit becomes a
///   [`ClassifiedError`].
#[derive(Debug, Clone)]
pub struct Classify<S, C = Provider> {
    inner: S,
    classifier: C,
    body_limit: usize,
    embeddings_body_limit: usize,
    streams: StreamTimeouts,
}

impl<S, C> Classify<S, C> {
    /// Wraps `inner`, classifying with `classifier`.
    pub fn new(inner: S, classifier: C) -> Self {
        Self {
            inner,
            classifier,
            body_limit: DEFAULT_BODY_LIMIT,
            embeddings_body_limit: DEFAULT_EMBEDDINGS_BODY_LIMIT,
            streams: StreamTimeouts::default(),
        }
    }

    /// Sets the timeouts of streamed answers (default [`StreamTimeouts::default`]).
    pub fn stream_timeouts(mut self, timeouts: StreamTimeouts) -> Self {
        self.streams = timeouts;
        self
    }

    /// Sets the largest body buffered, in bytes.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets the largest embeddings answer buffered, in bytes (default
    /// [`DEFAULT_EMBEDDINGS_BODY_LIMIT`]).
    pub fn embeddings_body_limit(mut self, bytes: usize) -> Self {
        self.embeddings_body_limit = bytes;
        self
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for Classify<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
    C: ClassifyResponse + Clone,
{
    type Response = Response<ClassifiedBody<ResBody>>;
    type Error = ClassifiedError;
    type Future = ResponseFuture<S::Future, ResBody, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ClassifiedError::transport(e.into()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The dialect a streamed answer is read in: the request's facts, else its path.
        let read = match request.extensions().get::<RequestFacts>() {
            Some(facts) => (facts.dialect(), facts.stream_usage_added()),
            None => (Dialect::of_path(request.uri().path()), false),
        };
        // Embeddings by path: OpenAI's (`/embeddings`) and Gemini's (read in its dialect);
        // and what has no reading (images as base64, audio).
        let limit =
            if read.0 == Dialect::Other || Dialect::asks_for_embeddings(request.uri().path()) {
                self.embeddings_body_limit
            } else {
                self.body_limit
            };
        ResponseFuture::new(
            self.inner.call(request),
            self.classifier.clone(),
            limit,
            read,
            self.streams,
        )
    }
}

/// What a response's content type says of its body, read once per response: the classify
/// future decides by it whether to buffer, and hands it to the classifier with the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaType {
    /// No content type.
    Missing,
    /// `application/json` or a `+json` type.
    Json,
    /// `text/html`.
    Html,
    /// `text/event-stream`.
    EventStream,
    /// Anything else.
    Other,
}

impl MediaType {
    pub(crate) fn of(headers: &http::HeaderMap) -> Self {
        let Some(essence) = media_type(headers) else {
            return Self::Missing;
        };
        if essence.eq_ignore_ascii_case(b"application/json") || essence.ends_with(b"+json") {
            Self::Json
        } else if essence.eq_ignore_ascii_case(b"text/event-stream") {
            Self::EventStream
        } else if essence.eq_ignore_ascii_case(b"text/html") {
            Self::Html
        } else {
            Self::Other
        }
    }
}

/// The content type's media type, without parameters (`application/json` of
/// `application/json; charset=utf-8`); `None` without a content type.
fn media_type(headers: &http::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(CONTENT_TYPE)?.as_bytes();
    let essence = value.split(|b| *b == b';').next().unwrap_or_default();
    Some(essence.trim_ascii())
}

/// The declared length, when the response declares one.
pub(crate) fn declared_length<B>(response: &Response<B>) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
