//! Following a native PostgreSQL logical-replication migration (a
//! publication on the source, a subscription on the destination) and feeding
//! what it does into a [`Collector`], so every surface shows it.
//!
//! It only reads catalogs and statistics views, so `pg_monitor` rights are
//! enough, and a poll is three queries whatever the number of tables (a
//! fourth, on the source, when the set of tables changes):
//!
//! | where | what |
//! |---|---|
//! | destination | the subscription's tables (`pg_subscription_rel`) with their COPY progress (`pg_stat_progress_copy`) and change counters (`pg_stat_user_tables`) |
//! | destination | the subscription's error counters (`pg_stat_subscription_stats`, PostgreSQL 15+; skipped on 14) |
//! | source | the latest WAL position, the subscription's walsender and its slot |
//! | source | row estimates and sizes, when the set of tables changes |
//!
//! Mapping: `srsubstate` `i` → pending, `d` → copying, `f`/`s` → copied, `r`
//! → streaming; phase copy while any table is not ready, streaming once all
//! are. Applied LSN: the walsender's `replay_lsn` (the slot's
//! `confirmed_flush_lsn` while no walsender runs). A logical walsender reads
//! all WAL, other databases' and checkpoints' included, and when it has
//! nothing to send it pings the subscriber with its position, which the
//! idle apply worker acknowledges at once: measured on PostgreSQL 15, an
//! idle source, writes in another database and a checkpoint all left
//! `pg_current_wal_lsn() − replay_lsn` at 0. So `replay_lsn` shows no lag
//! that does not exist, and hides none that does (a walsender still
//! reading WAL while the source is quiet shows as lag until it is done).

mod catalog;
mod checks;
mod conninfo;
mod counts;
mod diff;
mod libpq_env;
mod observe;
mod poll;
mod sql;
mod tls;
mod verdict;
mod verify;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio_postgres::Client;

use crate::backoff::Backoff;
use crate::collector::Collector;
use crate::cutover::CutoverLimits;
use crate::redact::redact;

pub use checks::SequenceFix;
pub use conninfo::{ConnInfo, ConnInfoError};
pub use counts::{CountOptions, CountProgress};
pub use poll::PollStats;
pub use tls::SslMode;
pub use verdict::{CheckOptions, CheckProgress, CheckReport, DEFAULT_SEQUENCE_MARGIN};
pub use verify::VerifyOptions;

/// What to follow and how often.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The source (the publisher).
    pub source: ConnInfo,
    /// The destination (the subscriber).
    pub dest: ConnInfo,
    /// The subscription; the destination database's only one when `None`.
    pub subscription: Option<String>,
    /// Time between two polls.
    pub interval: Duration,
    /// Time between two readings of the catalogs for the cutover checks
    /// (the checks that follow from the snapshot run on every poll).
    pub check_interval: Duration,
    /// What the cutover verdict tolerates.
    pub cutover: CutoverLimits,
    /// Count the subscribed tables' rows on both servers, in the
    /// background, every `check_interval` (`row_count_mismatch`); `None`
    /// never counts.
    pub counts: Option<CountOptions>,
    /// Verify the subscribed tables' rows in the background, each once it
    /// is streaming and again every [`VerifyOptions::interval`]
    /// (`data_mismatch`); `None` never verifies.
    pub verify: Option<VerifyOptions>,
}

impl MonitorConfig {
    /// Following the only subscription of `dest`'s database, polling every
    /// second and reading the catalogs every 30 seconds, with the default
    /// cutover limits, no row counts and no verification.
    pub fn new(source: ConnInfo, dest: ConnInfo) -> MonitorConfig {
        MonitorConfig {
            source,
            dest,
            subscription: None,
            interval: Duration::from_secs(1),
            check_interval: Duration::from_secs(30),
            cutover: CutoverLimits::default(),
            counts: None,
            verify: None,
        }
    }
}

/// Why the monitor cannot start or lost a server. Its message never holds a
/// password: it names servers by their masked [`ConnInfo`], and passes
/// through [`redact`] as a last defence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorError {
    kind: MonitorErrorKind,
    message: String,
}

/// The kinds of [`MonitorError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MonitorErrorKind {
    /// A server could not be reached or refused the login.
    Connect,
    /// A server went away or failed a query.
    Lost,
    /// A server cannot be followed: older than PostgreSQL 14, or a source
    /// without `wal_level=logical`.
    Unsupported,
    /// No such subscription, none, or several to choose from.
    Subscription,
}

