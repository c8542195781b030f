//! The migration's state as a plain synchronous value: updates go in with the
//! moment they are applied, snapshots come out. No runtime, no locks, so every
//! rule is unit-tested by feeding it updates.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::clock::{At, Stopwatch, known, non_negative};
use super::event::Update;
use super::log_ring::LogRing;
use super::table::Table;
use crate::lag::LagTracker;
use crate::lsn::{Lsn, format_lag, lag};
use crate::model::{
    ErrorEntry, LogEntry, Phase, PhaseSpan, Snapshot, TableName, TableProgress, TableStatus,
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
pub(crate) struct Limits {
    pub(crate) rate_window: Duration,
    pub(crate) log_capacity: usize,
}

#[derive(Debug)]
pub(crate) struct State {
    limits: Limits,
    phase: Phase,
    /// Phase history; the last span is open unless the phase is `done`.
    phases: Vec<PhaseRecord>,
    /// Time since the first phase was set; stopped at `done`.
    elapsed: Stopwatch,
    /// Set once the pipeline has set a phase (or a run was resumed).
    started: bool,
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
}

#[derive(Debug, Clone)]
struct PhaseRecord {
    phase: Phase,
    started_at: time::OffsetDateTime,
    ended_at: Option<time::OffsetDateTime>,
    duration: Stopwatch,
}

impl State {
    pub(crate) fn new(limits: Limits) -> Self {
        State {
            limits,
            phase: Phase::Idle,
            phases: Vec::new(),
            elapsed: Stopwatch::default(),
            started: false,
            tables: Vec::new(),
            index: HashMap::new(),
            applied: Lsn(0),
            confirmed: Lsn(0),
            latest: Lsn(0),
            lag: LagTracker::new(),
            applied_rate: RateWindow::new(limits.rate_window, RATE_BUCKETS),
            copy_rate: RateWindow::new(limits.rate_window, RATE_BUCKETS),
            total_rows: 0,
            total_bytes: 0,
            error_count: 0,
            last_error: String::new(),
            errors: VecDeque::with_capacity(ERROR_HISTORY),
            logs: LogRing::new(limits.log_capacity),
        }
    }

    /// State continuing from a previous run's snapshot: phase and its history,
    /// tables and their statuses, totals, errors, LSNs and elapsed time.
    /// Rates and time lag start afresh.
    pub(crate) fn resumed(limits: Limits, previous: Snapshot, now: Instant) -> Self {
        let mut state = State::new(limits);
        let running = !matches!(previous.phase, Phase::Idle | Phase::Done);
        state.started = previous.phase != Phase::Idle || previous.elapsed_sec > 0.0;
        state.elapsed = Stopwatch::resumed(previous.elapsed_sec, running, now);
        let open = previous.phases.len().saturating_sub(1);
        state.phases = previous
            .phases
            .into_iter()
            .enumerate()
            .map(|(i, span)| {
                let still_open = i == open && span.ended_at.is_none() && running;
                PhaseRecord {
                    duration: Stopwatch::resumed(span.duration_sec, still_open, now),
                    phase: span.phase,
                    started_at: span.started_at,
                    ended_at: span.ended_at,
                }
            })
            .collect();
        state.phase = previous.phase;
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
        state
    }

    /// Applies one update at the moment `at`.
    pub(crate) fn apply(&mut self, update: Update, at: &At) {
        match update {
            Update::SetPhase(phase) => self.set_phase(phase, at),
            Update::SetTables(tables) => self.replace_tables(tables, at.instant),
            Update::TableStarted(key) => {
                if let Some(table) = self.table_mut(&key, "table_started") {
                    table.started(at);
                    // The copy rate counts from when copying began.
                    self.copy_rate.add(at.instant, 0, 0);
                }
            }
            Update::TableProgress { table, rows, bytes } => {
                if let Some(table) = self.table_mut(&table, "update_table_progress") {
                    let (rows, bytes) = table.progressed(rows, bytes, at);
                    self.copy_rate.add(at.instant, rows, bytes);
                }
            }
            Update::TableDone { table, rows } => {
                if let Some(table) = self.table_mut(&table, "table_done") {
                    let rows = table.done(rows, at);
                    self.copy_rate.add(at.instant, rows, 0);
                }
            }
            Update::TableStreaming(key) => {
                if let Some(table) = self.table_mut(&key, "table_streaming") {
                    table.streaming(at);
                }
            }
            Update::Applied { lsn, rows, bytes } => self.applied(lsn, rows, bytes, at.instant),
            Update::ConfirmedLsn(lsn) => {
                self.confirmed = forward("confirmed", self.confirmed, lsn);
            }
            Update::LatestLsn(lsn) => {
                self.latest = forward("latest", self.latest, lsn);
                self.lag.record_latest(self.latest, at.instant);
            }
            Update::Error(message) => self.error(&message, at),
            Update::Log(entry) => self.log(*entry),
        }
    }

    /// The state as published at `at`.
    pub(crate) fn snapshot(&self, at: &At, logs_dropped: u64) -> Snapshot {
        let now = at.instant;
        let tables: Vec<TableProgress> = self.tables.iter().map(|t| t.view(now)).collect();
        let tables_copied = tables.iter().filter(|t| t.status.is_copied()).count();
        let lag_bytes = lag(self.applied, self.latest);
        let latency = self.lag.latency(now);
        let applied = self.applied_rate.rate(now);
        let copy = self.copy_rate.rate(now);
        Snapshot {
            timestamp: at.wall,
            phase: self.phase.clone(),
            elapsed_sec: self.elapsed.seconds(now),
            applied_lsn: self.applied,
            confirmed_lsn: self.confirmed,
            lag_bytes,
            lag_formatted: format_lag(lag_bytes, latency),
            tables_total: tables.len(),
            tables_copied,
            eta_sec: overall_eta(&tables, copy.rows_per_sec, copy.bytes_per_sec),
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
            phases: self.phases.iter().map(|p| p.view(now)).collect(),
            errors: self.errors.iter().cloned().collect(),
            logs_dropped,
            stale: false,
        }
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

    fn set_phase(&mut self, phase: Phase, at: &At) {
        if !self.started {
            self.started = true;
            self.elapsed = Stopwatch::started(at.instant);
        }
        if !self.phases.is_empty() && phase == self.phase {
            return;
        }
        if let Some(open) = self.phases.last_mut().filter(|p| p.ended_at.is_none()) {
            open.ended_at = Some(at.wall);
            open.duration.stop(at.instant);
        }
        let done = phase == Phase::Done;
        if done {
            self.elapsed.stop(at.instant);
        } else {
            self.elapsed.start(at.instant);
        }
        self.phases.push(PhaseRecord {
            phase: phase.clone(),
            started_at: at.wall,
            // `done` is a terminal marker: it has no duration of its own.
            ended_at: done.then_some(at.wall),
            duration: Stopwatch::resumed(0.0, !done, at.instant),
        });
        self.phase = phase;
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
                _ => Table::listed(progress, self.limits.rate_window, now),
            };
            self.index.insert(key, self.tables.len());
            self.tables.push(table);
        }
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
        self.applied = forward("applied", self.applied, lsn);
        self.lag.applied(self.applied);
        let (rows, bytes) = (rows.max(0), bytes.max(0));
        self.total_rows = self.total_rows.saturating_add(rows);
        self.total_bytes = self.total_bytes.saturating_add(bytes);
        self.applied_rate.add(now, rows as u64, bytes as u64);
    }

    fn error(&mut self, message: &str, at: &At) {
        let message = bounded(redact(message).into_owned());
        self.error_count = self.error_count.saturating_add(1);
        self.last_error.clone_from(&message);
        if self.errors.len() == ERROR_HISTORY {
            self.errors.pop_front();
        }
        self.errors.push_back(ErrorEntry {
            time: at.wall,
            phase: self.phase.clone(),
            message,
        });
    }

    fn log(&mut self, mut entry: LogEntry) {
        entry.message = bounded(redact(&entry.message).into_owned());
        for (key, value) in entry.fields.iter_mut() {
            if is_secret_key(key) {
                MASK.clone_into(value);
            } else if let std::borrow::Cow::Owned(masked) = redact(value) {
                *value = masked;
            }
            let long = std::mem::take(value);
            *value = bounded(long);
        }
        self.logs.push(entry);
    }
}

