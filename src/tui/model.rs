//! The terminal dashboard's state: the newest snapshot, the link to its
//! source, the sparkline history and what the keys changed. Pure, so every
//! key is unit-tested without a terminal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::time::Instant;

use crate::history::HistoryPoint;
use crate::model::{LogEntry, Snapshot, TableProgress, TableStatus};

/// Points kept for each sparkline.
pub const HISTORY: usize = 60;
/// Snapshots closer together than this (by their own timestamps) add one
/// sparkline point: a collector publishes up to 20 times a second under
/// load but ticks twice a second, and 60 points should span the same time
/// whatever the source.
pub const POINT_SPACING: Duration = Duration::from_millis(450);
/// No snapshot for this long from a live source means the data is stale.
use crate::model::STALE_AFTER;

/// The state of the connection to the snapshot source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Receiving snapshots.
    Live,
    /// Connecting for the first time.
    Connecting,
    /// The source went away; trying again.
    Reconnecting {
        /// Time until the next attempt.
        retry_in: Duration,
        /// Why the last attempt failed or the connection ended.
        reason: String,
    },
}

/// Order of the table list; `s` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortMode {
    /// The pipeline's order.
    Original,
    /// Least complete first.
    Progress,
    /// Copying, pending, copied, streaming.
    Status,
    /// Largest first.
    Size,
}

impl SortMode {
    fn next(self) -> Self {
        match self {
            SortMode::Original => SortMode::Progress,
            SortMode::Progress => SortMode::Status,
            SortMode::Status => SortMode::Size,
            SortMode::Size => SortMode::Original,
        }
    }

    /// Its name on the help line.
    pub fn label(self) -> &'static str {
        match self {
            SortMode::Original => "original",
            SortMode::Progress => "progress",
            SortMode::Status => "status",
            SortMode::Size => "size",
        }
    }
}

/// Everything the view draws.
#[derive(Debug)]
pub struct Model {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) link: Link,
    pub(crate) logs: Arc<Vec<LogEntry>>,
    /// When the newest snapshot arrived.
    received_at: Option<Instant>,
    pub(crate) lag_history: VecDeque<u64>,
    pub(crate) rate_history: VecDeque<u64>,
    /// Timestamp of the snapshot behind the newest sparkline point.
    last_point: Option<time::OffsetDateTime>,
    /// Index of the first table shown.
    pub(crate) offset: usize,
    pub(crate) sort: SortMode,
    pub(crate) filter: String,
    /// What the keys do and the screen shows.
    mode: Mode,
    /// Table rows that fit on the screen (for paging); the event loop sets
    /// it from the layout before handing keys over.
    page: usize,
    /// The migration shown, when it is one of several (Esc goes back to
    /// their list instead of quitting).
    pub(crate) migration: Option<String>,
}

