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

/// The default cap on a buffered embeddings answer: 160 MiB.
///
/// OpenAI's largest embeddings call (2 048 inputs of `text-embedding-3-large`, 3 072
/// dimensions each, as JSON floats of about 22 bytes) answers about 140 MB; as base64 (the
/// Python SDK's default) a quarter of that. A chat answer's 4 MiB would fail it after the
/// provider billed it. The same cap holds an answer to a call with no reading of its own
/// (`Dialect::Other`): ten images as base64 are tens of megabytes.
pub const DEFAULT_EMBEDDINGS_BODY_LIMIT: usize = 160 * 1024 * 1024;

/// Applies [`Classify`] to a service: every response gets an [`Outcome`](crate::Outcome).
#[derive(Debug, Clone)]
pub struct ClassifyLayer<C = Provider> {
    classifier: C,
    body_limit: usize,
    embeddings_body_limit: usize,
    streams: StreamTimeouts,
}

impl<C> ClassifyLayer<C> {
    /// A layer classifying with `classifier` (a [`Provider`] or your own
    /// [`ClassifyResponse`](crate::ClassifyResponse)).
    pub fn new(classifier: C) -> Self {
        Self {
            classifier,
            body_limit: DEFAULT_BODY_LIMIT,
            embeddings_body_limit: DEFAULT_EMBEDDINGS_BODY_LIMIT,
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

    /// Sets the largest embeddings answer buffered (a request to a path that
    /// [`Dialect::asks_for_embeddings`](crate::Dialect::asks_for_embeddings)), and the largest
    /// answer to a call with no reading of its own ([`Dialect::Other`](crate::Dialect::Other):
    /// images, audio), in bytes; a longer one fails as [`BodyTooLarge`](crate::BodyTooLarge).
    /// Default [`DEFAULT_EMBEDDINGS_BODY_LIMIT`].
    pub fn embeddings_body_limit(mut self, bytes: usize) -> Self {
        self.embeddings_body_limit = bytes;
        self
    }
}

impl<S, C: Clone> Layer<S> for ClassifyLayer<C> {
    type Service = Classify<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Classify::new(inner, self.classifier.clone())
            .body_limit(self.body_limit)
            .embeddings_body_limit(self.embeddings_body_limit)
            .stream_timeouts(self.streams)
    }
}
