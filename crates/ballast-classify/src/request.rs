//! [`InspectBody`]: bodies whose bytes can be read in place.

use bytes::Bytes;

use crate::RequestFacts;

/// Bodies whose bytes can be read in place: buffered response bodies (to read usage), and
/// the in-memory bodies tests and simulators use.
///
/// Request bodies are not read through this: [`ReadRequestLayer`](crate::ReadRequestLayer)
/// collects any body once and the layers read its [`RequestFacts`].
pub trait InspectBody {
    /// The whole body, when it is in memory.
    fn inspect(&self) -> Option<&[u8]>;

    /// Where the body's usage object sits, when a classifier noted it (a
    /// [`ClassifiedBody`](crate::ClassifiedBody) from the stock classifier); `None`: read
    /// the body.
    fn usage_span(&self) -> Option<&crate::UsageSpan> {
        None
    }

    /// Runs `hook` once at the end of a watched stream (a streamed
    /// [`ClassifiedBody`](crate::ClassifiedBody)) with what it told; `Err(hook)` for any
    /// other body, whose bytes are all there already.
    fn on_end(&mut self, hook: crate::stream::EndHook) -> Result<(), crate::stream::EndHook> {
        Err(hook)
    }

    /// Whether this is a watched stream: [`on_end`](Self::on_end) takes hooks, and what it
    /// costs is known only at its end.
    fn watches_stream(&self) -> bool {
        false
    }
}

impl InspectBody for String {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl InspectBody for Bytes {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl InspectBody for Vec<u8> {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl InspectBody for &'static str {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl InspectBody for &'static [u8] {
    fn inspect(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl InspectBody for () {
    fn inspect(&self) -> Option<&[u8]> {
        None
    }
}

impl<D> InspectBody for http_body_util::Full<D> {
    fn inspect(&self) -> Option<&[u8]> {
        None
    }
}

impl<D> InspectBody for http_body_util::Empty<D> {
    fn inspect(&self) -> Option<&[u8]> {
        None
    }
}

/// The model of a request, from its [`RequestFacts`].
pub fn model_of<B>(request: &http::Request<B>) -> Option<&str> {
    RequestFacts::of(request).model()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_read_from_the_facts_not_the_body() {
        let mut request = http::Request::new(String::from(r#"{"model":"body"}"#));
        assert_eq!(model_of(&request), None, "nothing read the body");
        request
            .extensions_mut()
            .insert(RequestFacts::default().with_model("facts"));
        assert_eq!(model_of(&request), Some("facts"));
    }
}
