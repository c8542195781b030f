//! The offline report of `pgmigrator status`: a pure function of a snapshot
//! and the current time.

use std::fmt::Write as _;
use std::time::Duration;

use time::OffsetDateTime;

use crate::model::{
    AlertState, AlertStatus, Cutover, LogEntry, Phase, SlotHealth, Snapshot, VerifyProgress,
    VerifyStatus, WalStatus,
};
use crate::printable::{printable, printable_line};
use crate::units::{format_bytes, format_duration, seconds};

/// Longest text from the state file (a name, an error) printed on one
/// line; a longer one is cut with a note of how much was left out.
pub const MAX_TEXT_CHARS: usize = 300;

pub use crate::model::STALE_AFTER;

/// The status report for `snapshot` as seen at `now`.
///
/// Every text that comes from the state file (phase, table names, errors)
/// is shown with its control characters escaped and cut to
/// [`MAX_TEXT_CHARS`], so a hostile file cannot drive the terminal.
///
/// The first lines keep the Go original's labels and order; lines it did not
/// have (latest LSN, time lag, ETA, errors) follow the table list. A state
/// older than [`STALE_AFTER`] is marked `(stale — 45s ago)` on the phase
/// line, or `(finished — 45s ago)` when the phase is `done`.
///
/// ```
/// use pgmigrator_metrics::{status, Phase, Snapshot};
/// use time::macros::datetime;
///
/// let snapshot = Snapshot {
///     timestamp: datetime!(2026-02-27 14:00:00 UTC),
///     phase: Phase::Streaming,
///     ..Snapshot::default()
/// };
/// let report = status::render(&snapshot, datetime!(2026-02-27 14:00:45 UTC));
/// assert!(report.starts_with("Phase:        streaming (stale — 45s ago)\n"));
/// ```
pub fn render(snapshot: &Snapshot, now: OffsetDateTime) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, snapshot, now);
    out
}

fn write_report(out: &mut String, s: &Snapshot, now: OffsetDateTime) -> std::fmt::Result {
    let age = s.age(now).as_secs();
    let stale = match (s.is_stale(now), &s.phase) {
        (false, _) => String::new(),
        // A finished pipeline is expected to have stopped writing.
        (true, Phase::Done) => format!(" (finished — {age}s ago)"),
        (true, _) => format!(" (stale — {age}s ago)"),
    };
    writeln!(
        out,
        "Phase:        {}{stale}",
        printable(&s.phase.to_string())
    )?;
    writeln!(out, "Elapsed:      {:.0}s", s.elapsed_sec)?;
    writeln!(out, "Applied LSN:  {}", s.applied_lsn)?;
    writeln!(out, "Confirmed LSN: {}", s.confirmed_lsn)?;
    writeln!(
        out,
        "Lag:          {}",
        printable_line(&s.lag_formatted, MAX_TEXT_CHARS)
    )?;
    writeln!(
        out,
        "Tables:       {}/{} copied",
        s.tables_copied, s.tables_total
    )?;
    writeln!(
        out,
        "Throughput:   {:.0} rows/s, {:.0} bytes/s",
        s.rows_per_sec, s.bytes_per_sec
    )?;
    writeln!(
        out,
        "Total:        {} rows, {} bytes",
        s.total_rows, s.total_bytes
    )?;

    if !s.tables.is_empty() {
        writeln!(out)?;
        writeln!(out, "Tables:")?;
        for t in &s.tables {
            let total = if t.rows_total > 0 {
                t.rows_total.to_string()
            } else {
                "?".to_owned()
            };
            writeln!(
                out,
                "  {:<34} {:<7} {:>5.1}%  ({}/{} rows)",
                printable_line(&t.qualified_name(), MAX_TEXT_CHARS),
                t.status.as_str(),
                t.percent,
                t.rows_copied,
                total
            )?;
        }
    }

    writeln!(out)?;
    writeln!(out, "Latest LSN:   {}", s.latest_lsn)?;
    writeln!(
        out,
        "Time lag:     {}{}",
        format_duration(seconds(s.lag_seconds)),
        if s.caught_up { " (caught up)" } else { "" }
    )?;
    if let Some(catch_up) = s.catch_up.filter(|_| !s.caught_up) {
        writeln!(out, "Catch-up:     {}", printable(&catch_up.to_string()))?;
    }
    if s.tables_copied < s.tables_total {
        match (&s.eta, s.eta_sec) {
            (Some(eta), _) => writeln!(out, "Copy ETA:     {}", printable(&eta.to_string()))?,
            // A state file from before forecasts had a state and a band.
            (None, Some(eta)) => {
                let eta = Duration::from_secs(seconds(eta).as_secs());
                writeln!(out, "Copy ETA:     {}", format_duration(eta))?;
            }
            (None, None) => {}
        }
    }
    if let Some(slot) = &s.slot {
        writeln!(out, "Slot:         {}", slot_line(slot, now))?;
    }
    if let Some(cutover) = &s.cutover {
        out.push_str(&render_cutover(cutover, now));
    }
    if let Some(verify) = &s.verify {
        out.push_str(&render_verify(verify));
    }
    write_alerts(out, &s.alerts)?;
    if s.error_count > 0 {
        writeln!(
            out,
            "Errors:       {} (last: {})",
            s.error_count,
            printable_line(&s.last_error, MAX_TEXT_CHARS)
        )?;
    }
    Ok(())
}

