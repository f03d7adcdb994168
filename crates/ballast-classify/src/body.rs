//! [`ClassifiedBody`]: the response body after classification.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::stream::{EndHook, EventRewrite, StreamEnd, StreamError, Watch};
use crate::{BoxError, UsageSpan};

pin_project! {
    /// The body of a classified response: the buffered bytes the classifier read; or, for a
    /// `text/event-stream` answer, the stream, watched as it passes (see
    /// [`stream`](crate::stream)): its bytes unchanged, then an `Err(`[`StreamError`]`)` if
    /// it did not end as the provider meant it to; or a stream passed through untouched.
    ///
    /// Outer layers that need the body (usage and cost extraction) read
    /// [`bytes`](Self::bytes) instead of collecting it again; layers that need a stream's
    /// end set a hook with [`on_end`](Self::on_end).
    #[derive(Debug)]
    pub struct ClassifiedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Buffered { data: Option<Bytes>, usage: Option<UsageSpan> },
        Streaming { #[pin] body: B },
        Watched {
            // The bytes read before the first content, held back until then.
            prefix: Option<Bytes>,
            // Boxed: the classifier read the first frames of it, then handed it on. `None`
            // once it has ended.
            body: Option<Pin<Box<B>>>,
            watch: Box<Watch>,
            // Fires at the idle timeout from the last frame: moved on only when it fires
            // early (a clock read per frame, not a timer reset).
            idle: Pin<Box<tokio::time::Sleep>>,
            idle_after: Duration,
            last_frame: tokio::time::Instant,
            // The error to yield next, then the end.
            failing: Option<StreamEnd>,
            done: bool,
        },
    }
}

impl<B> ClassifiedBody<B> {
    /// A body of already-read bytes.
    pub fn buffered(data: Bytes) -> Self {
        Self {
            kind: Kind::Buffered {
                data: Some(data),
                usage: None,
            },
        }
    }

    /// Notes where the buffered body's usage object sits (the classifier found it on its
    /// pass over the body); ignored for a streaming body.
    pub fn with_usage_span(mut self, span: Option<UsageSpan>) -> Self {
        if let Kind::Buffered { usage, .. } = &mut self.kind {
            *usage = span;
        }
        self
    }

    /// A body passed through unread.
    pub fn streaming(body: B) -> Self {
        Self {
            kind: Kind::Streaming { body },
        }
    }

    /// The whole body, when it was buffered and not yet consumed. Cloning the `Bytes` is cheap.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Buffered { data, .. } => data.as_ref(),
            Kind::Streaming { .. } | Kind::Watched { .. } => None,
        }
    }

    /// A watched stream: `prefix` (read while waiting for the first content) first, then
    /// the rest of `body`, each frame read by `watch`, at most `idle_after` apart.
    pub(crate) fn watched(
        prefix: Bytes,
        body: Option<Pin<Box<B>>>,
        watch: Box<Watch>,
        idle_after: Duration,
    ) -> Self {
        Self {
            kind: Kind::Watched {
                prefix: (!prefix.is_empty()).then_some(prefix),
                body,
                watch,
                idle: Box::pin(tokio::time::sleep(idle_after)),
                idle_after,
                last_frame: tokio::time::Instant::now(),
                failing: None,
                done: false,
            },
        }
    }

    /// Whether the body streams (it was not buffered).
    pub fn is_streaming(&self) -> bool {
        matches!(self.kind, Kind::Streaming { .. } | Kind::Watched { .. })
    }

    /// Rewrites each whole event of a watched stream on its way to the caller (a route's
    /// translation into the caller's dialect): `rewrite` gets each event's type and data
    /// and writes what the caller gets instead. The layers still read the provider's own
    /// events. `Err(rewrite)` when the body is not a watched stream.
    pub fn rewrite_events(&mut self, rewrite: EventRewrite) -> Result<(), EventRewrite> {
        match &mut self.kind {
            Kind::Watched { watch, .. } => {
                watch.rewrite_events(rewrite);
                Ok(())
            }
            _ => Err(rewrite),
        }
    }

    /// Runs `hook` once when the watched stream ends (finished, cut, stalled, failed, or
    /// dropped by the caller), with what it told. `Err(hook)` when the body is not a
    /// watched stream (buffered, or passed through untouched): nothing will call it.
    pub fn on_end(&mut self, hook: EndHook) -> Result<(), EndHook> {
        match &mut self.kind {
            Kind::Watched { watch, .. } => {
                watch.push_hook(hook);
                Ok(())
            }
            _ => Err(hook),
        }
    }
}

impl<B> crate::InspectBody for ClassifiedBody<B> {
    fn inspect(&self) -> Option<&[u8]> {
        self.bytes().map(|b| &b[..])
    }

