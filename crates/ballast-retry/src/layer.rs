//! [`RetryLayer`]: wraps a service in tower's `Retry` with a [`RetryPolicy`].

use tower::retry::Retry;
use tower_layer::Layer;

use crate::RetryPolicy;

/// Retries with a [`RetryPolicy`]: `RetryLayer::new(policy)` is tower's
/// `RetryLayer::new(policy)`, named here so a stack reads as Ballast's.
///
/// Clones of the policy share its budget, so build the layer once and reuse it for every
/// service that should draw on the same budget.
#[derive(Debug, Clone, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer retrying with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }

    /// The policy (its budget, its configuration).
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<RetryPolicy, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(self.policy.clone(), inner)
    }
}
