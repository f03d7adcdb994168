//! Processes that die: a child process of this test binary is killed -9 with calls in
//! flight, or exits with settlements its store refused; the parent then opens the same
//! files and checks that no money was lost.
#![cfg(feature = "sqlite")]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use ballast_budget::{
    BudgetConfig, BudgetLayer, BudgetWindow, Limits, Readout, Reservation, Reserve, SpendStore,
    SqliteStore, StoreError, WindowId,
};
use ballast_cost::Usd;
use tower::{Layer, ServiceExt};

const ROLE: &str = "BALLAST_CRASH_ROLE";
const DIR: &str = "BALLAST_CRASH_DIR";
const CALLS: usize = 64;
/// What the child's provider bills each call: 500 output tokens at $1.50 a million.
const BILL_PICOS: u64 = 750_000_000;

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ballast-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config() -> BudgetConfig {
    // A generous store deadline: 64 reservations at once queue on one SQLite writer.
    BudgetConfig::daily(usd("0.1"))
        .lease(Duration::from_secs(60))
        .store_deadline(Duration::from_secs(10))
}

/// The request each call sends, with its facts read (as `ReadRequestLayer` would).
fn request() -> http::Request<String> {
    let mut request = http::Request::post("/v1/chat/completions")
        .body(String::from(
            r#"{"model":"grok-code-fast-1","max_tokens":500}"#,
        ))
        .unwrap();
    ballast_classify::RequestFacts::note(&mut request);
    request
}

/// Starts this test binary as the child in `role`, its files in `dir`.
fn start_child(role: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until a line holds `word`; returns the line from there (the
/// test harness writes its own words before the child's on the same line).
fn wait_for(child: &mut std::process::Child, word: &str) -> String {
    let stdout = child.stdout.as_mut().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(at) = line.find(word) {
            return line[at..].to_owned();
        }
    }
    panic!("the child ended before saying {word:?}");
}

/// The child's side of both tests; does nothing unless a test started it.
#[test]
#[ignore = "the child process of the crash tests: they start it themselves"]
fn child() {
    let (Some(role), Some(dir)) = (std::env::var_os(ROLE), std::env::var_os(DIR)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    match role.to_str() {
        Some("in-flight") => rt.block_on(in_flight(&dir)),
        Some("outbox") => rt.block_on(refused_settlement(&dir)),
        _ => panic!("unknown role"),
    }
}

/// 64 calls reach a provider that bills each at once, writes it down, and never answers;
/// then the child waits to be killed.
async fn in_flight(dir: &Path) {
    let layer =
        BudgetLayer::with_store(config(), SqliteStore::open(dir.join("budget.db")).unwrap());
    let ledger = dir.join("ledger");
    let provider = tower::service_fn(move |_request: http::Request<String>| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ledger)
            .unwrap();
        // One write per line: concurrent appends do not interleave.
        file.write_all(format!("{BILL_PICOS}\n").as_bytes())
            .unwrap();
        file.sync_data().unwrap();
        std::future::pending::<Result<http::Response<String>, Infallible>>()
    });
    let service = layer.layer(provider);
    for _ in 0..CALLS {
        let call = service.clone().oneshot(request());
        tokio::spawn(call);
    }
    while std::fs::read_to_string(dir.join("ledger")).map_or(0, |text| text.lines().count()) < CALLS
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("ready");
    std::future::pending::<()>().await;
}

/// SQLite that reserves but refuses every settlement (its disk is full, say).
struct RefusesSettlements(SqliteStore);

