//! A tick never outlives its deadline, whatever it waits for: here SQLite's write lock, held by
//! another connection to the same file (the API's process, or any other writer).

use std::time::{Duration, Instant};

use lcw_fetcher::cycle;
use lcw_fetcher::telemetry::history::Outcome;

use crate::support::native_host::SharedKv;
use crate::support::{LcwFake, NativeHost, block_on, lcw_fake};

const S: Duration = Duration::from_secs(1);

fn temp_file(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = crate::support::temp_dir(&format!("promises-{name}"));
    let file = dir.join("data.db");
    (dir, file)
}

/// Another connection holds SQLite's write lock for the whole tick. SQLite waits for it up to
/// its busy timeout (5 s), which used to apply whatever the tick had left: a tick with a 3 s
/// deadline lasted about 5 s. Every wait is cut to the time left; the points are spooled,
/// counted, and written by the next tick once the lock is gone.
#[test]
fn a_locked_sqlite_database_holds_no_tick_past_its_deadline() {
    let fake = LcwFake::start();
    let (dir, file) = temp_file("locked");
    let kv = SharedKv::default();
    let variables = vec![
        ("lcw_api_key", lcw_fake::API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("cycle_deadline_ms", "3000".to_owned()),
    ];
    let tick = |at: Duration| {
        let host = NativeHost::with_kv(&variables, kv.clone()).with_sqlite_file(&file);
        host.advance(at);
        block_on(cycle::run(&host))
    };
    let first = tick(Duration::ZERO);
    assert_eq!(first.outcome, Outcome::Success, "{:?}", first.errors);

    let other = crate::support::sql::open(Some(&file));
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let locked = tick(61 * S);
    let took = started.elapsed();
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);

    assert!(
        locked.duration_ms <= 3_000 + 500,
        "a tick with a 3 s deadline took {} ms ({took:?}): {:?}",
        locked.duration_ms,
        locked.errors
    );
    assert!(took < 4 * S, "{took:?}");
    assert!(
        locked.errors.iter().any(|e| e.contains("locked")),
        "{:?}",
        locked.errors
    );
    assert!(locked.points_spooled > 0, "{locked:?}");
    assert_eq!(locked.points_evicted, 0);

    let after = tick(122 * S);
    assert_eq!(after.outcome, Outcome::Success, "{:?}", after.errors);
    assert_eq!(
        after.points_replayed, locked.points_spooled,
        "every spooled point written once the lock is gone"
    );
    let _ = std::fs::remove_dir_all(dir);
}
