//! [`Watched`]: one streamed answer's state, in one allocation from its headers to its end:
//! the body, its reading ([`Watch`]), the bytes held back before the first content, and the
//! one timer that bounds first the wait for content, then each silence.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::BoxError;
use crate::stream::{StreamEnd, StreamError, Watch};

/// The most bytes a stream may send before its first content and still be held back (64
/// KiB): past it the stream goes to the caller as it is.
const MAX_HELD: usize = 64 * 1024;

pin_project! {
    /// A streamed answer being watched. Boxed once, when its headers arrive, so the
    /// classifier's future and the body it hands on stay small for every other response.
    #[derive(Debug)]
    pub(crate) struct Watched<B> {
        #[pin]
        body: B,
        // The body ended: not polled again.
        body_over: bool,
        pub(crate) watch: Watch,
        // Read before the first content, held back until then.
        held: BytesMut,
        // Before the first content: the first-content deadline. After it: the idle timeout
        // from when the stream last went quiet, moved on only when it fires early.
        #[pin]
        timer: Sleep,
        idle_after: Duration,
        // When the body last said it had nothing more (read once per wait, not per frame:
        // a burst of frames costs one clock read; `benches/stream.rs`).
        quiet_since: Instant,
        // A frame came since `quiet_since` was read.
        heard: bool,

        // The error to yield next, then the end.
        failing: Option<StreamEnd>,
        done: bool,
    }
}

/// How a stream's wait for its first content ended.
pub(crate) enum Primed {
    /// Content came (or its terminal event, or more than [`MAX_HELD`] bytes): the stream
    /// goes to the caller.
    Ready,
    /// An error event came first: its class; the held bytes are the answer.
    Failed(crate::OutcomeClass),
    /// The body failed first.
    Broken(BoxError),
    /// The body ended first, without a terminal event.
    Cut,
    /// No content within the first-content timeout.
    TimedOut,
}

impl<B: Body> Watched<B>
where
    B::Error: Into<BoxError>,
{
    /// Starts watching `body`, read by `watch`: content must come within `first_content`,
    /// then no silence longer than `idle_after`.
    pub(crate) fn new(
        body: B,
        watch: Watch,
        first_content: Duration,
        idle_after: Duration,
    ) -> Pin<Box<Self>> {
        Box::pin(Self {
            body,
            body_over: false,
            watch,
            held: BytesMut::new(),
            timer: tokio::time::sleep(first_content),
            idle_after,
            quiet_since: Instant::now(),
            heard: false,
            failing: None,
            done: false,
        })
    }

    /// Reads until the first content, holding back what comes before it.
    pub(crate) fn poll_prime(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Primed> {
        let mut this = self.project();
        loop {
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        let data = data.copy_to_bytes(data.remaining());
                        this.watch.feed(&data);
                        this.held.extend_from_slice(&data);
                    }
                    let told = &this.watch.told;
                    if let Some(class) = told.failed {
                        return Poll::Ready(Primed::Failed(class));
                    }
                    if this.watch.has_content() || told.finished || this.held.len() > MAX_HELD {
                        break;
                    }
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Primed::Broken(error.into())),
                // Ended: whole if its terminal event came (an empty answer), else cut.
                Poll::Ready(None) if this.watch.told.finished => {
                    *this.body_over = true;
                    break;
                }
                Poll::Ready(None) => return Poll::Ready(Primed::Cut),
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Primed::TimedOut);
                    }
                    return Poll::Pending;
                }
            }
        }
        // From here the timer bounds silences.
        let now = Instant::now();
        *this.quiet_since = now;
        this.timer.as_mut().reset(now + *this.idle_after);
        Poll::Ready(Primed::Ready)
    }

    /// The bytes held back (an error event's answer).
    pub(crate) fn take_held(self: Pin<&mut Self>) -> Bytes {
        self.project().held.split().freeze()
    }

    /// The next frame for the caller: the held bytes first, then the body's, each read;
    /// an `Err(StreamError)` when the stream does not end as the provider meant it to.
    pub(crate) fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let failed =
            |end: StreamEnd| Poll::Ready(Some(Err(Box::new(StreamError::new(end)) as BoxError)));
        if *this.done {
            return Poll::Ready(None);
        }
        if let Some(end) = this.failing.take() {
            *this.done = true;
            return failed(end);
        }
        if !this.held.is_empty() {
            let held = this.watch.forward(this.held.split().freeze());
            if !held.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(held))));
            }
        }
        loop {
            let polled = if *this.body_over {
                Poll::Ready(None)
            } else {
                this.body.as_mut().poll_frame(cx)
            };
            match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    let data = match frame.into_data() {
                        Ok(mut data) => data.copy_to_bytes(data.remaining()),
                        // Trailers: passed on as they are.
                        Err(frame) => {
                            return Poll::Ready(Some(Ok(
                                frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                            )));
                        }
                    };
                    this.watch.feed(&data);
                    *this.heard = true;
                    // An error event after content: its bytes go on, then the error.
                    if let Some(class) = this.watch.told.failed {
                        let end = StreamEnd::Failed(class);
                        this.watch.end(end);
                        *this.failing = Some(end);
                    }
                    let out = this.watch.forward(data);
                    if out.is_empty() && this.failing.is_none() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(error))) => {
                    this.watch.end(StreamEnd::Cut);
                    *this.done = true;
                    let error: BoxError = error.into();
                    tracing::debug!(target: "ballast::stream", %error, "stream body failed");
                    return failed(StreamEnd::Cut);
                }
                Poll::Ready(None) => {
                    *this.body_over = true;
                    // An event the provider left without its blank line goes on as it came.
                    let rest = this.watch.rest();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                    *this.done = true;
                    if this.watch.told.finished {
                        this.watch.end(StreamEnd::Finished);
                        return Poll::Ready(None);
                    }
                    this.watch.end(StreamEnd::Cut);
                    return failed(StreamEnd::Cut);
                }
                Poll::Pending => {
                    // The silence starts now if frames came since the last wait (a caller
                    // slow to poll is not the provider's silence).
                    if std::mem::take(this.heard) {
                        *this.quiet_since = Instant::now();
                    }
                    // Silent past the timeout: stalled. Else the timer is moved to that
                    // point and the task wakes then.
                    loop {
                        if this.timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        let due = *this.quiet_since + *this.idle_after;
                        if Instant::now() >= due {
                            this.watch.end(StreamEnd::Stalled);
                            *this.done = true;
                            return failed(StreamEnd::Stalled);
                        }
                        this.timer.as_mut().reset(due);
                    }
                }
            }
        }
    }

    /// Whether the caller has had all of it.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }
}

impl<B> Watched<B> {
    /// The reading, to set hooks and rewrites on.
    pub(crate) fn watch_mut(self: Pin<&mut Self>) -> &mut Watch {
        self.project().watch
    }
}
