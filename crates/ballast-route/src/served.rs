//! [`Served`]: which target answered, on the response.

use std::sync::Arc;

/// A response extension: the target that answered (or whose failure is the one returned),
/// the model it was asked for (`None`: the caller's), and how many targets were tried
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The target's name.
    pub target: Arc<str>,
    /// The model the target was asked for, when the route changed it.
    pub model: Option<Arc<str>>,
    /// Targets tried before this one.
    pub passed_over: u32,
}

impl Served {
    /// The response's `Served`, if a route answered it.
    pub fn of<B>(response: &http::Response<B>) -> Option<&Self> {
        response.extensions().get::<Self>()
    }
}
