//! [`SpendStore`]: where reservations and spend are kept.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ballast_cost::Usd;

use crate::WindowId;

/// The accounts one call reserves against: the global budget, and the caller's scope
/// (tenant, user, key) when it has a budget of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The global limit for the window.
    pub global: Usd,
    /// The scope and its limit, if any.
    pub scope: Option<(Arc<str>, Usd)>,
}

/// Budget held for one call until it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Unique across processes, restarts and a store's data loss (stores make it from a
    /// random per-instance nonce and a counter, never from a server counter alone).
    pub id: u128,
    /// The window it counts in.
    pub window: WindowId,
    /// The scope it was also reserved against.
    pub scope: Option<Arc<str>>,
    /// How much was reserved.
    pub amount: Usd,
    /// How long it may be held before a shared store frees it (a crashed process does not
    /// hold budget for ever).
    pub lease: Duration,
}

/// What a reservation attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    /// Reserved.
    Granted(Reservation),
    /// It did not fit in `scope` (`None`: the global budget).
    Refused {
        /// The account that was full.
        scope: Option<Arc<str>>,
        /// Its limit.
        limit: Usd,
        /// Spent plus reserved in it.
        committed: Usd,
    },
}

/// One account's state in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readout {
    /// Settled spend.
    pub spent: Usd,
    /// Held by calls in flight.
    pub reserved: Usd,
    /// The limit last reserved against.
    pub limit: Usd,
}

impl Readout {
    /// What is left: limit minus spent and reserved.
    pub fn remaining(&self) -> Usd {
        self.limit
            .saturating_sub(self.spent.saturating_add(self.reserved))
    }
}

/// A store could not be reached or answered nonsense.
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error saying `message`, caused by `source`.
    pub fn new(
        message: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Where budgets live. Every operation is atomic: a reservation either fits in every account
/// it names or is refused, so concurrent calls cannot overshoot.
pub trait SpendStore: Send + Sync + 'static {
    /// Reserves `amount` against the accounts in `limits` for `window`, at wall-clock time
    /// `now` (leases run from it).
    fn reserve(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> impl Future<Output = Result<Reserve, StoreError>> + Send;

    /// Replaces a reservation by the actual cost (zero releases it).
    fn settle(
        &self,
        reservation: &Reservation,
        actual: Usd,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reserves without waiting, when this store can (its accounts are in this process);
    /// `None` (the default) means: await [`reserve`](Self::reserve). The guard calls it
    /// first, so a store that answers here costs no boxed future per call. A store that
    /// answers here must answer [`settle_now`](Self::settle_now) too.
    fn reserve_now(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> Option<Result<Reserve, StoreError>> {
        let _ = (window, limits, amount, lease, now);
        None
    }

    /// Settles without waiting, when this store can; `None` (the default) means: await
    /// [`settle`](Self::settle).
    fn settle_now(&self, reservation: &Reservation, actual: Usd) -> Option<Result<(), StoreError>> {
        let _ = (reservation, actual);
        None
    }

    /// An account's state at `now`: `scope` `None` is the global budget.
    fn readout(
        &self,
        window: WindowId,
        scope: Option<&str>,
        now: SystemTime,
    ) -> impl Future<Output = Result<Readout, StoreError>> + Send;
}

/// A store shared by several stacks (the targets of a route under one daily cap): each
/// call goes to the one store.
impl<T: SpendStore> SpendStore for std::sync::Arc<T> {
    fn reserve(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> impl Future<Output = Result<Reserve, StoreError>> + Send {
        T::reserve(self, window, limits, amount, lease, now)
    }

    fn settle(
        &self,
        reservation: &Reservation,
        actual: Usd,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::settle(self, reservation, actual)
    }

    fn reserve_now(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> Option<Result<Reserve, StoreError>> {
        T::reserve_now(self, window, limits, amount, lease, now)
    }

    fn settle_now(&self, reservation: &Reservation, actual: Usd) -> Option<Result<(), StoreError>> {
        T::settle_now(self, reservation, actual)
    }

    fn readout(
        &self,
        window: WindowId,
        scope: Option<&str>,
        now: SystemTime,
    ) -> impl Future<Output = Result<Readout, StoreError>> + Send {
        T::readout(self, window, scope, now)
    }
}
