//! The danger itself, on real servers: a replication slot that stops
//! advancing holds WAL on the source until it is lost (or the disk fills).

use std::time::Duration;

use pgmigrator_metrics::pg::{self, Monitor, MonitorConfig};
use pgmigrator_metrics::{Collector, TableStatus, WalStatus, status};

use crate::cluster::{self, Cluster};
use crate::postgres::{changes, wait_for};

/// A source (with `settings`) publishing `t1`, `t2` and `filler`, and a
/// destination subscribed to it, followed by a running monitor.
async fn followed_pair(
    settings: &str,
) -> (
    Cluster,
    Cluster,
    Collector,
    tokio::sync::oneshot::Sender<()>,
) {
    let (source, dest) = (
        Cluster::start_configured(true, settings),
        Cluster::start(false),
    );
    for cluster in [&source, &dest] {
        cluster.sql("CREATE TABLE t1 (id bigint PRIMARY KEY, v int)");
        cluster.sql("CREATE TABLE t2 (id bigint PRIMARY KEY, v int)");
        cluster.sql("CREATE TABLE filler (id bigint, payload text)");
    }
    source.sql("INSERT INTO t1 SELECT g, 0 FROM generate_series(1, 1000) g");
    source.sql("INSERT INTO t2 SELECT g, 0 FROM generate_series(1, 1000) g");
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub",
        source.conninfo()
    ));
    let config = MonitorConfig {
        interval: Duration::from_millis(100),
        ..MonitorConfig::new(
            source.monitor_uri().parse().unwrap(),
            dest.monitor_uri().parse().unwrap(),
        )
    };
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    let monitor = Monitor::connect(config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pg::run(collector.clone(), monitor, async {
        let _ = stopped.await;
    }));
    wait_for(&collector, "streaming", Duration::from_secs(60), |s| {
        s.tables.len() == 3 && s.tables.iter().all(|t| t.status == TableStatus::Streaming)
    })
    .await;
    (source, dest, collector, stop)
}

/// Stops the subscription and waits until the monitor sees its slot
/// inactive.
async fn disable(dest: &Cluster, collector: &Collector) {
    dest.sql("ALTER SUBSCRIPTION sub DISABLE");
    wait_for(
        collector,
        "an inactive slot",
        Duration::from_secs(60),
        |s| s.slot.as_ref().is_some_and(|slot| !slot.active),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_that_stops_advancing_is_shown_until_it_is_lost() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest, collector, stop) = followed_pair(
        "max_slot_wal_keep_size = 64MB\nmax_wal_size = 64MB\nmin_wal_size = 32MB\n\
         logical_decoding_work_mem = 64kB\n",
    )
    .await;
    let healthy = wait_for(&collector, "the slot", Duration::from_secs(60), |s| {
        s.slot.is_some()
    })
    .await;
    let slot = healthy.slot.clone().unwrap();
    assert!(slot.active, "{slot:?}");
    assert_eq!(slot.max_slot_wal_keep_size, Some(64 << 20));
    assert_eq!(slot.wal_status, WalStatus::Reserved);

    // Exactly 1,000 changes on one table, none on the other.
    let before = collector.snapshot();
    source.sql("UPDATE t1 SET v = v + 1");
    let after = wait_for(
        &collector,
        "1,000 changes on t1",
        Duration::from_secs(60),
        |s| changes(s, "t1") >= changes(&before, "t1") + 1000,
    )
    .await;
    // One more change on t1, seen after the 1,000: had any of them been
    // counted twice, the count would be past 1,001 by then.
    source.sql("UPDATE t1 SET v = v + 1 WHERE id = (SELECT min(id) FROM t1)");
    let settled = wait_for(
        &collector,
        "the 1,001st change",
        Duration::from_secs(60),
        |s| changes(s, "t1") > changes(&before, "t1") + 1000,
    )
    .await;
    assert_eq!(changes(&settled, "t1") - changes(&before, "t1"), 1001);
    assert_eq!(changes(&settled, "t2"), changes(&before, "t2"));
    assert!(
        after
            .apply
            .as_ref()
            .is_some_and(|a| a.last_msg_receipt.is_some())
    );

    // A transaction larger than logical_decoding_work_mem spills.
    source.sql("INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 40000) g");
    wait_for(&collector, "spilled bytes", Duration::from_secs(60), |s| {
        s.slot
            .as_ref()
            .is_some_and(|slot| slot.spill_bytes > 0 || slot.stream_bytes > 0)
    })
    .await;

    // The subscription stops: the slot goes inactive and holds WAL.
    dest.sql("ALTER SUBSCRIPTION sub DISABLE");
    let idle = wait_for(
        &collector,
        "an inactive slot",
        Duration::from_secs(60),
        |s| {
            s.slot
                .as_ref()
                .is_some_and(|slot| !slot.active && slot.inactive_since.is_some())
        },
    )
    .await;
    let held_before = idle.slot.as_ref().unwrap().retained_bytes;
    let mut seen_unsafe = false;
    for _ in 0..10 {
        source
            .sql("INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 50000) g");
        source.sql("CHECKPOINT");
        let now = wait_for(
            &collector,
            "a fresh slot reading",
            Duration::from_secs(60),
            |s| {
                s.slot.as_ref().is_some_and(|slot| {
                    slot.retained_bytes > held_before || slot.wal_status == WalStatus::Lost
                })
            },
        )
        .await;
        let slot = now.slot.clone().unwrap();
        seen_unsafe |= slot.wal_status != WalStatus::Reserved;
        if slot.wal_status == WalStatus::Lost {
            break;
        }
        // PostgreSQL counts the headroom to the start of the segment
        // `max_slot_wal_keep_size` + one segment past the slot's restart
        // segment: up to a 16 MiB segment over the limit, less what is held.
        assert!(
            slot.safe_wal_size
                .is_some_and(|safe| safe <= (64 << 20) + (16 << 20) - slot.retained_bytes as i64),
            "{slot:?}"
        );
    }
    assert!(seen_unsafe, "the slot never left reserved");
    let lost = wait_for(&collector, "a lost slot", Duration::from_secs(60), |s| {
        s.slot
            .as_ref()
            .is_some_and(|slot| slot.wal_status == WalStatus::Lost)
    })
    .await;
    // Every surface says so.
    let metrics = pgmigrator_metrics::http::metrics::render_text(std::sync::Arc::clone(&lost));
    assert!(
        metrics.contains("pgmigrator_slot_wal_status{status=\"lost\"} 1"),
        "{metrics}"
    );
    let report = status::render(&lost, lost.timestamp);
    assert!(
        report.contains("LOST — its WAL is gone; the subscription must be re-created"),
        "{report}"
    );
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlimited_slot_holds_wal_while_disabled_and_lets_it_go_after() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest, collector, stop) = followed_pair("").await;
    let healthy = wait_for(&collector, "the slot", Duration::from_secs(60), |s| {
        s.slot.is_some()
    })
    .await;
    let slot = healthy.slot.clone().unwrap();
    assert_eq!(
        (slot.safe_wal_size, slot.max_slot_wal_keep_size),
        (None, None)
    );
    let metrics = pgmigrator_metrics::http::metrics::render_text(collector.snapshot());
    assert!(
        !metrics.contains("pgmigrator_slot_safe_wal_size_bytes"),
        "{metrics}"
    );

    disable(&dest, &collector).await;
    source.sql("INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 20000) g");
    source.sql("CHECKPOINT");
    wait_for(&collector, "20 MB held", Duration::from_secs(60), |s| {
        s.slot
            .as_ref()
            .is_some_and(|slot| slot.retained_bytes > 20 << 20)
    })
    .await;
    dest.sql("ALTER SUBSCRIPTION sub ENABLE");
    wait_for(&collector, "the WAL let go", Duration::from_secs(60), |s| {
        s.slot
            .as_ref()
            .is_some_and(|slot| slot.active && slot.retained_bytes < 8 << 20)
    })
    .await;
    stop.send(()).unwrap();
}

