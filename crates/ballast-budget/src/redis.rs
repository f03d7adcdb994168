//! [`RedisStore`]: budgets shared by a fleet, in Redis (feature `redis`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_cost::Usd;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use crate::id::IdSource;
use crate::{Limits, Readout, Reservation, Reserve, SpendStore, StoreError, WindowId};

/// How long keys outlive their window, for read-outs and late settlements.
const KEEP_SECS: u64 = 7 * 86_400;

/// Reserves across one or two accounts, all or nothing.
///
/// KEYS: per account, its hash (`spent`, `limit`), its live reservations (zset id -> lease
/// end), their amounts (hash id -> amount), the reclaimed ones (hash id -> amount); then the
/// window's epoch key.
/// ARGV: id, amount, now (ms), lease end (ms), expire-at (s), the epoch this process knows
/// (`""`: none yet), this process's nonce, then per account its limit and what this process
/// settled in it. A new epoch is named after the reservation id that found the old one
/// gone (ids never repeat).
///
/// The epoch tells a server that lost the window's data (a restart without persistence):
/// its epoch key is gone. The first process to see that makes a new epoch, and every
/// process that knew the old one adds what it settled in the window, once (a set of the
/// nonces that did), so the spend the server forgot comes back from the processes.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local accounts = (#KEYS - 1) / 4
local id = ARGV[1]
local amount = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local epoch_key = KEYS[#KEYS]
local epoch = redis.call('GET', epoch_key)
if not epoch then
  epoch = id
  redis.call('SET', epoch_key, epoch)
  redis.call('EXPIREAT', epoch_key, ARGV[5])
end
if ARGV[6] ~= '' and epoch ~= ARGV[6] then
  local seeded = epoch_key .. ':seeded'
  if redis.call('SADD', seeded, ARGV[7]) == 1 then
    redis.call('EXPIREAT', seeded, ARGV[5])
    for i = 0, accounts - 1 do
      local mine = ARGV[9 + i*2]
      if tonumber(mine) > 0 then
        redis.call('HINCRBY', KEYS[i*4+1], 'spent', mine)
        redis.call('EXPIREAT', KEYS[i*4+1], ARGV[5])
      end
    end
  end
end
for i = 0, accounts - 1 do
  local account, live, amounts, reclaimed = KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3], KEYS[i*4+4]
  -- Reservations past their lease (their process died mid-call) count as spent at their
  -- amount: the provider may have billed them. A late settlement replaces the amount.
  local expired = redis.call('ZRANGEBYSCORE', live, '-inf', '(' .. now)
  for _, old in ipairs(expired) do
    local held = redis.call('HGET', amounts, old)
    if held then
      redis.call('HINCRBY', account, 'spent', held)
      redis.call('HSET', reclaimed, old, held)
      redis.call('HDEL', amounts, old)
    end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', live, '-inf', '(' .. now)
    redis.call('EXPIREAT', reclaimed, ARGV[5])
  end
  local committed = tonumber(redis.call('HGET', account, 'spent') or '0')
  for _, v in ipairs(redis.call('HVALS', amounts)) do committed = committed + tonumber(v) end
  local limit = tonumber(ARGV[8 + i*2])
  if committed + amount > limit then
    return {0, i, string.format('%.0f', committed), epoch}
  end
end
for i = 0, accounts - 1 do
  local account, live, amounts = KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3]
  redis.call('HSET', account, 'limit', ARGV[8 + i*2])
  redis.call('HSETNX', account, 'spent', '0')
  redis.call('ZADD', live, ARGV[4], id)
  redis.call('HSET', amounts, id, ARGV[2])
  for _, key in ipairs({account, live, amounts}) do redis.call('EXPIREAT', key, ARGV[5]) end
end
return {1, 0, '0', epoch}
",
    )
});

