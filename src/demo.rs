//! A simulated migration that drives a [`Collector`] exactly the way the
//! pipeline does: connecting → schema → a parallel COPY of tables from
//! kilobytes to gigabytes (one never analysed, one interrupted by a
//! transient error) while the source keeps writing → streaming, with the
//! applied LSN catching up with a moving latest LSN so byte and time lag
//! are real and vary, until stopped. Beside it, the replication slot
//! (holding the WAL not yet confirmed, against a `max_slot_wal_keep_size`),
//! the apply worker, each table's changes, and the cutover checks, so
//! every surface has what a real migration gives it.
//!
//! `pgmigrator demo` serves it; it is also a way to try a surface without a
//! database.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep};

use crate::collector::{Collector, Update};
use crate::cutover::CutoverLimits;
use crate::lsn::Lsn;
use crate::model::{ApplyHealth, Cutover, Phase, SlotHealth, TableProgress, WalStatus};

/// Where the source's WAL stands when the copy starts (the slot's start).
const START_LSN: u64 = 0x3_2A00_0000;
/// WAL the source writes a second while the tables are copied.
const COPY_WAL_PER_SEC: f64 = 1_500_000.0;
/// WAL the slot holds besides what is not yet confirmed (its restart
/// point trails the confirmed position).
const SLOT_BASE: u64 = 48 << 20;
/// The source's `max_slot_wal_keep_size`.
const SLOT_KEEP: u64 = 8 << 30;
/// What blocks the demo's cutover: an error within the last minute, lag
/// over 1 MiB or 5 s.
fn demo_limits() -> CutoverLimits {
    CutoverLimits {
        max_lag_bytes: 1 << 20,
        max_lag_seconds: 5.0,
        error_window: Duration::from_secs(60),
    }
}

/// A task stopped when this is dropped (when the demo stops).
struct Beside(JoinHandle<()>);

impl Drop for Beside {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Tables to copy (at least 1).
    pub tables: usize,
    /// Parallel COPY workers (at least 1).
    pub workers: usize,
    /// Multiplies every simulated rate: 2.0 copies twice as fast.
    pub speed: f64,
    /// Time between two progress reports of a copying table.
    pub progress_interval: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            tables: 24,
            workers: 4,
            speed: 1.0,
            progress_interval: Duration::from_millis(500),
        }
    }
}

/// Realistic table names; more tables than names get numbered partitions.
const NAMES: [(&str, &str); 24] = [
    ("public", "order_items"),
    ("public", "events"),
    ("public", "orders"),
    ("public", "page_views"),
    ("public", "payments"),
    ("public", "customers"),
    ("public", "invoices"),
    ("public", "shipments"),
    ("public", "products"),
    ("audit", "log"),
    ("public", "sessions"),
    ("public", "inventory"),
    ("public", "reviews"),
    ("public", "carts"),
    ("public", "addresses"),
    ("public", "coupons"),
    ("billing", "subscriptions"),
    ("billing", "plans"),
    ("public", "warehouses"),
    ("public", "suppliers"),
    ("public", "categories"),
    ("public", "currencies"),
    ("public", "feature_flags"),
    ("public", "settings"),
];

/// A small deterministic generator: the same demo every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The demo's tables, largest first: sizes spread from ~16 KiB to ~2.5 GiB,
/// one (`public.events`) with an unknown row estimate.
pub fn demo_tables(count: usize) -> Vec<TableProgress> {
    let count = count.max(1);
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    (0..count)
        .map(|i| {
            let (schema, base) = NAMES[i % NAMES.len()];
            let name = match i / NAMES.len() {
                0 => base.to_owned(),
                n => format!("{base}_p{n}"),
            };
            // Log-spaced sizes, largest first, with some jitter.
            let position = i as f64 / count.max(2) as f64;
            let size =
                (2.5e9 * (1.6e4f64 / 2.5e9).powf(position) * (0.7 + 0.6 * random.next())) as i64;
            let row_width = 80.0 + 400.0 * random.next();
            let rows = if base == "events" && i < NAMES.len() {
                -1 // never analysed: reltuples = -1
            } else {
                (size as f64 / row_width) as i64
            };
            TableProgress::new(schema, &name, rows, size)
        })
        .collect()
}

