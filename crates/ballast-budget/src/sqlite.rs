//! [`SqliteStore`]: budgets in an embedded SQLite database (feature `sqlite`).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_cost::Usd;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{Limits, Readout, Reservation, Reserve, SpendStore, StoreError, WindowId};

/// The account name of the global budget in the tables (scopes are stored with a `scope:`
/// prefix, so no scope can collide with it).
const GLOBAL: &str = "global";

/// How long accounts of past windows are kept.
const KEEP_PAST_WINDOWS_SECS: i64 = 7 * 86_400;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ballast_accounts (
    window_start INTEGER NOT NULL,
    account      TEXT    NOT NULL,
    window_end   INTEGER NOT NULL,
    spent        INTEGER NOT NULL DEFAULT 0,
    spend_limit  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (window_start, account)
);
CREATE TABLE IF NOT EXISTS ballast_reservations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    window_start INTEGER NOT NULL,
    account      TEXT    NOT NULL,
    amount       INTEGER NOT NULL,
    lease_until  INTEGER NOT NULL,
    -- 0 live, 1 settled, 2 reclaimed (its lease ran out: counted as spent at its amount)
    settled      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ballast_reservations_by_account
    ON ballast_reservations (window_start, account);
";

/// Budgets in a SQLite file: spend survives restarts, and several processes on one host can
/// share the file (SQLite's own locking; every reservation is one `IMMEDIATE` transaction).
///
/// A reservation is a row with a lease. A row whose lease has run out (its process was
/// killed mid-call) is **reclaimed at its amount**: counted as spent, since the provider
/// may have billed the call up to its worst case; never simply released. Settling marks the
/// rows settled and adds the actual cost to the accounts' spend in the same transaction,
/// once: a late settlement (past midnight, past its lease) still counts, replacing a
/// reclaimed amount by the actual cost, and a repeated one does not count twice. Row ids
/// come from `AUTOINCREMENT`, which never hands out an id twice in one file. Settled rows, rows a day past
/// their lease, and accounts of windows that ended a week ago are deleted as time goes on.
///
/// SQLite serialises writers, so calls into the store take turns on one connection, on
/// tokio's blocking pool: a few tens of microseconds each, fine at LLM request rates.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

fn sql_error(error: rusqlite::Error) -> StoreError {
    StoreError::new("sqlite", Some(Box::new(error)))
}

fn millis(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn picos(usd: Usd) -> i64 {
    i64::try_from(usd.picos()).unwrap_or(i64::MAX)
}

fn account_name(scope: Option<&str>) -> String {
    scope.map_or_else(|| GLOBAL.to_owned(), |s| format!("scope:{s}"))
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::from_connection(Connection::open(path).map_err(sql_error)?)
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory().map_err(sql_error)?)
    }

    fn from_connection(connection: Connection) -> Result<Self, StoreError> {
        // WAL lets readers in other processes go on while one writes; the busy timeout
        // makes writers from other processes wait their turn instead of failing.
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(sql_error)?;
        let _: String = connection
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(sql_error)?;
        connection.execute_batch(SCHEMA).map_err(sql_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            job(&mut connection).map_err(sql_error)
        })
        .await
        .map_err(|e| StoreError::new("sqlite worker", Some(Box::new(e))))?
    }
}

/// Counts every reservation whose lease ran out before `now` as spent at its amount, and
/// marks it reclaimed.
fn reclaim(tx: &rusqlite::Transaction<'_>, now: i64) -> Result<(), rusqlite::Error> {
    tx.execute(
        "UPDATE ballast_accounts SET spent = spent + (
             SELECT COALESCE(SUM(r.amount), 0) FROM ballast_reservations r
             WHERE r.window_start = ballast_accounts.window_start
               AND r.account = ballast_accounts.account
               AND r.settled = 0 AND r.lease_until < ?1)
         WHERE EXISTS (
             SELECT 1 FROM ballast_reservations r
             WHERE r.window_start = ballast_accounts.window_start
               AND r.account = ballast_accounts.account
               AND r.settled = 0 AND r.lease_until < ?1)",
        params![now],
    )?;
    let reclaimed = tx.execute(
        "UPDATE ballast_reservations SET settled = 2 WHERE settled = 0 AND lease_until < ?1",
        params![now],
    )?;
    if reclaimed > 0 {
        tracing::warn!(target: "ballast::budget", reservations = reclaimed, "reservations past their lease (a process died mid-call?) counted as spent at their worst case");
    }
    Ok(())
}

/// One account's (spent, limit, unexpired reservations), in picodollars.
fn account_state(
    connection: &Connection,
    window: &WindowId,
    account: &str,
    now: i64,
) -> Result<(i64, i64, i64), rusqlite::Error> {
    let (spent, limit): (i64, i64) = connection
        .query_row(
            "SELECT spent, spend_limit FROM ballast_accounts WHERE window_start = ?1 AND account = ?2",
            params![window.start as i64, account],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, 0));
    let reserved: i64 = connection.query_row(
        "SELECT COALESCE(SUM(amount), 0) FROM ballast_reservations
         WHERE window_start = ?1 AND account = ?2 AND lease_until >= ?3 AND settled = 0",
        params![window.start as i64, account, now],
        |row| row.get(0),
    )?;
    Ok((spent, limit, reserved))
}