impl SpendStore for RefusesSettlements {
    async fn reserve(
        &self,
        window: WindowId,
        limits: &Limits,
        amount: Usd,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Reserve, StoreError> {
        self.0.reserve(window, limits, amount, lease, now).await
    }

    async fn settle(&self, _: &Reservation, _: Usd) -> Result<(), StoreError> {
        Err(StoreError::new("database or disk is full", None))
    }

    async fn readout(
        &self,
        window: WindowId,
        scope: Option<&str>,
        now: SystemTime,
    ) -> Result<Readout, StoreError> {
        self.0.readout(window, scope, now).await
    }
}

/// One call whose settlement the store refuses; then the process exits at once.
async fn refused_settlement(dir: &Path) {
    let store = RefusesSettlements(SqliteStore::open(dir.join("budget.db")).unwrap());
    let layer = BudgetLayer::with_store(config().outbox(dir.join("outbox")), store);
    let provider = tower::service_fn(|_request: http::Request<String>| async {
        let body = String::from(r#"{"usage":{"prompt_tokens":100,"completion_tokens":400}}"#);
        Ok::<_, Infallible>(http::Response::new(body))
    });
    layer.layer(provider).oneshot(request()).await.unwrap();
    println!("kept {}", layer.pending_settlements());
    std::process::exit(0);
}

#[tokio::test]
async fn a_process_killed_mid_run_leaves_its_calls_charged_at_their_worst_case() {
    let dir = scratch("in-flight");
    let mut child = start_child("in-flight", &dir);
    wait_for(&mut child, "ready");
    child.kill().unwrap();
    child.wait().unwrap();

    let billed: u64 = std::fs::read_to_string(dir.join("ledger"))
        .unwrap()
        .lines()
        .map(|line| line.parse::<u64>().unwrap())
        .sum();
    assert_eq!(billed, CALLS as u64 * BILL_PICOS);
    let store = SqliteStore::open(dir.join("budget.db")).unwrap();
    let now = SystemTime::now();
    let window = BudgetWindow::daily().at(now);
    let held = store.readout(window, None, now).await.unwrap();
    // Each call reserved 23 prompt-bound tokens at $0.20 and 500 at $1.50 a million.
    let all = Usd::from_picos(usd("0.0007546").picos() * CALLS as u64);
    assert_eq!((held.spent, held.reserved), (Usd::ZERO, all));
    // Past the lease, the dead process's calls are spent at their worst case, not freed:
    // what the provider billed is covered.
    let later = now + Duration::from_secs(61);
    let reclaimed = store.readout(window, None, later).await.unwrap();
    assert_eq!((reclaimed.spent, reclaimed.reserved), (all, Usd::ZERO));
    assert!(reclaimed.spent >= Usd::from_picos(billed));
    // And the cap holds: what is left is all that can be reserved.
    let left = usd("0.1").saturating_sub(reclaimed.spent);
    let limits = Limits {
        global: usd("0.1"),
        scope: None,
    };
    let over = store
        .reserve(
            window,
            &limits,
            left.saturating_add(Usd::from_picos(1)),
            Duration::from_secs(60),
            later,
        )
        .await
        .unwrap();
    assert!(matches!(over, Reserve::Refused { .. }), "{over:?}");
}

#[tokio::test]
async fn a_settlement_the_store_refused_survives_the_process_and_lands_on_restart() {
    let dir = scratch("outbox");
    let mut child = start_child("outbox", &dir);
    assert_eq!(wait_for(&mut child, "kept"), "kept 1");
    assert!(child.wait().unwrap().success());
    assert!(dir.join("outbox").exists());

    // The next process, on the same files: the outbox is replayed into the store.
    let layer = BudgetLayer::with_store(
        config().outbox(dir.join("outbox")),
        SqliteStore::open(dir.join("budget.db")).unwrap(),
    );
    assert_eq!(layer.pending_settlements(), 1, "loaded from the outbox");
    layer.flush().await;
    assert_eq!(layer.pending_settlements(), 0);
    let readout = layer.readout(None).await.unwrap();
    // 100 prompt tokens at $0.20 and 400 output tokens at $1.50, per million.
    assert_eq!(
        (readout.spent, readout.reserved),
        (usd("0.00062"), Usd::ZERO)
    );
    assert!(!dir.join("outbox").exists(), "nothing left to replay");
    // Replayed twice (a crash before the outbox was rewritten), it still counts once.
    layer.flush().await;
    assert_eq!(layer.readout(None).await.unwrap().spent, usd("0.00062"));
}
