//! The migration list: one line per migration, worst first, for a
//! dashboard that follows several. Enter opens the one selected; its
//! screen's Esc comes back here.

use std::sync::Arc;
use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::model::{EtaState, MigrationSummary, Severity, WalStatus};
use crate::printable::printable;
use crate::units::{format_bytes, format_duration};

/// The list's state: the migrations, the one selected, and what the keys
/// asked for. Pure, so every key is unit-tested without a terminal.
#[derive(Debug, Default)]
pub struct FleetModel {
    migrations: Arc<Vec<MigrationSummary>>,
    /// The id selected: the selection follows the migration when the list
    /// is sorted again.
    selected: Option<String>,
    /// Set by Enter; taken by the event loop.
    open: Option<String>,
    quit: bool,
}

impl FleetModel {
    /// An empty list.
    pub fn new() -> Self {
        FleetModel::default()
    }

    /// A new list (worst first); the selection stays on its migration, or
    /// goes to the first.
    pub fn on_migrations(&mut self, migrations: Arc<Vec<MigrationSummary>>) {
        let kept = self
            .selected
            .as_ref()
            .is_some_and(|id| migrations.iter().any(|m| &m.id == id));
        if !kept {
            self.selected = migrations.first().map(|m| m.id.clone());
        }
        self.migrations = migrations;
    }

    /// The migrations shown.
    pub fn migrations(&self) -> &[MigrationSummary] {
        &self.migrations
    }

    /// The index of the selected migration.
    pub fn selected(&self) -> Option<usize> {
        let id = self.selected.as_ref()?;
        self.migrations.iter().position(|m| &m.id == id)
    }

    /// The migration Enter asked to open, once.
    pub fn take_open(&mut self) -> Option<String> {
        self.open.take()
    }

    /// Whether a quit key was pressed.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Applies a key press: ↑ ↓ (or k j) Home End select, Enter opens,
    /// q, Esc or Ctrl-C quit.
    pub fn handle_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let last = self.migrations.len().saturating_sub(1);
        let at = self.selected().unwrap_or(0);
        let select = match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.quit = true;
                return;
            }
            KeyCode::Char('q') | KeyCode::Esc => {
                self.quit = true;
                return;
            }
            KeyCode::Enter => {
                self.open = self.selected.clone();
                return;
            }
            KeyCode::Up | KeyCode::Char('k') => at.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => (at + 1).min(last),
            KeyCode::Home => 0,
            KeyCode::End => last,
            _ => return,
        };
        self.selected = self.migrations.get(select).map(|m| m.id.clone());
    }
}

