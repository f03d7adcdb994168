//! One suite, run against every store.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_budget::{BudgetWindow, Limits, MemoryStore, Reserve, SpendStore, WindowId};
use ballast_cost::Usd;

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

/// 2026-11-25T12:00:00Z.
/// Noon (UTC) of the day the test runs. Not a fixed date: the Redis store expires a window's
/// keys a week after the window ends, by the real clock, so a fixed day would be forgotten
/// by Redis once that week is over.
fn noon() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(now / 86_400 * 86_400 + 43_200)
}

fn today() -> WindowId {
    BudgetWindow::daily().at(noon())
}

const LEASE: Duration = Duration::from_secs(600);

fn global(limit: &str) -> Limits {
    Limits {
        global: usd(limit),
        scope: None,
    }
}

async fn granted<St: SpendStore>(
    store: &St,
    limits: &Limits,
    amount: &str,
) -> ballast_budget::Reservation {
    match store
        .reserve(today(), limits, usd(amount), LEASE, noon())
        .await
        .unwrap()
    {
        Reserve::Granted(reservation) => reservation,
        refused => panic!("refused: {refused:?}"),
    }
}

/// What every store must do.
async fn suite<St: SpendStore>(store: St) {
    let limits = global("1");
    // Reservations fit until the limit, exactly.
    let a = granted(&store, &limits, "0.6").await;
    let b = granted(&store, &limits, "0.4").await;
    let refused = store
        .reserve(today(), &limits, usd("0.000000000001"), LEASE, noon())
        .await
        .unwrap();
    assert_eq!(
        refused,
        Reserve::Refused {
            scope: None,
            limit: usd("1"),
            committed: usd("1")
        }
    );
    let readout = store.readout(today(), None, noon()).await.unwrap();
    assert_eq!(
        (readout.spent, readout.reserved, readout.remaining()),
        (Usd::ZERO, usd("1"), Usd::ZERO)
    );

    // Settling replaces the reservation by the actual cost; zero releases it.
    store.settle(&a, usd("0.25")).await.unwrap();
    store.settle(&b, Usd::ZERO).await.unwrap();
    let readout = store.readout(today(), None, noon()).await.unwrap();
    assert_eq!((readout.spent, readout.reserved), (usd("0.25"), Usd::ZERO));
    assert_eq!(readout.remaining(), usd("0.75"));

    // A scope is all or nothing: when it is full, the global budget is not touched.
    let scoped = Limits {
        global: usd("1"),
        scope: Some((Arc::from("tenant"), usd("0.1"))),
    };
    let c = granted(&store, &scoped, "0.1").await;
    let refused = store
        .reserve(today(), &scoped, usd("0.05"), LEASE, noon())
        .await
        .unwrap();
    assert!(matches!(refused, Reserve::Refused { scope: Some(ref s), .. } if &**s == "tenant"));
    let readout = store.readout(today(), None, noon()).await.unwrap();
    assert_eq!(
        readout.reserved,
        usd("0.1"),
        "the refused call left the global budget alone"
    );
    store.settle(&c, usd("0.1")).await.unwrap();
    let tenant = store
        .readout(today(), Some("tenant"), noon())
        .await
        .unwrap();
    assert_eq!((tenant.spent, tenant.reserved), (usd("0.1"), Usd::ZERO));
    assert_eq!(
        store.readout(today(), None, noon()).await.unwrap().spent,
        usd("0.35")
    );

    // Another window is another account.
    let tomorrow = BudgetWindow::daily().at(UNIX_EPOCH + Duration::from_secs(today().end));
    let fresh = store.readout(tomorrow, None, noon()).await.unwrap();
    assert_eq!((fresh.spent, fresh.reserved), (Usd::ZERO, Usd::ZERO));
}

/// Two clients of one store (two processes on one file, two connections to one server)
/// race 40 reservations of a tenth of the budget: exactly 10 fit.
async fn no_overshoot_across_clients<St: SpendStore + Clone>(first: St, second: St) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .reserve(today(), &global("1"), usd("0.1"), LEASE, noon())
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Reserve::Granted(_)) {
            granted += 1;
        }
    }
    assert_eq!(granted, 10);
}

/// A reservation whose process died is reclaimed at its amount once its lease ends, not
/// released; a late settlement then replaces the amount by the actual cost, once.
#[allow(dead_code)]
async fn reclaim_suite<St: SpendStore>(store: St) {
    let limits = global("1");
    let dead = granted(&store, &limits, "0.4").await;
    let later = noon() + LEASE + Duration::from_secs(1);
    let readout = store.readout(today(), None, later).await.unwrap();
    assert_eq!((readout.spent, readout.reserved), (usd("0.4"), Usd::ZERO));
    // The next reservation sees it as spent: 0.6 is left, 0.7 does not fit.
    let refused = store
        .reserve(today(), &limits, usd("0.7"), LEASE, later)
        .await
        .unwrap();
    assert!(matches!(refused, Reserve::Refused { .. }), "{refused:?}");
    // Not dead after all, only slow: its settlement replaces the worst case.
    store.settle(&dead, usd("0.1")).await.unwrap();
    store.settle(&dead, usd("0.1")).await.unwrap();
    let readout = store.readout(today(), None, later).await.unwrap();
    assert_eq!((readout.spent, readout.reserved), (usd("0.1"), Usd::ZERO));
}

