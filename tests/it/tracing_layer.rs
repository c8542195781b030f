use pgmigrator_metrics::{Collector, LogLevel};
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn tracing_events_become_log_entries_with_fields() {
    let collector = Collector::new();
    let subscriber = tracing_subscriber::registry().with(collector.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("too verbose, skipped");
        tracing::info!(table = "public.users", rows = 42, "copy finished");
        tracing::warn!(dsn = "postgres://u:hunter2@h", "reconnecting");
        tracing::error!("apply failed");
    });
    collector.flush().await;
    let logs = collector.logs();
    let seen: Vec<_> = logs.iter().map(|e| (e.level, e.message.as_str())).collect();
    assert_eq!(
        seen,
        [
            (LogLevel::Info, "copy finished"),
            (LogLevel::Warn, "reconnecting"),
            (LogLevel::Error, "apply failed"),
        ]
    );
    assert_eq!(logs[0].fields["table"], "public.users");
    assert_eq!(logs[0].fields["rows"], "42");
    assert_eq!(logs[1].fields["dsn"], "postgres://u:********@h");
    assert!(logs[0].fields["target"].contains("tracing_layer"));
}

#[tokio::test]
async fn max_level_can_include_debug() {
    let collector = Collector::new();
    let layer = collector
        .tracing_layer()
        .with_max_level(tracing::Level::DEBUG);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::debug!("now kept");
        tracing::trace!("still skipped");
    });
    collector.flush().await;
    let logs = collector.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, LogLevel::Debug);
}

#[tokio::test]
async fn a_full_channel_drops_and_counts_instead_of_blocking() {
    // On a current-thread runtime the actor cannot run while this test logs
    // synchronously, so the tiny channel fills: the layer must not block.
    // 40 split over four channels: the layer's channel holds 10.
    let collector = Collector::builder().channel_capacity(40).build();
    tracing::subscriber::with_default(
        tracing_subscriber::registry().with(collector.tracing_layer()),
        || {
            for i in 0..100 {
                tracing::info!(i, "burst");
            }
        },
    );
    collector.flush().await;
    let snapshot = collector.snapshot();
    assert_eq!(snapshot.logs_dropped, 90);
    assert_eq!(collector.logs().len(), 10);
}

#[tokio::test]
async fn the_layer_does_not_keep_the_collector_alive() {
    let collector = Collector::new();
    let mut watcher = collector.watch();
    let layer = collector.tracing_layer();
    drop(collector);
    while watcher.changed().await.is_ok() {}
    // Logging after the collector is gone is a no-op, not a panic.
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("nobody listens");
    });
}
