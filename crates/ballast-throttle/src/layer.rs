//! [`ThrottleLayer`] and [`ThrottleHandle`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tower_layer::Layer;

use crate::limiter::Limiter;
use crate::{Throttle, ThrottleConfig};

/// Paces the calls of every service it wraps with one shared limiter: put one layer per API
/// key (the provider limits the key). Clones share the limiter.
#[derive(Debug, Clone)]
pub struct ThrottleLayer {
    limiter: Arc<Limiter>,
    fleet: Option<crate::service::Fleet>,
}

impl ThrottleLayer {
    /// A throttle with `config`.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            limiter: Arc::new(Limiter::new(config)),
            fleet: None,
        }
    }

    /// A throttle whose turns come from a timeline shared by every process using `fleet`
    /// (feature `redis`): several processes with one API key keep to one pace.
    #[cfg(feature = "redis")]
    pub fn fleet(config: ThrottleConfig, fleet: crate::Fleet) -> Self {
        Self {
            limiter: Arc::new(Limiter::new(config)),
            fleet: Some(fleet),
        }
    }

    /// A handle to watch the pace.
    pub fn handle(&self) -> ThrottleHandle {
        ThrottleHandle {
            limiter: Arc::clone(&self.limiter),
        }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle::new(inner, Arc::clone(&self.limiter), self.fleet.clone())
    }
}

/// Reads a throttle's state: its pace, what it has learned, its queue.
#[derive(Debug, Clone)]
pub struct ThrottleHandle {
    limiter: Arc<Limiter>,
}

impl ThrottleHandle {
    /// The pace now, requests per minute (slower while the provider's headers ask for it).
    pub fn rate_rpm(&self) -> f64 {
        self.limiter.effective_rpm(self.limiter.now())
    }

    /// The pace that last drew a rate-limited answer: the limit as learned, if any.
    pub fn ceiling_rpm(&self) -> Option<f64> {
        self.limiter.ceiling_rpm()
    }

    /// Calls waiting for their turn.
    pub fn queued(&self) -> usize {
        self.limiter.queued.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &ThrottleConfig {
        &self.limiter.config
    }
}