#[tokio::test]
async fn memory_store() {
    suite(MemoryStore::new()).await;
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use ballast_budget::SqliteStore;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ballast-budget-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("budget.db")
    }

    #[tokio::test]
    async fn sqlite_store_in_memory() {
        suite(SqliteStore::in_memory().unwrap()).await;
    }

    #[tokio::test]
    async fn sqlite_store_on_disk() {
        suite(SqliteStore::open(temp_db("suite")).unwrap()).await;
    }

    #[tokio::test]
    async fn spend_survives_a_restart() {
        let path = temp_db("restart");
        {
            let store = SqliteStore::open(&path).unwrap();
            let r = granted(&store, &global("50"), "1").await;
            store.settle(&r, usd("0.75")).await.unwrap();
            // A reservation in flight when the process dies...
            granted(&store, &global("50"), "2").await;
        }
        let store = SqliteStore::open(&path).unwrap();
        let readout = store.readout(today(), None, noon()).await.unwrap();
        assert_eq!(readout.spent, usd("0.75"));
        assert_eq!(
            readout.reserved,
            usd("2"),
            "still held, until its lease runs out"
        );
        let later = noon() + LEASE + Duration::from_secs(1);
        let readout = store.readout(today(), None, later).await.unwrap();
        assert_eq!(
            readout.reserved,
            Usd::ZERO,
            "a crashed process does not hold budget for ever"
        );
    }

    #[tokio::test]
    async fn two_processes_on_one_file_cannot_overshoot() {
        let path = temp_db("shared");
        no_overshoot_across_clients(
            SqliteStore::open(&path).unwrap(),
            SqliteStore::open(&path).unwrap(),
        )
        .await;
    }

    #[tokio::test]
    async fn sqlite_leases_are_reclaimed_at_their_worst_case() {
        reclaim_suite(SqliteStore::in_memory().unwrap()).await;
    }

    #[tokio::test]
    async fn settlements_count_once_and_late_ones_still_count() {
        let store = SqliteStore::in_memory().unwrap();
        let r = granted(&store, &global("1"), "0.5").await;
        store.settle(&r, usd("0.2")).await.unwrap();
        store.settle(&r, usd("0.2")).await.unwrap();
        assert_eq!(
            store.readout(today(), None, noon()).await.unwrap().spent,
            usd("0.2")
        );
        // A call that outlives its lease and the day still records what it cost.
        let late = granted(&store, &global("1"), "0.3").await;
        let tomorrow = BudgetWindow::daily().at(UNIX_EPOCH + Duration::from_secs(today().end));
        let after_midnight = UNIX_EPOCH + Duration::from_secs(today().end + 60);
        store
            .reserve(tomorrow, &global("1"), usd("0.1"), LEASE, after_midnight)
            .await
            .unwrap();
        store.settle(&late, usd("0.3")).await.unwrap();
        assert_eq!(
            store
                .readout(today(), None, after_midnight)
                .await
                .unwrap()
                .spent,
            usd("0.5")
        );
    }
}

