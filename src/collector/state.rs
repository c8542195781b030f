//! The migration's state as a plain synchronous value: updates go in with the
//! moment they are applied, snapshots come out. No runtime, no locks, so every
//! rule is unit-tested by feeding it updates.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::clock::{Moment, non_negative};
use super::eta;
use super::event::Update;
use super::log_ring::LogRing;
use super::outlook::Outlook;
use super::phases::Phases;
use super::table::Table;
use crate::cutover::{self, CutoverLimits};
use crate::lag::LagTracker;
use crate::lsn::{Lsn, format_lag, lag};
use crate::model::{
    AlertStatus, ApplyHealth, Cutover, ErrorEntry, LogEntry, Phase, SlotHealth, Snapshot,
    TableName, TableProgress, TableStatus, VerifyProgress,
};
use crate::rate::RateWindow;
use crate::redact::{MASK, is_secret_key, redact};

/// Errors kept in the snapshot's history.
pub(crate) const ERROR_HISTORY: usize = 100;
/// Longest error or log message kept, in bytes; longer ones are cut.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;
/// Buckets of the global throughput windows: 500 ms each over 60 s.
const RATE_BUCKETS: usize = 120;

/// Settings that shape the state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) rate_window: Duration,
    pub(crate) log_capacity: usize,
}

#[derive(Debug)]
pub(crate) struct State {
    settings: Settings,
    phases: Phases,
    tables: Vec<Table>,
    index: HashMap<TableName, usize>,
    applied: Lsn,
    confirmed: Lsn,
    latest: Lsn,
    lag: LagTracker,
    /// Rows and bytes applied (`record_applied`).
    applied_rate: RateWindow,
    /// Rows and bytes copied (table progress).
    copy_rate: RateWindow,
    total_rows: i64,
    total_bytes: i64,
    error_count: u64,
    last_error: String,
    errors: VecDeque<ErrorEntry>,
    logs: LogRing,
    /// The newest slot report, as the reader gave it.
    slot: Option<SlotHealth>,
    /// When the slot's headroom runs out and streaming catches up.
    outlook: Outlook,
    /// The newest report of the destination's apply worker.
    apply: Option<ApplyHealth>,
    /// The newest cutover verdict, or the checks to derive it from.
    cutover: Option<Verdict>,
    /// The newest alerts, and notifications given up on.
    alerts: Vec<AlertStatus>,
    notifications_failed: u64,
    /// The newest verification progress; `None` while verifying is off.
    verify: Option<VerifyProgress>,
    /// The copy's pace, its workers, and how fast it goes with each count
    /// of tables in flight.
    concurrency: eta::Concurrency,
}

/// Where the published cutover verdict comes from.
#[derive(Debug)]
enum Verdict {
    /// Recorded whole by a writer ([`Collector::record_cutover`](super::Collector::record_cutover)).
    Given(Cutover),
    /// The monitor's catalog checks; the snapshot's own blockers are
    /// derived at each publication, so the verdict follows the lag, the
    /// tables and the slot as they change rather than a poll later.
    Derived {
        checks: Cutover,
        limits: CutoverLimits,
    },
}

impl State {
    pub(crate) fn new(settings: Settings) -> Self {
        State {
            settings,
            phases: Phases::new(),
            tables: Vec::new(),
            index: HashMap::new(),
            applied: Lsn(0),
            confirmed: Lsn(0),
            latest: Lsn(0),
            lag: LagTracker::new(),
            applied_rate: RateWindow::new(settings.rate_window, RATE_BUCKETS),
            copy_rate: RateWindow::new(settings.rate_window, RATE_BUCKETS),
            total_rows: 0,
            total_bytes: 0,
            error_count: 0,
            last_error: String::new(),
            errors: VecDeque::with_capacity(ERROR_HISTORY),
            logs: LogRing::new(settings.log_capacity),
            slot: None,
            outlook: Outlook::new(settings.rate_window),
            apply: None,
            cutover: None,
            alerts: Vec::new(),
            notifications_failed: 0,
            verify: None,
            concurrency: eta::Concurrency::new(settings.rate_window),
        }
    }

