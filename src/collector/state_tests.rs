//! Unit tests of `State`: events in, snapshots out, on a hand-driven clock.

use super::*;
use crate::model::{
    CatchUpState, CutoverItem, CutoverKind, Eta, EtaState, LogLevel, SlotHealth, TableStatus,
};
use time::OffsetDateTime;

const SETTINGS: Settings = Settings {
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
    fn at(&self, secs: f64) -> Moment {
        let d = Duration::from_secs_f64(secs);
        Moment {
            instant: self.t0 + d,
            wall: OffsetDateTime::UNIX_EPOCH + d,
        }
    }
}

fn key(name: &str) -> TableName {
    TableName::new("public", name)
}

fn state_with_tables(clock: &Clock) -> State {
    let mut state = State::new(SETTINGS);
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
    let mut state = State::new(SETTINGS);
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
    let mut state = State::new(SETTINGS);
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
    let mut state = State::new(SETTINGS);
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
    let mut state = State::new(SETTINGS);
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
    let mut state = State::new(SETTINGS);
    state.apply(Update::LatestLsn(Lsn(1000)), &clock.at(0.0));
    state.apply(Update::LatestLsn(Lsn(2000)), &clock.at(1.0));
    let snap = state.snapshot(&clock.at(1.5), 0);
    assert_eq!(snap.lag_seconds, 1.5);
    assert_eq!(snap.lag_formatted, "1.95 KiB (latency: 1.5s)");
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
    let mut state = State::new(SETTINGS);
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
    let mut state = State::new(SETTINGS);
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
    let mut state = State::new(SETTINGS);
    state.apply(Update::Error("é".repeat(10_000)), &clock.at(0.0));
    let snap = state.snapshot(&clock.at(0.0), 0);
    assert!(snap.last_error.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    assert!(snap.last_error.ends_with('…'));
}

#[test]
fn logs_keep_the_newest_entries_masked() {
    let clock = Clock::new();
    let mut state = State::new(Settings {
        log_capacity: 3,
        ..SETTINGS
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
    let mut state = State::new(SETTINGS);
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

/// `users` (1,000 rows) and `orders` (2,000 rows) copied by two workers at
/// 10 rows/s each, from 0 s, reported every second (at 0.5 s, 1.5 s, …) up
/// to `until`.
fn two_copying(clock: &Clock, until: u32) -> State {
    let mut state = state_with_tables(clock);
    state.apply(
        Update::SetTables(vec![
            TableProgress::new("public", "users", 1000, 8192),
            TableProgress::new("public", "orders", 2000, 16384),
            TableProgress::new("public", "events", 500, 4096),
        ]),
        &clock.at(0.0),
    );
    for name in ["users", "orders"] {
        state.apply(Update::TableStarted(key(name)), &clock.at(0.0));
    }
    for s in 1..=until {
        for name in ["users", "orders"] {
            let (rows, bytes) = (i64::from(s) * 10, i64::from(s) * 80);
            let table = key(name);
            let update = Update::TableProgress { table, rows, bytes };
            state.apply(update, &clock.at(f64::from(s) - 0.5));
        }
    }
    state
}

#[test]
fn the_copy_is_measured_for_ten_seconds_before_it_is_forecast() {
    let clock = Clock::new();
    let state = two_copying(&clock, 9);
    let snap = state.snapshot(&clock.at(9.0), 0);
    assert_eq!(snap.eta.map(|e| e.state), Some(EtaState::Measuring));
    assert_eq!(snap.eta_sec, None);
    let users = &snap.tables[0];
    assert_eq!(users.eta.map(|e| e.state), Some(EtaState::Measuring));
}

#[test]
fn the_copy_ends_when_its_last_table_does_on_the_workers_it_has() {
    let clock = Clock::new();
    let mut state = two_copying(&clock, 20);
    // At 20 s: users has 800 rows left (80 s), orders 1,800, and events
    // (500 rows) waits for the first worker free: users's, at 80 s, then
    // takes 50 s at a worker's 10 rows/s. Orders is alone from 130 s with
    // 500 rows left: how much faster it then goes is not known yet (the
    // copy was only seen with two in flight), so the middle takes √2 times
    // its rate (35 s), the band from twice (25 s: a shared throughput) to
    // its own rate (50 s; the rate is steady). Never the 130 s
    // of (2,100 + 500 rows) ÷ 20 rows/s, as if orders could take both
    // workers.
    let snap = state.snapshot(&clock.at(20.0), 0);
    let eta = snap.eta.unwrap();
    assert_eq!(eta.state, EtaState::Estimating);
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1.0);
    let alone = 500.0 / (10.0 * 2f64.sqrt());
    assert!(close(eta.seconds, 130.0 + alone), "{eta:?}");
    assert!(close(eta.low, 155.0) && close(eta.high, 180.0), "{eta:?}");
    assert_eq!(snap.eta_sec, eta.seconds);
    let orders = snap.tables.iter().find(|t| t.name == "orders").unwrap();
    assert_eq!(
        orders.eta, snap.eta,
        "the last table in flight ends the copy"
    );
    let events = snap.tables.iter().find(|t| t.name == "events").unwrap();
    assert!(
        close(events.eta.and_then(|e| e.seconds), 130.0),
        "{events:?}"
    );
    assert_eq!(events.eta_sec, None, "eta_sec is only for a table copying");
    // One worker said: two in flight keep two workers.
    state.apply(Update::CopyWorkers(1), &clock.at(20.0));
    let one = state.snapshot(&clock.at(20.0), 0).eta.unwrap();
    assert_eq!(one.seconds, eta.seconds);
}

#[test]
fn a_table_slowing_down_for_minutes_is_forecast_to_slow_on_until_another_starts_beside_it() {
    // 30 M rows at 100,000 a second, falling by 1 for every 600 rows done
    // (its indexes outgrow memory): 6 % a minute at 5 minutes in, where
    // the last minute's rate misses 15 % of the time left.
    let clock = Clock::new();
    let mut state = State::new(SETTINGS);
    let big = TableProgress::new("public", "big", 30_000_000, -1);
    let small = TableProgress::new("public", "small", 1_000, -1);
    state.apply(Update::SetTables(vec![big, small]), &clock.at(0.0));
    state.apply(Update::TableStarted(key("big")), &clock.at(0.0));
    let rate = |done: f64| 100_000.0 - done / 600.0;
    let (mut done, mut second) = (0.0, 0.0);
    let report = |state: &mut State, done: f64, second: f64| {
        let update = Update::TableProgress {
            table: key("big"),
            rows: done as i64,
            bytes: 0,
        };
        state.apply(update, &clock.at(second));
    };
    while second < 300.0 {
        done += rate(done);
        second += 1.0;
        report(&mut state, done, second);
    }
    let (at, left) = (second, 30_000_000.0 - done);
    let mut truly_left = 0.0;
    while done < 30_000_000.0 {
        done += rate(done);
        truly_left += 1.0;
    }
    let eta = state.snapshot(&clock.at(at), 0).eta.unwrap();
    let mid = eta.seconds.unwrap();
    let [pace, _] = state.tables[0].pace(clock.at(at).instant).unwrap();
    let at_the_minutes_rate = left / pace.mean;
    assert!(
        at_the_minutes_rate < 0.87 * truly_left,
        "{pace:?}: {truly_left}"
    );
    assert!(
        (mid - truly_left).abs() < 0.08 * truly_left,
        "{eta:?}: {truly_left}"
    );
    assert!(
        eta.low.unwrap() <= mid && mid <= eta.high.unwrap(),
        "{eta:?}"
    );
    // Another table copied beside it for a second, and from then on a
    // steady 50,000 rows a second: what it did before says nothing of
    // what it does now (without the fresh start, the fall fitted before
    // would still be certain and slow it down).
    state.apply(Update::TableStarted(key("small")), &clock.at(at));
    let small = Update::TableDone {
        table: key("small"),
        rows: 1_000,
    };
    state.apply(small, &clock.at(at + 1.0));
    let start = 30_000_000.0 - left;
    for s in 1..=70 {
        done = start + 50_000.0 * f64::from(s);
        report(&mut state, done, at + f64::from(s));
    }
    let now = clock.at(at + 70.0);
    let eta = state.snapshot(&now, 0).eta.unwrap();
    let [pace, _] = state.tables[0].pace(now.instant).unwrap();
    assert_eq!(pace.slowing, 0.0);
    let left = 30_000_000.0 - done;
    assert!(
        (eta.seconds.unwrap() - left / pace.mean).abs() < 1e-3,
        "{eta:?}"
    );
}

#[test]
fn a_copy_without_progress_for_a_window_is_stalled_and_one_without_sizes_unknown() {
    let clock = Clock::new();
    let state = two_copying(&clock, 20);
    let snap = state.snapshot(&clock.at(90.0), 0);
    assert_eq!(snap.eta.map(|e| e.state), Some(EtaState::Stalled));
    assert_eq!(snap.eta_sec, None);
    let mut state = State::new(SETTINGS);
    state.apply(
        Update::SetTables(vec![TableProgress::new("public", "blind", -1, -1)]),
        &clock.at(0.0),
    );
    let snap = state.snapshot(&clock.at(1.0), 0);
    assert_eq!(snap.eta.map(|e| e.state), Some(EtaState::Unknown));
}

#[test]
fn every_table_copied_is_done_with_zero_left() {
    let clock = Clock::new();
    let mut state = state_with_tables(&clock);
    for name in ["users", "orders", "events"] {
        state.apply(
            Update::TableDone {
                table: key(name),
                rows: 1,
            },
            &clock.at(5.0),
        );
    }
    let snap = state.snapshot(&clock.at(5.0), 0);
    assert_eq!(snap.eta_sec, Some(0.0));
    assert_eq!(snap.eta, Some(Eta::done()));
    assert!(snap.tables.iter().all(|t| t.eta == Some(Eta::done())));
}

#[test]
fn no_snapshot_value_is_nan_or_negative() {
    let clock = Clock::new();
    let mut state = State::new(SETTINGS);
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
    // Twice: the totals would overflow.
    for _ in 0..2 {
        state.apply(
            Update::Applied {
                lsn: Lsn(1),
                rows: i64::MAX,
                bytes: i64::MAX,
            },
            &clock.at(0.0),
        );
    }
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
        SETTINGS,
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
    let mut state = State::new(SETTINGS);
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

#[test]
fn a_derived_verdict_follows_the_lag_at_every_publication() {
    let clock = Clock::new();
    let mut state = State::new(SETTINGS);
    let mut table = TableProgress::new("public", "users", 10, 10);
    table.status = TableStatus::Streaming;
    state.apply(Update::SetTables(vec![table]), &clock.at(0.0));
    let warning = CutoverItem {
        kind: CutoverKind::SequenceBehind,
        table: None,
        detail: "users_id_seq behind".into(),
    };
    let checks = Cutover::new(clock.at(0.0).wall, Vec::new(), vec![warning.clone()]);
    state.apply(
        Update::Checks(Box::new((checks, CutoverLimits::default()))),
        &clock.at(0.0),
    );
    state.apply(Update::LatestLsn(Lsn(200)), &clock.at(1.0));
    let behind = state.snapshot(&clock.at(1.0), 0).cutover.unwrap();
    assert!(!behind.ready);
    assert_eq!(behind.blockers[0].kind, CutoverKind::Lag);
    assert_eq!(behind.warnings, vec![warning.clone()]);

    // No new checks: the next publication alone sees the lag gone.
    state.apply(
        Update::Applied {
            lsn: Lsn(200),
            rows: 1,
            bytes: 1,
        },
        &clock.at(2.0),
    );
    let caught_up = state.snapshot(&clock.at(2.0), 0).cutover.unwrap();
    assert!(caught_up.ready, "{:?}", caught_up.blockers);
    assert_eq!(caught_up.warnings, vec![warning]);
}

#[test]
fn a_given_verdict_is_published_as_given() {
    let clock = Clock::new();
    let mut state = State::new(SETTINGS);
    state.apply(Update::LatestLsn(Lsn(200)), &clock.at(0.0));
    let given = Cutover::new(clock.at(0.0).wall, Vec::new(), Vec::new());
    state.apply(Update::Cutover(Box::new(given.clone())), &clock.at(0.0));
    assert_eq!(state.snapshot(&clock.at(1.0), 0).cutover, Some(given));
}

#[test]
fn the_slot_is_forecast_lost_when_its_headroom_runs_out_at_the_rate_it_shrinks() {
    let clock = Clock::new();
    let mut state = State::new(SETTINGS);
    let slot = |safe: Option<i64>| SlotHealth {
        name: "sub".into(),
        safe_wal_size: safe,
        max_slot_wal_keep_size: Some(1 << 30),
        ..SlotHealth::default()
    };
    // 1 MB less headroom a second, read every second.
    for s in 0..=20 {
        let safe = 100_000_000 - s * 1_000_000;
        state.apply(
            Update::Slot(Box::new(slot(Some(safe)))),
            &clock.at(s as f64),
        );
        if s == 5 {
            let early = state.snapshot(&clock.at(5.0), 0).slot.unwrap();
            assert_eq!(early.exhausted_in_sec, None, "5 s of readings");
        }
    }
    let snap = state.snapshot(&clock.at(20.0), 0);
    assert_eq!(snap.slot.unwrap().exhausted_in_sec, Some(80), "80 MB left");
    // Growing headroom (the slot advanced): no forecast.
    for s in 21..=40 {
        let safe = 80_000_000 + (s - 20) * 2_000_000;
        state.apply(
            Update::Slot(Box::new(slot(Some(safe)))),
            &clock.at(s as f64),
        );
    }
    assert_eq!(
        state
            .snapshot(&clock.at(40.0), 0)
            .slot
            .unwrap()
            .exhausted_in_sec,
        None
    );
    // Unlimited, and gone already.
    state.apply(Update::Slot(Box::new(slot(None))), &clock.at(41.0));
    assert_eq!(
        state
            .snapshot(&clock.at(41.0), 0)
            .slot
            .unwrap()
            .exhausted_in_sec,
        None
    );
    state.apply(Update::Slot(Box::new(slot(Some(-5)))), &clock.at(42.0));
    assert_eq!(
        state
            .snapshot(&clock.at(42.0), 0)
            .slot
            .unwrap()
            .exhausted_in_sec,
        Some(0)
    );
}

#[test]
fn streaming_catches_up_at_the_rate_its_lag_shrinks_or_says_how_fast_it_falls_behind() {
    let clock = Clock::new();
    let mut state = State::new(SETTINGS);
    state.apply(Update::SetPhase(Phase::Streaming), &clock.at(0.0));
    // The source writes 1,000 B/s; 2,000 B/s are applied, 50,000 behind.
    let step = |state: &mut State, s: u64, written: u64, applied: u64| {
        let at = clock.at(s as f64);
        state.apply(Update::LatestLsn(Lsn(1_000_000 + written)), &at);
        let applied = Update::Applied {
            lsn: Lsn(1_000_000 + applied),
            rows: 1,
            bytes: 1,
        };
        state.apply(applied, &at);
        state.observe(at.instant);
    };
    for s in 0..=5 {
        step(&mut state, s, 50_000 + 1_000 * s, 2_000 * s);
    }
    let measuring = state.snapshot(&clock.at(5.0), 0).catch_up.unwrap();
    assert_eq!(measuring.state, CatchUpState::Measuring);
    for s in 6..=20 {
        step(&mut state, s, 50_000 + 1_000 * s, 2_000 * s);
    }
    let snap = state.snapshot(&clock.at(20.0), 0);
    // 30,000 bytes behind, shrinking by 1,000 B/s.
    assert_eq!(snap.lag_bytes, 30_000);
    let catch_up = snap.catch_up.unwrap();
    assert_eq!(catch_up.state, CatchUpState::CatchingUp);
    assert!(
        (catch_up.seconds.unwrap() - 30.0).abs() < 1e-6,
        "{catch_up:?}"
    );
    // Now the source writes 5,000 B/s and 2,000 B/s are applied.
    for s in 21..=90 {
        step(
            &mut state,
            s,
            70_000 + 5_000 * (s - 20),
            40_000 + 2_000 * (s - 20),
        );
    }
    let behind = state.snapshot(&clock.at(90.0), 0).catch_up.unwrap();
    assert_eq!(behind.state, CatchUpState::FallingBehind);
    assert!(
        (behind.growing_bytes_per_sec.unwrap() - 3_000.0).abs() < 1e-6,
        "{behind:?}"
    );
    // Before streaming there is none.
    let mut copying = State::new(SETTINGS);
    copying.apply(Update::SetPhase(Phase::Copy), &clock.at(0.0));
    assert_eq!(copying.snapshot(&clock.at(0.0), 0).catch_up, None);
}
