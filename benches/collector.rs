//! Throughput of the collector against a lock-based design modelled on the
//! Go original (RwLock + atomics + a per-event `Vec` window that drains from
//! the front), `snapshot()` latency and the cost of one state-file write.
//!
//! `cargo bench --bench collector`

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::runtime;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pgmigrator_metrics::alerts::{AlertsConfig, Dispatcher, RetryPolicy};
use pgmigrator_metrics::otlp::{Otlp, Source};
use pgmigrator_metrics::{Collector, Lsn, RateWindow, Snapshot, TableProgress, write_state_file};

const PRODUCERS: u64 = 4;

/// The seed's sliding window: one entry per event, evicted by shifting the
/// whole vector to the front.
struct SeedWindow {
    entries: Vec<(Instant, f64)>,
    window: Duration,
}

impl SeedWindow {
    fn new() -> Self {
        SeedWindow {
            entries: Vec::new(),
            window: Duration::from_secs(60),
        }
    }

    fn add(&mut self, at: Instant, value: f64) {
        self.entries.push((at, value));
        let Some(cutoff) = at.checked_sub(self.window) else {
            return;
        };
        let expired = self.entries.partition_point(|(t, _)| *t < cutoff);
        if expired > 0 {
            self.entries.copy_within(expired.., 0);
            self.entries.truncate(self.entries.len() - expired);
        }
    }
}

/// The seed's collector: RwLock for positions, atomics for totals, a mutex
/// per window.
struct SeedCollector {
    positions: RwLock<u64>,
    total_rows: AtomicI64,
    total_bytes: AtomicI64,
    rows: Mutex<SeedWindow>,
    bytes: Mutex<SeedWindow>,
}

impl SeedCollector {
    fn new() -> Self {
        SeedCollector {
            positions: RwLock::new(0),
            total_rows: AtomicI64::new(0),
            total_bytes: AtomicI64::new(0),
            rows: Mutex::new(SeedWindow::new()),
            bytes: Mutex::new(SeedWindow::new()),
        }
    }

    fn record_applied(&self, lsn: u64, rows: i64, bytes: i64) {
        *self.positions.write().unwrap() = lsn;
        self.total_rows.fetch_add(rows, Ordering::Relaxed);
        self.total_bytes.fetch_add(bytes, Ordering::Relaxed);
        let now = Instant::now();
        self.rows.lock().unwrap().add(now, rows as f64);
        self.bytes.lock().unwrap().add(now, bytes as f64);
    }
}

