//! What the collector costs while it runs: CPU at a paced 1 M events/s, and
//! memory after 10 M events.
//!
//! `cargo bench --bench footprint`

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use pgmigrator_metrics::{Collector, LagTracker, Lsn, RateWindow};
use tokio::time::MissedTickBehavior;

use common::{Who, cpu_time, current_thread, print_cores, rss_kib, runtime};

const RATE: u64 = 1_000_000;
const SECONDS: u64 = 5;
const PER_MS: u64 = RATE / 1000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    print_cores();
    paced_cpu();
    memory_after_ten_million_events();
}

/// The collector runs alone on its own thread (a current-thread runtime), so
/// that thread's CPU time is the collector's; a producer on another runtime
/// sends 1,000 events every millisecond.
fn paced_cpu() {
    let (handle_tx, handle_rx) = mpsc::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let collector_thread = std::thread::spawn(move || {
        let rt = current_thread();
        rt.block_on(async move {
            let collector = Collector::new();
            let before = cpu_time(Who::Thread);
            handle_tx.send(collector.clone()).unwrap();
            let _ = done_rx.await;
            collector.flush().await;
            let cpu = cpu_time(Who::Thread) - before;
            (cpu, collector.snapshot().total_rows)
        })
    });
    let collector = handle_rx.recv().unwrap();
    let producer = current_thread();
    let started = Instant::now();
    let sent = producer.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut sent = 0u64;
        while sent < RATE * SECONDS {
            tick.tick().await;
            for _ in 0..PER_MS {
                collector.record_applied(Lsn(sent), 1, 100).await;
                sent += 1;
            }
        }
        sent
    });
    let wall = started.elapsed();
    drop(collector);
    done_tx.send(()).unwrap();
    let (cpu, applied) = collector_thread.join().unwrap();
    assert_eq!(applied as u64, sent, "events lost");
    let rate = sent as f64 / wall.as_secs_f64();
    println!(
        "paced: {sent} events in {:.2} s ({:.2} M events/s); collector thread CPU {:.3} s = {:.1} % of one core",
        wall.as_secs_f64(),
        rate / 1e6,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
    );
}

/// The window and lag samples the collector keeps, fed 10 M events spread
/// over 100 s of simulated time (so the window turns over), and the process's
/// resident memory before and after 10 M real events through a collector.
fn memory_after_ten_million_events() {
    let start = tokio::time::Instant::now();
    let mut applied = RateWindow::new(Duration::from_secs(60), 120);
    let mut copied = RateWindow::new(Duration::from_secs(60), 120);
    let mut lag = LagTracker::new();
    let fresh = applied.memory_bytes() + copied.memory_bytes() + lag.memory_bytes();
    for i in 0..10_000_000u64 {
        let at = start + Duration::from_micros(i * 10);
        lag.record_latest(Lsn(i * 2 + 1000), at);
        applied.add(at, 1, 100);
        copied.add(at, 1, 100);
        lag.applied(Lsn(i * 2));
    }
    let after = applied.memory_bytes() + copied.memory_bytes() + lag.memory_bytes();
    println!("window + lag samples: {fresh} bytes fresh, {after} bytes after 10 M events");

    let rt = runtime(Some(2));
    let (before, after) = rt.block_on(async {
        let collector = Collector::new();
        for i in 0..100_000u64 {
            collector.record_applied(Lsn(i), 1, 100).await;
        }
        collector.flush().await;
        let before = rss_kib();
        for i in 100_000..10_000_000u64 {
            collector.record_latest_lsn(Lsn(i + 500)).await;
            collector.record_applied(Lsn(i), 1, 100).await;
        }
        collector.flush().await;
        (before, rss_kib())
    });
    println!(
        "process RSS around 10 M more events through a collector: {before} KiB -> {after} KiB"
    );
}