/// What the keys do and the screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The table list (the default).
    Tables,
    /// The full-height log.
    Logs,
    /// The cutover verdict's blockers and warnings, in full.
    Cutover,
    /// Data verification: each table not verified, and the rows that differ.
    Verify,
    /// Typing a filter: keys edit it instead of acting.
    Filtering,
    /// The key help, over the tables or the log.
    Help {
        /// Whether the log is under it.
        over_logs: bool,
    },
    /// A quit key was pressed.
    Quit,
    /// Esc in one of several migrations: back to the migration list.
    Back,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// An empty model, connecting.
    pub fn new() -> Self {
        Model {
            snapshot: Arc::new(Snapshot::default()),
            link: Link::Connecting,
            logs: Arc::new(Vec::new()),
            received_at: None,
            lag_history: VecDeque::with_capacity(HISTORY),
            rate_history: VecDeque::with_capacity(HISTORY),
            last_point: None,
            offset: 0,
            sort: SortMode::Original,
            filter: String::new(),
            mode: Mode::Tables,
            page: 10,
            migration: None,
        }
    }

    /// An empty model of migration `id`, one of several: its name is in
    /// the header, and Esc goes back to their list.
    pub fn of_migration(id: &str) -> Self {
        Model {
            migration: Some(id.to_owned()),
            ..Model::new()
        }
    }

    /// Whether Esc asked to go back to the migration list.
    pub fn should_go_back(&self) -> bool {
        self.mode == Mode::Back
    }

    /// A snapshot arrived at `now`: shown, and a point on each sparkline
    /// unless the last point is less than [`POINT_SPACING`] older.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>, now: Instant) {
        let spaced = self
            .last_point
            .is_none_or(|last| snapshot.timestamp - last >= POINT_SPACING);
        if spaced {
            push(&mut self.lag_history, snapshot.lag_bytes);
            push(
                &mut self.rate_history,
                snapshot.rows_per_sec.max(0.0) as u64,
            );
            self.last_point = Some(snapshot.timestamp);
        }
        self.snapshot = snapshot;
        self.received_at = Some(now);
        self.clamp_offset();
    }

    /// The source's recent history: the sparklines start from it, the
    /// points already shown staying the newest.
    pub fn on_history(&mut self, points: &[HistoryPoint]) {
        let room = HISTORY.saturating_sub(self.lag_history.len());
        let older = &points[points.len().saturating_sub(room)..];
        for point in older.iter().rev() {
            self.lag_history.push_front(point.lag_bytes.max(0.0) as u64);
            self.rate_history
                .push_front(point.rows_per_sec.max(0.0) as u64);
        }
    }

    /// The link to the source changed.
    pub fn on_link(&mut self, link: Link) {
        self.link = link;
    }

    /// New log entries.
    pub fn on_logs(&mut self, logs: Arc<Vec<LogEntry>>) {
        self.logs = logs;
    }

    /// The newest snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Whether a quit key was pressed.
    pub fn should_quit(&self) -> bool {
        self.mode == Mode::Quit
    }

    /// What the keys do and the screen shows.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the body shows the full-height log.
    pub fn shows_logs(&self) -> bool {
        matches!(self.mode, Mode::Logs | Mode::Help { over_logs: true })
    }

    /// Whether the body shows the cutover blockers and warnings.
    pub fn shows_cutover(&self) -> bool {
        self.mode == Mode::Cutover
    }

    /// Whether the body shows the verification's findings.
    pub fn shows_verify(&self) -> bool {
        self.mode == Mode::Verify
    }

    /// How many table rows fit on the screen, for paging (see
    /// [`table_rows`](super::table_rows)).
    pub fn set_page(&mut self, rows: usize) {
        self.page = rows.max(1);
        self.clamp_offset();
    }

    /// Whether the data shown is stale at `now`: the source says so, or a
    /// live source has sent nothing for 10 s.
    pub fn is_stale(&self, now: Instant) -> bool {
        self.snapshot.stale
            || (self.link == Link::Live
                && self
                    .received_at
                    .is_some_and(|at| now.saturating_duration_since(at) > STALE_AFTER))
    }

    /// How long since the last snapshot, at `now`.
    pub fn silence(&self, now: Instant) -> Option<Duration> {
        self.received_at.map(|at| now.saturating_duration_since(at))
    }

    /// The tables shown: filtered by name, then sorted.
    pub fn rows(&self) -> Vec<&TableProgress> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&TableProgress> = self
            .snapshot
            .tables
            .iter()
            .filter(|t| needle.is_empty() || t.qualified_name().to_lowercase().contains(&needle))
            .collect();
        match self.sort {
            SortMode::Original => {}
            SortMode::Progress => rows.sort_by(|a, b| a.percent.total_cmp(&b.percent)),
            SortMode::Status => rows.sort_by_key(|t| status_rank(t.status)),
            SortMode::Size => rows.sort_by_key(|t| std::cmp::Reverse(t.size_bytes)),
        }
        rows
    }

    /// Applies a key press.
    pub fn handle_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.mode = Mode::Quit;
            return;
        }
        if self.mode == Mode::Filtering {
            match key.code {
                KeyCode::Enter => self.mode = Mode::Tables,
                KeyCode::Esc => {
                    self.mode = Mode::Tables;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.offset = 0;
            return;
        }
        if let Mode::Help { over_logs } = self.mode {
            // Any key closes the help; q still quits.
            self.mode = if over_logs { Mode::Logs } else { Mode::Tables };
            if key.code != KeyCode::Char('q') {
                return;
            }
        }
        let page = self.page;
        match key.code {
            KeyCode::Esc if self.migration.is_some() => self.mode = Mode::Back,
            KeyCode::Char('q') | KeyCode::Esc => self.mode = Mode::Quit,
            KeyCode::Up => self.offset = self.offset.saturating_sub(1),
            KeyCode::Down => self.offset += 1,
            KeyCode::PageUp => self.offset = self.offset.saturating_sub(page),
            KeyCode::PageDown => self.offset += page,
            KeyCode::Home => self.offset = 0,
            KeyCode::End => self.offset = usize::MAX,
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('/') => {
                self.mode = Mode::Filtering;
                self.filter.clear();
            }
            KeyCode::Char('l') => {
                self.mode = if self.mode == Mode::Logs {
                    Mode::Tables
                } else {
                    Mode::Logs
                };
            }
            KeyCode::Char('c') => {
                self.mode = if self.mode == Mode::Cutover {
                    Mode::Tables
                } else {
                    Mode::Cutover
                };
            }
            KeyCode::Char('v') => {
                self.mode = if self.mode == Mode::Verify {
                    Mode::Tables
                } else {
                    Mode::Verify
                };
            }
            KeyCode::Char('?') => {
                self.mode = Mode::Help {
                    over_logs: self.mode == Mode::Logs,
                }
            }
            _ => {}
        }
        self.clamp_offset();
    }

    /// Keeps the list from scrolling past its end.
    fn clamp_offset(&mut self) {
        let last = self.rows().len().saturating_sub(self.page);
        self.offset = self.offset.min(last);
    }
}

