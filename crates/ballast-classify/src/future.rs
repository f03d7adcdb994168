//! The response future of [`Classify`](crate::Classify).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http::response::Parts;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::read::{ReadBody, ReadError};
use crate::service::{MediaType, declared_length};
use crate::stream::{StreamEnd, StreamTimeouts, Watch};
use crate::watched::{Primed, Watched};
use crate::{
    BodyTooLarge, BoxError, ClassifiedBody, ClassifiedError, ClassifyResponse, Dialect, Outcome,
    OutcomeClass, ResponseView, Verdict,
};

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
        Reading { parts: Option<Parts>, #[pin] read: ReadBody<B>, media: MediaType },
        // A 2xx stream, read until its first content event.
        Priming {
            parts: Option<Parts>,
            stream: Option<Pin<Box<Watched<B>>>>,
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
                    let media = MediaType::of(response.headers());
                    if media == MediaType::EventStream {
                        let (mut parts, body) = response.into_parts();
                        if parts.status.is_success() {
                            // Held back until its first content: what fails before it is
                            // the attempt's outcome, and can be retried.
                            let watch = Watch::new(*this.dialect, *this.strip_usage);
                            let streams = this.streams.for_dialect(*this.dialect);
                            this.state.set(State::Priming {
                                parts: Some(parts),
                                stream: Some(Watched::new(
                                    body,
                                    watch,
                                    streams.first_content,
                                    streams.idle,
                                )),
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
                        media,
                    });
                }
                StateProj::Reading { parts, read, media } => {
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
                    let view = ResponseView::new(parts.status, &parts.headers, Some(&bytes))
                        .with_media(*media);
                    let mut verdict = this.classifier.classify(&view);
                    let usage = verdict.usage.take();
                    attach(&mut parts, verdict);
                    let body = ClassifiedBody::buffered(bytes).with_usage_span(usage);
                    return Poll::Ready(Ok(Response::from_parts(parts, body)));
                }
                StateProj::Priming { parts, stream } => {
                    let (Some(watched), Some(head)) = (stream.as_mut(), parts.as_ref()) else {
                        return Poll::Ready(Err(ClassifiedError::new(
                            Outcome::new(OutcomeClass::Unknown),
                            Some("response future polled after completion".into()),
                        )));
                    };
                    let status = head.status;
                    let primed = ready!(watched.as_mut().poll_prime(cx));
                    let seen = |end| watched.watch.summary(end);
                    let failed = |class, source: BoxError, end| {
                        let outcome = Outcome::new(class).with_status(status);
                        ClassifiedError::new(outcome, Some(source)).with_stream(seen(end))
                    };
                    let mut failed_class = None;
                    let error = match primed {
                        Primed::Ready => None,
                        Primed::Failed(class) => {
                            failed_class = Some(class);
                            None
                        }
                        Primed::Broken(error) => {
                            let classified = ClassifiedError::transport(error);
                            let outcome = classified.outcome().with_status(status);
                            Some(
                                classified
                                    .with_outcome(outcome)
                                    .with_stream(seen(StreamEnd::Cut)),
                            )
                        }
                        Primed::Cut => Some(failed(
                            OutcomeClass::Network,
                            "the stream ended before any content".into(),
                            StreamEnd::Cut,
                        )),
                        Primed::TimedOut => Some(failed(
                            OutcomeClass::Timeout,
                            "no content within the first-content timeout".into(),
                            StreamEnd::Stalled,
                        )),
                    };
                    if let Some(error) = error {
                        return Poll::Ready(Err(error));
                    }
                    let (Some(mut parts), Some(mut watched)) = (parts.take(), stream.take()) else {
                        continue;
                    };
                    if let Some(class) = failed_class {
                        // An error event before any content: nothing reached the caller,
                        // so this is a failed attempt, its bytes the error.
                        let summary = watched.watch.summary(StreamEnd::Failed(class));
                        parts
                            .extensions
                            .insert(Outcome::new(class).with_status(status));
                        parts.extensions.insert(summary);
                        let held = watched.as_mut().take_held();
                        return Poll::Ready(Ok(Response::from_parts(
                            parts,
                            ClassifiedBody::buffered(held),
                        )));
                    }
                    let view = ResponseView::new(parts.status, &parts.headers, None);
                    let verdict = this.classifier.classify(&view);
                    attach(&mut parts, verdict);
                    let body = ClassifiedBody::watched(watched);
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