/// Runs the demo until `stop` completes.
pub async fn run(collector: Collector, options: DemoOptions, stop: impl Future<Output = ()>) {
    tokio::select! {
        () = migrate(collector, options) => {}
        () = stop => {}
    }
}

async fn migrate(collector: Collector, options: DemoOptions) {
    let speed = if options.speed.is_finite() && options.speed > 0.0 {
        options.speed
    } else {
        1.0
    };
    let step = |d: Duration| d.div_f64(speed);
    collector.set_phase(Phase::Connecting).await;
    tracing::info!(
        source = "postgres://migrator:s3cret@source.internal:5432/shop",
        destination = "postgres://migrator:s3cret@dest.internal:5432/shop",
        "connecting"
    );
    sleep(step(Duration::from_secs(1))).await;
    collector.set_phase(Phase::Schema).await;
    tracing::info!("copying the schema");
    sleep(step(Duration::from_secs(1))).await;

    let tables = demo_tables(options.tables);
    collector.set_phase(Phase::Copy).await;
    collector.set_tables(tables.clone()).await;
    // The slot starts where the source's WAL stands; the source keeps
    // writing while the tables are copied, and the slot, the apply worker
    // and the cutover checks are reported from here on.
    collector.record_applied(Lsn(START_LSN), 0, 0).await;
    collector.record_confirmed_lsn(Lsn(START_LSN)).await;
    let latest = Arc::new(AtomicU64::new(START_LSN));
    let writing = Beside(tokio::spawn(write_during_copy(
        collector.clone(),
        Arc::clone(&latest),
        speed,
    )));
    let _reporting = Beside(tokio::spawn(report_slot(collector.clone())));
    collector
        .set_copy_workers(u32::try_from(options.workers.max(1)).unwrap_or(u32::MAX))
        .await;
    tracing::info!(
        tables = tables.len(),
        workers = options.workers,
        "copy started"
    );
    let queue = Arc::new(Mutex::new(VecDeque::from(tables)));
    let workers: Vec<_> = (0..options.workers.max(1))
        .map(|worker| {
            tokio::spawn(copy_worker(
                collector.clone(),
                Arc::clone(&queue),
                worker as u64,
                speed,
                options.progress_interval,
            ))
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    drop(writing);

    collector.set_phase(Phase::Streaming).await;
    let names: Vec<(String, String)> = collector
        .snapshot()
        .tables
        .iter()
        .map(|t| (t.schema.clone(), t.name.clone()))
        .collect();
    for (schema, name) in &names {
        collector.table_streaming(schema, name).await;
    }
    tracing::info!("copy finished; streaming changes");
    stream(&collector, speed, latest.load(Ordering::Relaxed), &names).await;
}

/// The source's writes during the copy: WAL the slot holds until streaming
/// applies it.
async fn write_during_copy(collector: Collector, latest: Arc<AtomicU64>, speed: f64) {
    let mut ticks = interval(Duration::from_millis(100));
    loop {
        ticks.tick().await;
        let written = (COPY_WAL_PER_SEC * speed / 10.0) as u64;
        let now = latest.fetch_add(written, Ordering::Relaxed) + written;
        collector.record_latest_lsn(Lsn(now)).await;
    }
}

/// The slot and the apply worker once a second, as a reader of the source
/// and the destination would see them (the slot holds the WAL from a
/// little before the confirmed position to the latest), and the catalog
/// checks every 10 s (they find nothing: the verdict follows the snapshot).
async fn report_slot(collector: Collector) {
    let mut ticks = interval(Duration::from_secs(1));
    for second in 0u64.. {
        ticks.tick().await;
        if second % 10 == 0 {
            let checks = Cutover::new(OffsetDateTime::now_utc(), Vec::new(), Vec::new());
            collector
                .send(Update::Checks(Box::new((checks, demo_limits()))))
                .await;
        }
        let s = collector.snapshot();
        let confirmed = s.confirmed_lsn.0.max(START_LSN);
        let retained = s.latest_lsn.0.max(confirmed) - confirmed + SLOT_BASE;
        let safe = SLOT_KEEP.saturating_sub(retained);
        collector
            .record_slot(SlotHealth {
                name: "pgmigrator_demo".into(),
                active: true,
                wal_status: match retained {
                    r if r < 1 << 30 => WalStatus::Reserved,
                    _ => WalStatus::Extended,
                },
                retained_bytes: retained,
                safe_wal_size: i64::try_from(safe).ok(),
                max_slot_wal_keep_size: Some(SLOT_KEEP),
                ..SlotHealth::default()
            })
            .await;
        if s.phase == Phase::Streaming {
            let now = OffsetDateTime::now_utc();
            collector
                .record_apply(ApplyHealth {
                    last_msg_receipt: Some(now),
                    latest_end_time: Some(now),
                })
                .await;
        }
    }
}

/// Copies tables from the queue, reporting progress every interval.
async fn copy_worker(
    collector: Collector,
    queue: Arc<Mutex<VecDeque<TableProgress>>>,
    worker: u64,
    speed: f64,
    progress_interval: Duration,
) {
    let mut random =
        Random(0x9E37_79B9_7F4A_7C15 ^ (worker + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    // About 64 MiB/s per worker at speed 1.
    let bytes_per_tick = 64.0 * 1024.0 * 1024.0 * speed * progress_interval.as_secs_f64();
    loop {
        let Some(table) = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None) else {
            return;
        };
        let (schema, name) = (table.schema.as_str(), table.name.as_str());
        collector.table_started(schema, name).await;
        tracing::info!(table = %table.qualified_name(), worker, "table copy started");
        // The real count differs a little from the estimate.
        let rows = if table.rows_total > 0 {
            (table.rows_total as f64 * (0.97 + 0.06 * random.next())) as i64
        } else {
            (table.size_bytes / 140).max(1)
        };
        let interrupt_at = (name == "orders").then_some(table.size_bytes / 3);
        let mut interrupted = false;
        let mut copied = 0i64;
        let mut ticks = interval(progress_interval);
        while copied < table.size_bytes {
            ticks.tick().await;
            let burst = bytes_per_tick * (0.6 + 0.8 * random.next());
            copied = (copied + burst as i64).min(table.size_bytes);
            let rows_done = (rows as f64 * copied as f64 / table.size_bytes.max(1) as f64) as i64;
            collector
                .update_table_progress(schema, name, rows_done, copied)
                .await;
            if !interrupted && interrupt_at.is_some_and(|at| copied >= at) {
                interrupted = true;
                collector
                    .record_error(format!(
                        "COPY {schema}.{name}: connection to postgres://migrator:s3cret@source.internal:5432/shop \
                         reset by peer; retrying in 2s"
                    ))
                    .await;
                tracing::warn!(table = %table.qualified_name(), "copy interrupted; retrying");
                sleep(Duration::from_secs(2).div_f64(speed)).await;
            }
        }
        collector.table_done(schema, name, rows).await;
        tracing::info!(table = %table.qualified_name(), rows, "table copy finished");
    }
}

/// Streams until stopped: the source writes in waves, the applier keeps up
/// most of the time and falls behind in bursts.
async fn stream(collector: &Collector, speed: f64, from: u64, tables: &[(String, String)]) {
    let mut random = Random(0xD1B5_4A32_D192_ED03);
    // What the source wrote during the copy is applied first.
    let mut latest = from;
    let mut applied = START_LSN;
    collector.record_latest_lsn(Lsn(latest)).await;
    collector.record_applied(Lsn(applied), 0, 0).await;
    let mut ticks = interval(Duration::from_millis(100));
    for step in 0u64.. {
        ticks.tick().await;
        // A wave every ~40 s: quiet, then up to ~30 MB/s for a while.
        let wave = ((step as f64 / 400.0) * std::f64::consts::TAU)
            .sin()
            .max(0.0);
        let written = (speed * (150_000.0 + 3_000_000.0 * wave * random.next())) as u64;
        latest += written;
        collector.record_latest_lsn(Lsn(latest)).await;
        // The applier manages ~1.5 MB per 100 ms.
        let capacity = (speed * 1_500_000.0 * (0.7 + 0.6 * random.next())) as u64;
        let applying = (latest - applied).min(capacity);
        applied += applying;
        if applying > 0 {
            let rows = (applying / 220).max(1) as i64;
            collector
                .record_applied(Lsn(applied), rows, applying as i64)
                .await;
            // The rows fall on a few tables at a time; they add up.
            let mut left = rows as u64;
            while left > 0 && !tables.is_empty() {
                let (schema, name) =
                    &tables[(random.next() * tables.len() as f64) as usize % tables.len()];
                let some = ((left as f64 * (0.3 + 0.7 * random.next())) as u64).clamp(1, left);
                collector.add_table_changes(schema, name, some).await;
                left -= some;
            }
            collector
                .record_confirmed_lsn(Lsn(applied - applying / 3))
                .await;
        }
        if step % 600 == 599 {
            tracing::info!(lag_bytes = latest - applied, "streaming");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tables_span_kilobytes_to_gigabytes_with_one_unknown_estimate() {
        let tables = demo_tables(24);
        assert_eq!(tables.len(), 24);
        let largest = tables.iter().map(|t| t.size_bytes).max().unwrap();
        let smallest = tables.iter().map(|t| t.size_bytes).min().unwrap();
        assert!(
            largest > 1 << 30 && smallest < 64 << 10,
            "{smallest}..{largest}"
        );
        assert_eq!(tables.iter().filter(|t| t.rows_total <= 0).count(), 1);
        let names: std::collections::HashSet<_> =
            tables.iter().map(|t| t.qualified_name()).collect();
        assert_eq!(names.len(), 24);
    }

    #[test]
    fn more_tables_than_names_get_unique_partition_names() {
        let tables = demo_tables(100);
        let names: std::collections::HashSet<_> =
            tables.iter().map(|t| t.qualified_name()).collect();
        assert_eq!(names.len(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_demo_copies_every_table_then_streams_with_lag() {
        let collector = Collector::new();
        let options = DemoOptions {
            tables: 6,
            speed: 50.0,
            ..DemoOptions::default()
        };
        let demo = tokio::spawn(run(
            collector.clone(),
            options,
            sleep(Duration::from_secs(30)),
        ));
        demo.await.unwrap();
        collector.flush().await;
        let s = collector.snapshot();
        assert_eq!(s.phase, Phase::Streaming);
        assert_eq!(s.tables_copied, 6);
        assert_eq!(s.error_count, 1);
        assert!(!s.last_error.contains("s3cret"));
        assert!(s.total_rows > 0 && s.latest_lsn > s.applied_lsn || s.caught_up);
    }

    #[tokio::test(start_paused = true)]
    async fn the_demo_gives_every_surface_what_a_real_migration_would() {
        let collector = Collector::new();
        let options = DemoOptions {
            tables: 6,
            speed: 20.0,
            ..DemoOptions::default()
        };
        let demo = tokio::spawn(run(
            collector.clone(),
            options,
            sleep(Duration::from_secs(300)),
        ));
        let (mut blocked_while_copying, mut ready, mut exhaustion, mut apply) =
            (false, false, false, false);
        for _ in 0..300 {
            sleep(Duration::from_secs(1)).await;
            collector.flush().await;
            let s = collector.snapshot();
            let Some(cutover) = &s.cutover else {
                continue;
            };
            blocked_while_copying |= s.phase == Phase::Copy && !cutover.ready;
            // Errors age by the wall clock, which paused time does not
            // move: the transient error of the copy still counts here.
            ready |= s.phase == Phase::Streaming
                && cutover
                    .blockers
                    .iter()
                    .all(|b| b.kind == crate::model::CutoverKind::RecentErrors);
            exhaustion |= s.slot.as_ref().is_some_and(|slot| {
                slot.exhausted_in_sec.is_some() && slot.safe_wal_size.is_some()
            });
            apply |= s
                .apply
                .as_ref()
                .is_some_and(|a| a.last_msg_receipt.is_some());
        }
        demo.await.unwrap();
        collector.flush().await;
        let s = collector.snapshot();
        assert!(blocked_while_copying, "NOT READY while tables copy");
        assert!(ready, "READY once caught up: {:?}", s.cutover);
        assert!(
            exhaustion,
            "the slot's headroom shrinks while the copy holds WAL"
        );
        assert!(apply, "the apply worker is reported while streaming");
        // Each table's changes add up to the rows applied.
        let changes: u64 = s.tables.iter().map(|t| t.changes_applied).sum();
        assert_eq!(changes as i64, s.total_rows);
        assert!(s.tables.iter().filter(|t| t.changes_applied > 0).count() > 1);
        assert_eq!(s.copy_workers, Some(4));
    }
}