fn record_applied(c: &mut Criterion) {
    // A push every 100 ms (the last given up within 500 ms at the stop), so
    // the exporters below fail many times while measured. Set before any thread of the bench's runtime starts.
    // SAFETY: no other thread runs yet.
    unsafe {
        std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "100");
        std::env::set_var("OTEL_EXPORTER_OTLP_TIMEOUT", "500");
    }
    let rt = runtime(Some(2));
    let mut group = c.benchmark_group("record_applied/4_producers_2_workers");
    group.throughput(Throughput::Elements(1));
    group.bench_function("collector", |b| {
        b.iter_custom(|iters| rt.block_on(async { ingest(Collector::new(), iters).await }))
    });
    // The same with alert rules evaluated on every snapshot and their
    // notifications going to a receiver that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let alerts = AlertsConfig::parse(
        &format!(
            "[[rule]]\nname = \"always\"\nwhen = \"rows_per_sec >= 0\"\nrepeat = \"1s\"\n\
             [[rule]]\nname = \"lag\"\nwhen = \"lag_bytes > 1MB\"\n\
             [[notifier]]\nkind = \"webhook\"\nurl = \"http://{}/hook\"\n",
            silent.local_addr().unwrap()
        ),
        "bench.toml",
    )
    .unwrap();
    group.bench_function("collector_with_alerts_to_a_dead_receiver", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let collector = Collector::new();
                let dispatcher = Dispatcher::start(&alerts, RetryPolicy::default()).unwrap();
                tokio::spawn(pgmigrator_metrics::alerts::run(
                    collector.snapshots(),
                    Some(collector.clone()),
                    alerts.clone(),
                    dispatcher,
                    None,
                ));
                ingest(collector, iters).await
            })
        })
    });
    // The same with an OTLP export pushing to an endpoint that accepts and
    // never answers, then to one that refuses every connection.
    let refused = {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        closed.local_addr().unwrap()
    };
    for (name, endpoint) in [
        (
            "collector_with_otlp_to_a_silent_endpoint",
            silent.local_addr().unwrap(),
        ),
        ("collector_with_otlp_to_a_refusing_endpoint", refused),
    ] {
        // One export for the whole run, pushing whichever collector is
        // being measured.
        let current: Current = Arc::default();
        let export = rt.block_on(async {
            Otlp::from_env(Some(&format!("http://{endpoint}")), None)
                .unwrap()
                .unwrap()
                .spawn(otlp_source(&current))
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let collector = Collector::new();
                    *current.lock().unwrap() = Some(collector.snapshots());
                    ingest(collector, iters).await
                })
            })
        });
        assert_eq!(export.delivered(), 0);
        assert!(export.failures() > 0, "the export failed while measured");
        rt.block_on(export.stop());
    }
    group.bench_function("seed_lock_baseline", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let seed = Arc::new(SeedCollector::new());
                let per = iters.div_ceil(PRODUCERS);
                let start = Instant::now();
                let producers: Vec<_> = (0..PRODUCERS)
                    .map(|p| {
                        let seed = Arc::clone(&seed);
                        tokio::spawn(async move {
                            for i in 0..per {
                                seed.record_applied(p * per + i, 1, 100);
                            }
                        })
                    })
                    .collect();
                for producer in producers {
                    producer.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// The collector being measured, for the OTLP export to read.
type Current = Arc<Mutex<Option<pgmigrator_metrics::Snapshots>>>;

/// What an OTLP export pushes: the one migration being measured.
fn otlp_source(current: &Current) -> Source {
    let current = Arc::clone(current);
    Arc::new(move || {
        let snapshots = current.lock().unwrap().clone();
        snapshots
            .map(|s| (None, s.snapshot()))
            .into_iter()
            .collect()
    })
}

/// `iters` applied positions from 4 producers, until every one is applied.
async fn ingest(collector: Collector, iters: u64) -> Duration {
    let per = iters.div_ceil(PRODUCERS);
    let start = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let collector = collector.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    collector.record_applied(Lsn(p * per + i), 1, 100).await;
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    collector.flush().await; // every event applied, not just queued
    let elapsed = start.elapsed();
    collector.close().await;
    elapsed
}

/// One add once 60 s of events at 1 M/s have gone through the window.
fn full_window(c: &mut Criterion) {
    let mut group = c.benchmark_group("window_add_once_full");
    group.throughput(Throughput::Elements(1));

    let start = tokio::time::Instant::now();
    let mut ours = RateWindow::new(Duration::from_secs(60), 120);
    let mut t = 0u64; // simulated microseconds
    while t < 70_000_000 {
        ours.add(start + Duration::from_micros(t), 1, 100);
        t += 1;
    }
    group.bench_function("rate_window", |b| {
        b.iter(|| {
            t += 1;
            ours.add(black_box(start + Duration::from_micros(t)), 1, 100);
        })
    });

    // The seed's window after 60 s at 1 M/s would hold 60 M entries; 1 M is
    // enough to show the cost of its shift on every add.
    let base = Instant::now();
    let mut seed = SeedWindow::new();
    let spacing = Duration::from_micros(60);
    seed.entries = (0..1_000_000u32)
        .map(|i| (base + spacing * i, 1.0))
        .collect();
    let mut next = 1_000_000u32;
    group.sample_size(10);
    group.bench_function("seed_vec_1M_entries", |b| {
        b.iter(|| {
            next += 1;
            seed.add(
                black_box(base + Duration::from_secs(60) + spacing * next),
                1.0,
            );
        })
    });
    group.finish();
}

fn tables(n: usize) -> Vec<TableProgress> {
    (0..n)
        .map(|i| TableProgress::new("public", &format!("table_{i:05}"), 1_000_000, 1 << 30))
        .collect()
}

fn snapshot(c: &mut Criterion) {
    let rt = runtime(Some(2));
    let mut group = c.benchmark_group("snapshot");
    for n in [10, 1_000, 10_000] {
        let collector = rt.block_on(async {
            let collector = Collector::new();
            collector.set_tables(tables(n)).await;
            collector.flush().await;
            collector
        });
        group.bench_with_input(
            BenchmarkId::from_parameter(n),
            &collector,
            |b, collector| b.iter(|| black_box(collector.snapshot())),
        );
    }
    group.finish();
}

fn state_file_write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let snapshot = Snapshot {
        tables: tables(10_000),
        tables_total: 10_000,
        ..Snapshot::default()
    };
    let bytes = serde_json::to_vec_pretty(&snapshot).unwrap().len();
    let mut group = c.benchmark_group("state_file_write");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("10000_tables", |b| {
        b.iter(|| write_state_file(&path, &snapshot).unwrap())
    });
    group.finish();
}

/// What the WebSocket hub does once per tick: one snapshot to JSON text.
fn ws_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_frame_serialize");
    group.sample_size(20);
    for n in [100, 10_000] {
        let snapshot = Snapshot {
            tables: tables(n),
            tables_total: n,
            ..Snapshot::default()
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &snapshot, |b, snapshot| {
            b.iter(|| serde_json::to_string(black_box(snapshot)).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = record_applied, full_window, snapshot, state_file_write, ws_frame
}
criterion_main!(benches);
