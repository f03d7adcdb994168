//! [`ClassifyLayer`]: configuration for the classify service.

use tower_layer::Layer;

use crate::stream::StreamTimeouts;
use crate::{Classify, Provider};

/// The default cap on a buffered response body: 4 MiB.
///
/// A chat completion is kilobytes; even a long one with logprobs stays well under a
/// megabyte. The cap exists so a misbehaving upstream cannot make a client hold unbounded
/// memory.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Applies [`Classify`] to a service: every response gets an [`Outcome`](crate::Outcome).
#[derive(Debug, Clone)]
pub struct ClassifyLayer<C = Provider> {
    classifier: C,
    body_limit: usize,
    streams: StreamTimeouts,
}

impl<C> ClassifyLayer<C> {
    /// A layer classifying with `classifier` (a [`Provider`] or your own
    /// [`ClassifyResponse`](crate::ClassifyResponse)).
    pub fn new(classifier: C) -> Self {
        Self {
            classifier,
            body_limit: DEFAULT_BODY_LIMIT,
            streams: StreamTimeouts::default(),
        }
    }

    /// Sets the timeouts of streamed answers: to the first content event, and between
    /// frames after it (default [`StreamTimeouts::default`]: 20 s and 30 s).
    pub fn stream_timeouts(mut self, timeouts: StreamTimeouts) -> Self {
        self.streams = timeouts;
        self
    }

    /// Sets the largest body buffered, in bytes; a longer one fails as
    /// [`BodyTooLarge`](crate::BodyTooLarge). Default [`DEFAULT_BODY_LIMIT`].
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}

impl<S, C: Clone> Layer<S> for ClassifyLayer<C> {
    type Service = Classify<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Classify::new(inner, self.classifier.clone())
            .body_limit(self.body_limit)
            .stream_timeouts(self.streams)
    }
}