/// Settles once: KEYS per account (hash, live, amounts, reclaimed), the settled set, the
/// epoch key; ARGV: id, actual, expire-at. A reservation the store no longer knows (its data
/// was lost) adds its actual cost all the same: a settlement is never dropped. Returns
/// whether it counted, and the epoch it counted in.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local settled = KEYS[#KEYS - 1]
local epoch = redis.call('GET', KEYS[#KEYS]) or ''
if redis.call('SADD', settled, ARGV[1]) == 0 then return {0, epoch} end
redis.call('EXPIREAT', settled, ARGV[3])
local accounts = (#KEYS - 2) / 4
local actual = tonumber(ARGV[2])
for i = 0, accounts - 1 do
  local account, live, amounts, reclaimed = KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3], KEYS[i*4+4]
  local add = actual
  if not redis.call('HGET', amounts, ARGV[1]) then
    local was = redis.call('HGET', reclaimed, ARGV[1])
    if was then
      add = actual - tonumber(was)
      redis.call('HDEL', reclaimed, ARGV[1])
    end
  end
  redis.call('ZREM', live, ARGV[1])
  redis.call('HDEL', amounts, ARGV[1])
  redis.call('HINCRBY', account, 'spent', string.format('%.0f', add))
  redis.call('EXPIREAT', account, ARGV[3])
end
return {1, epoch}
",
    )
});

/// Reads one account: KEYS hash, live, amounts; ARGV now (ms). Reservations past their
/// lease count as spent, as the next reservation will count them.
static READOUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0')
local reserved = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')) do
  reserved = reserved + tonumber(redis.call('HGET', KEYS[3], id) or '0')
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])) do
  spent = spent + tonumber(redis.call('HGET', KEYS[3], id) or '0')
end
return {string.format('%.0f', spent), string.format('%.0f', reserved), string.format('%.0f', limit)}
",
    )
});

/// What a Redis server keeps when it restarts, as `CONFIG GET` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// `appendonly yes`: every write is logged (fsync per `appendfsync`, by default once a
    /// second), so a restart loses at most about a second of settlements.
    pub append_only: bool,
    /// The `save` rules (`""`: no snapshots). Snapshots alone lose everything since the
    /// last one.
    pub snapshots: String,
}

impl Persistence {
    /// Whether a restart forgets nothing but the last second or so.
    pub fn is_durable(&self) -> bool {
        self.append_only
    }
}

/// What [`RedisStore::connect_with`] does about a server that forgets on restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PersistenceCheck {
    /// Log a warning and go on (the default): a restart of such a server forgets today's
    /// spend, and the fleet may spend the day's budget again.
    #[default]
    Warn,
    /// Refuse to connect unless the server has append-only persistence (or its `CONFIG`
    /// cannot be read, which is warned about).
    RequireAppendOnly,
}

/// Budgets in Redis, shared by every process that points at the same server and prefix:
/// the provider limits the key, not the process, and so should the budget.
///
/// Each reservation and settlement is one Lua script, so it is atomic across the global and
/// scope accounts. Reservations carry a lease: a reservation whose process crashed stops
/// counting when its lease ends. A settlement is recorded once, by id, so a retried one
/// cannot count twice. A reservation whose lease ran out (its process was killed) is
/// reclaimed at its amount, counted as spent, never released. Reservation ids are made by
/// the process (a random nonce per store and a counter), not by the server, so a server
/// that lost its data cannot hand out an id that is already settled. Keys expire a week
/// after their window ends. Amounts are integer picodollars. The connection is tokio's
/// `ConnectionManager` (connect and response timeouts of 1 s), which reconnects after
/// Redis comes back; while it is gone, reservations fail within the guard's store deadline
/// (the guard fails closed or open as configured) and settlements are kept by the guard
/// and retried.
///
/// At connect it reads the server's persistence and warns when a restart would forget the
/// day's spend ([`PersistenceCheck`]).
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: Arc<str>,
    ids: Arc<IdSource>,
    persistence: Option<Persistence>,
    local: Arc<Mutex<Local>>,
}

