//! The top of the screen and the verdict: the header (phase, figures,
//! alerts) and the cutover panel with the slot.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use tokio::time::Instant;

use super::{MIB, elapsed, short};
use crate::model::{
    AlertState, AlertStatus, CatchUpState, Cutover, Phase, Severity, SlotHealth, VerifyProgress,
    VerifyStatus, WalStatus,
};
use crate::printable::printable;
use crate::tui::model::{Link, Model};
use crate::units::{format_bytes, format_duration};

pub(super) fn draw_header(frame: &mut Frame, area: Rect, model: &Model, now: Instant) {
    let s = model.snapshot();
    let phase_color = match s.phase {
        Phase::Copy => Color::Cyan,
        Phase::Streaming | Phase::Done | Phase::SwitchoverComplete => Color::Green,
        Phase::Switchover => Color::Magenta,
        _ => Color::Gray,
    };
    let link = match (&model.link, model.is_stale(now)) {
        (Link::Live, false) => Span::styled("● live", Style::new().fg(Color::Green)),
        (Link::Live, true) if s.stale => Span::styled(
            "stale — the pipeline stopped writing",
            Style::new().fg(Color::Yellow),
        ),
        (Link::Live, true) => {
            let silent = model.silence(now).unwrap_or_default().as_secs();
            Span::styled(
                format!("stale — no update for {silent}s"),
                Style::new().fg(Color::Yellow),
            )
        }
        (Link::Connecting, _) => Span::styled("connecting…", Style::new().fg(Color::Yellow)),
        (Link::Reconnecting { retry_in, reason }, _) => Span::styled(
            format!(
                "⟳ reconnecting… retry in {}s ({reason})",
                retry_in.as_secs().max(1)
            ),
            Style::new().fg(Color::Red),
        ),
    };
    let mut first = Vec::new();
    if let Some(id) = &model.migration {
        first.push(Span::styled(
            format!(" {} ", printable(id)),
            Style::new().add_modifier(Modifier::BOLD),
        ));
    }
    first.extend([
        Span::styled(
            format!(" {} ", s.phase.as_str().to_uppercase()),
            Style::new()
                .fg(Color::Black)
                .bg(phase_color)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  elapsed {}   ", elapsed(s.elapsed_sec))),
        link,
    ]);
    let first = Line::from(first);
    let lag_color = match s.lag_bytes {
        b if b < MIB => Color::Green,
        b if b <= 10 * MIB => Color::Yellow,
        _ => Color::Red,
    };
    let mut second = vec![
        Span::raw(" lag "),
        Span::styled(
            format!("{} · {:.1}s", format_bytes(s.lag_bytes), s.lag_seconds),
            Style::new().fg(lag_color).add_modifier(Modifier::BOLD),
        ),
    ];
    if s.caught_up {
        second.push(Span::styled(" ✓ caught up", Style::new().fg(Color::Green)));
    } else if let Some(catch_up) = s.catch_up.filter(|c| c.state != CatchUpState::Measuring) {
        let color = match catch_up.state {
            CatchUpState::FallingBehind => Color::Red,
            _ => Color::Reset,
        };
        second.push(Span::styled(
            format!(" · {}", printable(&catch_up.to_string())),
            Style::new().fg(color),
        ));
    }
    second.push(Span::raw(format!(
        "   {} rows/s · {}/s",
        short(s.rows_per_sec),
        format_bytes(s.bytes_per_sec.max(0.0) as u64)
    )));
    let mut lines = vec![first, Line::from(second)];
    if let Some(slot) = &s.slot {
        lines.push(slot_line(slot, s.timestamp));
    }
    if let Some(cutover) = &s.cutover {
        lines.push(cutover_line(cutover));
    }
    if let Some(verify) = &s.verify {
        lines.push(verify_line(verify));
    }
    if let Some(alerts) = alerts_line(&s.alerts) {
        lines.push(alerts);
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// `alerts 2 firing: lag, slot_in_danger · 1 pending`, red when a
/// critical alert fires; none while nothing is pending or firing.
pub(super) fn alerts_line(alerts: &[AlertStatus]) -> Option<Line<'static>> {
    let names = |state: AlertState| -> Vec<&str> {
        alerts
            .iter()
            .filter(|a| a.state == state)
            .map(|a| a.name.as_str())
            .collect()
    };
    let (firing, pending) = (names(AlertState::Firing), names(AlertState::Pending));
    if firing.is_empty() && pending.is_empty() {
        return None;
    }
    let critical = alerts
        .iter()
        .any(|a| a.state == AlertState::Firing && a.severity == Severity::Critical);
    let color = match (critical, firing.is_empty()) {
        (true, _) => Color::Red,
        (false, false) => Color::Yellow,
        (false, true) => Color::DarkGray,
    };
    let mut text = String::new();
    if !firing.is_empty() {
        text.push_str(&format!("{} firing: {}", firing.len(), firing.join(", ")));
    }
    if !pending.is_empty() {
        if !text.is_empty() {
            text.push_str(" · ");
        }
        text.push_str(&format!("{} pending", pending.len()));
    }
    Some(Line::from(vec![
        Span::raw(" alerts "),
        Span::styled(
            printable(&text).into_owned(),
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ),
    ]))
}

/// `cutover READY`, or `cutover NOT READY · 2 blockers: lag, sequence_behind · c lists them`.
fn cutover_line(cutover: &Cutover) -> Line<'static> {
    if cutover.ready {
        return Line::from(vec![
            Span::raw(" cutover "),
            Span::styled(
                "READY",
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            ),
        ]);
    }
    let mut kinds: Vec<&str> = Vec::new();
    for blocker in &cutover.blockers {
        if !kinds.contains(&blocker.kind.as_str()) {
            kinds.push(blocker.kind.as_str());
        }
    }
    let count = match cutover.blockers.len() {
        1 => "1 blocker".to_owned(),
        n => format!("{n} blockers"),
    };
    Line::from(vec![
        Span::raw(" cutover "),
        Span::styled(
            "NOT READY",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            " · {count}: {} · c lists them",
            printable(&kinds.join(", "))
        )),
    ])
}