    /// State continuing from a previous run's snapshot: phase and its history,
    /// tables and their statuses, totals, errors, LSNs and elapsed time.
    /// Rates and time lag start afresh.
    pub(crate) fn resumed(settings: Settings, previous: Snapshot, now: Instant) -> Self {
        let mut state = State::new(settings);
        state.phases = Phases::resumed(previous.phase, previous.elapsed_sec, previous.phases, now);
        state.replace_tables(previous.tables, now);
        state.applied = previous.applied_lsn;
        state.confirmed = previous.confirmed_lsn;
        state.latest = previous.latest_lsn.max(previous.applied_lsn);
        state.lag.applied(state.applied);
        state.total_rows = previous.total_rows.max(0);
        state.total_bytes = previous.total_bytes.max(0);
        state.error_count = previous.error_count;
        state.last_error = previous.last_error;
        let skip = previous.errors.len().saturating_sub(ERROR_HISTORY);
        state.errors.extend(previous.errors.into_iter().skip(skip));
        state.verify = previous.verify;
        state
    }

    /// Applies one update at the moment `at`.
    pub(crate) fn apply(&mut self, update: Update, at: &Moment) {
        match update {
            Update::SetPhase(phase) => self.phases.set(phase, at),
            Update::SetTables(tables) => self.replace_tables(tables, at.instant),
            Update::TableStarted(key) => {
                if self
                    .update_table(&key, "table_started", |t, _| t.started(at))
                    .is_some()
                {
                    // The copy rate counts from when copying began.
                    self.copy_rate.add(at.instant, 0, 0);
                }
            }
            Update::TableProgress { table, rows, bytes } => {
                let progressed = |t: &mut Table, flight| t.progressed(rows, bytes, at, flight);
                if let Some((rows, bytes)) =
                    self.update_table(&table, "update_table_progress", progressed)
                {
                    self.count_copied(at.instant, rows, bytes);
                }
            }
            Update::TableDone { table, rows } => {
                if let Some(rows) = self.update_table(&table, "table_done", |t, _| t.done(rows, at))
                {
                    self.count_copied(at.instant, rows, 0);
                }
            }
            Update::TableStreaming(key) => {
                self.update_table(&key, "table_streaming", |t, _| t.streaming(at));
            }
            Update::Applied { lsn, rows, bytes } => self.applied(lsn, rows, bytes, at.instant),
            Update::ConfirmedLsn(lsn) => {
                self.confirmed = never_backwards("confirmed", self.confirmed, lsn);
            }
            Update::LatestLsn(lsn) => {
                self.latest = never_backwards("latest", self.latest, lsn);
                self.lag.record_latest(self.latest, at.instant);
            }
            Update::TableChanges { table, changes } => {
                if let Some(table) = self.table_mut(&table, "add_table_changes") {
                    table.changes_applied(changes);
                }
            }
            Update::Slot(slot) => {
                self.outlook.slot(self.slot.as_ref(), &slot, at.instant);
                self.slot = Some(*slot);
            }
            Update::Apply(apply) => self.apply = Some(apply),
            Update::Cutover(mut cutover) => {
                // Ready means no blocker, whatever the writer said.
                cutover.ready = cutover.blockers.is_empty();
                self.cutover = Some(Verdict::Given(*cutover));
            }
            Update::Checks(checks) => {
                let (checks, limits) = *checks;
                self.cutover = Some(Verdict::Derived { checks, limits });
            }
            Update::Verify(progress) => self.verify = Some(*progress),
            Update::CopyWorkers(workers) => self.concurrency.said(workers),
            Update::Alerts(alerts) => {
                (self.alerts, self.notifications_failed) = *alerts;
            }
            Update::Error(message) => self.error(&message, at),
            Update::Log(entry) => self.log(*entry),
        }
    }

