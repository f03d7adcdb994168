//! Fleet mode: two "processes" (two throttles with their own limiters) share one Redis
//! timeline and keep to one pace between them. Real time: Redis keeps its own clock. Starts
//! its own `redis-server` on a free loopback port. Ignored by a plain `cargo test` (reported
//! as ignored, with the reason); run by the README's test command (`-- --include-ignored`),
//! where a missing `redis-server` fails it: never a silent pass.
#![cfg(feature = "redis")]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ballast_throttle::{Fleet, ThrottleConfig, ThrottleLayer};
use tower::{Layer, ServiceExt};

struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = child.unwrap_or_else(|error| {
            panic!("redis-server did not start ({error}): install the Debian package redis-server")
        });
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, port };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not come up on port {port}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request() -> http::Request<String> {
    http::Request::post("http://provider.invalid/v1/chat/completions")
        .body(String::new())
        .unwrap()
}

/// Sends from `callers` callers through `layer` for `run`; counts what reached the provider.
/// Only calls sent within `run` of `start` are counted.
async fn send(
    layer: ThrottleLayer,
    callers: usize,
    start: Instant,
    run: Duration,
    sent: Arc<AtomicUsize>,
) {
    let provider = tower::service_fn(move |_: http::Request<String>| {
        let sent = Arc::clone(&sent);
        async move {
            if start.elapsed() < run {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }
    });
    let service = layer.layer(provider);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                while start.elapsed() < run {
                    let _ = service.clone().oneshot(request()).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
async fn two_processes_on_one_redis_hold_the_shared_rate() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    // 1200 requests/min: 20 a second, shared; each process alone would send 20 a second.
    let config = || ThrottleConfig {
        max_rpm: 1200.0,
        ..ThrottleConfig::starting_at(1200.0)
    };
    let run = Duration::from_secs(2);
    let shared = Arc::new(AtomicUsize::new(0));
    let a = ThrottleLayer::fleet(config(), Fleet::connect(&url, "test:key").await.unwrap());
    let b = ThrottleLayer::fleet(config(), Fleet::connect(&url, "test:key").await.unwrap());
    let start = Instant::now();
    tokio::join!(
        send(a, 8, start, run, Arc::clone(&shared)),
        send(b, 8, start, run, Arc::clone(&shared)),
    );
    let together = shared.load(Ordering::Relaxed);

    // The same two without the fleet send twice as much.
    let alone = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    tokio::join!(
        send(
            ThrottleLayer::new(config()),
            8,
            start,
            run,
            Arc::clone(&alone)
        ),
        send(
            ThrottleLayer::new(config()),
            8,
            start,
            run,
            Arc::clone(&alone)
        ),
    );
    let apart = alone.load(Ordering::Relaxed);
    // 2 s at 20 a second is 40 turns, one more at the start.
    assert!(together <= 42, "{together} calls through the fleet in 2 s");
    assert!(together >= 30, "{together} calls through the fleet in 2 s");
    assert!(apart >= 70, "{apart} calls without the fleet");
}

/// Redis gone after the fleet connected: each process paces with its own limiter (20 a
/// second here, 40 turns in 2 s), every call answered within a bounded time, not stalled
/// and not sent unpaced. And a fleet that cannot connect at all says so at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
async fn without_redis_a_process_paces_locally() {
    // Nothing listens on port 1: the fleet cannot connect, so the caller learns it at once.
    assert!(Fleet::connect("redis://127.0.0.1:1/", "k").await.is_err());
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let fleet = Fleet::connect(&url, "test:down").await.unwrap();
    drop(redis);
    let config = ThrottleConfig {
        max_rpm: 1200.0,
        ..ThrottleConfig::starting_at(1200.0)
    };
    let sent = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let run = Duration::from_secs(2);
    tokio::time::timeout(
        Duration::from_secs(10),
        send(
            ThrottleLayer::fleet(config, fleet),
            8,
            start,
            run,
            Arc::clone(&sent),
        ),
    )
    .await
    .expect("calls with Redis down end within a bounded time");
    let sent = sent.load(Ordering::Relaxed);
    // The local pace: 2 s at 20 a second, one more at the start; not the 8 callers' unpaced
    // thousands, not none.
    assert!(
        (30..=42).contains(&sent),
        "{sent} calls in 2 s with Redis down"
    );
}

/// Callers that give up waiting for a turn on the shared timeline give it back: after 20
/// callers at 60 a minute (turns 1 s apart, up to 20 s off) leave 100 ms into their wait,
/// the next caller goes at about its fair turn, not 20 s later. Real time (Redis's clock),
/// so the bound is loose: the 20 s an untaken line would hold, not a speed goal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: install the Debian package, run with -- --include-ignored"]
async fn fleet_callers_that_give_up_give_their_turns_back() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let config = ThrottleConfig {
        max_rpm: 60.0,
        ..ThrottleConfig::starting_at(60.0)
    };
    let layer = ThrottleLayer::fleet(
        config,
        Fleet::connect(&url, "test:give-back").await.unwrap(),
    );
    let provider = tower::service_fn(|_: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    let service = layer.layer(provider);
    // The first takes the turn at once and goes.
    service.clone().oneshot(request()).await.unwrap();
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let call = service.clone().oneshot(request());
            tokio::spawn(tokio::time::timeout(Duration::from_millis(100), call))
        })
        .collect();
    for call in waiting {
        assert!(call.await.unwrap().is_err(), "each was still waiting");
    }
    // The give-backs go from tasks of their own: let them land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    service.clone().oneshot(request()).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "the next caller waited {waited:?}"
    );
}
