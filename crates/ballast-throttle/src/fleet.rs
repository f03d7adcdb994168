//! [`Fleet`]: one limiter for several processes sharing an API key, in Redis.
//!
//! The provider limits the key, not the process. With a fleet, every process takes its
//! turns from one shared timeline: a GCRA in a Lua script on the Redis server's clock. Each
//! process still learns the pace from its own answers (they are answers to the fleet's
//! combined traffic, so the processes learn alike), takes turns one of its intervals apart
//! on the shared timeline, and on a 429 pushes the shared timeline past its pause, so the
//! whole fleet pauses. When Redis cannot be reached, the process falls back to its local
//! limiter and logs a warning: it keeps sending at its own learned pace rather than stop.
//! A tokens-per-minute limit (`ThrottleConfig::tokens_per_minute`) is paced per process
//! only: share it out between the processes in their configurations.

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Script};

/// Takes the next turn on the shared timeline: `{wait_us, turn_us}` or `{-1, wait_us}` when
/// it would wait longer than allowed. KEYS[1]: the timeline. ARGV: interval_us, max_wait_us.
static TURN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local turn = math.max(now, tat)
local wait = turn - now
if wait > tonumber(ARGV[2]) then
  return {-1, wait}
end
redis.call('SET', KEYS[1], turn + tonumber(ARGV[1]), 'PX', 3600000)
return {wait, turn}
",
    )
});

/// Pushes the shared timeline to at least now + ARGV[1] microseconds (a fleet-wide pause).
static PAUSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ = now + tonumber(ARGV[1])
if until_ > tat then
  redis.call('SET', KEYS[1], until_, 'PX', 3600000)
end
return 1
",
    )
});

/// Gives back a turn whose caller left before it came: KEYS[1] the timeline; ARGV turn_us,
/// interval_us. The last in line takes its turn back exactly; else the line's end moves
/// one interval earlier (never before now), as the local limiter does.
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local turn = tonumber(ARGV[1])
if turn <= now then return 0 end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local interval = tonumber(ARGV[2])
if tat == turn + interval then
  redis.call('SET', KEYS[1], turn, 'PX', 3600000)
elseif tat > now then
  redis.call('SET', KEYS[1], math.max(tat - interval, now), 'PX', 3600000)
end
return 1
",
    )
});

/// A shared timeline in Redis. Clone it freely.
#[derive(Clone)]
pub struct Fleet {
    connection: ConnectionManager,
    key: Arc<str>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Redis could not be reached or answered nonsense.
#[derive(Debug)]
pub struct FleetError(redis::RedisError);

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "throttle fleet store: {}", self.0)
    }
}

impl std::error::Error for FleetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A turn from the shared timeline.
pub(crate) enum FleetTurn {
    /// Wait this long, then go; the turn on the server's clock (µs), to give it back.
    After(Duration, u64),
    /// Refused: the turn is this far off, past the longest wait.
    TooLong(Duration),
}

impl Fleet {
    /// Connects to `url` (`redis://host:port/`); the timeline lives at `key` (name it after
    /// the API key's owner, never the key itself).
    pub async fn connect(url: &str, key: &str) -> Result<Self, FleetError> {
        let client = Client::open(url).map_err(FleetError)?;
        let connection = ConnectionManager::new(client).await.map_err(FleetError)?;
        Ok(Self {
            connection,
            key: Arc::from(key),
        })
    }

    pub(crate) async fn turn(
        &self,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<FleetTurn, FleetError> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let answer: Vec<i64> = TURN
            .key(&*self.key)
            .arg(micros(interval))
            .arg(micros(max_wait))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(FleetError)?;
        let micros = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(match answer.as_slice() {
            [-1, wait] => FleetTurn::TooLong(Duration::from_micros(micros(*wait))),
            [wait, turn] => FleetTurn::After(Duration::from_micros(micros(*wait)), micros(*turn)),
            _ => FleetTurn::After(Duration::ZERO, 0),
        })
    }

    /// Gives `turn` back (its caller left before it came), from a task of its own: a drop
    /// cannot wait for Redis. Best effort: a lost give-back only leaves the turn unused.
    pub(crate) fn give_back(&self, turn: u64, interval: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let fleet = self.clone();
        let interval = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
        runtime.spawn(async move {
            let result: Result<i64, _> = GIVE_BACK
                .key(&*fleet.key)
                .arg(turn)
                .arg(interval)
                .invoke_async(&mut fleet.connection.clone())
                .await;
            if let Err(error) = result {
                tracing::debug!(target: "ballast::throttle", %error, "fleet turn not given back");
            }
        });
    }

    pub(crate) async fn pause(&self, pause: Duration) -> Result<(), FleetError> {
        let _: i64 = PAUSE
            .key(&*self.key)
            .arg(u64::try_from(pause.as_micros()).unwrap_or(u64::MAX))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(FleetError)?;
        Ok(())
    }
}