/// What this process settled, per window and account, and the epoch it counted in: what
/// it adds back when the server forgets the window. A plain mutex: held for a map lookup
/// beside a network round trip, on the Redis path only.
#[derive(Debug, Default)]
struct Local {
    /// (window start, scope) -> picodollars this process settled there.
    settled: HashMap<(u64, Option<Arc<str>>), u64>,
    /// window start -> the epoch this process knows.
    epochs: HashMap<u64, String>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: it is not kept, and nothing else here is secret.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_error(error: redis::RedisError) -> StoreError {
    StoreError::new("redis", Some(Box::new(error)))
}

fn millis(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RedisStore {
    /// Connects to `url` (`redis://127.0.0.1:6379`); keys start with `prefix`. Warns when
    /// the server has no append-only persistence.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, prefix, PersistenceCheck::Warn).await
    }

    /// Connects as [`connect`](Self::connect) does, checking persistence as `check` says.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        check: PersistenceCheck,
    ) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(redis_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(redis_error)?;
        let persistence = read_persistence(&connection).await;
        match &persistence {
            Some(found) if found.is_durable() => {}
            Some(found) if check == PersistenceCheck::RequireAppendOnly => {
                return Err(StoreError::new(
                    format!(
                        "the Redis server has no append-only persistence (save rules: {:?}); a restart would forget the day's spend",
                        found.snapshots
                    ),
                    None,
                ));
            }
            Some(found) => tracing::warn!(
                target: "ballast::budget",
                snapshots = %found.snapshots,
                "the Redis budget store has no append-only persistence: a restart forgets spend since the last snapshot (set `appendonly yes`, or connect with PersistenceCheck::RequireAppendOnly to refuse)"
            ),
            None => tracing::warn!(
                target: "ballast::budget",
                "could not read the Redis server's persistence (CONFIG GET refused?): make sure it has `appendonly yes`"
            ),
        }
        Ok(Self {
            connection,
            prefix: Arc::from(prefix),
            ids: Arc::new(IdSource::new()),
            persistence,
            local: Arc::default(),
        })
    }

    /// The server's persistence as read at connect (`None`: `CONFIG GET` was refused).
    pub fn persistence(&self) -> Option<&Persistence> {
        self.persistence.as_ref()
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn epoch_key(&self, window: &WindowId) -> String {
        format!("{}:{}:epoch", self.prefix, window.start)
    }

    fn account_keys(&self, window: &WindowId, scope: Option<&str>) -> [String; 4] {
        let account = match scope {
            None => format!("{}:{}:global", self.prefix, window.start),
            Some(scope) => format!("{}:{}:scope:{scope}", self.prefix, window.start),
        };
        [
            account.clone(),
            format!("{account}:live"),
            format!("{account}:amounts"),
            format!("{account}:reclaimed"),
        ]
    }
}

/// `CONFIG GET appendonly` and `save`; `None` when the server refuses them.
async fn read_persistence(connection: &ConnectionManager) -> Option<Persistence> {
    let mut connection = connection.clone();
    let mut get = async |name: &str| -> Option<String> {
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut connection)
            .await
            .ok()?;
        reply.into_iter().nth(1)
    };
    let append_only = get("appendonly").await? == "yes";
    let snapshots = get("save").await?;
    Some(Persistence {
        append_only,
        snapshots,
    })
}

fn picos(usd: Usd) -> u64 {
    usd.picos()
}