/// Redis tests start their own `redis-server` on a free loopback port. They are ignored by a
/// plain `cargo test` (reported as ignored, with the reason), and run by the README's test
/// command (`-- --include-ignored`), where a missing `redis-server` fails them: never a
/// silent pass.
#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use ballast_budget::{BudgetConfig, BudgetLayer, RedisStore};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use tower::{Layer, ServiceExt};

    struct RedisServer {
        child: Child,
        port: u16,
        dir: PathBuf,
        persistent: bool,
    }

    impl RedisServer {
        fn start(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("ballast-redis-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            Self::launch(dir, port, true)
        }

        /// A server with Redis's stock persistence for a fresh install without a config
        /// file: none (no AOF, no snapshots).
        fn start_forgetful(name: &str) -> Self {
            let mut server = Self::start(name);
            server.kill();
            let (dir, port) = (server.dir.clone(), server.port);
            std::mem::forget(server);
            Self::launch(dir, port, false)
        }

        fn launch(dir: PathBuf, port: u16, persistent: bool) -> Self {
            let aof = if persistent { "yes" } else { "no" };
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args(["--appendonly", aof, "--appendfsync", "always"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = child.unwrap_or_else(|error| {
                panic!(
                    "redis-server did not start ({error}): install the Debian package redis-server"
                )
            });
            // Wait for the external process to accept connections (bounded: 5 s).
            for _ in 0..250 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        port,
                        dir,
                        persistent,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server did not come up on port {port}");
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }

        fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        fn restart(mut self) -> Self {
            self.kill();
            let (dir, port, persistent) = (self.dir.clone(), self.port, self.persistent);
            std::mem::forget(self);
            Self::launch(dir, port, persistent)
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.kill();
        }
    }

    #[tokio::test]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn redis_store() {
        let server = RedisServer::start("suite");
        suite(RedisStore::connect(&server.url(), "suite").await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn two_clients_of_one_server_cannot_overshoot() {
        let server = RedisServer::start("race");
        let first = RedisStore::connect(&server.url(), "race").await.unwrap();
        let second = RedisStore::connect(&server.url(), "race").await.unwrap();
        no_overshoot_across_clients(first, second).await;
    }

    #[tokio::test]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn redis_spend_survives_a_restart_and_settles_once() {
        let server = RedisServer::start("restart");
        let store = RedisStore::connect(&server.url(), "restart").await.unwrap();
        let r = granted(&store, &global("50"), "1").await;
        store.settle(&r, usd("0.75")).await.unwrap();
        store.settle(&r, usd("0.75")).await.unwrap();
        granted(&store, &global("50"), "2").await;
        let server = server.restart();
        let store = RedisStore::connect(&server.url(), "restart").await.unwrap();
        let readout = store.readout(today(), None, noon()).await.unwrap();
        assert_eq!((readout.spent, readout.reserved), (usd("0.75"), usd("2")));
        let later = noon() + LEASE + Duration::from_secs(1);
        let readout = store.readout(today(), None, later).await.unwrap();
        assert_eq!(
            (readout.spent, readout.reserved),
            (usd("2.75"), Usd::ZERO),
            "past its lease, a reservation counts as spent at its amount"
        );
    }

    #[tokio::test]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn redis_leases_are_reclaimed_at_their_worst_case() {
        let server = RedisServer::start("reclaim");
        reclaim_suite(RedisStore::connect(&server.url(), "reclaim").await.unwrap()).await;
    }

    #[tokio::test]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn redis_reports_its_persistence() {
        let durable = RedisServer::start("durable");
        let store = RedisStore::connect(&durable.url(), "p").await.unwrap();
        assert!(store.persistence().unwrap().is_durable());
        let forgetful = RedisServer::start_forgetful("forgetful");
        let store = RedisStore::connect(&forgetful.url(), "p").await.unwrap();
        assert_eq!(
            store.persistence(),
            Some(&ballast_budget::Persistence {
                append_only: false,
                snapshots: String::new()
            })
        );
        let refused = RedisStore::connect_with(
            &forgetful.url(),
            "p",
            ballast_budget::PersistenceCheck::RequireAppendOnly,
        )
        .await
        .unwrap_err();
        assert!(
            refused.to_string().contains("no append-only persistence"),
            "{refused}"
        );
    }

    /// What one run against a Redis that is killed mid-run came to.
    #[derive(Debug, PartialEq, Eq)]
    struct FaultRun {
        billed: Usd,
        spent: Usd,
        reserved: Usd,
        granted_before: u32,
        granted_after: u32,
    }

    /// 30 calls of up to 1000 output tokens against a $0.01 budget, one at a time, through a
    /// provider that bills every call it gets in full; Redis is killed -9 and restarted
    /// after the 15th (when the day's budget is already spent), then 15 more.
    async fn kill_mid_run(server: RedisServer, prefix: &str) -> FaultRun {
        let store = RedisStore::connect(&server.url(), prefix).await.unwrap();
        let layer = BudgetLayer::with_store(BudgetConfig::daily(usd("0.01")), store);
        let billed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let provider = {
            let billed = Arc::clone(&billed);
            tower::service_fn(move |_request: http::Request<String>| {
                // 10 prompt tokens at $0.20 and 1000 output tokens at $1.50, per million.
                billed.fetch_add(usd("0.001502").picos(), std::sync::atomic::Ordering::SeqCst);
                async {
                    let body =
                        String::from(r#"{"usage":{"prompt_tokens":10,"completion_tokens":1000}}"#);
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                }
            })
        };
        let service = layer.layer(provider);
        let request = || {
            noted(http::Request::new(String::from(
                r#"{"model":"grok-code-fast-1","max_tokens":1000}"#,
            )))
        };
        let mut granted = [0u32; 2];
        let mut server = Some(server);
        for (half, count) in granted.iter_mut().enumerate() {
            for _ in 0..15 {
                // A refusal while Redis comes back is a refusal too (fail closed).
                if service.clone().oneshot(request()).await.is_ok() {
                    *count += 1;
                }
            }
            if half == 0 {
                server = server.take().map(RedisServer::restart);
                // Let the connection manager find the new server.
                for _ in 0..100 {
                    if layer.readout(None).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        let readout = layer.readout(None).await.unwrap();
        drop(server);
        FaultRun {
            billed: Usd::from_picos(billed.load(std::sync::atomic::Ordering::SeqCst)),
            spent: readout.spent,
            reserved: readout.reserved,
            granted_before: granted[0],
            granted_after: granted[1],
        }
    }

    /// Each call reserves 18 prompt-bound tokens at $0.20 and 1000 at $1.50 a million,
    /// $0.0015036, and bills $0.001502: six fit in $0.01 ($0.009012 spent), a seventh does
    /// not, before the kill or after it.
    fn the_day_kept() -> FaultRun {
        FaultRun {
            billed: usd("0.009012"),
            spent: usd("0.009012"),
            reserved: Usd::ZERO,
            granted_before: 6,
            granted_after: 0,
        }
    }

    /// A server that forgot the day must not hand the budget out again: the process adds
    /// back what it settled, so the six after the restart are refused too.
    #[tokio::test]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn redis_killed_without_persistence_does_not_hand_out_the_day_again() {
        let server = RedisServer::start_forgetful("forgetful-kill");
        assert_eq!(kill_mid_run(server, "forgetful-kill").await, the_day_kept());
    }

    #[tokio::test]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn redis_killed_with_aof_keeps_the_day() {
        let server = RedisServer::start("aof-kill");
        assert_eq!(kill_mid_run(server, "aof-kill").await, the_day_kept());
    }

    #[tokio::test]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn redis_down_refuses_callers_within_the_store_deadline() {
        let mut server = RedisServer::start("down");
        let store = RedisStore::connect(&server.url(), "down").await.unwrap();
        let layer = BudgetLayer::with_store(BudgetConfig::daily(usd("1")), store);
        let provider = tower::service_fn(|_request: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let service = layer.layer(provider);
        server.kill();
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let error = service
                .clone()
                .oneshot(noted(http::Request::new(String::from(
                    r#"{"model":"grok-code-fast-1"}"#,
                ))))
                .await
                .unwrap_err();
            slowest = slowest.max(started.elapsed());
            let source = std::error::Error::source(
                error
                    .downcast_ref::<ballast_classify::ClassifiedError>()
                    .unwrap(),
            )
            .unwrap();
            assert!(source.is::<ballast_budget::BudgetUnavailable>(), "{error}");
        }
        eprintln!("slowest refusal of 20 with Redis down: {slowest:?}");
        // The deadline is 250 ms; the bound leaves room for a loaded machine, not for the
        // many seconds of a reconnect loop.
        assert!(
            slowest < Duration::from_secs(1),
            "a caller waited {slowest:?}"
        );
    }

    #[tokio::test]
    #[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
    async fn redis_killed_mid_run_loses_no_settlement() {
        let server = RedisServer::start("killed");
        let store = RedisStore::connect(&server.url(), "killed").await.unwrap();
        let layer = BudgetLayer::with_store(BudgetConfig::daily(usd("1")), store);
        let server = Arc::new(std::sync::Mutex::new(Some(server)));
        let provider = {
            let server = Arc::clone(&server);
            tower::service_fn(move |_request: http::Request<String>| {
                // Redis dies while the call is with the provider.
                if let Some(server) = server.lock().unwrap().as_mut() {
                    server.kill();
                }
                async {
                    let body = String::from(
                        r#"{"usage":{"prompt_tokens":1000,"completion_tokens":1000}}"#,
                    );
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                }
            })
        };
        let request = noted(http::Request::new(String::from(
            r#"{"model":"grok-code-fast-1","max_tokens":1000}"#,
        )));
        layer.layer(provider).oneshot(request).await.unwrap();
        assert_eq!(layer.pending_settlements(), 1, "kept, not dropped");
        let back = server.lock().unwrap().take().unwrap().restart();
        for _ in 0..100 {
            layer.flush().await;
            if layer.pending_settlements() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(layer.pending_settlements(), 0);
        let readout = layer.readout(None).await.unwrap();
        // 1000 x $0.20 + 1000 x $1.50, per million.
        assert_eq!(readout.spent, usd("0.0017"));
        assert_eq!(readout.reserved, Usd::ZERO);
        drop(back);
    }
}

/// `request` with its facts read (as `ReadRequestLayer` would).
#[cfg(feature = "redis")]
fn noted(mut request: http::Request<String>) -> http::Request<String> {
    // A chat call's path: at a path no dialect names, a body without `messages` has no
    // reading (and no worst case to reserve).
    *request.uri_mut() = http::Uri::from_static("/v1/chat/completions");
    ballast_classify::RequestFacts::note(&mut request);
    request
}