    /// The state as published at `at`.
    pub(crate) fn snapshot(&self, at: &Moment, logs_dropped: u64) -> Snapshot {
        let now = at.instant;
        let forecast = eta::copy_forecast(&self.tables, now, &self.concurrency);
        let tables: Vec<TableProgress> = self
            .tables
            .iter()
            .zip(forecast.tables)
            .map(|(table, eta)| {
                let mut view = table.view(now);
                view.eta_sec = eta
                    .and_then(|e| e.seconds)
                    .filter(|_| view.status == TableStatus::Copying);
                view.eta = eta;
                view
            })
            .collect();
        let tables_copied = tables.iter().filter(|t| t.status.is_copied()).count();
        let lag_bytes = lag(self.applied, self.latest);
        let latency = self.lag.latency(now);
        let applied = self.applied_rate.rate(now);
        let copy = self.copy_rate.rate(now);
        let mut snapshot = Snapshot {
            timestamp: at.wall,
            phase: self.phases.current().clone(),
            elapsed_sec: self.phases.elapsed(now),
            applied_lsn: self.applied,
            confirmed_lsn: self.confirmed,
            lag_bytes,
            lag_formatted: format_lag(lag_bytes, latency),
            tables_total: tables.len(),
            tables_copied,
            eta_sec: forecast.overall.and_then(|eta| eta.seconds),
            eta: forecast.overall,
            copy_workers: self.concurrency.workers_said(),
            catch_up: (*self.phases.current() == Phase::Streaming)
                .then(|| self.outlook.catch_up(now, lag_bytes)),
            tables,
            rows_per_sec: non_negative(applied.rows_per_sec),
            bytes_per_sec: non_negative(applied.bytes_per_sec),
            total_rows: self.total_rows,
            total_bytes: self.total_bytes,
            error_count: self.error_count,
            last_error: self.last_error.clone(),
            latest_lsn: self.latest,
            lag_seconds: latency.as_secs_f64(),
            caught_up: self.applied >= self.latest,
            copy_rows_per_sec: non_negative(copy.rows_per_sec),
            copy_bytes_per_sec: non_negative(copy.bytes_per_sec),
            phases: self.phases.spans(now),
            errors: self.errors.iter().cloned().collect(),
            logs_dropped,
            stale: false,
            slot: self.slot.clone().map(|mut slot| {
                slot.exhausted_in_sec = self.outlook.exhausted_in(&slot, now);
                slot
            }),
            apply: self.apply.clone(),
            cutover: None,
            alerts: self.alerts.clone(),
            notifications_failed: self.notifications_failed,
            verify: self.verify.clone(),
        };
        snapshot.cutover = match &self.cutover {
            None => None,
            Some(Verdict::Given(cutover)) => Some(cutover.clone()),
            Some(Verdict::Derived { checks, limits }) => {
                Some(cutover::verdict(&snapshot, limits, checks, at.wall))
            }
        };
        snapshot
    }

    /// Notes how many tables are in flight at `now`, before a snapshot is
    /// published: the forecast learns from it how the copy's throughput
    /// shares out.
    pub(crate) fn observe(&mut self, now: Instant) {
        let in_flight = self.tables.iter().filter(|t| t.in_flight()).count();
        self.concurrency.observe(now, in_flight);
        if *self.phases.current() == Phase::Streaming {
            self.outlook.lag(now, lag(self.applied, self.latest));
        }
    }

    /// `rows` and `bytes` more copied at `now`.
    fn count_copied(&mut self, now: Instant, rows: u64, bytes: u64) {
        self.copy_rate.add(now, rows, bytes);
        self.concurrency.copied(now, rows, bytes);
    }

    /// The log ring, oldest first.
    pub(crate) fn logs(&self) -> &LogRing {
        &self.logs
    }

    /// Memory held by the throughput windows and the lag samples.
    #[cfg(test)]
    pub(crate) fn window_memory_bytes(&self) -> usize {
        self.applied_rate.memory_bytes() + self.copy_rate.memory_bytes() + self.lag.memory_bytes()
    }