fn ensure_account(
    tx: &rusqlite::Transaction<'_>,
    window: &WindowId,
    account: &str,
    limit: i64,
) -> Result<(), rusqlite::Error> {
    tx.execute(
        "INSERT INTO ballast_accounts (window_start, account, window_end, spend_limit)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (window_start, account) DO UPDATE SET spend_limit = excluded.spend_limit",
        params![window.start as i64, account, window.end as i64, limit],
    )?;
    Ok(())
}

impl SpendStore for SqliteStore {
    async fn reserve(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Reserve, StoreError> {
        let limits = limits.clone();
        let now = millis(now);
        self.run(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Past windows are kept a week for read-outs and late settlements.
            tx.execute(
                "DELETE FROM ballast_accounts WHERE window_end <= ?1",
                params![(now / 1000).saturating_sub(KEEP_PAST_WINDOWS_SECS)],
            )?;
            tx.execute(
                "DELETE FROM ballast_reservations WHERE settled = 1 OR lease_until < ?1",
                params![now.saturating_sub(86_400_000)],
            )?;
            reclaim(&tx, now)?;
            let mut accounts = vec![(GLOBAL.to_owned(), None, limits.global)];
            if let Some((scope, limit)) = &limits.scope {
                accounts.push((account_name(Some(scope)), Some(Arc::clone(scope)), *limit));
            }
            for (account, scope, limit) in &accounts {
                let (spent, _, reserved) = account_state(&tx, &window, account, now)?;
                let committed = spent.saturating_add(reserved);
                if committed.saturating_add(picos(amount)) > picos(*limit) {
                    return Ok(Reserve::Refused {
                        scope: scope.clone(),
                        limit: *limit,
                        committed: Usd::from_picos(u64::try_from(committed).unwrap_or(0)),
                    });
                }
            }
            let lease_until =
                now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            let mut id = None;
            for (account, _, limit) in &accounts {
                ensure_account(&tx, &window, account, picos(*limit))?;
                tx.execute(
                    "INSERT INTO ballast_reservations (window_start, account, amount, lease_until)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![window.start as i64, account, picos(amount), lease_until],
                )?;
                // Rows of one reservation share the first row's id as their group.
                id.get_or_insert(tx.last_insert_rowid());
            }
            tx.commit()?;
            Ok(Reserve::Granted(Reservation {
                id: u128::from(u64::try_from(id.unwrap_or(0)).unwrap_or(0)),
                window,
                scope: limits.scope.as_ref().map(|(s, _)| Arc::clone(s)),
                amount,
                lease,
            }))
        })
        .await
    }

    async fn settle(&self, reservation: &Reservation, actual: Usd) -> Result<(), StoreError> {
        let reservation = reservation.clone();
        self.run(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let first = i64::try_from(reservation.id).unwrap_or(i64::MAX);
            let rows = if reservation.scope.is_some() { 2 } else { 1 };
            let marked = tx.execute(
                "UPDATE ballast_reservations SET settled = 1
                 WHERE id >= ?1 AND id < ?1 + ?2 AND settled = 0",
                params![first, rows],
            )?;
            // A reclaimed reservation already counts its amount: the actual cost replaces it.
            let reclaimed = tx.execute(
                "UPDATE ballast_reservations SET settled = 1
                 WHERE id >= ?1 AND id < ?1 + ?2 AND settled = 2",
                params![first, rows],
            )?;
            let added = if marked > 0 {
                picos(actual)
            } else {
                picos(actual).saturating_sub(picos(reservation.amount))
            };
            // Settling twice (a retried settlement that had in fact been written) must not
            // count the spend twice: only the call that marked the rows adds it.
            if marked > 0 || reclaimed > 0 {
                for scope in [None, reservation.scope.as_deref()].into_iter().take(rows as usize) {
                    tx.execute(
                        "INSERT INTO ballast_accounts (window_start, account, window_end, spent)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (window_start, account) DO UPDATE SET spent = spent + excluded.spent",
                        params![
                            reservation.window.start as i64,
                            account_name(scope),
                            reservation.window.end as i64,
                            added
                        ],
                    )?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn readout(
        &self,
        window: WindowId,
        scope: Option<&str>,
        now: SystemTime,
    ) -> Result<Readout, StoreError> {
        let account = account_name(scope);
        let now = millis(now);
        self.run(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            reclaim(&tx, now)?;
            let (spent, limit, reserved) = account_state(&tx, &window, &account, now)?;
            tx.commit()?;
            let usd = |v: i64| Usd::from_picos(u64::try_from(v).unwrap_or(0));
            Ok(Readout {
                spent: usd(spent),
                reserved: usd(reserved),
                limit: usd(limit),
            })
        })
        .await
    }
}
