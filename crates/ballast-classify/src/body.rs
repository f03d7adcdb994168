//! [`ClassifiedBody`]: the response body after classification.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{BoxError, UsageSpan};

pin_project! {
    /// The body of a classified response: either the buffered bytes the classifier read, or,
    /// for `text/event-stream` responses, the untouched stream.
    ///
    /// Outer layers that need the body (usage and cost extraction) read
    /// [`buffered`](Self::buffered) instead of collecting it again.
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
            Kind::Streaming { .. } => None,
        }
    }

    /// Whether the body streams (it was not buffered).
    pub fn is_streaming(&self) -> bool {
        matches!(self.kind, Kind::Streaming { .. })
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, .. } => data.is_none(),
            Kind::Streaming { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Streaming { body } => body.size_hint(),
        }
    }
}
