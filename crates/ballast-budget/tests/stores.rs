//! One suite, run against every store.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_budget::{BudgetWindow, Limits, MemoryStore, Reserve, SpendStore, WindowId};
use ballast_cost::Usd;

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

/// 2026-11-25T12:00:00Z.
fn noon() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_608_000)
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
        let first = SqliteStore::open(&path).unwrap();
        let second = SqliteStore::open(&path).unwrap();
        let limits = global("1");
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let limits = limits.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .reserve(today(), &limits, usd("0.1"), LEASE, noon())
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
