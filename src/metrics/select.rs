//! Which of a migration's tables get per-table series when an export is
//! bounded (`--metrics-tables N`): the N an operator most needs to see.
//! Per-table series are where a fleet's cardinality explodes (1,000
//! migrations × 100 tables × every per-table family); the migration-level
//! series never depend on this choice, so totals stay exact.

use std::collections::HashSet;

use crate::model::{Snapshot, TableProgress, TableStatus, VerifyStatus};

/// A copying table without progress for this long is stalled, and comes
/// first.
const STALLED_AFTER_SEC: f64 = 30.0;

/// The indices of `snapshot`'s tables that get per-table series, in the
/// snapshot's order: every one when `bound` is `None` or they fit, else the
/// `bound` most interesting — stalled copies, then tables whose data
/// differs, then copies running, then those with the most left to copy,
/// then those streaming the most changes.
pub(crate) fn chosen_tables(snapshot: &Snapshot, bound: Option<usize>) -> Vec<usize> {
    let all = snapshot.tables.len();
    let Some(bound) = bound.filter(|&bound| bound < all) else {
        return (0..all).collect();
    };
    if bound == 0 {
        return Vec::new();
    }
    let differing: HashSet<(&str, &str)> = snapshot
        .verify
        .iter()
        .flat_map(|v| &v.tables)
        .filter(|t| matches!(t.status, VerifyStatus::Mismatch | VerifyStatus::Unstable))
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .collect();
    let mut ranked: Vec<(Interest, usize)> = snapshot
        .tables
        .iter()
        .enumerate()
        .map(|(i, t)| (interest(snapshot, t, &differing), i))
        .collect();
    ranked.select_nth_unstable(bound - 1);
    let mut chosen: Vec<usize> = ranked[..bound].iter().map(|&(_, i)| i).collect();
    chosen.sort_unstable();
    chosen
}

/// How much a table needs watching: smaller first.
type Interest = (u8, std::cmp::Reverse<u64>);

fn interest(snapshot: &Snapshot, t: &TableProgress, differing: &HashSet<(&str, &str)>) -> Interest {
    use std::cmp::Reverse;
    let left = u64::try_from(t.size_bytes.saturating_sub(t.bytes_copied)).unwrap_or(0);
    let silent = t
        .last_progress_at
        .map(|at| (snapshot.timestamp - at).as_seconds_f64());
    let copying = t.status == TableStatus::Copying;
    if copying && silent.is_some_and(|s| s >= STALLED_AFTER_SEC) {
        (0, Reverse(left))
    } else if differing.contains(&(t.schema.as_str(), t.name.as_str())) {
        (1, Reverse(left))
    } else if copying {
        (2, Reverse(left))
    } else if !t.status.is_copied() {
        (3, Reverse(left))
    } else {
        (4, Reverse(t.changes_applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TableVerification, VerifyProgress};
    use time::{Duration, OffsetDateTime};

    fn table(name: &str, status: TableStatus, size: i64) -> TableProgress {
        let mut t = TableProgress::new("public", name, size, size);
        t.status = status;
        t
    }

    fn names(snapshot: &Snapshot, bound: usize) -> Vec<&str> {
        chosen_tables(snapshot, Some(bound))
            .into_iter()
            .map(|i| snapshot.tables[i].name.as_str())
            .collect()
    }

    #[test]
    fn the_most_interesting_tables_are_kept_in_their_order() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::hours(1);
        let mut stalled = table("stalled", TableStatus::Copying, 10);
        stalled.last_progress_at = Some(now - Duration::minutes(5));
        let mut copying = table("copying", TableStatus::Copying, 10);
        copying.last_progress_at = Some(now - Duration::seconds(1));
        let mut busy = table("busy", TableStatus::Streaming, 10);
        busy.changes_applied = 1_000;
        let snapshot = Snapshot {
            timestamp: now,
            tables: vec![
                table("quiet", TableStatus::Streaming, 10),
                busy,
                table("small", TableStatus::Pending, 10),
                table("large", TableStatus::Pending, 1_000_000),
                copying,
                table("differs", TableStatus::Streaming, 10),
                stalled,
            ],
            verify: Some(VerifyProgress {
                tables: vec![TableVerification {
                    schema: "public".into(),
                    name: "differs".into(),
                    status: VerifyStatus::Mismatch,
                    ..TableVerification::default()
                }],
                ..VerifyProgress::default()
            }),
            ..Snapshot::default()
        };
        assert_eq!(names(&snapshot, 1), ["stalled"]);
        assert_eq!(names(&snapshot, 2), ["differs", "stalled"]);
        assert_eq!(names(&snapshot, 3), ["copying", "differs", "stalled"]);
        assert_eq!(
            names(&snapshot, 4),
            ["large", "copying", "differs", "stalled"]
        );
        assert_eq!(
            names(&snapshot, 6),
            ["busy", "small", "large", "copying", "differs", "stalled"]
        );
        assert_eq!(names(&snapshot, 7).len(), 7);
        assert_eq!(names(&snapshot, 0), Vec::<&str>::new());
        assert_eq!(chosen_tables(&snapshot, None).len(), 7);
        assert_eq!(chosen_tables(&snapshot, Some(100)).len(), 7);
    }
}
