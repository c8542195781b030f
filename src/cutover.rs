//! The cutover checks that follow from a snapshot alone: tables not yet
//! streaming, lag, the slot, recent errors. The checks that need the
//! servers' catalogs (publications, replica identity, schemas, sequences,
//! row counts) belong to whoever reads them (the monitor).

use std::time::Duration;

use time::OffsetDateTime;

use crate::model::{
    Cutover, CutoverItem, CutoverKind, Snapshot, TableStatus, VerifyProgress, VerifyStatus,
    WalStatus,
};
use crate::units::format_bytes;

/// How much is tolerated at cutover.
#[derive(Debug, Clone, PartialEq)]
pub struct CutoverLimits {
    /// Most WAL bytes not yet applied (default 0: caught up).
    pub max_lag_bytes: u64,
    /// Most time lag (default 5 s).
    pub max_lag_seconds: f64,
    /// An error within this window blocks (default 5 minutes).
    pub error_window: Duration,
}

impl Default for CutoverLimits {
    fn default() -> Self {
        CutoverLimits {
            max_lag_bytes: 0,
            max_lag_seconds: 5.0,
            error_window: Duration::from_secs(300),
        }
    }
}

/// The blockers `snapshot` shows at `now` under `limits`.
///
/// ```
/// use pgmigrator_metrics::cutover::{CutoverLimits, snapshot_blockers};
/// use pgmigrator_metrics::{CutoverKind, Snapshot};
///
/// let snapshot = Snapshot { caught_up: false, lag_bytes: 4096, ..Snapshot::default() };
/// let blockers = snapshot_blockers(&snapshot, &CutoverLimits::default(), snapshot.timestamp);
/// assert_eq!(blockers[0].kind, CutoverKind::Lag);
/// ```
pub fn snapshot_blockers(
    snapshot: &Snapshot,
    limits: &CutoverLimits,
    now: OffsetDateTime,
) -> Vec<CutoverItem> {
    let mut blockers = Vec::new();
    let mut block = |kind: CutoverKind, table: Option<String>, detail: String| {
        blockers.push(CutoverItem {
            kind,
            table,
            detail,
        });
    };
    for table in &snapshot.tables {
        if table.status != TableStatus::Streaming {
            block(
                CutoverKind::TableNotReady,
                Some(table.qualified_name()),
                format!("{}, not streaming yet", table.status),
            );
        }
    }
    let lag_seconds = if snapshot.lag_seconds.is_finite() {
        snapshot.lag_seconds
    } else {
        f64::MAX
    };
    if !snapshot.caught_up
        || snapshot.lag_bytes > limits.max_lag_bytes
        || lag_seconds > limits.max_lag_seconds
    {
        block(
            CutoverKind::Lag,
            None,
            format!(
                "{} and {:.1} s behind (allowed: {} and {:.1} s)",
                format_bytes(snapshot.lag_bytes),
                lag_seconds.min(1e12),
                format_bytes(limits.max_lag_bytes),
                limits.max_lag_seconds
            ),
        );
    }
    if let Some(slot) = &snapshot.slot {
        if slot.wal_status == WalStatus::Lost {
            block(
                CutoverKind::SlotLost,
                None,
                format!(
                    "slot {} is lost; the subscription must be re-created",
                    slot.name
                ),
            );
        } else if !slot.active {
            block(
                CutoverKind::SlotInactive,
                None,
                format!("slot {} has no walsender streaming from it", slot.name),
            );
        }
    }
    let window_start = now - limits.error_window;
    let recent = snapshot
        .errors
        .iter()
        .filter(|e| e.time >= window_start)
        .count();
    if recent > 0 {
        let newest = snapshot
            .errors
            .last()
            .map(|e| e.message.as_str())
            .unwrap_or_default();
        block(
            CutoverKind::RecentErrors,
            None,
            format!(
                "{recent} in the last {}; newest: {newest}",
                crate::units::format_duration(limits.error_window)
            ),
        );
    }
    if let Some(verify) = &snapshot.verify {
        blockers.extend(verify_items(verify).0);
    }
    blockers
}

