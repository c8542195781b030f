//! Every metric family, as data: name, help, unit, and where its series
//! come from.

use crate::model::{
    AlertState, Cutover, CutoverKind, EtaState, Phase, Severity, Snapshot, TableProgress,
    TableStatus, TableVerification, VerifyProgress, VerifyStatus, WalStatus,
};

/// One metric family: its name (after `pgmigrator_`), help, unit and
/// series.
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    /// The unit, in UCUM as OpenTelemetry writes it (`By`, `s`, `By/s`;
    /// `{row}` a count of rows; empty for a flag or a one-hot state). Only
    /// OTLP carries it: the exposition's names already say it.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) unit: &'static str,
    pub(crate) series: Series,
}

/// Where a family's series come from. A family that no migration has a
/// series of is left out (no slot yet, no verdict yet, no estimate).
pub(crate) enum Series {
    /// One gauge per migration; `None`: none for that migration.
    Gauge(fn(&Snapshot) -> Option<f64>),
    /// One counter per migration.
    Counter(fn(&Snapshot) -> Option<u64>),
    /// One gauge per table, labelled `schema` and `table`.
    TableGauge(fn(&TableProgress) -> Option<f64>),
    /// One counter per table.
    TableCounter(fn(&TableProgress) -> u64),
    /// Gauges labelled `label`: one per value the function gives.
    Labelled(&'static str, fn(&Snapshot) -> Vec<(String, f64)>),
    /// One gauge per table of the verification, labelled `schema` and
    /// `table`; `None`: none for that table.
    VerifyGauge(fn(&TableVerification) -> Option<f64>),
    /// One gauge per migration: its tables left without per-table series
    /// in this export; present only when some are.
    TablesOmitted,
}

const fn family(
    name: &'static str,
    help: &'static str,
    unit: &'static str,
    series: Series,
) -> Family {
    Family {
        name,
        help,
        unit,
        series,
    }
}

/// Every family, in exposition order (`build_info` comes last).
pub(crate) const FAMILIES: &[Family] = &[
    family(
        "phase",
        "1 for the pipeline's current phase, 0 for the others",
        "",
        Series::Labelled("phase", |s| {
            one_hot(Phase::KNOWN.iter().map(Phase::as_str), s.phase.as_str())
        }),
    ),
    family(
        "elapsed_seconds",
        "Seconds since the migration started",
        "s",
        Series::Gauge(|s| Some(s.elapsed_sec)),
    ),
    family(
        "applied_lsn_bytes",
        "Last WAL position applied to the destination",
        "By",
        Series::Gauge(|s| Some(s.applied_lsn.0 as f64)),
    ),
    family(
        "confirmed_lsn_bytes",
        "Last WAL position confirmed to the source",
        "By",
        Series::Gauge(|s| Some(s.confirmed_lsn.0 as f64)),
    ),
    family(
        "latest_lsn_bytes",
        "Newest WAL position reported by the source",
        "By",
        Series::Gauge(|s| Some(s.latest_lsn.0 as f64)),
    ),
    family(
        "replication_lag_bytes",
        "WAL bytes not yet applied",
        "By",
        Series::Gauge(|s| Some(s.lag_bytes as f64)),
    ),
    family(
        "replication_lag_seconds",
        "How long the oldest unapplied WAL has waited",
        "s",
        Series::Gauge(|s| Some(s.lag_seconds)),
    ),
    family(
        "caught_up",
        "1 when everything the source reported is applied",
        "",
        Series::Gauge(|s| Some(flag(s.caught_up))),
    ),
    family(
        "stalled_seconds",
        "The longest silence: a copying table without progress, or the apply worker \
         without a message from the source",
        "s",
        Series::Gauge(|s| Some(s.stalled_seconds())),
    ),
    family(
        "stale",
        "1 when the data comes from a state file that stopped changing",
        "",
        Series::Gauge(|s| Some(flag(s.stale))),
    ),
    // A status this version does not know counts in `tables_total` only:
    // its name comes from a file, not from a bounded set.
    family(
        "tables",
        "Tables by status",
        "{table}",
        Series::Labelled("status", |s| {
            TableStatus::KNOWN
                .iter()
                .map(|status| {
                    let count = s.tables.iter().filter(|t| t.status == *status).count();
                    (status.as_str().to_owned(), count as f64)
                })
                .collect()
        }),
    ),
    family(
        "table_rows_copied",
        "Rows copied per table",
        "{row}",
        Series::TableGauge(|t| Some(t.rows_copied as f64)),
    ),
    family(
        "table_rows_estimated",
        "Estimated rows per table (absent while unknown)",
        "{row}",
        Series::TableGauge(|t| known(t.rows_total)),
    ),
    family(
        "table_bytes_copied",
        "Bytes copied per table",
        "By",
        Series::TableGauge(|t| Some(t.bytes_copied as f64)),
    ),
    family(
        "table_size_bytes",
        "Table size per table (absent while unknown)",
        "By",
        Series::TableGauge(|t| known(t.size_bytes)),
    ),
    family(
        "table_changes_applied",
        "Inserts, updates and deletes applied per table since it reached streaming",
        "{change}",
        Series::TableCounter(|t| t.changes_applied),
    ),
    family(
        "slot_exhaustion_seconds",
        "Seconds until the replication slot's safe_wal_size reaches zero at the rate it \
         shrank over the last minute; absent while it does not shrink",
        "s",
        Series::Gauge(|s| Some(s.slot.as_ref()?.exhausted_in_sec? as f64)),
    ),
    family(
        "slot_retained_wal_bytes",
        "WAL the replication slot holds on the source",
        "By",
        Series::Gauge(|s| Some(s.slot.as_ref()?.retained_bytes as f64)),
    ),
    family(
        "slot_safe_wal_size_bytes",
        "WAL that can still be written before the slot is in danger of being lost \
         (absent when max_slot_wal_keep_size is unlimited)",
        "By",
        Series::Gauge(|s| Some(s.slot.as_ref()?.safe_wal_size? as f64)),
    ),
    family(
        "slot_max_wal_keep_size_bytes",
        "The source's max_slot_wal_keep_size (absent when unlimited)",
        "By",
        Series::Gauge(|s| Some(s.slot.as_ref()?.max_slot_wal_keep_size? as f64)),
    ),
    family(
        "slot_active",
        "1 while a walsender streams from the slot",
        "",
        Series::Gauge(|s| Some(flag(s.slot.as_ref()?.active))),
    ),
    family(
        "slot_wal_status",
        "1 for the slot's current wal_status (reserved, extended, unreserved, lost)",
        "",
        Series::Labelled("status", |s| {
            s.slot
                .as_ref()
                .map(|slot| {
                    one_hot(
                        WalStatus::KNOWN.iter().map(WalStatus::as_str),
                        slot.wal_status.as_str(),
                    )
                })
                .unwrap_or_default()
        }),
    ),
    family(
        "slot_spill_bytes",
        "Decoded changes spilled to disk by the slot's walsender",
        "By",
        Series::Counter(|s| Some(s.slot.as_ref()?.spill_bytes)),
    ),
    family(
        "cutover_ready",
        "1 when the last check found nothing blocking the switch to the destination",
        "",
        Series::Gauge(|s| Some(flag(s.cutover.as_ref()?.ready))),
    ),
    family(
        "cutover_blockers",
        "Blockers of the switch to the destination, by kind",
        "{blocker}",
        Series::Labelled("kind", |s| {
            s.cutover.as_ref().map(blocker_series).unwrap_or_default()
        }),
    ),
    family(
        "verify_bytes",
        "Bytes of the source's tables read by data verification in its current round",
        "By",
        Series::Counter(|s| Some(s.verify.as_ref()?.bytes_verified)),
    ),
    family(
        "verify_tables",
        "Tables by where data verification stands (pending, verifying, verified, mismatch, unstable, unverifiable, skipped)",
        "{table}",
        Series::Labelled("status", |s| {
            s.verify.as_ref().map(verify_series).unwrap_or_default()
        }),
    ),
    family(
        "verify_mismatched_rows",
        "Rows that differ between the source and the destination, by table (tables with a mismatch)",
        "{row}",
        Series::VerifyGauge(|t| {
            (t.status == VerifyStatus::Mismatch).then_some(t.mismatched_rows as f64)
        }),
    ),
    family(
        "verify_chunks_retried",
        "Chunks data verification read more than once in its current round (rows in flight)",
        "{chunk}",
        Series::Counter(|s| Some(s.verify.as_ref()?.chunks_retried)),
    ),
    family(
        "alerts_firing",
        "Alerts firing, by severity",
        "{alert}",
        Series::Labelled("severity", |s| {
            Severity::KNOWN
                .iter()
                .map(|severity| {
                    let firing = s
                        .alerts
                        .iter()
                        .filter(|a| a.severity == *severity && a.state == AlertState::Firing);
                    (severity.as_str().to_owned(), firing.count() as f64)
                })
                .collect()
        }),
    ),
    family(
        "notifications_failed",
        "Alert notifications given up on after their retries, or dropped from a full queue",
        "{notification}",
        Series::Counter(|s| Some(s.notifications_failed)),
    ),
    family(
        "copy_eta_seconds",
        "Seconds until every table is copied, as forecast",
        "s",
        Series::Gauge(|s| s.eta_sec),
    ),
    family(
        "eta_seconds",
        "Seconds until every table is copied: as forecast (mid), and at the fast (low) \
         and slow (high) ends of the recent rates",
        "s",
        Series::Labelled("bound", |s| {
            let Some(eta) = s.eta else {
                return Vec::new();
            };
            [("low", eta.low), ("mid", eta.seconds), ("high", eta.high)]
                .into_iter()
                .filter_map(|(bound, seconds)| Some((bound.to_owned(), seconds?)))
                .collect()
        }),
    ),
    family(
        "eta_drift_seconds",
        "How far the copy's forecast finish moved over the last hour; positive when it slipped",
        "s",
        Series::Gauge(|s| s.eta?.drift_sec),
    ),
    family(
        "eta_state",
        "1 for how far the copy's forecast can be trusted, 0 for the other states",
        "",
        Series::Labelled("state", |s| match &s.eta {
            Some(eta) => one_hot(
                EtaState::KNOWN.iter().map(EtaState::as_str),
                eta.state.as_str(),
            ),
            None => Vec::new(),
        }),
    ),
    family(
        "catch_up_seconds",
        "Seconds until streaming has caught up at the recent rates; absent unless catching up",
        "s",
        Series::Gauge(|s| s.catch_up?.seconds),
    ),
    family(
        "lag_growth_bytes_per_second",
        "Bytes a second the lag grows by while the source writes faster than it is applied",
        "By/s",
        Series::Gauge(|s| s.catch_up?.growing_bytes_per_sec),
    ),
    family(
        "rows_per_second",
        "Rows applied per second over the rate window",
        "{row}/s",
        Series::Gauge(|s| Some(s.rows_per_sec)),
    ),
    family(
        "bytes_per_second",
        "Bytes applied per second over the rate window",
        "By/s",
        Series::Gauge(|s| Some(s.bytes_per_sec)),
    ),
    family(
        "rows_applied",
        "Rows applied since the migration started",
        "{row}",
        Series::Counter(|s| Some(s.total_rows.max(0) as u64)),
    ),
    family(
        "bytes_applied",
        "Bytes applied since the migration started",
        "By",
        Series::Counter(|s| Some(s.total_bytes.max(0) as u64)),
    ),
    family(
        "errors",
        "Errors recorded since the migration started",
        "{error}",
        Series::Counter(|s| Some(s.error_count)),
    ),
    family(
        "logs_dropped",
        "Log events dropped because the collector was busy",
        "{event}",
        Series::Counter(|s| Some(s.logs_dropped)),
    ),
    family(
        "scrape_tables_omitted",
        "Tables left without per-table series in this export (the most interesting \
         --metrics-tables of each migration get them, at most 100,000 in all)",
        "{table}",
        Series::TablesOmitted,
    ),
];

fn flag(on: bool) -> f64 {
    f64::from(u8::from(on))
}

/// A count or size that is known (above 0).
fn known(value: i64) -> Option<f64> {
    (value > 0).then_some(value as f64)
}

/// Every known name, 1 for `current` and 0 for the others, and `current`
/// itself when this version does not know it.
fn one_hot<'a>(known: impl Iterator<Item = &'a str>, current: &str) -> Vec<(String, f64)> {
    let mut series: Vec<(String, f64)> = known
        .map(|name| (name.to_owned(), flag(name == current)))
        .collect();
    if !series.iter().any(|(name, _)| name == current) {
        series.push((current.to_owned(), 1.0));
    }
    series
}

/// Tables by verification status.
fn verify_series(verify: &VerifyProgress) -> Vec<(String, f64)> {
    counts_by_name(
        VerifyStatus::KNOWN.iter().map(VerifyStatus::as_str),
        verify.tables.iter().map(|t| t.status.as_str()),
    )
}

/// Blockers by kind.
fn blocker_series(cutover: &Cutover) -> Vec<(String, f64)> {
    counts_by_name(
        CutoverKind::KNOWN.iter().map(CutoverKind::as_str),
        cutover.blockers.iter().map(|b| b.kind.as_str()),
    )
}

/// How many of `items` have each name: every known name (0 when absent),
/// then any other name that occurs.
fn counts_by_name<'a>(
    known: impl Iterator<Item = &'a str>,
    items: impl Iterator<Item = &'a str> + Clone,
) -> Vec<(String, f64)> {
    let mut names: Vec<&str> = known.collect();
    for name in items.clone() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let count = items.clone().filter(|item| *item == name).count();
            (name.to_owned(), count as f64)
        })
        .collect()
}
