//! A short simulated migration: the collector driven the way the pipeline
//! drives it (phases, a parallel COPY of tables of very different sizes, a
//! transient error, logs through `tracing`, then streaming with real byte and
//! time lag, then switchover), persisted to a state file and printed as it
//! goes.
//!
//! ```text
//! cargo run --release --example simulate [-- STATE_FILE]
//! cargo run --release -- status --state-file STATE_FILE
//! ```

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgmigrator_metrics::{
    Collector, Lsn, Phase, StatePersister, TableProgress, format_bytes, status,
};
use tokio::time::{interval, sleep};
use tracing_subscriber::layer::SubscriberExt;

const TICK: Duration = Duration::from_millis(250);
/// Simulated COPY speed of one worker, bytes per tick.
const WORKER_BYTES_PER_TICK: i64 = 24 << 20;
const WORKERS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir()
                .join("pgmigrator-simulate")
                .join("state.json")
        });
    let collector = Collector::new();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(collector.tracing_layer()),
    )?;
    let persister = StatePersister::start(collector.clone(), &path)?;
    let printer = tokio::spawn(print_progress(collector.clone()));

    collector.set_phase(Phase::Connecting).await;
    tracing::info!(
        source = "postgres://migrator:s3cret@source:5432/shop",
        "connecting"
    );
    sleep(Duration::from_millis(400)).await;
    collector.set_phase(Phase::Schema).await;
    sleep(Duration::from_millis(400)).await;

    let tables = vec![
        TableProgress::new("public", "order_items", 2_400_000, 820 << 20),
        TableProgress::new("public", "orders", 900_000, 310 << 20),
        TableProgress::new("public", "events", -1, 150 << 20), // never analysed
        TableProgress::new("public", "users", 120_000, 48 << 20),
        TableProgress::new("audit", "log", 40_000, 9 << 20),
        TableProgress::new("public", "settings", 12, 16 << 10),
    ];
    collector.set_phase(Phase::Copy).await;
    collector.set_tables(tables.clone()).await;
    let queue = Arc::new(Mutex::new(VecDeque::from(tables)));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(copy_worker(collector.clone(), Arc::clone(&queue))))
        .collect();
    for worker in workers {
        worker.await?;
    }

    collector.set_phase(Phase::Streaming).await;
    for table in collector.snapshot().tables.iter() {
        collector.table_streaming(&table.schema, &table.name).await;
    }
    stream(&collector).await;

    collector.set_phase(Phase::Switchover).await;
    sleep(Duration::from_millis(500)).await;
    collector.set_phase(Phase::SwitchoverComplete).await;
    collector.set_phase(Phase::Done).await;
    tracing::info!("migration complete");

    persister.stop().await;
    collector.close().await;
    printer.abort();
    let snapshot = collector.snapshot();
    println!("\n{}", status::render(&snapshot, snapshot.timestamp));
    println!("State file: {}", path.display());
    println!(
        "Read it back: cargo run --release -- status --state-file {}",
        path.display()
    );
    Ok(())
}

/// Takes tables from the queue and copies them, reporting every tick.
async fn copy_worker(collector: Collector, queue: Arc<Mutex<VecDeque<TableProgress>>>) {
    loop {
        let Some(table) = queue.lock().unwrap().pop_front() else {
            return;
        };
        let (schema, name) = (table.schema.as_str(), table.name.as_str());
        collector.table_started(schema, name).await;
        tracing::info!(table = %table.qualified_name(), "copy started");
        // The real row count differs a little from the estimate.
        let rows = if table.rows_total > 0 {
            table.rows_total + table.rows_total / 50
        } else {
            1_750_000
        };
        let (mut bytes_done, mut ticks) = (0i64, interval(TICK));
        while bytes_done < table.size_bytes {
            ticks.tick().await;
            bytes_done = (bytes_done + WORKER_BYTES_PER_TICK).min(table.size_bytes);
            let rows_done = (rows as f64 * bytes_done as f64 / table.size_bytes as f64) as i64;
            collector
                .update_table_progress(schema, name, rows_done, bytes_done)
                .await;
            if name == "events" && bytes_done == 4 * WORKER_BYTES_PER_TICK {
                let err = "COPY public.events: connection to postgres://migrator:s3cret@source:5432/shop reset by peer; retrying";
                collector.record_error(err).await;
                tracing::warn!(table = "public.events", "copy interrupted; retrying");
                sleep(Duration::from_secs(1)).await;
            }
        }
        collector.table_done(schema, name, rows).await;
        tracing::info!(table = %table.qualified_name(), rows, "copy finished");
    }
}

/// Streams for a few seconds: the source writes in bursts, the applier trails.
async fn stream(collector: &Collector) {
    let mut latest = 0x3_0000_0000u64;
    let mut applied = latest;
    collector.record_applied(Lsn(applied), 0, 0).await;
    let mut ticks = interval(Duration::from_millis(100));
    for step in 0..60u64 {
        ticks.tick().await;
        // A burst of writes on the source for the first half, then quiet.
        let written = if step < 30 {
            900_000 + (step % 7) * 150_000
        } else {
            0
        };
        latest += written;
        collector.record_latest_lsn(Lsn(latest)).await;
        let applying = (latest - applied).min(700_000);
        applied += applying;
        let rows = applying as i64 / 180;
        collector
            .record_applied(Lsn(applied), rows, applying as i64)
            .await;
        collector
            .record_confirmed_lsn(Lsn(applied - applying / 2))
            .await;
    }
}

/// One line a second: phase, tables, bytes copied, ETA, lag, throughput.
async fn print_progress(collector: Collector) {
    let mut ticks = interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let s = collector.snapshot();
        let copied: i64 = s.tables.iter().map(|t| t.bytes_copied).sum();
        let eta = s
            .eta_sec
            .filter(|_| s.tables_copied < s.tables_total)
            .map_or(String::from("-"), |eta| format!("{eta:.0}s"));
        println!(
            "[{:>4.0}s] {:<10} {}/{} tables  {:>10} copied  ETA {:>4}  lag {}  {:.0} rows/s  errors {}",
            s.elapsed_sec,
            s.phase.as_str(),
            s.tables_copied,
            s.tables_total,
            format_bytes(copied.max(0) as u64),
            eta,
            s.lag_formatted,
            s.rows_per_sec,
            s.error_count,
        );
    }
}