impl PhaseRecord {
    fn view(&self, now: Instant) -> PhaseSpan {
        PhaseSpan {
            phase: self.phase.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            duration_sec: self.duration.seconds(now),
        }
    }
}

/// `new` when it moves `current` forward; otherwise `current` (logged).
fn forward(which: &'static str, current: Lsn, new: Lsn) -> Lsn {
    if new < current {
        tracing::debug!(%current, %new, "{which} LSN moved backwards; ignored");
        current
    } else {
        new
    }
}

/// `text` cut to [`MAX_MESSAGE_BYTES`] on a character boundary.
fn bounded(mut text: String) -> String {
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

/// Seconds until every table is copied: remaining bytes of unfinished tables
/// over the recent copy byte rate, or remaining rows over the row rate when
/// no byte figures are known. `Some(0)` once every table is copied.
fn overall_eta(tables: &[TableProgress], rows_per_sec: f64, bytes_per_sec: f64) -> Option<f64> {
    if tables.is_empty() {
        return None;
    }
    let (mut rows_left, mut bytes_left, mut unfinished) = (0i64, 0i64, false);
    for table in tables.iter().filter(|t| !t.status.is_copied()) {
        unfinished = true;
        if table.size_bytes > 0 {
            bytes_left = bytes_left.saturating_add((table.size_bytes - table.bytes_copied).max(0));
        }
        if table.rows_total > 0 {
            rows_left = rows_left.saturating_add((table.rows_total - table.rows_copied).max(0));
        }
    }
    if !unfinished {
        return Some(0.0);
    }
    if bytes_left > 0 && bytes_per_sec > 0.0 {
        known(bytes_left as f64 / bytes_per_sec)
    } else if rows_left > 0 && rows_per_sec > 0.0 {
        known(rows_left as f64 / rows_per_sec)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogLevel;
    use time::OffsetDateTime;

    const LIMITS: Limits = Limits {
        rate_window: Duration::from_secs(60),
        log_capacity: 500,
    };

    /// A clock for tests: instants and wall times that move together.
    struct Clock {
        t0: Instant,
    }

    impl Clock {
        fn new() -> Self {
            Clock { t0: Instant::now() }
        }
        fn at(&self, secs: f64) -> At {
            let d = Duration::from_secs_f64(secs);
            At {
                instant: self.t0 + d,
                wall: OffsetDateTime::UNIX_EPOCH + d,
            }
        }
    }

    fn key(name: &str) -> TableName {
        TableName::new("public", name)
    }

    fn state_with_tables(clock: &Clock) -> State {
        let mut state = State::new(LIMITS);
        state.apply(
            Update::SetTables(vec![
                TableProgress::new("public", "users", 1000, 8192),
                TableProgress::new("public", "orders", 2000, 16384),
                TableProgress::new("public", "events", -1, 4096),
            ]),
            &clock.at(0.0),
        );
        state
    }

    #[test]
    fn phases_are_recorded_with_durations() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        assert_eq!(state.snapshot(&clock.at(0.0), 0).phase, Phase::Idle);
        state.apply(Update::SetPhase(Phase::Connecting), &clock.at(1.0));
        state.apply(Update::SetPhase(Phase::Copy), &clock.at(3.0));
        state.apply(Update::SetPhase(Phase::Copy), &clock.at(4.0));
        let snap = state.snapshot(&clock.at(10.0), 0);
        assert_eq!(snap.phase, Phase::Copy);
        assert_eq!(snap.elapsed_sec, 9.0);
        let phases: Vec<_> = snap
            .phases
            .iter()
            .map(|p| (p.phase.clone(), p.duration_sec, p.ended_at.is_some()))
            .collect();
        assert_eq!(
            phases,
            [(Phase::Connecting, 2.0, true), (Phase::Copy, 7.0, false)]
        );
    }

    #[test]
    fn done_freezes_elapsed_and_closes_the_history() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        state.apply(Update::SetPhase(Phase::Streaming), &clock.at(0.0));
        state.apply(Update::SetPhase(Phase::Done), &clock.at(100.0));
        let snap = state.snapshot(&clock.at(5000.0), 0);
        assert_eq!(snap.elapsed_sec, 100.0);
        assert!(snap.phases.iter().all(|p| p.ended_at.is_some()));
        assert_eq!(snap.phases[0].duration_sec, 100.0);
        assert_eq!(snap.phases[1].duration_sec, 0.0);
    }

    #[test]
    fn table_lifecycle_counts_copied_tables() {
        let clock = Clock::new();
        let mut state = state_with_tables(&clock);
        state.apply(Update::TableStarted(key("users")), &clock.at(1.0));
        state.apply(
            Update::TableProgress {
                table: key("users"),
                rows: 500,
                bytes: 4096,
            },
            &clock.at(2.0),
        );
        let snap = state.snapshot(&clock.at(2.0), 0);
        assert_eq!(snap.tables[0].status, TableStatus::Copying);
        assert_eq!(snap.tables[0].percent, 50.0);
        assert_eq!(snap.tables_copied, 0);
        state.apply(
            Update::TableDone {
                table: key("users"),
                rows: 1000,
            },
            &clock.at(3.0),
        );
        state.apply(Update::TableStreaming(key("orders")), &clock.at(3.0));
        let snap = state.snapshot(&clock.at(4.0), 0);
        assert_eq!(snap.tables_total, 3);
        assert_eq!(snap.tables_copied, 2);
        assert_eq!(snap.tables[0].rows_copied, 1000);
        assert_eq!(snap.tables[0].percent, 100.0);
        assert_eq!(snap.tables[0].elapsed_sec, 2.0);
        assert_eq!(snap.tables[1].status, TableStatus::Streaming);
        assert_eq!(snap.tables[1].percent, 100.0);
        assert_eq!(snap.tables[0].last_progress_at, Some(clock.at(3.0).wall));
    }

    #[test]
    fn events_for_unknown_tables_are_ignored() {
        let clock = Clock::new();
        let mut state = state_with_tables(&clock);
        let before = state.snapshot(&clock.at(1.0), 0);
        for update in [
            Update::TableStarted(key("nope")),
            Update::TableProgress {
                table: key("nope"),
                rows: 5,
                bytes: 5,
            },
            Update::TableDone {
                table: TableName::new("other", "users"),
                rows: 5,
            },
            Update::TableStreaming(key("nope")),
        ] {
            state.apply(update, &clock.at(1.0));
        }
        assert_eq!(state.snapshot(&clock.at(1.0), 0), before);
    }

    #[test]
    fn duplicate_tables_keep_the_first_and_order_is_kept() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        state.apply(
            Update::SetTables(vec![
                TableProgress::new("s", "b", 1, 0),
                TableProgress::new("s", "a", 2, 0),
                TableProgress::new("s", "b", 3, 0),
            ]),
            &clock.at(0.0),
        );
        let snap = state.snapshot(&clock.at(0.0), 0);
        let names: Vec<_> = snap
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.rows_total))
            .collect();
        assert_eq!(names, [("b", 1), ("a", 2)]);
    }

    #[test]
    fn listing_tables_again_keeps_known_progress() {
        let clock = Clock::new();
        let mut state = state_with_tables(&clock);
        state.apply(
            Update::TableDone {
                table: key("users"),
                rows: 990,
            },
            &clock.at(1.0),
        );
        state.apply(
            Update::SetTables(vec![
                TableProgress::new("public", "users", 1200, 0),
                TableProgress::new("public", "new", 10, 0),
            ]),
            &clock.at(2.0),
        );
        let snap = state.snapshot(&clock.at(2.0), 0);
        assert_eq!(snap.tables_total, 2);
        assert_eq!(snap.tables[0].status, TableStatus::Copied);
        assert_eq!(snap.tables[0].rows_copied, 990);
        assert_eq!(snap.tables[0].rows_total, 1200);
        assert_eq!(snap.tables[0].size_bytes, 8192);
        assert_eq!(snap.tables[1].status, TableStatus::Pending);
    }

    #[test]
    fn lsns_never_move_backwards() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        let at = clock.at(0.0);
        state.apply(
            Update::Applied {
                lsn: Lsn(500),
                rows: 1,
                bytes: 1,
            },
            &at,
        );
        state.apply(
            Update::Applied {
                lsn: Lsn(100),
                rows: 1,
                bytes: 1,
            },
            &at,
        );
        state.apply(Update::ConfirmedLsn(Lsn(400)), &at);
        state.apply(Update::ConfirmedLsn(Lsn(300)), &at);
        state.apply(Update::LatestLsn(Lsn(900)), &at);
        state.apply(Update::LatestLsn(Lsn(800)), &at);
        let snap = state.snapshot(&at, 0);
        assert_eq!(snap.applied_lsn, Lsn(500));
        assert_eq!(snap.confirmed_lsn, Lsn(400));
        assert_eq!(snap.latest_lsn, Lsn(900));
        assert_eq!(snap.lag_bytes, 400);
        assert!(!snap.caught_up);
        // The rows of a batch with an old LSN still count.
        assert_eq!(snap.total_rows, 2);
    }

    #[test]
    fn time_lag_is_the_wait_of_the_oldest_unapplied_wal() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        state.apply(Update::LatestLsn(Lsn(1000)), &clock.at(0.0));
        state.apply(Update::LatestLsn(Lsn(2000)), &clock.at(1.0));
        let snap = state.snapshot(&clock.at(1.5), 0);
        assert_eq!(snap.lag_seconds, 1.5);
        assert_eq!(snap.lag_formatted, "1.95 KB (latency: 1.5s)");
        state.apply(
            Update::Applied {
                lsn: Lsn(1000),
                rows: 0,
                bytes: 0,
            },
            &clock.at(2.0),
        );
        let snap = state.snapshot(&clock.at(2.0), 0);
        assert_eq!(snap.lag_seconds, 1.0);
        assert_eq!(snap.lag_bytes, 1000);
        state.apply(
            Update::Applied {
                lsn: Lsn(2000),
                rows: 0,
                bytes: 0,
            },
            &clock.at(3.0),
        );
        let snap = state.snapshot(&clock.at(3.0), 0);
        assert_eq!(
            (snap.lag_seconds, snap.lag_bytes, snap.caught_up),
            (0.0, 0, true)
        );
        assert_eq!(snap.lag_formatted, "0 B (latency: 0s)");
    }

    #[test]
    fn totals_and_throughput_come_from_applied_batches() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        for i in 0..10 {
            state.apply(
                Update::Applied {
                    lsn: Lsn(i),
                    rows: 100,
                    bytes: 1000,
                },
                &clock.at(f64::from(i as u32)),
            );
        }
        state.apply(
            Update::Applied {
                lsn: Lsn(10),
                rows: -5,
                bytes: -5,
            },
            &clock.at(10.0),
        );
        let snap = state.snapshot(&clock.at(10.0), 0);
        assert_eq!((snap.total_rows, snap.total_bytes), (1000, 10_000));
        assert_eq!(snap.rows_per_sec, 100.0);
        assert_eq!(snap.bytes_per_sec, 1000.0);
        let later = state.snapshot(&clock.at(75.0), 0);
        assert_eq!((later.rows_per_sec, later.total_rows), (0.0, 1000));
    }

    #[test]
    fn errors_are_counted_masked_and_bounded() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        state.apply(Update::SetPhase(Phase::Copy), &clock.at(0.0));
        for i in 0..150 {
            state.apply(
                Update::Error(format!("error {i} at postgres://u:secret@h")),
                &clock.at(1.0),
            );
        }
        let snap = state.snapshot(&clock.at(2.0), 0);
        assert_eq!(snap.error_count, 150);
        assert_eq!(snap.errors.len(), ERROR_HISTORY);
        assert!(snap.errors[0].message.starts_with("error 50 "));
        assert_eq!(snap.errors[0].phase, Phase::Copy);
        assert!(snap.last_error.starts_with("error 149 "));
        assert!(!snap.last_error.contains("secret"));
        let json = serde_json::to_string(&snap).unwrap();
        assert!(!json.contains("secret"));
    }

    #[test]
    fn huge_messages_are_cut_on_a_character_boundary() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        state.apply(Update::Error("é".repeat(10_000)), &clock.at(0.0));
        let snap = state.snapshot(&clock.at(0.0), 0);
        assert!(snap.last_error.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(snap.last_error.ends_with('…'));
    }

    #[test]
    fn logs_keep_the_newest_entries_masked() {
        let clock = Clock::new();
        let mut state = State::new(Limits {
            log_capacity: 3,
            ..LIMITS
        });
        for i in 0..5 {
            state.apply(
                Update::Log(Box::new(
                    LogEntry::new(LogLevel::Info, format!("line {i}"))
                        .with_field("dsn", "host=h password=pw"),
                )),
                &clock.at(0.0),
            );
        }
        let messages: Vec<_> = state.logs().iter().map(|e| e.message.clone()).collect();
        assert_eq!(messages, ["line 2", "line 3", "line 4"]);
        assert!(
            state
                .logs()
                .iter()
                .all(|e| e.fields["dsn"] == "host=h password=********")
        );
    }

    #[test]
    fn log_fields_named_for_secrets_are_masked_whatever_their_value() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        let entry = LogEntry::new(LogLevel::Info, "connecting")
            .with_field("password", "hunter2")
            .with_field("sslPassword", "a b")
            .with_field("api_token", "t0k3n")
            .with_field("table", "public.users");
        state.apply(Update::Log(Box::new(entry)), &clock.at(0.0));
        let fields = &state.logs().iter().next().unwrap().fields;
        assert_eq!(fields["password"], MASK);
        assert_eq!(fields["sslPassword"], MASK);
        assert_eq!(fields["api_token"], MASK);
        assert_eq!(fields["table"], "public.users");
    }

    #[test]
    fn overall_eta_uses_remaining_bytes_over_recent_copy_rate() {
        let clock = Clock::new();
        let mut state = state_with_tables(&clock);
        assert_eq!(state.snapshot(&clock.at(0.0), 0).eta_sec, None);
        state.apply(Update::TableStarted(key("users")), &clock.at(0.0));
        state.apply(
            Update::TableProgress {
                table: key("users"),
                rows: 500,
                bytes: 4096,
            },
            &clock.at(4.0),
        );
        // 4096 bytes in 4 s = 1024 B/s; 28672 − 4096 = 24576 bytes left.
        let snap = state.snapshot(&clock.at(4.0), 0);
        assert_eq!(snap.copy_bytes_per_sec, 1024.0);
        assert_eq!(snap.eta_sec, Some(24.0));
        for name in ["users", "orders", "events"] {
            state.apply(
                Update::TableDone {
                    table: key(name),
                    rows: 1,
                },
                &clock.at(5.0),
            );
        }
        assert_eq!(state.snapshot(&clock.at(5.0), 0).eta_sec, Some(0.0));
    }

    #[test]
    fn no_snapshot_value_is_nan_or_negative() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        state.apply(
            Update::SetTables(vec![
                TableProgress::new("s", "zero", 0, 0),
                TableProgress::new("s", "neg", i64::MIN, i64::MIN),
                TableProgress::new("s", "max", i64::MAX, i64::MAX),
            ]),
            &clock.at(0.0),
        );
        for name in ["zero", "neg", "max"] {
            state.apply(
                Update::TableStarted(TableName::new("s", name)),
                &clock.at(0.0),
            );
            state.apply(
                Update::TableProgress {
                    table: TableName::new("s", name),
                    rows: i64::MAX,
                    bytes: i64::MIN,
                },
                &clock.at(0.0),
            );
        }
        state.apply(
            Update::Applied {
                lsn: Lsn(1),
                rows: i64::MAX,
                bytes: i64::MAX,
            },
            &clock.at(0.0),
        );
        state.apply(
            Update::Applied {
                lsn: Lsn(1),
                rows: i64::MAX,
                bytes: i64::MAX,
            },
            &clock.at(0.0),
        );
        let snap = state.snapshot(&clock.at(0.0), 0);
        let json = serde_json::to_string(&snap).unwrap();
        assert!(!json.contains("null") && !json.contains("NaN"), "{json}");
        for t in &snap.tables {
            assert!((0.0..=100.0).contains(&t.percent), "{t:?}");
            assert!(t.eta_sec.is_none_or(|e| e.is_finite() && e >= 0.0), "{t:?}");
        }
        assert_eq!(snap.total_rows, i64::MAX);
    }

    #[test]
    fn resume_continues_from_a_previous_snapshot() {
        let clock = Clock::new();
        let mut state = state_with_tables(&clock);
        state.apply(Update::SetPhase(Phase::Copy), &clock.at(0.0));
        state.apply(Update::TableStarted(key("users")), &clock.at(0.0));
        state.apply(
            Update::TableDone {
                table: key("users"),
                rows: 1000,
            },
            &clock.at(10.0),
        );
        state.apply(Update::TableStarted(key("orders")), &clock.at(10.0));
        state.apply(
            Update::TableProgress {
                table: key("orders"),
                rows: 100,
                bytes: 10,
            },
            &clock.at(20.0),
        );
        state.apply(
            Update::Applied {
                lsn: Lsn(77),
                rows: 5,
                bytes: 6,
            },
            &clock.at(20.0),
        );
        state.apply(Update::Error("boom".into()), &clock.at(20.0));
        let before = state.snapshot(&clock.at(30.0), 0);
        let json = serde_json::to_string(&before).unwrap();

        let restart = Clock::new();
        let resumed = State::resumed(
            LIMITS,
            serde_json::from_str(&json).unwrap(),
            restart.at(0.0).instant,
        );
        let after = resumed.snapshot(&restart.at(5.0), 0);
        assert_eq!(after.phase, Phase::Copy);
        assert_eq!(after.elapsed_sec, 35.0);
        assert_eq!(after.tables[0].status, TableStatus::Copied);
        assert_eq!(after.tables[1].status, TableStatus::Copying);
        assert_eq!(after.tables[1].rows_copied, 100);
        assert_eq!(after.tables[1].elapsed_sec, 25.0);
        assert_eq!((after.total_rows, after.total_bytes), (5, 6));
        assert_eq!((after.error_count, after.last_error.as_str()), (1, "boom"));
        assert_eq!(after.errors.len(), 1);
        assert_eq!(after.applied_lsn, Lsn(77));
        assert_eq!(after.phases.len(), 1);
        assert_eq!(after.phases[0].duration_sec, 35.0);
    }

    #[test]
    fn window_memory_is_constant_under_millions_of_events() {
        let clock = Clock::new();
        let mut state = State::new(LIMITS);
        let before = state.window_memory_bytes();
        for i in 0..2_000_000u64 {
            let at = clock.at(i as f64 * 1e-5);
            state.apply(Update::LatestLsn(Lsn(i * 2 + 2)), &at);
            state.apply(
                Update::Applied {
                    lsn: Lsn(i),
                    rows: 1,
                    bytes: 100,
                },
                &at,
            );
        }
        assert_eq!(state.window_memory_bytes(), before);
        assert!(before <= 64 * 1024, "{before}");
    }
}