    fn usage_span(&self) -> Option<UsageSpan> {
        match &self.kind {
            Kind::Buffered {
                data: Some(_),
                usage,
            } => *usage,
            _ => None,
        }
    }

    fn on_end(&mut self, hook: EndHook) -> Result<(), EndHook> {
        ClassifiedBody::on_end(self, hook)
    }

    fn watches_stream(&self) -> bool {
        matches!(self.kind, Kind::Watched { .. })
    }
}

impl<B> Body for ClassifiedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Buffered { data, .. } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Streaming { body } => body.poll_frame(cx).map(|frame| {
                frame.map(|result| {
                    result
                        .map(|frame| frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                        .map_err(Into::into)
                })
            }),
            KindProj::Watched {
                prefix,
                body,
                watch,
                idle,
                idle_after,
                last_frame,
                failing,
                done,
            } => {
                if *done {
                    return Poll::Ready(None);
                }
                if let Some(end) = failing.take() {
                    *done = true;
                    return Poll::Ready(Some(Err(Box::new(StreamError::new(end)))));
                }
                if let Some(prefix) = prefix.take() {
                    let prefix = watch.forward(prefix);
                    if !prefix.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(prefix))));
                    }
                }
                loop {
                    let polled = match body.as_mut() {
                        Some(body) => body.as_mut().poll_frame(cx),
                        None => Poll::Ready(None),
                    };
                    let Poll::Ready(Some(Ok(frame))) = polled else {
                        if matches!(polled, Poll::Ready(None)) {
                            // Ended: not polled again.
                            *body = None;
                        }
                        let idle = Idle {
                            timer: idle,
                            after: *idle_after,
                            last_frame: *last_frame,
                        };
                        return watched_end(polled, watch, idle, cx, done);
                    };
                    let frame = match frame.into_data() {
                        Ok(mut data) => data.copy_to_bytes(data.remaining()),
                        // Trailers: passed on as they are.
                        Err(frame) => {
                            return Poll::Ready(Some(Ok(
                                frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                            )));
                        }
                    };
                    watch.feed(&frame);
                    *last_frame = tokio::time::Instant::now();
                    // An error event after content: its bytes go on, then the error.
                    if let Some(class) = watch.told.failed {
                        let end = StreamEnd::Failed(class);
                        watch.end(end);
                        *failing = Some(end);
                    }
                    let out = watch.forward(frame);
                    if out.is_empty() && failing.is_none() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, .. } => data.is_none(),
            Kind::Streaming { body } => body.is_end_stream(),
            Kind::Watched { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Streaming { body } => body.size_hint(),
            Kind::Watched { .. } => SizeHint::default(),
        }
    }
}

/// A watched stream's poll that gave no data frame: its end, its failure, or a wait (past
/// the idle timeout, a stall).
/// A watched stream's idle timer.
struct Idle<'a> {
    timer: &'a mut Pin<Box<tokio::time::Sleep>>,
    after: Duration,
    last_frame: tokio::time::Instant,
}

impl Idle<'_> {
    /// Whether the stream has been silent past the timeout; else the timer is set to the
    /// timeout from the last frame and polled (the task wakes then).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last_frame + self.after;
            if tokio::time::Instant::now() >= due {
                return true;
            }
            self.timer.as_mut().reset(due);
        }
    }
}

fn watched_end<E: Into<BoxError>>(
    polled: Poll<Option<Result<Frame<impl Buf>, E>>>,
    watch: &mut Watch,
    mut idle: Idle<'_>,
    cx: &mut Context<'_>,
    done: &mut bool,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    let failed =
        |end: StreamEnd| Poll::Ready(Some(Err(Box::new(StreamError::new(end)) as BoxError)));
    match polled {
        Poll::Ready(Some(Err(error))) => {
            watch.end(StreamEnd::Cut);
            *done = true;
            let error: BoxError = error.into();
            tracing::debug!(target: "ballast::stream", %error, "stream body failed");
            failed(StreamEnd::Cut)
        }
        Poll::Ready(None) => {
            // An event the provider left without its blank line goes on as it came.
            let rest = watch.rest();
            if !rest.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(rest))));
            }
            *done = true;
            if watch.told.finished {
                watch.end(StreamEnd::Finished);
                Poll::Ready(None)
            } else {
                watch.end(StreamEnd::Cut);
                failed(StreamEnd::Cut)
            }
        }
        Poll::Pending => {
            if idle.expired(cx) {
                watch.end(StreamEnd::Stalled);
                *done = true;
                return failed(StreamEnd::Stalled);
            }
            Poll::Pending
        }
        // Data frames are the caller's to handle.
        Poll::Ready(Some(Ok(_))) => Poll::Pending,
    }
}