/// `verify 38/40 tables · 1 mismatch (12 rows) · 1.20 GiB of 4.00 GiB ·
/// ETA 5m · v lists them`: red with a mismatch, green once every table is
/// verified.
fn verify_line(verify: &VerifyProgress) -> Line<'static> {
    let mismatched = verify.count(VerifyStatus::Mismatch);
    let color = if mismatched > 0 {
        Color::Red
    } else if verify.tables_verified == verify.tables_total && verify.tables_total > 0 {
        Color::Green
    } else {
        Color::Yellow
    };
    let mut counts = format!("{}/{} tables", verify.tables_verified, verify.tables_total);
    if mismatched > 0 {
        counts.push_str(&format!(
            " · {mismatched} mismatch ({} rows)",
            verify.mismatched_rows()
        ));
    }
    let mut rest = format!(
        " · {} of {}",
        format_bytes(verify.bytes_verified),
        format_bytes(verify.bytes_total)
    );
    if let Some(eta) = verify.eta_sec.filter(|eta| *eta > 0.0) {
        rest.push_str(&format!(" · ETA {}", elapsed(eta)));
    }
    rest.push_str(" · v lists them");
    Line::from(vec![
        Span::raw(" verify "),
        Span::styled(counts, Style::new().fg(color).add_modifier(Modifier::BOLD)),
        Span::raw(rest),
    ])
}

/// The verification's findings as `status` prints them, as many lines as
/// fit.
pub(super) fn draw_verify(frame: &mut Frame, area: Rect, model: &Model) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(" verify (v closes) ");
    let Some(verify) = &model.snapshot().verify else {
        let text = "no verification: `pgmigrator monitor --verify` runs it";
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    // Escaped and cut already, as `status` prints it.
    let text = crate::status::render_verify(verify);
    let room = usize::from(block.inner(area).height);
    let total = text.lines().count();
    let shown = if total > room {
        room.saturating_sub(1)
    } else {
        total
    };
    let mut lines: Vec<Line> = text
        .lines()
        .take(shown)
        .map(|line| Line::raw(line.to_owned()))
        .collect();
    if shown < total {
        lines.push(Line::styled(
            format!(
                "… {} more lines (pgmigrator status lists them all)",
                total - shown
            ),
            Style::new().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The verdict's blockers then its warnings, as many as fit.
pub(super) fn draw_cutover(frame: &mut Frame, area: Rect, model: &Model) {
    let s = model.snapshot();
    let block = Block::new()
        .borders(Borders::TOP)
        .title(" cutover (c closes) ");
    let inner = block.inner(area);
    let Some(cutover) = &s.cutover else {
        let text = "no verdict yet: `pgmigrator monitor` computes it from both servers";
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    let age: Duration = (s.timestamp - cutover.checked_at)
        .try_into()
        .unwrap_or_default();
    let mut lines = vec![Line::raw(format!(
        "{} · checked {} ago",
        if cutover.ready { "READY" } else { "NOT READY" },
        format_duration(Duration::from_secs(age.as_secs()))
    ))];
    let items = cutover
        .blockers
        .iter()
        .map(|item| ("✗", Color::Red, item))
        .chain(
            cutover
                .warnings
                .iter()
                .map(|item| ("!", Color::Yellow, item)),
        );
    let room = usize::from(inner.height).saturating_sub(1);
    let total = cutover.blockers.len() + cutover.warnings.len();
    let shown = if total > room {
        room.saturating_sub(1)
    } else {
        total
    };
    for (mark, color, item) in items.take(shown) {
        let table = item
            .table
            .as_deref()
            .map(|t| format!(" {}", printable(t)))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(format!("{mark} {}", item.kind), Style::new().fg(color)),
            Span::raw(format!("{table}: {}", printable(&item.detail))),
        ]));
    }
    if shown < total {
        lines.push(Line::styled(
            format!("… {} more (pgmigrator check lists them all)", total - shown),
            Style::new().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The slot, coloured by how safe its WAL is; a lost slot in reverse red.
fn slot_line(slot: &SlotHealth, now: time::OffsetDateTime) -> Line<'static> {
    let style = match slot.wal_status {
        WalStatus::Reserved => Style::new().fg(Color::Green),
        WalStatus::Extended => Style::new().fg(Color::Yellow),
        WalStatus::Lost => Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD),
        WalStatus::Unreserved | WalStatus::Other(_) => Style::new().fg(Color::Red),
    };
    Line::from(vec![
        Span::raw(" slot "),
        Span::styled(crate::status::slot_line(slot, now), style),
    ])
}
