//! [`BreakerLayer`]: configuration and the breakers its services share.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use tower_layer::Layer;

use crate::registry::Registry;
use crate::{Breaker, BreakerConfig, BreakerHandle, HostAndModel};

/// Applies [`Breaker`] to services. Every service a layer makes shares one set of breakers,
/// which [`handle`](Self::handle) inspects and steers.
#[derive(Debug, Clone)]
pub struct BreakerLayer<K = HostAndModel> {
    registry: Arc<Registry>,
    key_fn: K,
}

impl BreakerLayer {
    /// Breakers configured by `config`, one per host and model.
    pub fn new(config: BreakerConfig) -> Self {
        let seed = RandomState::new().hash_one(0xB4EA_u64);
        Self::with_seed(config, seed)
    }

    /// As [`new`](Self::new), with the open-time jitter seeded, for reproducible tests.
    pub fn with_seed(config: BreakerConfig, seed: u64) -> Self {
        Self {
            registry: Arc::new(Registry::new(config, seed)),
            key_fn: HostAndModel,
        }
    }
}

impl Default for BreakerLayer {
    fn default() -> Self {
        Self::new(BreakerConfig::default())
    }
}

impl<K> BreakerLayer<K> {
    /// Chooses breakers with `key_fn` instead (for example [`HostOnly`](crate::HostOnly)).
    pub fn key_fn<K2>(self, key_fn: K2) -> BreakerLayer<K2> {
        BreakerLayer {
            registry: self.registry,
            key_fn,
        }
    }

    /// A handle on the breakers.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(Arc::clone(&self.registry))
    }
}

impl<S, K: Clone> Layer<S> for BreakerLayer<K> {
    type Service = Breaker<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::new(inner, Arc::clone(&self.registry), self.key_fn.clone())
    }
}