impl SpendStore for RedisStore {
    async fn reserve(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Reserve, StoreError> {
        let now_ms = millis(now);
        let lease_end = now_ms.saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
        let mut invocation = RESERVE.prepare_invoke();
        for key in self.account_keys(&window, None) {
            invocation.key(key);
        }
        if let Some((scope, _)) = &limits.scope {
            for key in self.account_keys(&window, Some(scope)) {
                invocation.key(key);
            }
        }
        invocation.key(self.epoch_key(&window));
        let id = self.ids.next();
        let (known, mine_global, mine_scope) = {
            let local = self.lock_local();
            let mine = |scope: Option<&Arc<str>>| {
                local
                    .settled
                    .get(&(window.start, scope.cloned()))
                    .copied()
                    .unwrap_or(0)
            };
            (
                local.epochs.get(&window.start).cloned().unwrap_or_default(),
                mine(None),
                limits.scope.as_ref().map(|(s, _)| mine(Some(s))),
            )
        };
        invocation
            .arg(id.to_string())
            .arg(picos(amount))
            .arg(now_ms)
            .arg(lease_end)
            .arg(window.end.saturating_add(KEEP_SECS))
            .arg(&known)
            .arg(self.ids.nonce())
            .arg(picos(limits.global))
            .arg(mine_global);
        if let (Some((_, limit)), Some(mine)) = (&limits.scope, mine_scope) {
            invocation.arg(picos(*limit)).arg(mine);
        }
        let mut connection = self.connection.clone();
        let (granted, value, committed, epoch): (u8, u64, String, String) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if epoch != known {
            if !known.is_empty() {
                tracing::warn!(target: "ballast::budget", window = window.start, "the Redis budget store forgot this window (restarted without persistence?): this process's settled spend was added back");
            }
            self.lock_local().epochs.insert(window.start, epoch);
        }
        if granted == 1 {
            return Ok(Reserve::Granted(Reservation {
                id,
                window,
                scope: limits.scope.as_ref().map(|(s, _)| Arc::clone(s)),
                amount,
                lease,
            }));
        }
        let (scope, limit) = match (value, &limits.scope) {
            (1, Some((scope, limit))) => (Some(Arc::clone(scope)), *limit),
            _ => (None, limits.global),
        };
        Ok(Reserve::Refused {
            scope,
            limit,
            committed: Usd::from_picos(committed.parse().unwrap_or(0)),
        })
    }

    async fn settle(&self, reservation: &Reservation, actual: Usd) -> Result<(), StoreError> {
        let window = &reservation.window;
        let mut invocation = SETTLE.prepare_invoke();
        for key in self.account_keys(window, None) {
            invocation.key(key);
        }
        if let Some(scope) = &reservation.scope {
            for key in self.account_keys(window, Some(scope)) {
                invocation.key(key);
            }
        }
        invocation.key(format!("{}:{}:settled", self.prefix, window.start));
        invocation.key(self.epoch_key(window));
        invocation
            .arg(reservation.id.to_string())
            .arg(picos(actual))
            .arg(window.end.saturating_add(KEEP_SECS));
        let mut connection = self.connection.clone();
        let (counted, epoch): (u8, String) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut local = self.lock_local();
        // Counted in the epoch this process knows: it is what a lost window gets back.
        if counted == 1 && local.epochs.get(&window.start) == Some(&epoch) {
            let scopes = reservation.scope.iter().cloned().map(Some);
            for scope in std::iter::once(None).chain(scopes) {
                let total = local.settled.entry((window.start, scope)).or_default();
                *total = total.saturating_add(picos(actual));
            }
        }
        // Past windows are forgotten.
        local.settled.retain(|(start, _), _| *start >= window.start);
        Ok(())
    }

    async fn readout(
        &self,
        window: WindowId,
        scope: Option<&str>,
        now: SystemTime,
    ) -> Result<Readout, StoreError> {
        let mut invocation = READOUT.prepare_invoke();
        for key in self.account_keys(&window, scope) {
            invocation.key(key);
        }
        invocation.arg(millis(now));
        let mut connection = self.connection.clone();
        let (spent, reserved, limit): (String, String, String) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let usd = |text: &str| Usd::from_picos(text.parse().unwrap_or(0));
        Ok(Readout {
            spent: usd(&spent),
            reserved: usd(&reserved),
            limit: usd(&limit),
        })
    }
}
