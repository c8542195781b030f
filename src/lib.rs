//! # pgmigrator-metrics
//!
//! The observability layer of pgmigrator, a PostgreSQL online-migration tool
//! (parallel COPY of every table, then change streaming over logical
//! replication, then switchover). The pipeline reports what it does to a
//! [`Collector`]; every surface — REST, WebSocket, dashboards, the state file
//! and `pgmigrator status` — reads the same published [`Snapshot`].
//!
//! ```text
//! pipeline tasks ─ .await ─┐                   Publisher            Snapshots (readers)
//! tracing layer ─ try_send ┤ 4 bounded mpsc   ┌─► ArcSwap ─────────► snapshot(), logs()
//!                          └──► actor task ───┼─► watch ───────────► TUI
//!                               owns State    └─► broadcast / tick ─► WebSocket hub
//! StatePersister ─ every 2 s: snapshot() ─► state.json ─► read_state_file ─► status
//!                                                     └─► StateFileMirror (its own Publisher) ─► serve
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use pgmigrator_metrics::{Collector, Lsn, Phase, StatePersister, TableProgress, read_state_file};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! let collector = Collector::builder().tick(Duration::from_millis(100)).build();
//! let persister = StatePersister::start(collector.clone(), dir.path().join("state.json"))?;
//!
//! // A reader: one snapshot per tick, e.g. for a WebSocket hub.
//! let mut updates = collector.subscribe();
//! let reader = tokio::spawn(async move {
//!     let mut last_phase = Phase::Idle;
//!     while let Ok(snapshot) = updates.recv().await {
//!         last_phase = snapshot.phase.clone();
//!     }
//!     last_phase // the channel ends when the collector closes
//! });
//!
//! // The pipeline: writers just `.await`.
//! collector.set_phase(Phase::Copy).await;
//! collector.set_tables(vec![TableProgress::new("public", "users", 1_000, 64 << 10)]).await;
//! collector.table_started("public", "users").await;
//! collector.update_table_progress("public", "users", 500, 32 << 10).await;
//! collector.table_done("public", "users", 1_000).await;
//! collector.set_phase(Phase::Streaming).await;
//! collector.record_latest_lsn(Lsn(0x3000)).await;
//! collector.record_applied(Lsn(0x2000), 10, 4096).await;
//! collector.record_error("lost postgres://app:hunter2@db:5432/shop").await;
//!
//! collector.flush().await; // everything above is now in the published snapshot
//! let snapshot = collector.snapshot();
//! assert_eq!(snapshot.tables_copied, 1);
//! assert_eq!(snapshot.lag_bytes, 0x1000);
//! assert_eq!(snapshot.last_error, "lost postgres://app:********@db:5432/shop");
//!
//! persister.stop().await?; // one final write, and whether it landed
//! collector.close().await;
//! assert_eq!(reader.await.unwrap(), Phase::Streaming);
//!
//! // Later, maybe after the pipeline died: `pgmigrator status`.
//! let saved = read_state_file(&dir.path().join("state.json")).unwrap();
//! assert_eq!(saved.total_rows, 10);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Data flows one way: writers → the actor → a published snapshot →
//! readers. Only a [`Collector`]'s actor and a [`StateFileMirror`]'s task
//! publish; every reader holds a read-only [`Snapshots`] handle.
//!
//! - [`lsn`]: [`Lsn`], [`lag()`], [`format_lag`].
//! - [`model`]: the plain data: [`Phase`], [`TableName`], [`TableProgress`],
//!   [`Snapshot`] (with its one staleness rule), [`LogEntry`], and
//!   [`MigrationSummary`] (one line per migration, worst first).
//! - `collector`: the [`Collector`] handle and builder; `inbox` (the writers'
//!   channels, in send order), `actor` (the loop), `state` (a plain,
//!   synchronously tested `State`), `table`, `clock`, the log ring and
//!   [`CollectorLayer`].
//! - `publish`: the one `Publisher` (ArcSwap, `watch`, tick broadcast) and
//!   its read handle [`Snapshots`].
//! - [`mirror`]: [`StateFileMirror`], which republishes another process's
//!   `state.json`.
//! - [`rate`] and [`lag`](mod@lag): fixed-memory throughput and time-lag meters;
//!   [`history`]: the headline series over a week, in fixed memory.
//! - [`redact`](mod@redact): masking passwords in errors and logs (the last
//!   line of defence); [`printable`]: escaping untrusted text for terminals;
//!   [`StderrLayer`]: warnings on stderr with both applied.
//! - [`persist`]: `write` ([`write_state_file`]), `read`
//!   ([`read_state_file`]), `persister` ([`StatePersister`]).
//! - [`status`]: the offline report of `pgmigrator status`.
//! - [`cutover`]: the cutover checks that follow from a snapshot alone.
//! - `alerts` (feature `alerts`): `rule` (conditions with units) →
//!   `engine` (pending → firing → resolved, pure) → `notify` (the delivery
//!   queue, retries, webhook, Slack and command notifiers over `post`);
//!   `config` reads the alerts file; `run` evaluates every published
//!   snapshot.
//! - [`units`]: sizes (printed in IEC units) and durations, printed and parsed in one grammar.
//! - `http` (feature `http`): `server` (the accept loop and its connection
//!   limits), `tls` (HTTPS with certificates re-read when they change),
//!   `auth` (Host, token, origin), `ws` (a WebSocket hub per migration),
//!   `delta` (frames that follow change), `migrations` (the migrations
//!   served, by id), `metrics` (Prometheus), the dashboard; `app` runs a
//!   job, or one per migration, with every surface and one stop.
//! - [`demo`]: a simulated migration driving a collector like the pipeline.
//! - `pg` (feature `postgres`): following a native logical-replication
//!   migration: `conninfo` (a connection string parsed once, shown masked;
//!   `libpq_env` fills what it leaves out from `PG*` variables and
//!   `~/.pgpass`; `tls` gives `sslmode` libpq's meanings over rustls),
//!   `observe` (the queries) → `diff` (a pure function from one
//!   observation to the next to collector updates) → `poll` (applies them);
//!   for the cutover verdict, `catalog` (the catalog queries) → `checks` (a
//!   pure function to blockers and warnings), `counts` (row counts), and
//!   `verdict` (combining them with [`cutover`]'s, for `pgmigrator check`
//!   and after every poll).
//! - `tui` (feature `tui`): the terminal dashboard: `model` (state and
//!   keys), `view` (drawing), `fleet` (the migration list), `remote`
//!   (following a server).
//! - The `pgmigrator` binary (`src/bin/pgmigrator/`): `args` (flags and their
//!   checks), `signals` (what stops a command), `output`, `serving` (logging,
//!   listening, alerts), `fleet` (migration ids and watched directories),
//!   `check` (the verdict and its exit status), and `main`, one call per
//!   command.
//!
//! # Features
//!
//! - `cli` (default): the `pgmigrator` binary (`demo`, `serve`, `status`,
//!   `tui`, `monitor`, `check`, `alerts test`).
//! - `http` (default): `http::router` and `http::serve`.
//! - `tui` (default): `tui::run`, the terminal dashboard.
//! - `postgres` (default): `pg::Monitor` (with `Monitor::check`) and `pg::run`.
//! - `tracing-layer` (default): [`Collector::tracing_layer`].
//! - `alerts` (default): `alerts::run`, alert rules and notifiers.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

