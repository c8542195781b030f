//! The monitor on every PostgreSQL major it supports (14 to 18, same major
//! on both sides) and on the upgrade people make (14 → 18): copy, exact
//! counts, streamed rows, a disabled subscription, and the slot.

use std::time::Duration;

use pgmigrator_metrics::pg::{self, Monitor, MonitorConfig};
use pgmigrator_metrics::{Collector, Phase, Snapshot, TableStatus, WalStatus};
use tokio::time::sleep;

use crate::cluster::{self, Cluster};
use crate::postgres::{changes, wait_for};

/// Whether both majors are installed; a missing one fails when CI requires
/// the tools (`.ci/run` installs them), and is skipped elsewhere.
pub(crate) fn installed(majors: &[u32]) -> bool {
    for &major in majors {
        let marker = format!("PostgreSQL {major}");
        let found = cluster::server_bin(major).is_some() && cluster::available();
        if !found {
            assert!(
                std::env::var_os("PGMIGRATOR_REQUIRE_TOOLS").is_none(),
                "{marker} is required (PGMIGRATOR_REQUIRE_TOOLS is set) but missing"
            );
            eprintln!("SKIPPED: {marker} is not installed (.ci/run installs it)");
            return false;
        }
    }
    true
}

async fn scenario(source_major: u32, dest_major: u32) {
    if !installed(&[source_major, dest_major]) {
        return;
    }
    let source = Cluster::start_major(source_major, true);
    let dest = Cluster::start_major(dest_major, false);
    for cluster in [&source, &dest] {
        cluster.sql("CREATE TABLE big (id bigint PRIMARY KEY, payload text)");
        cluster.sql("CREATE TABLE small (id bigint PRIMARY KEY, payload text)");
        // A sequence the cutover checks read on both sides, level.
        cluster.sql("CREATE SEQUENCE counter");
        cluster.sql("SELECT setval('counter', 42)");
        cluster.sql("GRANT pg_read_all_data TO monitor");
    }
    source.sql("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
    source.sql("INSERT INTO small SELECT g, md5(g::text) FROM generate_series(1, 5000) g");
    source.sql("ANALYZE big");
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub",
        source.conninfo()
    ));
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    let monitor = Monitor::connect(MonitorConfig {
        interval: Duration::from_millis(100),
        ..MonitorConfig::new(
            source.monitor_uri().parse().unwrap(),
            dest.monitor_uri().parse().unwrap(),
        )
    })
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pg::run(collector.clone(), monitor, async {
        let _ = stopped.await;
    }));

    // Copy to streaming, with exact row counts.
    let copied = wait_for(
        &collector,
        "both tables streaming",
        Duration::from_secs(60),
        |s| {
            s.phase == Phase::Streaming
                && s.tables.len() == 2
                && s.tables.iter().all(|t| t.status == TableStatus::Streaming)
        },
    )
    .await;
    let rows = |s: &Snapshot, name: &str| {
        s.tables
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .rows_copied
    };
    assert_eq!(
        (rows(&copied, "big"), rows(&copied, "small")),
        (20000, 5000)
    );

    // Streamed rows are counted exactly, and lag returns to caught up.
    let before = wait_for(&collector, "caught up", Duration::from_secs(60), |s| {
        s.caught_up
    })
    .await
    .total_rows;
    source.sql("INSERT INTO big SELECT g, 'streamed' FROM generate_series(100001, 103000) g");
    // PostgreSQL 14's apply worker sends its table statistics to the
    // collector at a commit, at most every 500 ms: the last transaction
    // before a quiet spell is counted once a later one commits. Streaming
    // goes on in a migration; here a later transaction on the other table
    // stands for it.
    sleep(Duration::from_millis(1000)).await;
    source.sql("INSERT INTO small VALUES (200001, 'later')");
    wait_for(
        &collector,
        "3,000 streamed rows on big",
        Duration::from_secs(60),
        |s| changes(s, "big") >= 3000 && s.caught_up,
    )
    .await;
    // Later transactions on `small` until one of them is counted: by then
    // every count of `big` before it is in, so a row counted twice shows.
    let small = changes(&collector.snapshot(), "small");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut id = 200_002;
    let settled = loop {
        let snapshot = collector.snapshot();
        if changes(&snapshot, "small") > small {
            break snapshot;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "small never counted again"
        );
        source.sql(&format!("INSERT INTO small VALUES ({id}, 'later')"));
        id += 1;
        sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(changes(&settled, "big"), 3000, "counted once each");
    assert!(
        settled.total_rows - before >= 3000,
        "{}",
        settled.total_rows - before
    );

    // The cutover verdict: every catalog query works on this major.
    let verdict = wait_for(
        &collector,
        "a ready cutover verdict",
        Duration::from_secs(60),
        |s| s.cutover.as_ref().is_some_and(|c| c.ready),
    )
    .await;
    assert_eq!(verdict.error_count, 0, "{:?}", verdict.errors);
    assert_eq!(verdict.cutover.as_ref().unwrap().warnings, []);

    // The slot: present and sane while streaming.
    let slot = wait_for(&collector, "the slot", Duration::from_secs(60), |s| {
        s.slot.as_ref().is_some_and(|slot| slot.active)
    })
    .await
    .slot
    .clone()
    .unwrap();
    assert_eq!(slot.name, "sub");
    assert_eq!(slot.wal_status, WalStatus::Reserved);
    assert_eq!(
        (slot.safe_wal_size, slot.max_slot_wal_keep_size),
        (None, None)
    );

    // A disabled subscription: the slot goes inactive, and lag grows in
    // bytes and time.
    dest.sql("ALTER SUBSCRIPTION sub DISABLE");
    wait_for(
        &collector,
        "an inactive slot",
        Duration::from_secs(60),
        |s| s.slot.as_ref().is_some_and(|slot| !slot.active),
    )
    .await;
    source.sql("INSERT INTO small SELECT g, 'behind' FROM generate_series(100001, 101000) g");
    wait_for(&collector, "time lag", Duration::from_secs(60), |s| {
        s.lag_bytes > 0 && s.lag_seconds >= 1.0
    })
    .await;

    stop.send(()).unwrap();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_14() {
    scenario(14, 14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_15() {
    scenario(15, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_16() {
    scenario(16, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_17() {
    scenario(17, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_18() {
    scenario(18, 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_14_to_18() {
    scenario(14, 18).await;
}