/// The newest `count` of `entries`, a line each (`12:04:05 WARN  message
/// key=value`), under a `Log:` heading; control characters escaped.
pub fn render_logs(entries: &[LogEntry], count: usize) -> String {
    let mut out = String::from("\nLog:\n");
    let newest = &entries[entries.len().saturating_sub(count)..];
    if newest.is_empty() {
        out.push_str("  (no log lines kept)\n");
    }
    for entry in newest {
        let fields: Vec<String> = entry
            .fields
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let line = format!(
            "{} {:<5} {}{}{}",
            entry.time.format(&CLOCK_SHORT).unwrap_or_default(),
            entry.level.as_str().to_uppercase(),
            entry.message,
            if fields.is_empty() { "" } else { "  " },
            fields.join(" ")
        );
        out.push_str("  ");
        out.push_str(&printable_line(&line, MAX_TEXT_CHARS));
        out.push('\n');
    }
    out
}

/// `12:04:05`.
const CLOCK_SHORT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[hour]:[minute]:[second]");

/// `Cutover:      NOT READY — 2 blockers (checked 12s ago)` and a line per
/// blocker and warning, as `status` and `pgmigrator check` print them.
pub fn render_cutover(cutover: &Cutover, now: OffsetDateTime) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_cutover(&mut out, cutover, now);
    out
}

fn write_cutover(out: &mut String, cutover: &Cutover, now: OffsetDateTime) -> std::fmt::Result {
    let age: Duration = (now - cutover.checked_at).try_into().unwrap_or_default();
    let checked = format!(
        "checked {} ago",
        format_duration(Duration::from_secs(age.as_secs()))
    );
    match cutover.blockers.len() {
        0 => writeln!(out, "Cutover:      READY ({checked})")?,
        1 => writeln!(out, "Cutover:      NOT READY — 1 blocker ({checked})")?,
        n => writeln!(out, "Cutover:      NOT READY — {n} blockers ({checked})")?,
    }
    let items = cutover
        .blockers
        .iter()
        .map(|item| ("blocker", item))
        .chain(cutover.warnings.iter().map(|item| ("warning", item)));
    for (which, item) in items {
        let table = item
            .table
            .as_deref()
            .map(|t| format!(" {}", printable_line(t, MAX_TEXT_CHARS)))
            .unwrap_or_default();
        writeln!(
            out,
            "  {which}: {}{table}: {}",
            printable(item.kind.as_str()),
            printable_line(&item.detail, MAX_TEXT_CHARS)
        )?;
    }
    Ok(())
}

