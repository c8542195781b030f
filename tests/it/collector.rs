use std::sync::Arc;
use std::time::Duration;

use pgmigrator_metrics::{Collector, EtaState, LogEntry, LogLevel, Lsn, Phase, TableStatus};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{advance, timeout};

use crate::three_tables;

#[tokio::test]
async fn snapshot_before_any_update_is_idle_and_empty() {
    let collector = Collector::new();
    let snapshot = collector.snapshot();
    assert_eq!(snapshot.phase, Phase::Idle);
    assert_eq!(snapshot.tables_total, 0);
    assert_eq!(snapshot.lag_formatted, "0 B (latency: 0s)");
    assert!(collector.logs().is_empty());
}

#[tokio::test]
async fn flush_publishes_every_update_sent_before_it() {
    let collector = Collector::new();
    collector.set_phase(Phase::Connecting).await;
    collector.set_phase(Phase::Schema).await;
    collector.set_phase(Phase::Copy).await;
    collector.flush().await;
    let snapshot = collector.snapshot();
    assert_eq!(snapshot.phase, Phase::Copy);
    let phases: Vec<_> = snapshot.phases.iter().map(|p| p.phase.clone()).collect();
    assert_eq!(phases, [Phase::Connecting, Phase::Schema, Phase::Copy]);
    assert!(snapshot.phases[..2].iter().all(|p| p.ended_at.is_some()));
    assert!(snapshot.phases[2].ended_at.is_none());
}

#[tokio::test]
async fn table_lifecycle_from_pending_to_streaming() {
    let collector = Collector::new();
    collector.set_tables(three_tables()).await;
    collector.table_started("public", "users").await;
    collector
        .update_table_progress("public", "users", 423, 1000)
        .await;
    collector
        .update_table_progress("public", "events", 10, 16 * 1024)
        .await;
    collector.flush().await;
    let snapshot = collector.snapshot();
    let users = &snapshot.tables[0];
    assert_eq!(users.status, TableStatus::Copying);
    assert!((users.percent - 42.3).abs() < 1e-9);
    assert!(users.last_progress_at.is_some());
    assert_eq!(
        snapshot.tables[2].percent, 50.0,
        "bytes fallback for an unknown estimate"
    );

    collector
        .update_table_progress("public", "users", 1000, 60_000)
        .await;
    collector.flush().await;
    assert_eq!(collector.snapshot().tables[0].percent, 99.9);

    collector.table_done("public", "users", 1000).await;
    collector.table_streaming("public", "users").await;
    collector.table_done("public", "orders", 4000).await;
    collector.flush().await;
    let snapshot = collector.snapshot();
    assert_eq!(snapshot.tables[0].status, TableStatus::Streaming);
    assert_eq!(snapshot.tables[1].status, TableStatus::Copied);
    assert_eq!(snapshot.tables[1].percent, 100.0);
    assert_eq!((snapshot.tables_copied, snapshot.tables_total), (2, 3));
}

#[tokio::test]
async fn events_for_unknown_tables_change_nothing() {
    let collector = Collector::new();
    collector.set_tables(three_tables()).await;
    collector.flush().await;
    let before = collector.snapshot().tables.clone();
    collector.table_started("public", "missing").await;
    collector.update_table_progress("nope", "users", 1, 1).await;
    collector.table_done("public", "missing", 1).await;
    collector.table_streaming("public", "missing").await;
    collector.flush().await;
    assert_eq!(collector.snapshot().tables, before);
}