impl MonitorError {
    pub(crate) fn new(kind: MonitorErrorKind, message: impl AsRef<str>) -> Self {
        MonitorError {
            kind,
            message: redact(message.as_ref()).into_owned(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> MonitorErrorKind {
        self.kind
    }
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MonitorError {}

/// The subscription being followed.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub(crate) oid: u32,
    pub(crate) name: String,
    pub(crate) slot: Option<String>,
}

/// Connected, checked servers.
pub struct Monitor {
    config: MonitorConfig,
    source: Client,
    dest: Client,
    subscription: Subscription,
    /// PostgreSQL 15 or newer on the destination (error counters exist).
    dest_has_stats: bool,
    /// What the collector has been told, kept across reconnections.
    tracker: diff::Tracker,
    /// The cutover checks' newest reading of the catalogs.
    checked: Option<verdict::Checked>,
    /// Tables the subscription copies at once: the destination's
    /// `max_sync_workers_per_subscription`.
    copy_workers: u32,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("subscription", &self.subscription.name)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// Connects to both servers and checks that they can be followed:
    /// reachable, PostgreSQL 14 or newer, `wal_level=logical` on the source,
    /// and the subscription exists on the destination.
    pub async fn connect(config: MonitorConfig) -> Result<Monitor, MonitorError> {
        let source = connect("source", &config.source).await?;
        let dest = connect("destination", &config.dest).await?;
        check_version("source", &source).await?;
        let dest_version = check_version("destination", &dest).await?;
        let wal_level: String = query_one(&source, "SHOW wal_level", "source").await?;
        if wal_level != "logical" {
            return Err(MonitorError::new(
                MonitorErrorKind::Unsupported,
                format!(
                    "the source has wal_level={wal_level}; logical replication needs wal_level=logical"
                ),
            ));
        }
        let subscription = find_subscription(&dest, config.subscription.as_deref()).await?;
        let copy_workers: String = query_one(
            &dest,
            "SELECT current_setting('max_sync_workers_per_subscription')",
            "destination",
        )
        .await?;
        Ok(Monitor {
            copy_workers: copy_workers.trim().parse().unwrap_or(2),
            config,
            source,
            dest,
            subscription,
            dest_has_stats: dest_version >= 150_000,
            tracker: diff::Tracker::default(),
            checked: None,
        })
    }

    /// The subscription's name.
    pub fn subscription(&self) -> &str {
        &self.subscription.name
    }

    /// One poll: reads both servers and feeds `collector`.
    pub async fn poll(&mut self, collector: &Collector) -> Result<PollStats, MonitorError> {
        poll::poll(self, collector).await
    }
}

/// Follows the migration until `stop`: polls every interval and records
/// the cutover verdict after each poll (see [`MonitorConfig::check_interval`]);
/// a lost server
/// is recorded as an error (password masked) and reconnected with backoff
/// (1 s doubling to 30 s) while the last known state stays on show.
pub async fn run(collector: Collector, mut monitor: Monitor, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    // Counting runs beside the polls and ends with them.
    let counted =
        monitor.config.counts.clone().map(|options| {
            verdict::count_periodically(&monitor.config, options, collector.clone())
        });
    let _verifying = monitor.config.verify.clone().map(|options| {
        let servers = (monitor.config.source.clone(), monitor.config.dest.clone());
        let slot = monitor.subscription.slot.clone();
        verify::Background::start(servers, slot, options, collector.clone())
    });
    // The copy's forecast schedules the waiting tables onto these.
    collector.set_copy_workers(monitor.copy_workers).await;
    let mut ticks = tokio::time::interval(monitor.config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let polled = match monitor.poll(&collector).await {
            Ok(_) => {
                let counted = counted.as_ref().and_then(|rx| rx.borrow().clone());
                monitor.update_cutover(&collector, counted.as_ref()).await
            }
            Err(err) => Err(err),
        };
        let Err(err) = polled else {
            continue;
        };
        collector.record_error(&err).await;
        tracing::warn!(error = %err, "lost a server; reconnecting");
        let mut backoff = Backoff::default();
        monitor = loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(backoff.next_wait()) => {}
            }
            match Monitor::connect(monitor.config.clone()).await {
                Ok(mut fresh) => {
                    fresh.tracker = std::mem::take(&mut monitor.tracker);
                    tracing::info!("reconnected");
                    break fresh;
                }
                Err(err) => collector.record_error(&err).await,
            }
        };
    }
}

/// Connects with the TLS the connection string asks for, in libpq's
/// meaning of `sslmode`.
async fn connect(which: &str, server: &ConnInfo) -> Result<Client, MonitorError> {
    let failed = |reason: String| {
        MonitorError::new(
            MonitorErrorKind::Connect,
            format!("cannot connect to the {which} at {server}: {reason}"),
        )
    };
    let mode = server.ssl_mode();
    let tls = server.tls().connector().map_err(failed)?;
    let connected = if mode == SslMode::Allow {
        // libpq: plain first, and TLS only if the server refuses that.
        let mut plain = server.config().clone();
        plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
        match plain.connect(tls.clone()).await {
            Ok(connected) => Ok(connected),
            Err(_) => {
                let mut encrypted = server.config().clone();
                encrypted.ssl_mode(tokio_postgres::config::SslMode::Require);
                encrypted.connect(tls).await
            }
        }
    } else {
        server.config().connect(tls).await
    };
    let (client, connection) = connected
        .map_err(|err| failed(tls::explain(&err, mode).unwrap_or_else(|| describe(&err))))?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; the next
        // query reports it.
        let _ = connection.await;
    });
    Ok(client)
}

