use super::*;
use crate::pg::observe::{ObservedTable, Row};

fn name(table: &str) -> TableName {
    TableName::new("public", table)
}

fn table(table: &str, state: SyncState) -> ObservedTable {
    ObservedTable {
        name: name(table),
        state,
        copy: None,
        inserted: 0,
        changes: 0,
    }
}

fn seen(tables: Vec<ObservedTable>) -> Observation {
    Observation {
        tables,
        ..Observation::default()
    }
}

fn estimate(table: &str, rows: i64, bytes: i64) -> Estimate {
    Estimate {
        name: name(table),
        rows,
        bytes,
    }
}

/// The changes of one poll, reading estimates as the poll loop does.
fn poll(tracker: &mut Tracker, observation: &Observation, estimates: &[Estimate]) -> Vec<Update> {
    let listing = tracker.unlisted(observation).map(|_| estimates.to_vec());
    tracker.changes(observation, listing, "sub", OffsetDateTime::UNIX_EPOCH)
}

/// Only the per-table changes of a poll.
fn table_changes(changes: Vec<Update>) -> Vec<Update> {
    changes
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Update::TableStarted(_)
                    | Update::TableProgress { .. }
                    | Update::TableDone { .. }
                    | Update::TableStreaming(_)
            )
        })
        .collect()
}

#[test]
fn sync_states_parse_from_their_codes() {
    for (code, state) in [
        ("i", SyncState::Init),
        ("d", SyncState::DataCopy),
        ("f", SyncState::FinishedCopy),
        ("s", SyncState::SyncDone),
        ("r", SyncState::Ready),
        ("w", SyncState::Other),
        ("", SyncState::Other),
    ] {
        assert_eq!(SyncState::from_code(code), state, "{code:?}");
    }
}

#[test]
fn the_first_poll_sets_the_phase_then_lists_largest_first_with_unknown_estimates() {
    let mut tracker = Tracker::default();
    let observation = seen(vec![
        table("small", SyncState::Init),
        table("big", SyncState::Init),
        table("fresh", SyncState::Init),
        table("absent", SyncState::Init),
    ]);
    let changes = poll(
        &mut tracker,
        &observation,
        &[
            estimate("small", 10, 1_000),
            estimate("big", 1_000, 100_000),
            // Never analysed: reltuples is -1.
            estimate("fresh", -1, 50_000),
        ],
    );
    assert_eq!(changes[0], Update::SetPhase(Phase::Copy));
    let Update::SetTables(listing) = &changes[1] else {
        panic!("{changes:?}");
    };
    let order: Vec<_> = listing.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(order, ["big", "fresh", "small", "absent"]);
    assert_eq!(listing[1].rows_total, -1);
    // A table the source does not have shows as unknown.
    assert_eq!((listing[3].rows_total, listing[3].size_bytes), (-1, 0));
    // Nothing changes in a second, identical poll.
    assert!(poll(&mut tracker, &observation, &[]).is_empty());
}

#[test]
fn every_state_transition_sends_what_the_collector_needs() {
    let mut tracker = Tracker::default();
    let mut t = table("t", SyncState::Init);
    poll(
        &mut tracker,
        &seen(vec![t.clone()]),
        &[estimate("t", 100, 8192)],
    );

    t.state = SyncState::DataCopy;
    t.copy = Some((40, 4096));
    assert_eq!(
        table_changes(poll(&mut tracker, &seen(vec![t.clone()]), &[])),
        [
            Update::TableStarted(name("t")),
            Update::TableProgress {
                table: name("t"),
                rows: 40,
                bytes: 4096
            }
        ]
    );
    t.copy = Some((90, 7000));
    assert_eq!(
        table_changes(poll(&mut tracker, &seen(vec![t.clone()]), &[])),
        [Update::TableProgress {
            table: name("t"),
            rows: 90,
            bytes: 7000
        }]
    );

    // The COPY is over: its progress row goes, the statistics count 100.
    t.state = SyncState::FinishedCopy;
    t.copy = None;
    t.inserted = 100;
    assert_eq!(
        table_changes(poll(&mut tracker, &seen(vec![t.clone()]), &[])),
        [
            Update::TableProgress {
                table: name("t"),
                rows: 100,
                bytes: 7000
            },
            Update::TableDone {
                table: name("t"),
                rows: 100
            }
        ]
    );
    t.state = SyncState::SyncDone;
    assert!(table_changes(poll(&mut tracker, &seen(vec![t.clone()]), &[])).is_empty());

    t.state = SyncState::Ready;
    t.changes = 100;
    let changes = poll(&mut tracker, &seen(vec![t.clone()]), &[]);
    assert_eq!(changes[0], Update::SetPhase(Phase::Streaming));
    assert_eq!(
        table_changes(changes),
        [
            Update::TableProgress {
                table: name("t"),
                rows: 100,
                bytes: 7000
            },
            Update::TableStreaming(name("t"))
        ]
    );
}