#[tokio::test]
async fn totals_lsns_and_errors_accumulate() {
    let collector = Collector::new();
    collector.record_applied(Lsn(100), 10, 1000).await;
    collector.record_applied(Lsn(50), 5, 500).await;
    collector.record_confirmed_lsn(Lsn(90)).await;
    collector.record_latest_lsn(Lsn(300)).await;
    collector.record_error("first").await;
    collector
        .record_error(std::io::Error::other("second"))
        .await;
    collector.flush().await;
    let s = collector.snapshot();
    assert_eq!((s.total_rows, s.total_bytes), (15, 1500));
    assert_eq!(
        (s.applied_lsn, s.confirmed_lsn, s.latest_lsn),
        (Lsn(100), Lsn(90), Lsn(300))
    );
    assert_eq!(s.lag_bytes, 200);
    assert!(!s.caught_up);
    assert_eq!((s.error_count, s.last_error.as_str()), (2, "second"));
    assert_eq!(s.errors.len(), 2);
}

#[tokio::test]
async fn log_ring_keeps_the_newest_500_oldest_first() {
    let collector = Collector::new();
    for i in 0..600 {
        collector
            .add_log(LogEntry::new(LogLevel::Info, format!("line {i}")))
            .await;
    }
    collector.flush().await;
    let logs = collector.logs();
    assert_eq!(logs.len(), 500);
    assert_eq!(logs[0].message, "line 100");
    assert_eq!(logs[499].message, "line 599");
}

#[tokio::test]
async fn secrets_never_reach_snapshots_or_logs() {
    let collector = Collector::new();
    collector
        .record_error("dial postgres://app:hunter2@db/shop: refused")
        .await;
    collector
        .add_log(
            LogEntry::new(LogLevel::Warn, "retrying host=db password=hunter2")
                .with_field("dsn", "postgresql://app:hunter2@db"),
        )
        .await;
    collector.flush().await;
    let json = serde_json::to_string(&*collector.snapshot()).unwrap();
    let logs = serde_json::to_string(&collector.logs()).unwrap();
    assert!(
        !json.contains("hunter2") && !logs.contains("hunter2"),
        "{json}\n{logs}"
    );
    assert!(json.contains("postgres://app:********@db/shop"));
}

#[tokio::test(start_paused = true)]
async fn subscribers_receive_a_snapshot_every_tick() {
    let collector = Collector::new();
    let mut updates = collector.subscribe();
    // The first tick fires at once.
    let first = updates.recv().await.unwrap();
    let start = tokio::time::Instant::now();
    collector.set_phase(Phase::Copy).await;
    let mut received = vec![first];
    for _ in 0..4 {
        received.push(updates.recv().await.unwrap());
    }
    assert_eq!(start.elapsed(), Duration::from_millis(2000));
    assert_eq!(received.last().unwrap().phase, Phase::Copy);
}