async fn check_version(which: &str, client: &Client) -> Result<i32, MonitorError> {
    let text: String = query_one(client, "SHOW server_version_num", which).await?;
    let version: i32 = text.parse().unwrap_or(0);
    if version < 140_000 {
        return Err(MonitorError::new(
            MonitorErrorKind::Unsupported,
            format!(
                "the {which} runs PostgreSQL {}.{}; 14 or newer is required",
                version / 10_000,
                version % 10_000 / 100
            ),
        ));
    }
    Ok(version)
}

async fn query_one(client: &Client, sql: &str, which: &str) -> Result<String, MonitorError> {
    let row = client.query_one(sql, &[]).await.map_err(|err| {
        MonitorError::new(
            MonitorErrorKind::Lost,
            format!("querying the {which}: {}", describe(&err)),
        )
    })?;
    Ok(row.get(0))
}

/// The names of the subscriptions in the destination's database, in name
/// order: what `pgmigrator monitor --all-subscriptions` follows, each as a
/// migration of its own.
pub async fn subscriptions(dest: &ConnInfo) -> Result<Vec<String>, MonitorError> {
    let client = connect("destination", dest).await?;
    let found = list_subscriptions(&client).await?;
    Ok(found.into_iter().map(|s| s.name).collect())
}

async fn list_subscriptions(dest: &Client) -> Result<Vec<Subscription>, MonitorError> {
    let rows = dest.query(sql::SUBSCRIPTIONS, &[]).await.map_err(|err| {
        MonitorError::new(
            MonitorErrorKind::Lost,
            format!("querying the destination: {}", describe(&err)),
        )
    })?;
    Ok(rows
        .iter()
        .map(|row| Subscription {
            oid: row.get::<_, tokio_postgres::types::Oid>(0),
            name: row.get(1),
            slot: row.get(2),
        })
        .collect())
}

async fn find_subscription(
    dest: &Client,
    wanted: Option<&str>,
) -> Result<Subscription, MonitorError> {
    let mut found = list_subscriptions(dest).await?;
    match wanted {
        Some(name) => found.into_iter().find(|s| s.name == name).ok_or_else(|| {
            MonitorError::new(
                MonitorErrorKind::Subscription,
                format!("no subscription named {name:?} on the destination"),
            )
        }),
        None => match found.len() {
            0 => Err(MonitorError::new(
                MonitorErrorKind::Subscription,
                "no subscription in the destination database: create one, or connect to the database that has it",
            )),
            1 => Ok(found.swap_remove(0)),
            _ => Err(MonitorError::new(
                MonitorErrorKind::Subscription,
                format!(
                    "several subscriptions on the destination ({}): choose one with --subscription",
                    found
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
    }
}

/// A driver error with its server message, on one line.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(inner) = source {
                text = format!("{text}: {inner}");
                source = inner.source();
            }
            text.replace('\n', " ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_is_a_connect_error_naming_it_masked() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server: ConnInfo = format!("postgres://monitor:s3cr%2Fet@127.0.0.1:{port}/shop")
            .parse()
            .unwrap();
        let config = MonitorConfig::new(server.clone(), server);
        let err = Monitor::connect(config).await.unwrap_err();
        assert_eq!(err.kind(), MonitorErrorKind::Connect);
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot connect to the source at postgres://monitor@127.0.0.1:{port}/shop: "
            )),
            "{message}"
        );
        assert!(!message.contains("s3cr"), "{message}");
    }
}
