//! The response future of [`Classify`](crate::Classify).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http::response::Parts;
use http_body::Body;
use pin_project_lite::pin_project;

use bytes::{Buf, BytesMut};

use crate::read::{ReadBody, ReadError};
use crate::service::{declared_length, is_event_stream};
use crate::stream::{StreamEnd, StreamTimeouts, Watch};
use crate::{
    BodyTooLarge, BoxError, ClassifiedBody, ClassifiedError, ClassifyResponse, Dialect, Outcome,
    OutcomeClass, ResponseView, Verdict,
};

/// The most bytes a stream may send before its first content and still be held back (64
/// KiB): past it the stream goes to the caller as it is.
const MAX_HELD: usize = 64 * 1024;

pin_project! {
    /// The future returned by [`Classify`](crate::Classify): the inner call, then (unless
    /// the response streams) reading its body, then the verdict.
    pub struct ResponseFuture<F, B, C>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<F, B>,
        classifier: C,
        body_limit: usize,
        dialect: Dialect,
        strip_usage: bool,
        streams: StreamTimeouts,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        Calling { #[pin] future: F },
        Reading { parts: Option<Parts>, #[pin] read: ReadBody<B> },
        // A 2xx stream, read until its first content event.
        Priming {
            parts: Option<Parts>,
            body: Option<Pin<Box<B>>>,
            watch: Option<Box<Watch>>,
            held: BytesMut,
            #[pin]
            first: tokio::time::Sleep,
        },
    }
}

impl<F, B, C> ResponseFuture<F, B, C>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(
        future: F,
        classifier: C,
        body_limit: usize,
        (dialect, strip_usage): (Dialect, bool),
        streams: StreamTimeouts,
    ) -> Self {
        Self {
            state: State::Calling { future },
            classifier,
            body_limit,
            dialect,
            strip_usage,
            streams,
        }
    }
}