/// A disabled subscription under a steady insert load: the forecast of
/// when its slot is lost is finite, falls as the slot fills, and the slot
/// is lost within ±30 % of what was forecast a minute before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_is_lost_when_it_was_forecast_a_minute_before() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest, collector, stop) =
        followed_pair("max_slot_wal_keep_size = 256MB\nmax_wal_size = 64MB\nmin_wal_size = 32MB\n")
            .await;
    disable(&dest, &collector).await;
    // About 2.5 MB of WAL a second, and a checkpoint every 2 s so the WAL
    // past the limit is removed as soon as it may be; 6 minutes at most.
    let loading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let source = std::sync::Arc::new(source);
    let load = std::thread::spawn({
        let (loading, source) = (loading.clone(), source.clone());
        move || {
            let started = std::time::Instant::now();
            let mut n = 0u32;
            while loading.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(360)
            {
                let _ = source.try_sql(
                    "INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 400) g",
                );
                n += 1;
                if n.is_multiple_of(10) {
                    let _ = source.try_sql("CHECKPOINT");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let started = tokio::time::Instant::now();
    let mut forecasts: Vec<(f64, u64)> = Vec::new();
    let lost_at = loop {
        assert!(
            started.elapsed() < Duration::from_secs(360),
            "never lost: {forecasts:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let snapshot = collector.snapshot();
        let Some(slot) = snapshot.slot.as_ref() else {
            continue;
        };
        let now = started.elapsed().as_secs_f64();
        if slot.wal_status == WalStatus::Lost {
            break now;
        }
        if let Some(left) = slot.exhausted_in_sec {
            if forecasts.is_empty() {
                // Every surface has it.
                let metrics = pgmigrator_metrics::http::metrics::render_text(
                    std::sync::Arc::clone(&snapshot),
                );
                let series = format!("pgmigrator_slot_exhaustion_seconds {left}");
                assert!(metrics.contains(&series), "{metrics}");
                let report = status::render(&snapshot, snapshot.timestamp);
                assert!(report.contains(" at this rate · "), "{report}");
            }
            forecasts.push((now, left));
        }
    };
    loading.store(false, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    println!("lost at {lost_at:.0} s; forecasts (at, seconds left): {forecasts:?}");
    // Finite, and falling as the slot fills.
    let (first, last) = (forecasts[0], *forecasts.last().unwrap());
    assert!(last.1 + 20 < first.1, "{forecasts:?}");
    // A minute before it was lost, it was forecast within ±30 %.
    let (at, said) = *forecasts
        .iter()
        .min_by(|a, b| {
            (a.0 - (lost_at - 60.0))
                .abs()
                .total_cmp(&(b.0 - (lost_at - 60.0)).abs())
        })
        .unwrap();
    let truth = lost_at - at;
    assert!(truth >= 50.0, "a forecast a minute before: {forecasts:?}");
    let error = (said as f64 - truth).abs() / truth;
    assert!(
        error <= 0.3,
        "forecast {said} s at {at:.0} s, lost {truth:.0} s later"
    );
    stop.send(()).unwrap();
}
