//! [`RedisStore`]: budgets shared by a fleet, in Redis (feature `redis`).

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_cost::Usd;
use redis::aio::ConnectionManager;
use redis::{Client, Script};

use crate::{Limits, Readout, Reservation, Reserve, SpendStore, StoreError, WindowId};

/// How long keys outlive their window, for read-outs and late settlements.
const KEEP_SECS: u64 = 7 * 86_400;

/// Reserves across one or two accounts, all or nothing.
///
/// KEYS: per account, its hash (`spent`, `limit`), its live reservations (zset id -> lease
/// end), their amounts (hash id -> amount); then the sequence counter.
/// ARGV: amount, now (ms), lease end (ms), expire-at (s), then one limit per account.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local accounts = (#KEYS - 1) / 3
local amount = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
for i = 0, accounts - 1 do
  local account, live, amounts = KEYS[i*3+1], KEYS[i*3+2], KEYS[i*3+3]
  -- Reservations past their lease stop counting (their process died).
  local expired = redis.call('ZRANGEBYSCORE', live, '-inf', '(' .. now)
  for _, id in ipairs(expired) do redis.call('HDEL', amounts, id) end
  redis.call('ZREMRANGEBYSCORE', live, '-inf', '(' .. now)
  local committed = tonumber(redis.call('HGET', account, 'spent') or '0')
  for _, v in ipairs(redis.call('HVALS', amounts)) do committed = committed + tonumber(v) end
  local limit = tonumber(ARGV[5 + i])
  if committed + amount > limit then
    return {0, i, committed}
  end
end
local id = redis.call('INCR', KEYS[#KEYS])
for i = 0, accounts - 1 do
  local account, live, amounts = KEYS[i*3+1], KEYS[i*3+2], KEYS[i*3+3]
  redis.call('HSET', account, 'limit', ARGV[5 + i])
  redis.call('HSETNX', account, 'spent', '0')
  redis.call('ZADD', live, ARGV[3], id)
  redis.call('HSET', amounts, id, ARGV[1])
  for _, key in ipairs({account, live, amounts}) do redis.call('EXPIREAT', key, ARGV[4]) end
end
return {1, id, 0}
",
    )
});

/// Settles once: KEYS per account (hash, live, amounts) then the settled set; ARGV: id,
/// actual, expire-at.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local settled = KEYS[#KEYS]
if redis.call('SADD', settled, ARGV[1]) == 0 then return 0 end
redis.call('EXPIREAT', settled, ARGV[3])
local accounts = (#KEYS - 1) / 3
for i = 0, accounts - 1 do
  local account, live, amounts = KEYS[i*3+1], KEYS[i*3+2], KEYS[i*3+3]
  redis.call('ZREM', live, ARGV[1])
  redis.call('HDEL', amounts, ARGV[1])
  redis.call('HINCRBY', account, 'spent', ARGV[2])
  redis.call('EXPIREAT', account, ARGV[3])
end
return 1
",
    )
});

/// Reads one account: KEYS hash, live, amounts; ARGV now (ms).
static READOUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0')
local reserved = 0
local live = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
for _, id in ipairs(live) do reserved = reserved + tonumber(redis.call('HGET', KEYS[3], id) or '0') end
return {spent, reserved, limit}
",
    )
});

/// Budgets in Redis, shared by every process that points at the same server and prefix:
/// the provider limits the key, not the process, and so should the budget.
///
/// Each reservation and settlement is one Lua script, so it is atomic across the global and
/// scope accounts. Reservations carry a lease: a reservation whose process crashed stops
/// counting when its lease ends. A settlement is recorded once, by id, so a retried one
/// cannot count twice. Keys expire a week after their window ends. Amounts are integer
/// picodollars. The connection is tokio's `ConnectionManager`, which reconnects after Redis
/// comes back; while it is gone, reservations fail (the guard fails closed or open as
/// configured) and settlements are kept by the guard and retried.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: Arc<str>,
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
    /// Connects to `url` (`redis://127.0.0.1:6379`); keys start with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(redis_error)?;
        let connection = ConnectionManager::new(client).await.map_err(redis_error)?;
        Ok(Self {
            connection,
            prefix: Arc::from(prefix),
        })
    }

    fn account_keys(&self, window: &WindowId, scope: Option<&str>) -> [String; 3] {
        let account = match scope {
            None => format!("{}:{}:global", self.prefix, window.start),
            Some(scope) => format!("{}:{}:scope:{scope}", self.prefix, window.start),
        };
        [
            account.clone(),
            format!("{account}:live"),
            format!("{account}:amounts"),
        ]
    }
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
        invocation.key(format!("{}:seq", self.prefix));
        invocation
            .arg(picos(amount))
            .arg(now_ms)
            .arg(lease_end)
            .arg(window.end.saturating_add(KEEP_SECS))
            .arg(picos(limits.global));
        if let Some((_, limit)) = &limits.scope {
            invocation.arg(picos(*limit));
        }
        let mut connection = self.connection.clone();
        let (granted, value, committed): (u8, u64, u64) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if granted == 1 {
            return Ok(Reserve::Granted(Reservation {
                id: value,
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
            committed: Usd::from_picos(committed),
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
        invocation
            .arg(reservation.id)
            .arg(picos(actual))
            .arg(window.end.saturating_add(KEEP_SECS));
        let mut connection = self.connection.clone();
        let _: u8 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
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
        let (spent, reserved, limit): (u64, u64, u64) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(Readout {
            spent: Usd::from_picos(spent),
            reserved: Usd::from_picos(reserved),
            limit: Usd::from_picos(limit),
        })
    }
}