/// `Verify:       38 of 40 tables verified, 1 mismatch, 1 verifying · 1.20 GiB
/// of 4.00 GiB · ETA 5m · 3 chunks read again`, then each table not
/// verified with the keys of the rows that differ, as `status` and
/// `pgmigrator check --verify` print it.
pub fn render_verify(verify: &VerifyProgress) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_verify(&mut out, verify);
    out
}

fn write_verify(out: &mut String, verify: &VerifyProgress) -> std::fmt::Result {
    let mut counts = vec![format!(
        "{} of {} tables verified",
        verify.tables_verified, verify.tables_total
    )];
    let mut others: Vec<VerifyStatus> = Vec::new();
    for table in &verify.tables {
        if table.status != VerifyStatus::Verified && !others.contains(&table.status) {
            others.push(table.status);
        }
    }
    counts.extend(
        others
            .iter()
            .map(|status| format!("{} {}", verify.count(*status), printable(status.as_str()))),
    );
    let mut line = counts.join(", ");
    if verify.bytes_total > 0 {
        line.push_str(&format!(
            " · {} of {}",
            format_bytes(verify.bytes_verified),
            format_bytes(verify.bytes_total)
        ));
    }
    if let Some(eta) = verify.eta_sec.filter(|eta| *eta > 0.0) {
        let eta = Duration::from_secs(seconds(eta).as_secs());
        line.push_str(&format!(" · ETA {}", format_duration(eta)));
    }
    if verify.chunks_retried > 0 {
        line.push_str(&format!(" · {} chunks read again", verify.chunks_retried));
    }
    writeln!(out, "Verify:       {line}")?;
    let worth_a_line = |status| {
        matches!(
            status,
            VerifyStatus::Mismatch | VerifyStatus::Unstable | VerifyStatus::Unverifiable
        )
    };
    for table in verify.tables.iter().filter(|t| worth_a_line(t.status)) {
        let name = table.table_name().to_string();
        write!(
            out,
            "  {} {}",
            printable(table.status.as_str()),
            printable_line(&name, MAX_TEXT_CHARS)
        )?;
        match table.mismatched_rows {
            0 => writeln!(out, ": {}", printable_line(&table.detail, MAX_TEXT_CHARS))?,
            n => writeln!(out, ": {n} row(s) differ")?,
        }
        for difference in &table.differences {
            writeln!(
                out,
                "    {} {}",
                printable(difference.kind.as_str()),
                printable_line(&difference.key, MAX_TEXT_CHARS)
            )?;
        }
        let unnamed = table
            .mismatched_rows
            .saturating_sub(table.differences.len() as u64);
        if unnamed > 0 && !table.differences.is_empty() {
            writeln!(out, "    … and {unnamed} more (--verify-max-rows)")?;
        }
    }
    Ok(())
}

/// `12:04:05 UTC`.
const CLOCK: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[hour]:[minute]:[second] UTC");

/// `Alerts:       2 firing, 1 pending` and a line per alert.
fn write_alerts(out: &mut String, alerts: &[AlertStatus]) -> std::fmt::Result {
    if alerts.is_empty() {
        return Ok(());
    }
    let count = |state: AlertState| alerts.iter().filter(|a| a.state == state).count();
    let counts: Vec<String> = [
        AlertState::Firing,
        AlertState::Pending,
        AlertState::Resolved,
    ]
    .into_iter()
    .filter(|state| count(*state) > 0)
    .map(|state| format!("{} {state}", count(state)))
    .collect();
    writeln!(out, "Alerts:       {}", counts.join(", "))?;
    for alert in alerts {
        writeln!(
            out,
            "  {} {} {} since {}: {}",
            alert.state,
            alert.severity,
            printable_line(&alert.name, MAX_TEXT_CHARS),
            alert.since.format(&CLOCK).unwrap_or_default(),
            printable_line(&alert.summary, MAX_TEXT_CHARS)
        )?;
    }
    Ok(())
}