fn push(history: &mut VecDeque<u64>, value: u64) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(value);
}

fn status_rank(status: TableStatus) -> u8 {
    match status {
        TableStatus::Copying => 0,
        TableStatus::Pending => 1,
        TableStatus::Copied => 2,
        TableStatus::Streaming => 3,
        TableStatus::Other(_) => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_fills_the_sparklines_behind_the_live_points() {
        let point = |lag: f64| HistoryPoint {
            timestamp: time::OffsetDateTime::UNIX_EPOCH,
            lag_bytes: lag,
            lag_seconds: 0.0,
            rows_per_sec: 7.0,
            bytes_per_sec: 0.0,
            copy_bytes_per_sec: 0.0,
            tables_copied: 0,
            copy_finish_at: None,
        };
        let mut model = Model::new();
        let live = Snapshot {
            lag_bytes: 999,
            ..Snapshot::default()
        };
        model.on_snapshot(Arc::new(live), Instant::now());
        let points: Vec<HistoryPoint> = (0..100).map(|i| point(f64::from(i))).collect();
        model.on_history(&points);
        assert_eq!(model.lag_history.len(), HISTORY);
        assert_eq!(
            model.lag_history.back(),
            Some(&999),
            "the live point stays newest"
        );
        assert_eq!(
            model.lag_history[HISTORY - 2],
            99,
            "then the newest history"
        );
        assert_eq!(model.lag_history[0], 41);
        assert_eq!(model.rate_history[0], 7);
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn model_with(tables: usize) -> Model {
        let mut model = Model::new();
        let tables = (0..tables)
            .map(|i| {
                let mut t =
                    TableProgress::new("public", &format!("t{i:03}"), 100, (i as i64 % 7) * 10);
                t.percent = ((i * 37) % 100) as f64;
                t.status = [
                    TableStatus::Pending,
                    TableStatus::Copying,
                    TableStatus::Copied,
                ][i % 3];
                t
            })
            .collect();
        model.on_snapshot(
            Arc::new(Snapshot {
                tables,
                ..Snapshot::default()
            }),
            Instant::now(),
        );
        model
    }

    #[test]
    fn scrolling_stays_within_the_list() {
        let mut model = model_with(25);
        model.set_page(10);
        model.handle_key(key(KeyCode::Up));
        assert_eq!(model.offset, 0);
        model.handle_key(key(KeyCode::Down));
        assert_eq!(model.offset, 1);
        model.handle_key(key(KeyCode::PageDown));
        assert_eq!(model.offset, 11);
        model.handle_key(key(KeyCode::PageDown));
        assert_eq!(model.offset, 15, "the last page ends at the last table");
        model.handle_key(key(KeyCode::Down));
        assert_eq!(model.offset, 15);
        model.handle_key(key(KeyCode::Home));
        assert_eq!(model.offset, 0);
        model.handle_key(key(KeyCode::End));
        assert_eq!(model.offset, 15);
        model.handle_key(key(KeyCode::PageUp));
        assert_eq!(model.offset, 5);
    }

    #[test]
    fn a_short_list_does_not_scroll() {
        let mut model = model_with(3);
        model.handle_key(key(KeyCode::End));
        model.handle_key(key(KeyCode::Down));
        assert_eq!(model.offset, 0);
    }

    #[test]
    fn sort_cycles_through_four_orders() {
        let mut model = model_with(9);
        let names = |m: &Model| m.rows().iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&model)[0], "t000");
        model.handle_key(key(KeyCode::Char('s')));
        assert_eq!(model.sort, SortMode::Progress);
        let percents: Vec<f64> = model.rows().iter().map(|t| t.percent).collect();
        assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
        model.handle_key(key(KeyCode::Char('s')));
        assert_eq!(model.sort, SortMode::Status);
        assert_eq!(model.rows()[0].status, TableStatus::Copying);
        model.handle_key(key(KeyCode::Char('s')));
        assert_eq!(model.sort, SortMode::Size);
        let sizes: Vec<i64> = model.rows().iter().map(|t| t.size_bytes).collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        model.handle_key(key(KeyCode::Char('s')));
        assert_eq!(model.sort, SortMode::Original);
        assert_eq!(names(&model)[0], "t000");
    }

    #[test]
    fn slash_filters_by_name_and_escape_clears_it() {
        let mut model = model_with(30);
        model.handle_key(key(KeyCode::Char('/')));
        for c in "T01".chars() {
            model.handle_key(key(KeyCode::Char(c)));
        }
        let names: Vec<_> = model.rows().iter().map(|t| t.name.clone()).collect();
        assert_eq!(names.len(), 10);
        assert!(names.iter().all(|n| n.starts_with("t01")));
        // While typing, q and Esc edit the filter instead of quitting.
        model.handle_key(key(KeyCode::Char('q')));
        assert!(!model.should_quit());
        assert!(model.rows().is_empty());
        model.handle_key(key(KeyCode::Backspace));
        model.handle_key(key(KeyCode::Enter));
        assert_eq!(model.mode(), Mode::Tables);
        assert_eq!(model.rows().len(), 10);
        model.handle_key(key(KeyCode::Char('/')));
        model.handle_key(key(KeyCode::Esc));
        assert_eq!(model.rows().len(), 30);
        assert!(!model.should_quit());
    }

    #[test]
    fn q_escape_and_ctrl_c_quit() {
        for quit in [
            key(KeyCode::Char('q')),
            key(KeyCode::Esc),
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            let mut model = Model::new();
            model.handle_key(quit);
            assert!(model.should_quit(), "{quit:?}");
        }
        let mut model = Model::new();
        model.handle_key(key(KeyCode::Char('x')));
        assert!(!model.should_quit());
    }

    #[test]
    fn l_toggles_the_log_view_and_any_key_closes_help() {
        let mut model = Model::new();
        model.handle_key(key(KeyCode::Char('l')));
        assert!(model.shows_logs());
        model.handle_key(key(KeyCode::Char('?')));
        assert_eq!(model.mode(), Mode::Help { over_logs: true });
        assert!(model.shows_logs(), "the help opens over the log");
        model.handle_key(key(KeyCode::Esc));
        assert_eq!(model.mode(), Mode::Logs, "and closes back to it");
        model.handle_key(key(KeyCode::Char('l')));
        assert!(!model.shows_logs());
        model.handle_key(key(KeyCode::Char('?')));
        model.handle_key(key(KeyCode::Esc));
        assert_eq!(model.mode(), Mode::Tables);
        assert!(!model.should_quit());
    }

    fn at(ms: u64, lag: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            timestamp: time::OffsetDateTime::UNIX_EPOCH + Duration::from_millis(ms),
            lag_bytes: lag,
            rows_per_sec: lag as f64,
            ..Snapshot::default()
        })
    }

    #[test]
    fn sparklines_take_one_point_per_tick_spaced_snapshot_and_keep_sixty() {
        let mut model = Model::new();
        let now = Instant::now();
        for i in 0..100u64 {
            model.on_snapshot(at(i * 500, i), now);
        }
        assert_eq!(model.lag_history.len(), HISTORY);
        assert_eq!(model.lag_history.front(), Some(&40));
        assert_eq!(model.rate_history.back(), Some(&99));
    }

    #[test]
    fn a_burst_of_publications_adds_one_point_not_one_per_snapshot() {
        let mut model = Model::new();
        let now = Instant::now();
        for i in 0..9u64 {
            model.on_snapshot(at(i * 50, i), now); // 20 a second for 400 ms
        }
        assert_eq!(model.lag_history.len(), 1);
        assert_eq!(model.snapshot().lag_bytes, 8, "the newest is still shown");
        model.on_snapshot(at(500, 10), now);
        assert_eq!(model.lag_history.len(), 2);
    }

    #[test]
    fn a_live_source_silent_for_ten_seconds_is_stale() {
        let mut model = Model::new();
        let now = Instant::now();
        model.on_link(Link::Live);
        model.on_snapshot(Arc::new(Snapshot::default()), now);
        assert!(!model.is_stale(now + Duration::from_secs(10)));
        assert!(model.is_stale(now + Duration::from_secs(11)));
        let flagged = Snapshot {
            stale: true,
            ..Snapshot::default()
        };
        model.on_snapshot(Arc::new(flagged), now);
        assert!(model.is_stale(now));
    }
}