/// Draws the list: a title line, a row per migration (the selected one
/// reversed), and the keys.
pub fn draw_fleet(frame: &mut Frame, model: &FleetModel) {
    let [title, body, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let list = model.migrations();
    let attention = list.iter().filter(|m| m.needs_attention()).count();
    let mut heading = format!(" pgmigrator · {} migrations", list.len());
    if attention > 0 {
        heading.push_str(&format!(" · {attention} need attention"));
    }
    frame.render_widget(
        Paragraph::new(heading).style(Style::new().add_modifier(Modifier::BOLD)),
        title,
    );
    if list.is_empty() {
        frame.render_widget(Paragraph::new(" no migration yet"), body);
    } else {
        let rows = list.iter().map(row);
        let widths = [
            Constraint::Min(12),
            Constraint::Length(20),
            Constraint::Length(11),
            Constraint::Length(20),
            Constraint::Length(9),
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Length(9),
        ];
        let header = Row::new([
            "migration",
            "phase",
            "tables",
            "lag",
            "ETA",
            "alerts",
            "slot",
            "cutover",
        ])
        .style(
            Style::new()
                .fg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
        );
        let table = Table::new(rows, widths)
            .header(header)
            .column_spacing(1)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        let mut state = TableState::default().with_selected(model.selected());
        frame.render_stateful_widget(table, body, &mut state);
    }
    frame.render_widget(
        Paragraph::new(Line::from(
            " q quit · ↑↓ select · Enter open · Esc in a migration comes back here",
        ))
        .style(Style::new().fg(Color::Black).bg(Color::Gray)),
        help,
    );
}

fn row(m: &MigrationSummary) -> Row<'static> {
    let alert_color = match m.alert_severity {
        Some(Severity::Critical) => Color::Red,
        Some(Severity::Warning) => Color::Yellow,
        _ => Color::Reset,
    };
    let alerts = match m.alert_severity {
        Some(severity) => format!("{} {}", m.alerts_firing, severity.as_str()),
        None => "none".to_owned(),
    };
    let (slot, slot_color) = match &m.slot_wal_status {
        None => ("–".to_owned(), Color::Reset),
        Some(WalStatus::Reserved) => ("reserved".to_owned(), Color::Green),
        Some(WalStatus::Extended) => ("extended".to_owned(), Color::Yellow),
        Some(other) => (printable(other.as_str()).into_owned(), Color::Red),
    };
    let (cutover, cutover_color) = match m.cutover_ready {
        None => ("–", Color::Reset),
        Some(true) => ("READY", Color::Green),
        Some(false) => ("NOT READY", Color::Red),
    };
    let eta = match m.eta {
        _ if m.tables_total > 0 && m.tables_copied == m.tables_total => "done".to_owned(),
        // Not a time: what the forecast waits for (`measuring`, `stalled`).
        Some(eta) if eta.state != EtaState::Estimating => {
            printable(eta.state.as_str()).into_owned()
        }
        _ => m
            .eta_sec
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map_or_else(|| "–".to_owned(), format_duration),
    };
    let phase = format!(
        "{}{}",
        printable(m.phase.as_str()),
        if m.stale { " (stale)" } else { "" }
    );
    Row::new(vec![
        Cell::from(printable(&m.id).into_owned()),
        Cell::from(phase),
        Cell::from(format!("{}/{}", m.tables_copied, m.tables_total)),
        Cell::from(format!(
            "{} · {:.1}s",
            format_bytes(m.lag_bytes),
            m.lag_seconds
        )),
        Cell::from(eta),
        Cell::from(alerts).style(Style::new().fg(alert_color)),
        Cell::from(slot).style(Style::new().fg(slot_color)),
        Cell::from(cutover).style(Style::new().fg(cutover_color)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str) -> MigrationSummary {
        MigrationSummary::of(
            id,
            &crate::Snapshot::default(),
            time::OffsetDateTime::now_utc(),
        )
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn the_selection_moves_follows_its_migration_and_enter_opens_it() {
        let mut model = FleetModel::new();
        model.on_migrations(Arc::new(vec![summary("a"), summary("b"), summary("c")]));
        assert_eq!(model.selected(), Some(0));
        model.handle_key(key(KeyCode::Up));
        assert_eq!(model.selected(), Some(0), "stays at the top");
        model.handle_key(key(KeyCode::Down));
        model.handle_key(key(KeyCode::Char('j')));
        model.handle_key(key(KeyCode::Down));
        assert_eq!(model.selected(), Some(2), "stays at the bottom");
        // Sorted again: the selection follows "c".
        model.on_migrations(Arc::new(vec![summary("c"), summary("a"), summary("b")]));
        assert_eq!(model.selected(), Some(0));
        model.handle_key(key(KeyCode::Enter));
        assert_eq!(model.take_open().as_deref(), Some("c"));
        assert_eq!(model.take_open(), None, "once");
        // "c" gone: the first is selected.
        model.on_migrations(Arc::new(vec![summary("a"), summary("b")]));
        assert_eq!(model.selected(), Some(0));
        model.handle_key(key(KeyCode::End));
        assert_eq!(model.selected(), Some(1));
        assert!(!model.should_quit());
        model.handle_key(key(KeyCode::Esc));
        assert!(model.should_quit());
    }

    #[test]
    fn an_empty_list_opens_nothing() {
        let mut model = FleetModel::new();
        model.on_migrations(Arc::default());
        model.handle_key(key(KeyCode::Down));
        model.handle_key(key(KeyCode::Enter));
        assert_eq!(model.take_open(), None);
    }

    #[test]
    fn the_eta_column_says_what_a_forecast_waits_for_instead_of_a_time() {
        use crate::model::Eta;
        let forecast = |id: &str, eta: Eta| MigrationSummary {
            eta_sec: eta.seconds,
            eta: Some(eta),
            tables_total: 2,
            ..summary(id)
        };
        let estimating = Eta {
            state: EtaState::Estimating,
            seconds: Some(754.0),
            ..Eta::default()
        };
        let mut model = FleetModel::new();
        model.on_migrations(Arc::new(vec![
            forecast("shop", estimating),
            forecast("crm", Eta::bare(EtaState::Stalled)),
            forecast("evil", Eta::bare(EtaState::from_name("\x1b[2J"))),
        ]));
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 8)).unwrap();
        terminal.draw(|frame| draw_fleet(frame, &model)).unwrap();
        let lines: Vec<String> = terminal
            .backend()
            .buffer()
            .content
            .chunks(120)
            .map(|row| row.iter().map(|c| c.symbol()).collect())
            .collect();
        let line = |id: &str| lines.iter().find(|l| l.contains(id)).unwrap().clone();
        assert!(line("shop").contains("12m34s"), "{lines:#?}");
        assert!(line("crm").contains("stalled"), "{lines:#?}");
        assert!(line("evil").contains("\\e[2J"), "{lines:#?}");
    }
}
