//! [`ReadBody`]: a whole response body, up to a limit.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body;
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// Reads a body to its end, refusing more than `limit` bytes. A body that arrives in one
    /// chunk (the usual JSON answer) is kept as that chunk: no copy, no list of buffers.
    pub(crate) struct ReadBody<B> {
        #[pin]
        body: B,
        limit: usize,
        first: Option<Bytes>,
        more: Option<BytesMut>,
    }
}

/// Why a body could not be read.
pub(crate) enum ReadError {
    /// It is longer than the limit.
    TooLarge,
    /// The body failed (the connection, mid-response).
    Body(BoxError),
}

impl<B> ReadBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(body: B, limit: usize) -> Self {
        Self {
            body,
            limit,
            first: None,
            more: None,
        }
    }

    /// Polls the body for its next frames; ready with the whole body or the error.
    pub(crate) fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Bytes, ReadError>> {
        let mut this = self.project();
        loop {
            let Some(frame) = ready!(this.body.as_mut().poll_frame(cx)) else {
                let whole = match (this.more.take(), this.first.take()) {
                    (Some(more), _) => more.freeze(),
                    (None, first) => first.unwrap_or_default(),
                };
                return Poll::Ready(Ok(whole));
            };
            let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
            // Trailers carry nothing a classifier reads.
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let read = this.first.as_ref().map_or(0, Bytes::len)
                + this.more.as_ref().map_or(0, BytesMut::len);
            if read.saturating_add(data.remaining()) > *this.limit {
                return Poll::Ready(Err(ReadError::TooLarge));
            }
            if this.first.is_none() && this.more.is_none() {
                *this.first = Some(data.copy_to_bytes(data.remaining()));
                continue;
            }
            let more = this.more.get_or_insert_with(|| {
                let first = this.first.take().unwrap_or_default();
                let mut more = BytesMut::with_capacity(first.len() + data.remaining());
                more.extend_from_slice(&first);
                more
            });
            more.put(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use proptest::prelude::*;

    /// A body of these chunks, with trailers at the end.
    fn chunked(chunks: Vec<Vec<u8>>) -> impl Body<Data = Bytes, Error = BoxError> {
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .into_iter()
            .map(|chunk| Ok(Frame::data(Bytes::from(chunk))))
            .collect();
        frames.push(Ok(Frame::trailers(http::HeaderMap::new())));
        StreamBody::new(futures::stream::iter(frames))
    }

    fn read(
        body: impl Body<Data = Bytes, Error = BoxError>,
        limit: usize,
    ) -> Result<Bytes, ReadError> {
        let mut read = std::pin::pin!(ReadBody::new(body, limit));
        let waker = std::task::Waker::noop();
        match read.as_mut().poll_read(&mut Context::from_waker(waker)) {
            Poll::Ready(result) => result,
            Poll::Pending => unreachable!("an in-memory stream is always ready"),
        }
    }

    proptest! {
        /// However a body is cut into chunks, what is read is the whole of it; past the
        /// limit, a typed refusal.
        #[test]
        fn chunks_join_and_the_limit_holds(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
            limit in 0usize..300,
        ) {
            let whole: Vec<u8> = chunks.concat();
            match read(chunked(chunks), limit) {
                Ok(bytes) => {
                    prop_assert!(whole.len() <= limit);
                    prop_assert_eq!(&bytes[..], &whole[..]);
                }
                Err(ReadError::TooLarge) => prop_assert!(whole.len() > limit),
                Err(ReadError::Body(err)) => prop_assert!(false, "{err}"),
            }
        }
    }

    #[test]
    fn one_chunk_is_kept_without_a_copy() {
        let chunk = Bytes::from(vec![b'x'; 100]);
        let body = http_body_util::Full::new(chunk.clone());
        let Ok(bytes) = read(body.map_err(|never| match never {}), 100) else {
            panic!("a 100-byte body fits a 100-byte limit");
        };
        assert_eq!(bytes.as_ptr(), chunk.as_ptr(), "the same buffer");
    }
}
