//! Drawing the model: a pure function of the model and the time, so every
//! screen is tested on ratatui's `TestBackend`.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Gauge, Paragraph, Row, Sparkline, Table, TableState,
};
use tokio::time::Instant;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

mod summary;

use self::summary::{alerts_line, draw_cutover, draw_header, draw_verify};
use super::model::{Mode, Model};
use crate::model::{LogLevel, TableProgress, TableStatus};
use crate::printable::printable;
use crate::units::{self, format_bytes, format_duration};

/// A copying table without progress for this long is marked stalled.
const STALLED_AFTER: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// Where each part of the screen goes.
struct Areas {
    header: Rect,
    progress: Rect,
    /// The table list, unless the body shows the full-height log, the
    /// cutover list or the verification's findings.
    tables: Option<Rect>,
    cutover: Option<Rect>,
    verify: Option<Rect>,
    sparklines: Option<Rect>,
    log: Rect,
    errors: Rect,
    help: Rect,
}

fn areas(area: Rect, model: &Model) -> Areas {
    // More header lines for the replication slot, the cutover verdict
    // and the verification, once known.
    let header_lines = 2
        + u16::from(model.snapshot().slot.is_some())
        + u16::from(model.snapshot().cutover.is_some())
        + u16::from(model.snapshot().verify.is_some())
        + u16::from(alerts_line(&model.snapshot().alerts).is_some());
    let [header, progress, body, errors, help] = Layout::vertical([
        Constraint::Length(header_lines),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let (tables, sparklines, panel, log) = if model.shows_logs() {
        (None, None, None, body)
    } else if model.shows_cutover() || model.shows_verify() {
        let [panel, log] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(body);
        (None, None, Some(panel), log)
    } else {
        let sparks = if area.height >= 20 { 3 } else { 0 };
        let logs = if area.height >= 30 {
            (area.height / 5).clamp(5, 13)
        } else {
            4
        };
        let [tables, spark, log] = Layout::vertical([
            Constraint::Min(4),
            Constraint::Length(sparks),
            Constraint::Length(logs),
        ])
        .areas(body);
        (Some(tables), (sparks > 0).then_some(spark), None, log)
    };
    Areas {
        header,
        progress,
        tables,
        cutover: panel.filter(|_| model.shows_cutover()),
        verify: panel.filter(|_| model.shows_verify()),
        sparklines,
        log,
        errors,
        help,
    }
}

/// How many table rows fit on a screen of `area`: one page, for paging.
pub fn table_rows(area: Rect, model: &Model) -> usize {
    areas(area, model).tables.map_or(1, |tables| {
        usize::from(tables.height.saturating_sub(1)).max(1)
    })
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &Model, now: Instant) {
    let area = frame.area();
    let areas = areas(area, model);
    draw_header(frame, areas.header, model, now);
    draw_progress(frame, areas.progress, model);
    if let Some(tables) = areas.tables {
        draw_tables(frame, tables, model);
    }
    if let Some(sparklines) = areas.sparklines {
        draw_sparklines(frame, sparklines, model);
    }
    if let Some(cutover) = areas.cutover {
        draw_cutover(frame, cutover, model);
    }
    if let Some(verify) = areas.verify {
        draw_verify(frame, verify, model);
    }
    draw_logs(frame, areas.log, model);
    draw_errors(frame, areas.errors, model);
    draw_help_line(frame, areas.help, model);
    if matches!(model.mode(), Mode::Help { .. }) {
        draw_help(frame, area);
    }
}

fn draw_progress(frame: &mut Frame, area: Rect, model: &Model) {
    let s = model.snapshot();
    let (mut size, mut done) = (0u64, 0u64);
    for t in s.tables.iter().filter(|t| t.size_bytes > 0) {
        size += t.size_bytes as u64;
        done += t.bytes_copied.clamp(0, t.size_bytes) as u64;
    }
    let ratio = if size > 0 {
        done as f64 / size as f64
    } else if s.tables_total > 0 {
        s.tables_copied as f64 / s.tables_total as f64
    } else {
        0.0
    };
    let eta = match (&s.eta, s.eta_sec) {
        _ if s.tables_total > 0 && s.tables_copied == s.tables_total => "done".to_owned(),
        (Some(eta), _) => printable(&eta.to_string()).into_owned(),
        (None, Some(eta)) => elapsed(eta),
        (None, None) => "–".to_owned(),
    };
    let label = format!(
        "tables {}/{} · {} / {} · ETA {eta}",
        s.tables_copied,
        s.tables_total,
        format_bytes(done),
        format_bytes(size)
    );
    let gauge = Gauge::default()
        .ratio(ratio.clamp(0.0, 1.0))
        .label(label)
        .gauge_style(Style::new().fg(Color::Blue).bg(Color::DarkGray));
    frame.render_widget(gauge, area);
}

fn draw_tables(frame: &mut Frame, area: Rect, model: &Model) {
    let s = model.snapshot();
    let rows = model.rows();
    let visible = usize::from(area.height.saturating_sub(1));
    if rows.is_empty() {
        let text = if s.tables.is_empty() {
            " no tables yet — waiting for the pipeline to list them"
        } else {
            " no table matches the filter"
        };
        frame.render_widget(
            Paragraph::new(text).style(Style::new().fg(Color::DarkGray)),
            area,
        );
        return;
    }
    let offset = model.offset.min(rows.len().saturating_sub(1));
    let now = s.timestamp;
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(9),
        Constraint::Length(13),
        Constraint::Length(10),
        Constraint::Length(13),
        Constraint::Length(9),
    ];
    // What the fixed columns and the spacing leave for the name.
    let name_width = usize::from(area.width).saturating_sub(9 + 13 + 10 + 13 + 9 + 5);
    let body = rows.iter().map(|t| {
        let stalled = t.status == TableStatus::Copying
            && t.last_progress_at
                .is_some_and(|at| now - at > STALLED_AFTER);
        let (status, color) = match t.status {
            _ if stalled => ("stalled".into(), Color::Yellow),
            TableStatus::Streaming => ("⟳ live".into(), Color::Green),
            TableStatus::Copying => ("copying".into(), Color::Cyan),
            TableStatus::Copied => ("copied".into(), Color::Magenta),
            TableStatus::Pending => ("pending".into(), Color::DarkGray),
            TableStatus::Other(name) => (printable(name.as_str()), Color::Gray),
        };
        Row::new(vec![
            Cell::from(fit(&t.qualified_name(), name_width)),
            Cell::from(status).style(Style::new().fg(color)),
            Cell::from(format!(
                "{}/{}",
                short(t.rows_copied as f64),
                estimate(t.rows_total)
            )),
            Cell::from(if t.size_bytes > 0 {
                format_bytes(t.size_bytes as u64)
            } else {
                "?".into()
            }),
            Cell::from(bar(t)).style(Style::new().fg(Color::Blue)),
            Cell::from(t.eta_sec.map(elapsed).unwrap_or_default()),
        ])
    });
    let header = Row::new(["table", "status", "rows", "size", "progress", "ETA"]).style(
        Style::new()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::BOLD),
    );
    let more = rows.len().saturating_sub(offset + visible);
    let table = Table::new(body, widths).header(header).column_spacing(1);
    // The model owns the scroll position; the state is only the view's
    // copy of it for this draw.
    let mut state = TableState::new().with_offset(offset);
    frame.render_stateful_widget(table, area, &mut state);
    if more > 0 && area.width > 12 {
        let note = format!(" +{more} ");
        let width = note.chars().count() as u16;
        let corner = Rect::new(area.right().saturating_sub(width), area.y, width, 1);
        frame.render_widget(
            Paragraph::new(note).style(Style::new().fg(Color::DarkGray)),
            corner,
        );
    }
}