#[test]
fn a_table_seen_only_once_copied_still_starts_and_finishes() {
    let mut tracker = Tracker::default();
    let mut t = table("quick", SyncState::Ready);
    t.inserted = 5;
    t.changes = 5;
    let changes = table_changes(poll(
        &mut tracker,
        &seen(vec![t]),
        &[estimate("quick", 5, 100)],
    ));
    assert_eq!(
        changes,
        [
            Update::TableStarted(name("quick")),
            Update::TableProgress {
                table: name("quick"),
                rows: 5,
                bytes: 0
            },
            Update::TableDone {
                table: name("quick"),
                rows: 5
            },
            Update::TableProgress {
                table: name("quick"),
                rows: 5,
                bytes: 0
            },
            Update::TableStreaming(name("quick")),
        ]
    );
}

fn applied_rows(changes: &[Update]) -> Option<i64> {
    changes.iter().find_map(|c| match c {
        Update::Applied { rows, .. } => Some(*rows),
        _ => None,
    })
}

#[test]
fn change_counters_count_growth_and_restart_after_going_backwards() {
    let mut tracker = Tracker::default();
    let mut t = table("t", SyncState::Ready);
    t.changes = 100;
    let mut observation = seen(vec![t.clone()]);
    observation.replay = Some(Lsn(0x100));
    poll(&mut tracker, &observation, &[estimate("t", 1, 1)]);

    let mut counts = Vec::new();
    // Growth, then a server restart resets the statistics, then growth.
    for changes in [150, 20, 30] {
        observation.tables[0].changes = changes;
        counts.push(applied_rows(&poll(&mut tracker, &observation, &[])));
    }
    assert_eq!(counts, [Some(50), Some(0), Some(10)]);
}

#[test]
fn applied_bytes_follow_the_replay_position_and_never_go_negative() {
    let mut tracker = Tracker::default();
    let mut observation = seen(vec![table("t", SyncState::Ready)]);
    observation.latest = Some(Lsn(0x500));
    observation.confirmed = Some(Lsn(0x100));
    let changes = poll(&mut tracker, &observation, &[estimate("t", 1, 1)]);
    // No walsender: the slot's confirmed position counts as applied.
    assert!(changes.contains(&Update::LatestLsn(Lsn(0x500))));
    assert!(changes.contains(&Update::Applied {
        lsn: Lsn(0x100),
        rows: 0,
        bytes: 0
    }));
    assert!(changes.contains(&Update::ConfirmedLsn(Lsn(0x100))));

    observation.replay = Some(Lsn(0x400));
    let changes = poll(&mut tracker, &observation, &[]);
    assert!(changes.contains(&Update::Applied {
        lsn: Lsn(0x400),
        rows: 0,
        bytes: 0x300
    }));

    // A reconnecting walsender reports an older position: no negative bytes.
    observation.replay = Some(Lsn(0x200));
    let changes = poll(&mut tracker, &observation, &[]);
    assert!(changes.contains(&Update::Applied {
        lsn: Lsn(0x200),
        rows: 0,
        bytes: 0
    }));
    observation.replay = Some(Lsn(0x480));
    let changes = poll(&mut tracker, &observation, &[]);
    assert!(changes.contains(&Update::Applied {
        lsn: Lsn(0x480),
        rows: 0,
        bytes: 0x80
    }));
}

#[test]
fn a_table_that_disappears_is_unlisted_and_starts_afresh_if_it_returns() {
    let mut tracker = Tracker::default();
    let mut a = table("a", SyncState::DataCopy);
    a.copy = Some((1, 1));
    let b = table("b", SyncState::Init);
    let estimates = [estimate("a", 10, 10), estimate("b", 10, 5)];
    poll(&mut tracker, &seen(vec![a.clone(), b.clone()]), &estimates);

    // `a` left the publication.
    let changes = poll(&mut tracker, &seen(vec![b.clone()]), &estimates);
    let Some(Update::SetTables(listing)) =
        changes.iter().find(|c| matches!(c, Update::SetTables(_)))
    else {
        panic!("{changes:?}");
    };
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].name, "b");

    // It comes back copying: it is started again, not continued.
    let changes = table_changes(poll(&mut tracker, &seen(vec![a, b]), &estimates));
    assert_eq!(changes[0], Update::TableStarted(name("a")));
}

