//! [`InBandErrors`]: a streamed answer's failure as an error event the caller's SDK reads.

use std::pin::Pin;
use std::task::{Context, Poll};

use ballast_classify::{BoxError, Dialect, OutcomeClass, StreamEnd, StreamError};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::json;

pin_project! {
    /// A response body for a proxy: a stream that fails after its first content (a cut, a
    /// stall, an error event) ends with an error event in the caller's dialect instead of a
    /// broken connection, and never with the terminal event (`[DONE]`) that would make a
    /// truncated answer look whole. Other errors pass as they are.
    ///
    /// ```
    /// use ballast::InBandErrors;
    /// use ballast::classify::Dialect;
    /// use http_body_util::BodyExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = http_body_util::Full::new(bytes::Bytes::from_static(b"data: [DONE]\n\n"))
    ///     .map_err(|never| -> ballast::classify::BoxError { match never {} });
    /// let bytes = InBandErrors::new(body, Dialect::Chat).collect().await.unwrap().to_bytes();
    /// assert_eq!(&bytes[..], b"data: [DONE]\n\n");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct InBandErrors<B> {
        #[pin]
        body: B,
        dialect: Dialect,
        ended: bool,
    }
}

impl<B> InBandErrors<B> {
    /// Wraps `body`, the answer to a request in `dialect`.
    pub fn new(body: B, dialect: Dialect) -> Self {
        Self {
            body,
            dialect,
            ended: false,
        }
    }
}

impl<B> Body for InBandErrors<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        match this.body.poll_frame(cx) {
            Poll::Ready(Some(Err(error))) => match error.downcast_ref::<StreamError>() {
                Some(stream) => {
                    *this.ended = true;
                    Poll::Ready(Some(Ok(Frame::data(error_event(
                        *this.dialect,
                        stream.end(),
                    )))))
                }
                None => Poll::Ready(Some(Err(error))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The error event for a stream that ended `end`, in `dialect`.
fn error_event(dialect: Dialect, end: StreamEnd) -> Bytes {
    let class = end.outcome().class();
    let message = match end {
        StreamEnd::Cut => "the provider's stream was cut before it ended; the answer is incomplete",
        StreamEnd::Stalled => "the provider's stream went silent; the answer is incomplete",
        _ => "the provider failed mid-stream; the answer is incomplete",
    };
    let kind = match class {
        OutcomeClass::Overloaded => "overloaded_error",
        OutcomeClass::RateLimited => "rate_limit_error",
        OutcomeClass::Timeout => "timeout_error",
        _ => "api_error",
    };
    let text = match dialect {
        Dialect::Messages => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": kind, "message": message}})
        ),
        Dialect::Responses => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "code": class.as_str(), "message": message})
        ),
        Dialect::Gemini => format!(
            "data: {}\n\n",
            json!({"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}})
        ),
        // Legacy completions' error event is chat's; embeddings never stream: chat's
        // shape, were one to; a stream with no reading of its own (OpenAI's audio) gets
        // OpenAI's error object.
        Dialect::Chat | Dialect::Completions | Dialect::Embeddings | Dialect::Other => format!(
            "data: {}\n\n",
            json!({"error": {"message": message, "type": kind, "code": class.as_str()}})
        ),
    };
    Bytes::from(text)
}