impl<F, B, C> std::fmt::Debug for ResponseFuture<F, B, C>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl<F, B, C, E> Future for ResponseFuture<F, B, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
    C: ClassifyResponse,
{
    type Output = Result<Response<ClassifiedBody<B>>, ClassifiedError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(err) => {
                            return Poll::Ready(Err(ClassifiedError::transport(err.into())));
                        }
                    };
                    if is_event_stream(&response) {
                        let (mut parts, body) = response.into_parts();
                        if parts.status.is_success() {
                            // Held back until its first content: what fails before it is
                            // the attempt's outcome, and can be retried.
                            this.state.set(State::Priming {
                                parts: Some(parts),
                                body: Some(Box::pin(body)),
                                watch: Some(Box::new(Watch::new(*this.dialect, *this.strip_usage))),
                                held: BytesMut::new(),
                                first: tokio::time::sleep(this.streams.first_content),
                            });
                            continue;
                        }
                        let view = ResponseView::new(parts.status, &parts.headers, None);
                        let verdict = this.classifier.classify(&view);
                        attach(&mut parts, verdict);
                        let body = ClassifiedBody::streaming(body);
                        return Poll::Ready(Ok(Response::from_parts(parts, body)));
                    }
                    let limit = *this.body_limit;
                    if declared_length(&response).is_some_and(|len| len > limit as u64) {
                        return Poll::Ready(Err(too_large(&response, limit)));
                    }
                    let (parts, body) = response.into_parts();
                    this.state.set(State::Reading {
                        parts: Some(parts),
                        read: ReadBody::new(body, limit),
                    });
                }
                StateProj::Reading { parts, read } => {
                    let result = ready!(read.poll_read(cx));
                    let Some(mut parts) = parts.take() else {
                        // Polled again after completion: a caller bug, answered without a panic.
                        return Poll::Ready(Err(ClassifiedError::new(
                            Outcome::new(OutcomeClass::Unknown),
                            Some("response future polled after completion".into()),
                        )));
                    };
                    let bytes = match result {
                        Ok(bytes) => bytes,
                        Err(err) => {
                            let status = parts.status;
                            return Poll::Ready(Err(body_error(err, status, *this.body_limit)));
                        }
                    };
                    let view = ResponseView::new(parts.status, &parts.headers, Some(&bytes));
                    let verdict = this.classifier.classify(&view);
                    let usage = verdict.usage;
                    attach(&mut parts, verdict);
                    let body = ClassifiedBody::buffered(bytes).with_usage_span(usage);
                    return Poll::Ready(Ok(Response::from_parts(parts, body)));
                }
                StateProj::Priming {
                    parts,
                    body,
                    watch,
                    held,
                    mut first,
                } => {
                    let (Some(stream), Some(reading)) = (body.as_mut(), watch.as_mut()) else {
                        return Poll::Ready(Err(ClassifiedError::new(
                            Outcome::new(OutcomeClass::Unknown),
                            Some("response future polled after completion".into()),
                        )));
                    };
                    let status = parts.as_ref().map(|p| p.status).unwrap_or_default();
                    let mut over = false;
                    match stream.as_mut().poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Ok(mut data) = frame.into_data() {
                                let data = data.copy_to_bytes(data.remaining());
                                reading.feed(&data);
                                held.extend_from_slice(&data);
                            }
                            let ready = reading.has_content()
                                || reading.told.finished
                                || reading.told.failed.is_some()
                                || held.len() > MAX_HELD;
                            if !ready {
                                continue;
                            }
                        }
                        Poll::Ready(Some(Err(error))) => {
                            let classified = ClassifiedError::transport(error.into());
                            let outcome = classified.outcome().with_status(status);
                            let seen = reading.summary(StreamEnd::Cut);
                            return Poll::Ready(Err(classified
                                .with_outcome(outcome)
                                .with_stream(seen)));
                        }
                        // Ended: whole if its terminal event came (an empty answer), else cut.
                        Poll::Ready(None) if reading.told.finished => over = true,
                        Poll::Ready(None) => {
                            let outcome = Outcome::new(OutcomeClass::Network).with_status(status);
                            return Poll::Ready(Err(ClassifiedError::new(
                                outcome,
                                Some("the stream ended before any content".into()),
                            )
                            .with_stream(reading.summary(StreamEnd::Cut))));
                        }
                        Poll::Pending => {
                            if first.as_mut().poll(cx).is_ready() {
                                let outcome =
                                    Outcome::new(OutcomeClass::Timeout).with_status(status);
                                return Poll::Ready(Err(ClassifiedError::new(
                                    outcome,
                                    Some("no content within the first-content timeout".into()),
                                )
                                .with_stream(reading.summary(StreamEnd::Stalled))));
                            }
                            return Poll::Pending;
                        }
                    }
                    let (Some(mut parts), Some(stream), Some(reading)) =
                        (parts.take(), body.take(), watch.take())
                    else {
                        continue;
                    };
                    // A stream already over is not polled again.
                    let stream = (!over).then_some(stream);
                    let held = held.split().freeze();
                    if let Some(class) = reading.told.failed {
                        // An error event before any content: nothing reached the caller,
                        // so this is a failed attempt, its bytes the error.
                        parts
                            .extensions
                            .insert(Outcome::new(class).with_status(status));
                        parts
                            .extensions
                            .insert(reading.summary(StreamEnd::Failed(class)));
                        return Poll::Ready(Ok(Response::from_parts(
                            parts,
                            ClassifiedBody::buffered(held),
                        )));
                    }
                    let view = ResponseView::new(parts.status, &parts.headers, None);
                    let verdict = this.classifier.classify(&view);
                    attach(&mut parts, verdict);
                    let body = ClassifiedBody::watched(held, stream, reading, this.streams.idle);
                    return Poll::Ready(Ok(Response::from_parts(parts, body)));
                }
            }
        }
    }
}

fn attach(parts: &mut Parts, verdict: Verdict) {
    parts.extensions.insert(verdict.outcome);
    if let Some(detail) = verdict.detail {
        parts.extensions.insert(*detail);
    }
}

fn too_large<B>(response: &Response<B>, limit: usize) -> ClassifiedError {
    let outcome = Outcome::new(OutcomeClass::InvalidResponse).with_status(response.status());
    ClassifiedError::new(outcome, Some(Box::new(BodyTooLarge::new(limit))))
}

fn body_error(err: ReadError, status: http::StatusCode, limit: usize) -> ClassifiedError {
    match err {
        ReadError::TooLarge => {
            let outcome = Outcome::new(OutcomeClass::InvalidResponse).with_status(status);
            ClassifiedError::new(outcome, Some(Box::new(BodyTooLarge::new(limit))))
        }
        // The headers arrived but the body did not: the connection failed mid-response.
        ReadError::Body(err) => {
            let classified = ClassifiedError::transport(err);
            let outcome = classified.outcome().with_status(status);
            classified.with_outcome(outcome)
        }
    }
}
