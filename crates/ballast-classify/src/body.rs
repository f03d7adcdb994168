//! [`ClassifiedBody`]: the response body after classification.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::stream::{EndHook, EventRewrite};
use crate::watched::Watched;
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
        // Boxed: one allocation per stream, and every other body stays small.
        Watched { stream: Pin<Box<Watched<B>>> },
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

    /// A watched stream, its held bytes first.
    pub(crate) fn watched(stream: Pin<Box<Watched<B>>>) -> Self {
        Self {
            kind: Kind::Watched { stream },
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
            Kind::Watched { stream } => {
                stream.as_mut().watch_mut().rewrite_events(rewrite);
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
            Kind::Watched { stream } => {
                stream.as_mut().watch_mut().push_hook(hook);
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

    fn usage_span(&self) -> Option<&UsageSpan> {
        match &self.kind {
            Kind::Buffered {
                data: Some(_),
                usage,
            } => usage.as_ref(),
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
            KindProj::Watched { stream } => stream.as_mut().poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, .. } => data.is_none(),
            Kind::Streaming { body } => body.is_end_stream(),
            Kind::Watched { stream } => stream.is_done(),
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