/// `sub1 active · 1.20 GiB retained · 3.10 GiB until unreserved · reserved`,
/// as `status` and the terminal dashboard show it.
pub(crate) fn slot_line(slot: &SlotHealth, now: OffsetDateTime) -> String {
    let activity = match (slot.active, slot.inactive_since) {
        (true, _) => "active".to_owned(),
        (false, Some(since)) => {
            let idle: Duration = (now - since).try_into().unwrap_or_default();
            let idle = Duration::from_secs(idle.as_secs());
            format!("inactive for {}", format_duration(idle))
        }
        (false, None) => "inactive".to_owned(),
    };
    let headroom = match (&slot.wal_status, slot.safe_wal_size) {
        (WalStatus::Lost, _) => {
            "LOST — its WAL is gone; the subscription must be re-created".to_owned()
        }
        (_, Some(safe)) => {
            let lost_in = match slot.exhausted_in_sec {
                Some(left) => format!(
                    " · lost in {} at this rate",
                    format_duration(Duration::from_secs(left))
                ),
                None => String::new(),
            };
            format!(
                "{} until unreserved{lost_in} · {}",
                format_bytes(safe.max(0) as u64),
                slot.wal_status
            )
        }
        (_, None) => format!("no WAL limit · {}", slot.wal_status),
    };
    format!(
        "{} {activity} · {} retained · {}",
        printable(&slot.name),
        format_bytes(slot.retained_bytes),
        printable(&headroom)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;
    use crate::model::{TableProgress, TableStatus};
    use time::macros::datetime;

    fn example() -> Snapshot {
        let mut users = TableProgress::new("public", "users", 1_200_000, 0);
        users.status = TableStatus::Copied;
        users.rows_copied = 1_200_000;
        users.percent = 100.0;
        let mut orders = TableProgress::new("public", "orders", 2_100_000, 0);
        orders.status = TableStatus::Copying;
        orders.rows_copied = 890_000;
        orders.percent = 42.38;
        Snapshot {
            timestamp: datetime!(2026-02-27 14:23:01.234 UTC),
            phase: Phase::Streaming,
            elapsed_sec: 3621.4,
            applied_lsn: Lsn(0x1A3B4C5),
            confirmed_lsn: Lsn(0x1A3B4C0),
            latest_lsn: Lsn(0x1A3B4C5 + 1_310_720),
            lag_bytes: 1_310_720,
            lag_formatted: "1.25 MB (latency: 150ms)".into(),
            lag_seconds: 0.15,
            caught_up: false,
            tables_total: 54,
            tables_copied: 42,
            tables: vec![users, orders],
            rows_per_sec: 4521.3,
            bytes_per_sec: 1_048_576.0,
            total_rows: 12_345_678,
            total_bytes: 5_368_709_120,
            ..Snapshot::default()
        }
    }

    #[test]
    fn report_matches_the_original_layout() {
        let report = render(&example(), datetime!(2026-02-27 14:23:03 UTC));
        let expected = "\
Phase:        streaming
Elapsed:      3621s
Applied LSN:  0/1A3B4C5
Confirmed LSN: 0/1A3B4C0
Lag:          1.25 MB (latency: 150ms)
Tables:       42/54 copied
Throughput:   4521 rows/s, 1048576 bytes/s
Total:        12345678 rows, 5368709120 bytes

Tables:
  public.users                       copied  100.0%  (1200000/1200000 rows)
  public.orders                      copying  42.4%  (890000/2100000 rows)
";
        assert!(report.starts_with(expected), "{report}");
    }

    #[test]
    fn extra_lines_follow_the_table_list() {
        let mut snapshot = example();
        snapshot.eta_sec = Some(750.4);
        snapshot.eta = Some(crate::model::Eta {
            state: crate::model::EtaState::Estimating,
            seconds: Some(750.4),
            low: Some(600.0),
            high: Some(1000.0),
            drift_sec: None,
        });
        snapshot.error_count = 3;
        snapshot.last_error = "connection reset".into();
        let report = render(&snapshot, datetime!(2026-02-27 14:23:03 UTC));
        let tail: Vec<&str> = report.lines().skip(12).collect();
        assert_eq!(
            tail,
            [
                "",
                "Latest LSN:   0/1B7B4C5",
                "Time lag:     150ms",
                "Copy ETA:     12m30s (10m0s to 16m40s)",
                "Errors:       3 (last: connection reset)",
            ]
        );
    }

    #[test]
    fn a_lagging_stream_says_when_it_catches_up_or_how_fast_it_falls_behind() {
        let mut snapshot = example();
        snapshot.caught_up = false;
        snapshot.catch_up = Some(crate::model::CatchUp {
            state: crate::model::CatchUpState::FallingBehind,
            seconds: None,
            growing_bytes_per_sec: Some(1_258_291.0),
        });
        let report = render(&snapshot, snapshot.timestamp);
        assert!(
            report.contains("Catch-up:     falling behind by 1.20 MiB/s\n"),
            "{report}"
        );
        snapshot.caught_up = true;
        assert!(!render(&snapshot, snapshot.timestamp).contains("Catch-up:"));
    }

    #[test]
    fn state_older_than_ten_seconds_is_marked_stale() {
        let snapshot = example();
        let fresh = render(&snapshot, snapshot.timestamp + Duration::from_secs(10));
        assert!(fresh.starts_with("Phase:        streaming\n"));
        let stale = render(
            &snapshot,
            snapshot.timestamp + Duration::from_millis(45_900),
        );
        assert!(
            stale.starts_with("Phase:        streaming (stale — 45s ago)\n"),
            "{stale}"
        );
    }

    #[test]
    fn a_finished_migration_is_not_called_stale() {
        let mut snapshot = example();
        snapshot.phase = Phase::Done;
        let report = render(&snapshot, snapshot.timestamp + Duration::from_secs(3600));
        assert!(
            report.starts_with("Phase:        done (finished — 3600s ago)\n"),
            "{report}"
        );
    }

    #[test]
    fn unknown_row_estimates_show_a_question_mark() {
        let mut snapshot = example();
        snapshot.tables[1].rows_total = -1;
        let report = render(&snapshot, snapshot.timestamp);
        assert!(report.contains("(890000/? rows)"), "{report}");
    }

    #[test]
    fn empty_state_has_no_table_section_and_no_eta() {
        let report = render(&Snapshot::default(), OffsetDateTime::UNIX_EPOCH);
        assert!(!report.contains("\nTables:\n"));
        assert!(!report.contains("ETA"));
        assert!(report.contains("Time lag:     0s (caught up)"));
    }

    #[test]
    fn hostile_text_is_escaped_and_long_errors_are_cut() {
        let mut snapshot = example();
        snapshot.phase = Phase::Other("x\x1b]0;owned\x07".into());
        snapshot.tables[0].name = "t\x1b]52;c;ZXZpbA==\x07\u{9b}2J".into();
        snapshot.error_count = 1;
        snapshot.last_error = format!("\x1b[2J{}", "e".repeat(1_000_000));
        snapshot.lag_formatted = "\r\x1b[1A".into();
        // Forecast states a newer (or hostile) file names.
        snapshot.tables_copied = 0;
        snapshot.caught_up = false;
        snapshot.eta = Some(crate::model::Eta::bare(crate::model::EtaState::from_name(
            "\x1b[2Jeta",
        )));
        snapshot.catch_up = Some(crate::model::CatchUp {
            state: crate::model::CatchUpState::from_name("\x1b[2Jcatch"),
            ..crate::model::CatchUp::default()
        });
        let report = render(&snapshot, snapshot.timestamp);
        assert!(report.contains(r"Copy ETA:     \e[2Jeta"), "{report}");
        assert!(report.contains(r"Catch-up:     \e[2Jcatch"), "{report}");
        assert!(!report.contains('\x1b') && !report.contains('\u{9b}') && !report.contains('\x07'));
        assert!(
            report.contains(r"t\e]52;c;ZXZpbA==\x07\u{9b}2J"),
            "{report}"
        );
        assert!(
            report.contains(r"Phase:        x\e]0;owned\x07"),
            "{report}"
        );
        assert!(report.len() < 10_000, "{} bytes", report.len());
        assert!(report.contains("more characters)"));
        // Only the report's own line breaks remain.
        assert_eq!(report.matches('\r').count(), 0);
    }

    #[test]
    fn the_slot_line_says_how_much_is_held_and_how_much_room_is_left() {
        let mut snapshot = example();
        let now = snapshot.timestamp;
        snapshot.slot = Some(SlotHealth {
            name: "sub1".into(),
            active: true,
            wal_status: WalStatus::Reserved,
            retained_bytes: 1_288_490_189,
            safe_wal_size: Some(3_328_599_654),
            max_slot_wal_keep_size: Some(4 << 30),
            ..SlotHealth::default()
        });
        let report = render(&snapshot, now);
        assert!(
            report.contains("Slot:         sub1 active · 1.20 GiB retained · 3.10 GiB until unreserved · reserved\n"),
            "{report}"
        );
        snapshot.slot.as_mut().unwrap().exhausted_in_sec = Some(2730);
        let report = render(&snapshot, now);
        assert!(
            report.contains("3.10 GiB until unreserved · lost in 45m30s at this rate · reserved"),
            "{report}"
        );
        let slot = snapshot.slot.as_mut().unwrap();
        slot.active = false;
        slot.inactive_since = Some(now - Duration::from_secs(300));
        slot.wal_status = WalStatus::Lost;
        slot.safe_wal_size = None;
        let report = render(&snapshot, now);
        assert!(
            report.contains("sub1 inactive for 5m0s · 1.20 GiB retained · LOST — its WAL is gone; the subscription must be re-created"),
            "{report}"
        );
        let slot = snapshot.slot.as_mut().unwrap();
        slot.wal_status = WalStatus::Reserved;
        slot.max_slot_wal_keep_size = None;
        assert!(render(&snapshot, now).contains("no WAL limit · reserved"));
    }

    #[test]
    fn the_verify_line_counts_tables_and_lists_the_differing_keys_escaped() {
        use crate::model::{DifferenceKind, RowDifference, TableName, TableVerification};
        let mut snapshot = example();
        let now = snapshot.timestamp;
        let table = |name: &str, status| TableVerification {
            status,
            bytes_total: 1 << 30,
            ..TableVerification::pending(&TableName::new("public", name))
        };
        let mut verify = VerifyProgress {
            tables: vec![
                TableVerification {
                    bytes_verified: 1 << 30,
                    ..table("a", VerifyStatus::Verified)
                },
                TableVerification {
                    mismatched_rows: 3,
                    bytes_verified: 1 << 30,
                    differences: vec![RowDifference {
                        key: "(7,\x1b[2J)".into(),
                        kind: DifferenceKind::Missing,
                    }],
                    ..table("orders\x1b", VerifyStatus::Mismatch)
                },
                table("c", VerifyStatus::Verifying),
            ],
            ..VerifyProgress::default()
        };
        verify.total_up(60.0, 0);
        snapshot.verify = Some(verify);
        let text = render(&snapshot, now);
        assert!(
            text.contains(
                "Verify:       1 of 3 tables verified, 1 mismatch, 1 verifying · \
                 2.00 GiB of 3.00 GiB · ETA 30s\n  mismatch public.orders\\e: 3 row(s) differ\n    \
                 missing (7,\\e[2J)\n    … and 2 more (--verify-max-rows)\n"
            ),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn log_lines_are_the_newest_with_their_fields_and_escaped() {
        use crate::model::{LogEntry, LogLevel};
        let entries: Vec<LogEntry> = (0..5)
            .map(|i| {
                LogEntry::new(LogLevel::Warn, format!("line {i}\x1b[2J"))
                    .with_field("table", "public.orders")
            })
            .collect();
        let text = render_logs(&entries, 2);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "Log:");
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[2].ends_with("WARN  line 3\\e[2J  table=public.orders"),
            "{text}"
        );
        assert!(lines[3].contains("line 4"));
        assert!(render_logs(&[], 20).contains("(no log lines kept)"));
    }

    #[test]
    fn alerts_are_counted_and_listed_with_hostile_text_escaped() {
        use crate::model::{AlertState, AlertStatus, Severity};
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(45_296);
        let alert = |name: &str, state: AlertState| AlertStatus {
            name: name.into(),
            state,
            severity: Severity::Critical,
            since: now,
            value: "1.20 GB".into(),
            summary: "lag is 1.20 GB\x1b[2J".into(),
        };
        let snapshot = Snapshot {
            timestamp: now,
            alerts: vec![
                alert("lag", AlertState::Firing),
                alert("slot", AlertState::Pending),
            ],
            ..Snapshot::default()
        };
        let text = render(&snapshot, now);
        assert!(
            text.contains("Alerts:       1 firing, 1 pending\n"),
            "{text}"
        );
        assert!(
            text.contains("  firing critical lag since 12:34:56 UTC: lag is 1.20 GB\\e[2J\n"),
            "{text}"
        );
        assert!(!render(&Snapshot::default(), now).contains("Alerts:"));
    }

    #[test]
    fn the_cutover_line_names_every_blocker_and_warning() {
        use crate::model::{CutoverItem, CutoverKind};
        let mut snapshot = example();
        let now = snapshot.timestamp;
        let item = |kind: CutoverKind, table: Option<&str>, detail: &str| CutoverItem {
            kind,
            table: table.map(str::to_owned),
            detail: detail.to_owned(),
        };
        snapshot.cutover = Some(Cutover::new(
            now - Duration::from_secs(12),
            vec![
                item(
                    CutoverKind::SequenceBehind,
                    Some("public.orders_id_seq"),
                    "source 120045, destination 1",
                ),
                item(CutoverKind::Other("new\x1b[2J".into()), None, "kept"),
            ],
            vec![item(
                CutoverKind::Other("estimate_only".into()),
                Some("public.events"),
                "never analysed",
            )],
        ));
        let report = render(&snapshot, now);
        assert!(
            report.contains(
                "Cutover:      NOT READY — 2 blockers (checked 12s ago)\n\
                 \x20 blocker: sequence_behind public.orders_id_seq: source 120045, destination 1\n\
                 \x20 blocker: new\\e[2J: kept\n\
                 \x20 warning: estimate_only public.events: never analysed\n"
            ),
            "{report}"
        );
        snapshot.cutover = Some(Cutover::new(now, vec![], vec![]));
        assert!(render(&snapshot, now).contains("Cutover:      READY (checked 0s ago)\n"));
    }

    #[test]
    fn hand_edited_numbers_do_not_panic() {
        let mut snapshot = example();
        snapshot.lag_seconds = -5.0;
        snapshot.eta_sec = Some(1e300);
        snapshot.elapsed_sec = f64::MAX;
        let report = render(&snapshot, snapshot.timestamp);
        assert!(
            report.contains("Copy ETA:     "),
            "an old file's eta_sec: {report}"
        );
        snapshot.eta = Some(crate::model::Eta {
            state: crate::model::EtaState::Estimating,
            seconds: Some(1e300),
            low: Some(f64::NAN),
            high: Some(-1.0),
            drift_sec: None,
        });
        snapshot.timestamp = datetime!(-9999-01-01 0:00 UTC);
        let report = render(&snapshot, datetime!(9999-12-31 23:59:59 UTC));
        assert!(report.contains("stale"));
    }
}