    /// Replaces the table list, keeping the listing's order. A table listed
    /// again as pending with nothing copied keeps the progress already known
    /// for it (a restarted pipeline lists every table afresh); duplicates
    /// keep the first.
    fn replace_tables(&mut self, listed: Vec<TableProgress>, now: Instant) {
        let old_index = std::mem::take(&mut self.index);
        let mut old: Vec<Option<Table>> = std::mem::take(&mut self.tables)
            .into_iter()
            .map(Some)
            .collect();
        for progress in listed {
            let key = TableName::new(&progress.schema, &progress.name);
            if self.index.contains_key(&key) {
                tracing::debug!(table = %key, "duplicate table in set_tables ignored");
                continue;
            }
            let fresh = progress.status == TableStatus::Pending
                && progress.rows_copied <= 0
                && progress.bytes_copied <= 0;
            let previous = old_index.get(&key).and_then(|&i| old.get_mut(i)?.take());
            let table = match previous {
                Some(mut previous) if fresh => {
                    previous.update_estimates(progress.rows_total, progress.size_bytes);
                    previous
                }
                _ => Table::listed(progress, self.settings.rate_window, now),
            };
            self.index.insert(key, self.tables.len());
            self.tables.push(table);
        }
        self.concurrency.flight_changed();
    }

    /// Applies `change` to the table `key` with the copy's flight (see
    /// [`eta::Concurrency::flight`]): a table that starts or stops copying
    /// changes what the others share the copy with.
    fn update_table<R>(
        &mut self,
        key: &TableName,
        event: &'static str,
        change: impl FnOnce(&mut Table, u64) -> R,
    ) -> Option<R> {
        let flight = self.concurrency.flight();
        let table = self.table_mut(key, event)?;
        let was = table.in_flight();
        let result = change(table, flight);
        if table.in_flight() != was {
            self.concurrency.flight_changed();
        }
        Some(result)
    }

    fn table_mut(&mut self, key: &TableName, event: &'static str) -> Option<&mut Table> {
        match self.index.get(key) {
            Some(&i) => self.tables.get_mut(i),
            None => {
                tracing::debug!(table = %key, event, "event for an unknown table ignored");
                None
            }
        }
    }

    fn applied(&mut self, lsn: Lsn, rows: i64, bytes: i64, now: Instant) {
        self.applied = never_backwards("applied", self.applied, lsn);
        self.lag.applied(self.applied);
        let (rows, bytes) = (rows.max(0), bytes.max(0));
        self.total_rows = self.total_rows.saturating_add(rows);
        self.total_bytes = self.total_bytes.saturating_add(bytes);
        self.applied_rate.add(now, rows as u64, bytes as u64);
    }

    fn error(&mut self, message: &str, at: &Moment) {
        let message = truncated(redact(message).into_owned());
        self.error_count = self.error_count.saturating_add(1);
        self.last_error.clone_from(&message);
        if self.errors.len() == ERROR_HISTORY {
            self.errors.pop_front();
        }
        self.errors.push_back(ErrorEntry {
            time: at.wall,
            phase: self.phases.current().clone(),
            message,
        });
    }

    fn log(&mut self, mut entry: LogEntry) {
        entry.message = truncated(redact(&entry.message).into_owned());
        for (key, value) in entry.fields.iter_mut() {
            if is_secret_key(key) {
                MASK.clone_into(value);
            } else if let std::borrow::Cow::Owned(masked) = redact(value) {
                *value = masked;
            }
            let long = std::mem::take(value);
            *value = truncated(long);
        }
        self.logs.push(entry);
    }
}

/// `new` when it moves `current` forward; otherwise `current` (logged).
fn never_backwards(which: &'static str, current: Lsn, new: Lsn) -> Lsn {
    if new < current {
        tracing::debug!(%current, %new, "{which} LSN moved backwards; ignored");
        current
    } else {
        new
    }
}

/// `text` cut to [`MAX_MESSAGE_BYTES`] on a character boundary.
fn truncated(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