#[tokio::test(start_paused = true)]
async fn builder_tick_sets_the_broadcast_interval() {
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    let mut updates = collector.subscribe();
    updates.recv().await.unwrap();
    let start = tokio::time::Instant::now();
    for _ in 0..5 {
        updates.recv().await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_never_reads_blocks_no_writer() {
    let collector = Collector::new();
    let mut stuck = collector.subscribe();
    let mut watcher = collector.watch();
    for i in 0..50_000 {
        collector.record_applied(Lsn(i), 1, 1).await;
        if i % 5000 == 0 {
            advance(Duration::from_millis(600)).await; // ticks pass, the subscriber lags
        }
    }
    collector.flush().await;
    assert_eq!(collector.snapshot().total_rows, 50_000);
    // The lagging subscriber skips to the newest snapshots.
    assert!(matches!(stuck.recv().await, Err(RecvError::Lagged(_))));
    assert!(watcher.has_changed().unwrap());
    assert_eq!(watcher.borrow_and_update().total_rows, 50_000);
}

#[tokio::test(start_paused = true)]
async fn throughput_counts_only_the_last_60_seconds() {
    let collector = Collector::new();
    collector.record_applied(Lsn(1), 6000, 60_000).await;
    collector.flush().await;
    assert_eq!(
        collector.snapshot().rows_per_sec,
        6000.0,
        "at least one second"
    );
    advance(Duration::from_secs(30)).await;
    collector.flush().await;
    let s = collector.snapshot();
    assert_eq!((s.rows_per_sec, s.bytes_per_sec), (200.0, 2000.0));
    advance(Duration::from_secs(31)).await;
    collector.flush().await;
    let s = collector.snapshot();
    assert_eq!((s.rows_per_sec, s.total_rows), (0.0, 6000));
}

#[tokio::test(start_paused = true)]
async fn time_lag_is_how_long_unapplied_wal_has_waited() {
    let collector = Collector::new();
    collector.record_applied(Lsn(1000), 0, 0).await;
    collector.record_latest_lsn(Lsn(1000)).await;
    collector.flush().await;
    assert_eq!(collector.snapshot().lag_seconds, 0.0);

    // The actor stamps an update when it applies it: flush before moving time.
    collector.record_latest_lsn(Lsn(5000)).await;
    collector.flush().await;
    advance(Duration::from_secs(3)).await;
    collector.record_latest_lsn(Lsn(9000)).await;
    collector.flush().await;
    advance(Duration::from_millis(150)).await;
    collector.flush().await;
    let s = collector.snapshot();
    assert_eq!(s.lag_seconds, 3.15);
    assert_eq!(s.lag_formatted, "7.81 KiB (latency: 3.15s)");

    collector.record_applied(Lsn(5000), 1, 1).await;
    collector.flush().await;
    let s = collector.snapshot();
    assert_eq!(s.lag_seconds, 0.15);
    assert_eq!(s.lag_formatted, "3.91 KiB (latency: 150ms)");

    collector.record_applied(Lsn(9000), 1, 1).await;
    collector.flush().await;
    let s = collector.snapshot();
    assert_eq!((s.lag_seconds, s.lag_bytes, s.caught_up), (0.0, 0, true));
}

#[tokio::test(start_paused = true)]
async fn the_copy_is_measured_for_10_s_then_forecast_table_after_table_on_its_workers() {
    let collector = Collector::new();
    collector.set_tables(three_tables()).await;
    collector.set_copy_workers(1).await;
    collector.table_started("public", "orders").await;
    collector.flush().await;
    // 40 rows (2,560 bytes) a second, reported at 0.5 s, 1.5 s, … 19.5 s.
    advance(Duration::from_millis(500)).await;
    for second in 1..=20 {
        let rows = 40 * second;
        collector
            .update_table_progress("public", "orders", rows, rows * 64)
            .await;
        collector.flush().await;
        if second == 9 {
            let s = collector.snapshot();
            assert_eq!(s.eta.map(|e| e.state), Some(EtaState::Measuring));
            assert_eq!(s.eta_sec, None);
        }
        let step = if second < 20 { 1000 } else { 500 };
        advance(Duration::from_millis(step)).await;
    }
    collector.flush().await;
    let s = collector.snapshot();
    let eta = s.eta.unwrap();
    assert_eq!(eta.state, EtaState::Estimating);
    // orders: 3,200 rows left, 80 s; then on the one worker the largest
    // waiting first: users (1,000 rows, 25 s) to 105 s, then events
    // (rows unknown: 32 KiB at 2,560 B/s, 12.8 s) to 117.8 s.
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 0.01);
    assert!(close(eta.seconds, 117.8), "{eta:?}");
    assert_eq!(s.eta_sec, eta.seconds);
    assert!(close(s.tables[1].eta_sec, 80.0), "{:?}", s.tables[1]);
    let users = s.tables[0].eta.unwrap();
    assert!(close(users.seconds, 105.0), "{users:?}");
    assert_eq!(s.tables[0].eta_sec, None, "users is not copying");
    assert!(eta.low <= eta.seconds && eta.seconds <= eta.high, "{eta:?}");
}

#[tokio::test(start_paused = true)]
async fn updates_are_published_without_flush_shortly_after() {
    let collector = Collector::new();
    let mut watcher = collector.watch();
    collector.set_phase(Phase::Streaming).await;
    timeout(Duration::from_millis(100), async {
        while watcher.borrow_and_update().phase != Phase::Streaming {
            watcher.changed().await.unwrap();
        }
    })
    .await
    .expect("published within the 50 ms publish interval");
    assert_eq!(collector.snapshot().phase, Phase::Streaming);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_lose_no_event() {
    let collector = Collector::builder().channel_capacity(64).build();
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let collector = collector.clone();
            tokio::spawn(async move {
                for i in 0..10_000u64 {
                    collector.record_applied(Lsn(w * 10_000 + i), 1, 3).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    collector.flush().await;
    let s = collector.snapshot();
    assert_eq!((s.total_rows, s.total_bytes), (80_000, 240_000));
    assert_eq!(s.applied_lsn, Lsn(79_999));
}

#[tokio::test]
async fn close_drains_queued_updates_and_ends_every_reader() {
    let collector = Collector::new();
    let mut updates = collector.subscribe();
    let mut watcher = collector.watch();
    for i in 0..1000 {
        collector.record_applied(Lsn(i), 1, 1).await;
    }
    collector.close().await;
    assert_eq!(collector.snapshot().total_rows, 1000);

    // Subscribers get the final snapshot, then the end.
    let mut last = None;
    loop {
        match updates.recv().await {
            Ok(snapshot) => last = Some(snapshot),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => break,
        }
    }
    assert_eq!(last.unwrap().total_rows, 1000);
    while watcher.changed().await.is_ok() {}

    // Idempotent; later writes are ignored; flush returns at once.
    collector.close().await;
    collector.record_applied(Lsn(5000), 1, 1).await;
    collector.flush().await;
    assert_eq!(collector.snapshot().total_rows, 1000);
}

#[tokio::test]
async fn concurrent_closes_all_wait_for_the_final_snapshot() {
    let collector = Collector::new();
    collector.set_phase(Phase::Done).await;
    let closes: Vec<_> = (0..4)
        .map(|_| {
            let c = collector.clone();
            tokio::spawn(async move {
                c.close().await;
                c.snapshot().phase.clone()
            })
        })
        .collect();
    for close in closes {
        assert_eq!(close.await.unwrap(), Phase::Done);
    }
}

#[tokio::test]
async fn dropping_every_handle_stops_the_actor() {
    let collector = Collector::new();
    let mut watcher = collector.watch();
    let mut updates = collector.subscribe();
    let clone = collector.clone();
    drop(collector);
    drop(clone);
    timeout(Duration::from_secs(5), async {
        while watcher.changed().await.is_ok() {}
        while !matches!(updates.recv().await, Err(RecvError::Closed)) {}
    })
    .await
    .expect("the actor stops once no handle is left");
}

#[tokio::test]
async fn snapshots_are_shared_not_copied() {
    let collector = Collector::new();
    collector.set_tables(three_tables()).await;
    collector.flush().await;
    let a = collector.snapshot();
    let b = collector.snapshot();
    assert!(Arc::ptr_eq(&a, &b));
}

#[tokio::test(start_paused = true)]
async fn a_resumed_collector_continues_where_the_last_run_stopped() {
    let first = Collector::new();
    first.set_phase(Phase::Copy).await;
    first.set_tables(three_tables()).await;
    first.table_started("public", "users").await;
    first.table_done("public", "users", 1000).await;
    first.record_applied(Lsn(0x5000), 100, 1000).await;
    first.record_error("boom").await;
    first.flush().await;
    advance(Duration::from_secs(20)).await;
    first.close().await;
    let saved: pgmigrator_metrics::Snapshot =
        serde_json::from_str(&serde_json::to_string(&*first.snapshot()).unwrap()).unwrap();

    let second = Collector::builder().resume_from(saved).build();
    // The restarted pipeline lists its tables again, all pending.
    second.set_tables(three_tables()).await;
    second.record_applied(Lsn(0x6000), 1, 1).await;
    second.flush().await;
    advance(Duration::from_secs(5)).await;
    second.flush().await;
    let s = second.snapshot();
    assert_eq!(s.phase, Phase::Copy);
    assert_eq!(s.elapsed_sec, 25.0);
    assert_eq!(s.tables[0].status, TableStatus::Copied);
    assert_eq!(s.tables_copied, 1);
    assert_eq!((s.total_rows, s.total_bytes), (101, 1001));
    assert_eq!((s.error_count, s.applied_lsn), (1, Lsn(0x6000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_sent_after_another_on_a_different_clone_is_applied_after_it() {
    // The pipeline's pattern: one task lists the tables, then workers with
    // their own clones start them. Clones send on different channels.
    for round in 0..200 {
        let collector = Collector::new();
        let worker = collector.clone();
        collector.set_tables(three_tables()).await;
        let started = tokio::spawn(async move {
            worker.table_started("public", "orders").await;
            worker.table_done("public", "orders", 4000).await;
            worker
        });
        let worker = started.await.unwrap();
        worker.flush().await;
        let s = collector.snapshot();
        assert_eq!(s.tables[1].status, TableStatus::Copied, "round {round}");
    }
}

#[tokio::test]
async fn flush_on_one_clone_waits_for_everything_queued_on_another() {
    let collector = Collector::new();
    let writer = collector.clone();
    // Without the cooperative budget, nothing yields to the actor until the
    // flush waits: 1,500 events and the flush are all queued when it runs.
    tokio::task::unconstrained(async {
        for i in 0..1500 {
            writer.record_applied(Lsn(i), 1, 1).await;
        }
        collector.flush().await;
    })
    .await;
    assert_eq!(collector.snapshot().total_rows, 1500);
}

#[tokio::test]
async fn slot_apply_and_per_table_changes_reach_the_snapshot_and_the_state_file() {
    use pgmigrator_metrics::{ApplyHealth, SlotHealth, WalStatus};
    let collector = Collector::new();
    collector.set_tables(three_tables()).await;
    collector.table_streaming("public", "users").await;
    collector.add_table_changes("public", "users", 600).await;
    collector.add_table_changes("public", "users", 400).await;
    collector.add_table_changes("public", "nope", 5).await;
    let slot = SlotHealth {
        name: "sub".into(),
        wal_status: WalStatus::Extended,
        retained_bytes: 96 << 20,
        safe_wal_size: Some(16 << 20),
        max_slot_wal_keep_size: Some(64 << 20),
        inactive_since: Some(time::OffsetDateTime::UNIX_EPOCH),
        spill_bytes: 13 << 20,
        spill_txns: 1,
        ..SlotHealth::default()
    };
    collector.record_slot(slot.clone()).await;
    collector
        .record_apply(ApplyHealth {
            last_msg_receipt: Some(time::OffsetDateTime::UNIX_EPOCH),
            latest_end_time: None,
        })
        .await;
    collector.flush().await;
    let snapshot = collector.snapshot();
    let changes: Vec<u64> = snapshot.tables.iter().map(|t| t.changes_applied).collect();
    assert_eq!(changes, [1000, 0, 0]);
    assert_eq!(snapshot.slot.as_ref(), Some(&slot));
    assert!(snapshot.apply.is_some());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    pgmigrator_metrics::write_state_file(&path, &snapshot).unwrap();
    let back = pgmigrator_metrics::read_state_file(&path).unwrap();
    assert_eq!(back.slot, snapshot.slot);
    assert_eq!(back.tables[0].changes_applied, 1000);
    // A state file from before these fields loads without them.
    std::fs::write(
        &path,
        r#"{"timestamp":"2026-01-01T00:00:00Z","phase":"copy"}"#,
    )
    .unwrap();
    let old = pgmigrator_metrics::read_state_file(&path).unwrap();
    assert!(old.slot.is_none() && old.apply.is_none());
}
