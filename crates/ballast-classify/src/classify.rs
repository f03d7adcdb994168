//! The [`ClassifyResponse`] trait: how a response becomes a [`Verdict`].

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};

use crate::service::MediaType;
use crate::{Outcome, ProviderError, UsageSpan};

/// What a classifier gets to look at: status, headers and, unless the response streams, the
/// whole body.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
    body: Option<&'a [u8]>,
    now: Option<SystemTime>,
    /// The content type, when the caller read it already.
    media: Option<MediaType>,
}

impl<'a> ResponseView<'a> {
    /// A view of a response. `body` is `None` for a streaming (`text/event-stream`) response.
    pub fn new(status: StatusCode, headers: &'a HeaderMap, body: Option<&'a [u8]>) -> Self {
        Self {
            status,
            headers,
            body,
            now: None,
            media: None,
        }
    }

    /// The view with its content type already read (the classify future reads it once).
    pub(crate) fn with_media(mut self, media: MediaType) -> Self {
        self.media = Some(media);
        self
    }

    /// What the content type says of the body.
    pub(crate) fn media(&self) -> MediaType {
        self.media.unwrap_or_else(|| MediaType::of(self.headers))
    }

    /// Fixes the wall-clock time used to turn dates in headers into delays (for tests).
    pub fn with_now(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The buffered body, or `None` when the response streams.
    pub fn body(&self) -> Option<&'a [u8]> {
        self.body
    }

    /// The wall-clock time to measure date hints against. Read lazily: only date-valued
    /// headers need it.
    pub fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(SystemTime::now)
    }
}

/// A classifier's answer: the [`Outcome`] and, when the body held one, the provider's error
/// object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The outcome.
    pub outcome: Outcome,
    /// The provider's error object, when the body held one. Boxed: only failures pay for it.
    pub detail: Option<Box<ProviderError>>,
    /// Where the usage object sits in the body, when the classifier noted it on its way
    /// (the stock classifier does, for 2xx JSON bodies); `None` leaves it to the reader.
    pub usage: Option<UsageSpan>,
}

impl Verdict {
    /// A verdict without provider detail.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            detail: None,
            usage: None,
        }
    }
}

/// Decides what a response means.
///
/// [`Provider`](crate::Provider) is the stock implementation. To teach Ballast a provider of
/// your own without forking, implement this trait, or pass a closure: any
/// `Fn(&ResponseView<'_>) -> Verdict` is a classifier, and can start from a stock verdict.
///
/// ```
/// use ballast_classify::{ClassifyResponse, OutcomeClass, Provider, ResponseView, Verdict};
///
/// // A gateway that says "slow down" with 420 instead of 429.
/// let classifier = |view: &ResponseView<'_>| -> Verdict {
///     let mut verdict = Provider::OpenAiCompatible.classify(view);
///     if view.status().as_u16() == 420 {
///         verdict.outcome = verdict.outcome.with_class(OutcomeClass::RateLimited);
///     }
///     verdict
/// };
/// let headers = http::HeaderMap::new();
/// let view = ResponseView::new(http::StatusCode::from_u16(420).unwrap(), &headers, Some(b"{}"));
/// assert_eq!(classifier.classify(&view).outcome.class(), OutcomeClass::RateLimited);
/// ```
pub trait ClassifyResponse {
    /// Classifies one response.
    fn classify(&self, view: &ResponseView<'_>) -> Verdict;
}

impl<F> ClassifyResponse for F
where
    F: Fn(&ResponseView<'_>) -> Verdict,
{
    fn classify(&self, view: &ResponseView<'_>) -> Verdict {
        self(view)
    }
}