// The state file's guarantees rest on Unix calls (flock, O_NONBLOCK, file
// modes, signal 0 to find orphaned writers); say so rather than fail
// somewhere inside.
#[cfg(not(unix))]
compile_error!("pgmigrator-metrics runs on Unix-like systems only");

#[cfg(feature = "alerts")]
pub mod alerts;
#[cfg(feature = "http")]
pub mod app;
#[cfg(any(feature = "postgres", feature = "tui"))]
mod backoff;
#[cfg(any(feature = "tui", feature = "alerts"))]
mod client;
mod collector;
pub mod cutover;
pub mod demo;
pub mod fleet;
mod forecast;
pub mod history;
#[cfg(feature = "http")]
pub mod http;
pub mod lag;
pub mod lsn;
#[cfg(feature = "http")]
mod metrics;
pub mod mirror;
pub mod model;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod persist;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod printable;
mod publish;
pub mod rate;
pub mod redact;
pub mod status;
#[cfg(feature = "tracing-layer")]
mod stderr;
#[cfg(feature = "tracing-layer")]
mod trace_fields;
#[cfg(feature = "tui")]
pub mod tui;
pub mod units;

#[cfg(feature = "tracing-layer")]
pub use collector::CollectorLayer;
pub use collector::{
    Collector, CollectorBuilder, DEFAULT_CHANNEL_CAPACITY, DEFAULT_LOG_CAPACITY,
    DEFAULT_RATE_WINDOW, DEFAULT_TICK,
};
pub use history::{History, HistoryPoint};
pub use lag::LagTracker;
pub use lsn::{Lsn, ParseLsnError, format_lag, lag};
pub use mirror::StateFileMirror;
pub use model::{
    AlertState, AlertStatus, ApplyHealth, Cutover, CutoverItem, CutoverKind, ErrorEntry, LogEntry,
    LogLevel, MigrationSummary, Phase, PhaseSpan, STALE_AFTER, Severity, SlotHealth, Snapshot,
    TableName, TableProgress, TableStatus, UnknownStatus, WalStatus, sort_worst_first, summarize,
};
pub use model::{CatchUp, CatchUpState, Eta, EtaState};
pub use model::{DifferenceKind, RowDifference, TableVerification, VerifyProgress, VerifyStatus};
pub use persist::{
    StateFileError, StateFileErrorKind, StatePersister, companion_path, default_state_path,
    read_history_file, read_logs_file, read_state_file, write_history_file, write_state_file,
};
pub use publish::{BROADCAST_CAPACITY, Snapshots};
pub use rate::{Rate, RateWindow};
pub use redact::redact;
#[cfg(feature = "tracing-layer")]
pub use stderr::StderrLayer;
pub use units::{format_bytes, format_duration};

/// The README's examples compile as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