fn draw_sparklines(frame: &mut Frame, area: Rect, model: &Model) {
    let [lag, rate] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(area);
    let max = |h: &std::collections::VecDeque<u64>| h.iter().copied().max().unwrap_or(0);
    let lag_spark = Sparkline::default()
        .block(Block::new().borders(Borders::TOP).title(format!(
            " lag, last {} (max {}) ",
            model.lag_history.len(),
            format_bytes(max(&model.lag_history))
        )))
        .data(model.lag_history.iter().copied().collect::<Vec<u64>>())
        .style(Style::new().fg(Color::Yellow));
    let rate_spark = Sparkline::default()
        .block(Block::new().borders(Borders::TOP).title(format!(
            " rows/s, last {} (max {}) ",
            model.rate_history.len(),
            short(max(&model.rate_history) as f64)
        )))
        .data(model.rate_history.iter().copied().collect::<Vec<u64>>())
        .style(Style::new().fg(Color::Blue));
    frame.render_widget(lag_spark, lag);
    frame.render_widget(rate_spark, rate);
}

fn draw_logs(frame: &mut Frame, area: Rect, model: &Model) {
    let block = Block::new().borders(Borders::TOP).title(" log ");
    let inner = block.inner(area);
    let take = usize::from(inner.height);
    let skip = model.logs.len().saturating_sub(take);
    let lines: Vec<Line> = model
        .logs
        .iter()
        .skip(skip)
        .map(|entry| {
            let color = match entry.level {
                LogLevel::Debug => Color::DarkGray,
                LogLevel::Info => Color::Reset,
                LogLevel::Warn => Color::Yellow,
                LogLevel::Error => Color::Red,
            };
            let fields: Vec<String> = entry
                .fields
                .iter()
                .filter(|(k, _)| k.as_str() != "target")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Line::from(vec![
                Span::styled(time_of_day(entry.time), Style::new().fg(Color::DarkGray)),
                Span::styled(
                    format!(" {:<5} ", entry.level.as_str().to_uppercase()),
                    Style::new().fg(color).add_modifier(Modifier::BOLD),
                ),
                Span::styled(entry.message.clone(), Style::new().fg(color)),
                Span::styled(
                    format!("  {}", fields.join(" ")),
                    Style::new().fg(Color::DarkGray),
                ),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_errors(frame: &mut Frame, area: Rect, model: &Model) {
    let s = model.snapshot();
    let line = if s.error_count == 0 {
        Line::styled(" errors 0", Style::new().fg(Color::DarkGray))
    } else {
        Line::styled(
            format!(" errors {} · last: {}", s.error_count, s.last_error),
            Style::new().fg(Color::Red),
        )
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_help_line(frame: &mut Frame, area: Rect, model: &Model) {
    let text = if model.mode() == Mode::Filtering {
        format!(" filter: {}▏  (Enter keep · Esc clear)", model.filter)
    } else {
        let filter = if model.filter.is_empty() {
            String::new()
        } else {
            format!(" [filter: {}]", model.filter)
        };
        let back = if model.migration.is_some() {
            " · Esc list"
        } else {
            ""
        };
        format!(
            " q quit{back} · ↑↓ PgUp PgDn Home End · s sort: {}{filter} · / filter · l log · ? help",
            model.sort.label()
        )
    };
    frame.render_widget(
        Paragraph::new(text).style(Style::new().fg(Color::Black).bg(Color::Gray)),
        area,
    );
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let lines = [
        "q, Esc, Ctrl-C   quit (Esc: back to the list, with several migrations)",
        "↑ ↓              scroll one table",
        "PgUp PgDn        scroll one page",
        "Home End         first / last table",
        "s                sort: original, progress, status, size",
        "/                filter tables by name (Enter keeps, Esc clears)",
        "l                full-height log",
        "c                cutover blockers and warnings",
        "v                verification: tables not verified, rows that differ",
        "?                this help (any key closes it)",
    ];
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u16 + 4;
    let height = lines.len() as u16 + 2;
    let popup = area.centered(Constraint::Length(width), Constraint::Length(height));
    frame.render_widget(Clear, popup);
    let text: Vec<Line> = lines.iter().map(|l| Line::raw(format!(" {l}"))).collect();
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" keys ")),
        popup,
    );
}

/// `text` cut to `width` terminal cells, ending in `…` when cut.
fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// Whole seconds, as everywhere else: `1h23m45s`, `4m2s`, `9s`.
fn elapsed(seconds: f64) -> String {
    format_duration(units::seconds(seconds.round()))
}

/// `890K`, `2.1M`, `3.4G`.
fn short(n: f64) -> String {
    match n {
        n if !n.is_finite() || n <= 0.0 => "0".to_owned(),
        n if n >= 1e9 => format!("{:.1}G", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e4 => format!("{:.0}K", n / 1e3),
        n => format!("{n:.0}"),
    }
}

fn estimate(rows: i64) -> String {
    if rows > 0 {
        short(rows as f64)
    } else {
        "?".to_owned()
    }
}

/// A text progress bar: `██████░░ 70%`.
fn bar(t: &TableProgress) -> String {
    let cells = 8;
    let filled = ((t.percent / 100.0) * cells as f64)
        .round()
        .clamp(0.0, cells as f64) as usize;
    format!(
        "{}{} {:>3.0}%",
        "█".repeat(filled),
        "░".repeat(cells - filled),
        t.percent.floor()
    )
}

fn time_of_day(time: time::OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_counts_are_short() {
        assert_eq!(elapsed(5025.4), "1h23m45s");
        assert_eq!(elapsed(242.0), "4m2s");
        assert_eq!(elapsed(f64::NAN), "0s");
        assert_eq!(short(890_000.0), "890K");
        assert_eq!(short(2_100_000.0), "2.1M");
        assert_eq!(short(999.0), "999");
        assert_eq!(estimate(-1), "?");
    }

    #[test]
    fn names_are_cut_by_display_width_with_an_ellipsis() {
        assert_eq!(fit("public.users", 20), "public.users");
        assert_eq!(fit("public.users", 8), "public.…");
        assert_eq!(fit("数据.表格", 6), "数据.…");
        assert_eq!(fit("abc", 0), "…");
    }
}