#[test]
fn new_subscription_errors_are_reported_once_with_their_count() {
    let mut tracker = Tracker::default();
    let mut observation = seen(vec![]);
    observation.error_total = Some(3);
    let errors = |changes: Vec<Update>| -> Vec<String> {
        changes
            .into_iter()
            .filter_map(|c| match c {
                Update::Error(message) => Some(message),
                _ => None,
            })
            .collect()
    };
    // Errors from before the monitor started are not news.
    assert!(errors(poll(&mut tracker, &observation, &[])).is_empty());
    observation.error_total = Some(5);
    assert_eq!(
        errors(poll(&mut tracker, &observation, &[])),
        [
            "subscription sub: 2 new apply or sync errors on the destination (5 in all); see its server log"
        ]
    );
    assert!(errors(poll(&mut tracker, &observation, &[])).is_empty());
}

#[test]
fn per_table_changes_are_the_growth_of_ready_tables_only() {
    let mut tracker = Tracker::default();
    let mut a = table("a", SyncState::Ready);
    a.changes = 10;
    let b = table("b", SyncState::Ready);
    let estimates = [estimate("a", 1, 1), estimate("b", 1, 1)];
    poll(&mut tracker, &seen(vec![a.clone(), b.clone()]), &estimates);
    a.changes = 1010;
    let changes = poll(&mut tracker, &seen(vec![a, b]), &estimates);
    let per_table: Vec<_> = changes
        .iter()
        .filter(|c| matches!(c, Update::TableChanges { .. }))
        .collect();
    assert_eq!(
        per_table,
        [&Update::TableChanges {
            table: name("a"),
            changes: 1000
        }]
    );
}

#[test]
fn slot_health_reads_what_the_server_has_and_remembers_when_it_went_idle() {
    let mut tracker = Tracker::default();
    let mut observation = seen(vec![]);
    // PostgreSQL 15: no inactive_since column.
    observation.slot = Some(Row::of(serde_json::json!({
        "slot_name": "sub", "active": false, "wal_status": "extended", "safe_wal_size": 16777216
    })));
    observation.slot_stats = Some(Row::of(serde_json::json!({
        "spill_bytes": 13631488, "spill_txns": 1, "stream_bytes": 0
    })));
    observation.retained = Some(100 << 20);
    observation.max_slot_wal_keep_size = Some(64 << 20);
    let at = |secs: u64| OffsetDateTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let slot = |changes: Vec<Update>| {
        changes.into_iter().find_map(|c| match c {
            Update::Slot(slot) => Some(slot),
            _ => None,
        })
    };
    let first = slot(tracker.changes(&observation, None, "sub", at(100))).unwrap();
    assert_eq!(first.name, "sub");
    assert_eq!(first.wal_status, WalStatus::Extended);
    assert_eq!(
        (first.retained_bytes, first.safe_wal_size),
        (100 << 20, Some(16 << 20))
    );
    assert_eq!(first.max_slot_wal_keep_size, Some(64 << 20));
    assert_eq!((first.spill_bytes, first.spill_txns), (13 << 20, 1));
    assert_eq!(first.inactive_since, Some(at(100)));
    // Still idle later: still since the first time it was seen so.
    let later = slot(tracker.changes(&observation, None, "sub", at(400))).unwrap();
    assert_eq!(later.inactive_since, Some(at(100)));

    // Unlimited and lost: no safe size; PostgreSQL 17 says since when.
    observation.max_slot_wal_keep_size = Some(-1);
    observation.slot = Some(Row::of(serde_json::json!({
        "slot_name": "sub", "active": false, "wal_status": "lost", "safe_wal_size": null,
        "inactive_since": "2026-11-28T12:00:00.5+00:00"
    })));
    let lost = slot(tracker.changes(&observation, None, "sub", at(500))).unwrap();
    assert_eq!(lost.wal_status, WalStatus::Lost);
    assert_eq!(
        (lost.safe_wal_size, lost.max_slot_wal_keep_size),
        (None, None)
    );
    assert_eq!(
        lost.inactive_since.unwrap().unix_timestamp(),
        time::macros::datetime!(2026-11-28 12:00:00 UTC).unix_timestamp()
    );

    // Active again: no longer inactive.
    observation.slot = Some(Row::of(
        serde_json::json!({"slot_name": "sub", "active": true}),
    ));
    let active = slot(tracker.changes(&observation, None, "sub", at(600))).unwrap();
    assert!(active.active && active.inactive_since.is_none());
    assert_eq!(
        active.wal_status,
        WalStatus::Other("unknown".into()),
        "a missing status is not called safe"
    );
}
