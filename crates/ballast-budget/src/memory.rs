//! [`MemoryStore`]: budgets in this process's memory, lock-free.

use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ballast_cost::Usd;

use crate::id::IdSource;
use crate::{Limits, Readout, Reservation, Reserve, SpendStore, StoreError, WindowId};

type Key = (u64, Option<Arc<str>>);

#[derive(Debug, Default)]
struct Account {
    /// Spent plus reserved, in picodollars: the figure checked against the limit.
    committed: AtomicU64,
    spent: AtomicU64,
    limit: AtomicU64,
}

impl Account {
    /// Adds `amount` if the result stays within `limit`.
    fn try_commit(&self, amount: u64, limit: u64) -> Result<(), u64> {
        self.limit.store(limit, Ordering::Relaxed);
        self.committed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |committed| {
                committed
                    .checked_add(amount)
                    .filter(|total| *total <= limit)
            })
            .map(drop)
    }

    fn settle(&self, reserved: u64, actual: u64) {
        // Never below zero, even if a caller settles twice by mistake.
        let _ = self
            .committed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(reserved).saturating_add(actual))
            });
        self.spent.fetch_add(actual, Ordering::AcqRel);
    }
}

/// Budgets in memory: the default store, for one process. Each account is a pair of atomics
/// updated by compare-and-swap; accounts of past windows are dropped when a new window
/// starts. Leases do not apply: a reservation lives as long as its call, and the process.
#[derive(Debug)]
pub struct MemoryStore {
    accounts: ArcSwap<HashMap<Key, Arc<Account>>>,
    ids: IdSource,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            accounts: ArcSwap::default(),
            ids: IdSource::new(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn account(&self, window: WindowId, scope: Option<&Arc<str>>) -> Arc<Account> {
        let key = (window.start, scope.cloned());
        if let Some(account) = self.accounts.load().get(&key) {
            return Arc::clone(account);
        }
        let mut found = None;
        self.accounts.rcu(|accounts| {
            let mut accounts: HashMap<Key, Arc<Account>> = accounts
                .iter()
                .filter(|((start, _), _)| *start >= window.start)
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect();
            let account = Arc::clone(accounts.entry(key.clone()).or_default());
            found = Some(account);
            accounts
        });
        found.unwrap_or_default()
    }
}

impl MemoryStore {
    fn reserve_at_once(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
    ) -> Reserve {
        let global = self.account(window, None);
        if let Err(committed) = global.try_commit(amount.picos(), limits.global.picos()) {
            return Reserve::Refused {
                scope: None,
                limit: limits.global,
                committed: Usd::from_picos(committed),
            };
        }
        if let Some((scope, limit)) = &limits.scope {
            let account = self.account(window, Some(scope));
            if let Err(committed) = account.try_commit(amount.picos(), limit.picos()) {
                global.settle(amount.picos(), 0);
                return Reserve::Refused {
                    scope: Some(Arc::clone(scope)),
                    limit: *limit,
                    committed: Usd::from_picos(committed),
                };
            }
        }
        Reserve::Granted(Reservation {
            id: self.ids.next(),
            window,
            scope: limits.scope.as_ref().map(|(s, _)| Arc::clone(s)),
            amount,
            lease,
        })
    }

    fn settle_at_once(&self, reservation: &Reservation, actual: Usd) {
        // A reservation of another instance (an outbox replayed after a restart) holds
        // nothing here: its cost is added, not swapped for a reservation.
        let reserved = if self.ids.issued(reservation.id) {
            reservation.amount.picos()
        } else {
            0
        };
        let actual = actual.picos();
        self.account(reservation.window, None)
            .settle(reserved, actual);
        if let Some(scope) = &reservation.scope {
            self.account(reservation.window, Some(scope))
                .settle(reserved, actual);
        }
    }
}

impl SpendStore for MemoryStore {
    async fn reserve(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        _now: SystemTime,
    ) -> Result<Reserve, StoreError> {
        Ok(self.reserve_at_once(window, limits, amount, lease))
    }

    async fn settle(&self, reservation: &Reservation, actual: Usd) -> Result<(), StoreError> {
        self.settle_at_once(reservation, actual);
        Ok(())
    }

    fn reserve_now(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        _now: SystemTime,
    ) -> Option<Result<Reserve, StoreError>> {
        Some(Ok(self.reserve_at_once(window, limits, amount, lease)))
    }

    fn settle_now(&self, reservation: &Reservation, actual: Usd) -> Option<Result<(), StoreError>> {
        self.settle_at_once(reservation, actual);
        Some(Ok(()))
    }

    async fn readout(
        &self,
        window: WindowId,
        scope: Option<&str>,
        _now: SystemTime,
    ) -> Result<Readout, StoreError> {
        let scope: Option<Arc<str>> = scope.map(Arc::from);
        let account = self.account(window, scope.as_ref());
        let committed = account.committed.load(Ordering::Acquire);
        let spent = account.spent.load(Ordering::Acquire);
        Ok(Readout {
            spent: Usd::from_picos(spent),
            reserved: Usd::from_picos(committed.saturating_sub(spent)),
            limit: Usd::from_picos(account.limit.load(Ordering::Relaxed)),
        })
    }
}