/// What verification found, as the verdict shows it: a `data_mismatch`
/// blocker per table whose rows differ (naming up to five keys), and an
/// `unverified` warning per table not verified (yet, or at all) or
/// verified only as a whole (no key to name rows by).
pub fn verify_items(verify: &VerifyProgress) -> (Vec<CutoverItem>, Vec<CutoverItem>) {
    let (mut blockers, mut warnings) = (Vec::new(), Vec::new());
    for table in &verify.tables {
        let item = |kind, detail| CutoverItem {
            kind,
            table: Some(table.table_name().to_string()),
            detail,
        };
        match table.status {
            VerifyStatus::Verified if table.detail.is_empty() => {}
            VerifyStatus::Mismatch => {
                let named: Vec<String> = table
                    .differences
                    .iter()
                    .take(5)
                    .map(|d| format!("{} ({})", d.key, d.kind))
                    .collect();
                let detail = if named.is_empty() {
                    format!("{} row(s) differ", table.mismatched_rows)
                } else {
                    format!(
                        "{} row(s) differ: {}",
                        table.mismatched_rows,
                        named.join(", ")
                    )
                };
                blockers.push(item(CutoverKind::DataMismatch, detail));
            }
            status => {
                let detail = if table.detail.is_empty() {
                    format!("{status}, not verified yet")
                } else {
                    format!("{status}: {}", table.detail)
                };
                warnings.push(item(CutoverKind::Unverified, detail));
            }
        }
    }
    (blockers, warnings)
}

/// The verdict: `snapshot`'s blockers at `now`, then those of `checks`
/// (the catalog checks, read at `checks.checked_at`), and `checks`'
/// warnings.
pub(crate) fn verdict(
    snapshot: &Snapshot,
    limits: &CutoverLimits,
    checks: &Cutover,
    now: OffsetDateTime,
) -> Cutover {
    let mut blockers = snapshot_blockers(snapshot, limits, now);
    blockers.extend(checks.blockers.iter().cloned());
    let mut warnings = checks.warnings.clone();
    if let Some(verify) = &snapshot.verify {
        warnings.extend(verify_items(verify).1);
    }
    Cutover::new(checks.checked_at, blockers, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorEntry, Phase, SlotHealth, TableProgress};

    fn ready() -> Snapshot {
        let mut table = TableProgress::new("public", "orders", 10, 10);
        table.status = TableStatus::Streaming;
        Snapshot {
            tables: vec![table],
            caught_up: true,
            timestamp: OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000),
            ..Snapshot::default()
        }
    }

    fn kinds(snapshot: &Snapshot) -> Vec<CutoverKind> {
        snapshot_blockers(snapshot, &CutoverLimits::default(), snapshot.timestamp)
            .into_iter()
            .map(|b| b.kind)
            .collect()
    }

    #[test]
    fn a_caught_up_streaming_migration_has_no_blocker() {
        assert!(kinds(&ready()).is_empty());
    }

    #[test]
    fn each_condition_is_its_own_blocker() {
        let mut copying = ready();
        copying.tables[0].status = TableStatus::Copying;
        let blockers = snapshot_blockers(&copying, &CutoverLimits::default(), copying.timestamp);
        assert_eq!(blockers[0].kind, CutoverKind::TableNotReady);
        assert_eq!(blockers[0].table.as_deref(), Some("public.orders"));

        let mut behind = ready();
        behind.lag_seconds = 6.0;
        assert_eq!(kinds(&behind), [CutoverKind::Lag]);
        behind.lag_seconds = f64::NAN;
        assert_eq!(
            kinds(&behind),
            [CutoverKind::Lag],
            "NaN is not within limits"
        );

        let slot = |active: bool, wal_status: WalStatus| SlotHealth {
            name: "sub".into(),
            active,
            wal_status,
            ..SlotHealth::default()
        };
        let mut idle = ready();
        idle.slot = Some(slot(false, WalStatus::Reserved));
        assert_eq!(kinds(&idle), [CutoverKind::SlotInactive]);
        idle.slot = Some(slot(false, WalStatus::Lost));
        assert_eq!(kinds(&idle), [CutoverKind::SlotLost]);

        let mut failing = ready();
        let error = |ago: u64| ErrorEntry {
            time: failing.timestamp - Duration::from_secs(ago),
            phase: Phase::Streaming,
            message: "apply error".into(),
        };
        failing.errors = vec![error(600)];
        assert!(kinds(&failing).is_empty(), "an old error does not block");
        failing.errors.push(error(60));
        assert_eq!(kinds(&failing), [CutoverKind::RecentErrors]);
    }
}
