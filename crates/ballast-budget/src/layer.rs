//! [`BudgetLayer`]: the guard's configuration and store, and read-outs.

use std::sync::Arc;
use std::time::SystemTime;

use tower_layer::Layer;

use crate::guard::Shared;
use crate::{BudgetConfig, BudgetGuard, MemoryStore, Readout, SpendStore, StoreError};

/// Applies [`BudgetGuard`]. Every service the layer makes shares its store and budget.
#[derive(Debug)]
pub struct BudgetLayer<St = MemoryStore> {
    shared: Arc<Shared<St>>,
}

impl<St> Clone for BudgetLayer<St> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl BudgetLayer<MemoryStore> {
    /// A guard over an in-memory store.
    pub fn new(config: BudgetConfig) -> Self {
        Self::with_store(config, MemoryStore::new())
    }
}

impl<St: SpendStore> BudgetLayer<St> {
    /// A guard over `store`.
    pub fn with_store(config: BudgetConfig, store: St) -> Self {
        Self {
            shared: Arc::new(Shared::new(Arc::new(store), config)),
        }
    }

    /// The current window's state of the global budget (`scope` `None`) or a scope's.
    pub async fn readout(&self, scope: Option<&str>) -> Result<Readout, StoreError> {
        let now = SystemTime::now();
        let window = self.shared.config.window.at(now);
        let mut readout = self.shared.store.readout(window, scope, now).await?;
        // A scope not seen yet this window still has its limit.
        if readout.limit.picos() == 0 {
            readout.limit = match scope {
                None => self.shared.config.global,
                Some(scope) => self
                    .shared
                    .config
                    .scope_limit_of(&Arc::from(scope))
                    .unwrap_or_default(),
            };
        }
        Ok(readout)
    }

    /// Settlements kept because the store failed, waiting to be retried.
    pub fn pending_settlements(&self) -> usize {
        self.shared.pending()
    }

    /// Retries kept settlements now.
    pub async fn flush(&self) {
        self.shared.flush().await;
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<S, St> Layer<S> for BudgetLayer<St> {
    type Service = BudgetGuard<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        BudgetGuard::new(inner, Arc::clone(&self.shared))
    }
}
