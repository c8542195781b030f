use super::*;
use crate::model::{
    ApplyHealth, Cutover, Phase, SlotHealth, TableProgress, TableStatus, WalStatus,
};
use time::OffsetDateTime;

fn holds(when: &str, snapshot: &Snapshot) -> Option<bool> {
    Condition::parse(when)
        .unwrap()
        .measure(snapshot, 0)
        .map(|m| m.holds)
}

#[test]
fn conditions_parse_with_the_units_people_write() {
    let lagging = Snapshot {
        lag_bytes: 2_000_000,
        lag_seconds: 400.0,
        rows_per_sec: 12_000.0,
        ..Snapshot::default()
    };
    assert_eq!(holds("lag_bytes > 1MB", &lagging), Some(true));
    assert_eq!(holds("lag_bytes > 1.9MiB", &lagging), Some(true));
    assert_eq!(holds("lag_bytes > 2MiB", &lagging), Some(false));
    assert_eq!(holds("lag_seconds >= 5m", &lagging), Some(true));
    assert_eq!(holds("lag_seconds < 300", &lagging), Some(false));
    assert_eq!(holds("rows_per_sec <= 10k", &lagging), Some(false));
    assert_eq!(holds("phase == idle", &lagging), Some(true));
    assert_eq!(holds("phase != idle|copy", &lagging), Some(false));
    let measured = Condition::parse("lag_bytes > 1MB")
        .unwrap()
        .measure(&lagging, 0)
        .unwrap();
    assert_eq!(measured.value, "1.91 MiB");
}

#[test]
fn mistakes_are_named() {
    for (when, says) in [
        ("lag > 1MB", "unknown quantity \"lag\""),
        ("lag_bytes => 1MB", "unknown operator \"=>\""),
        ("lag_bytes > 1XB", "unknown size unit \"XB\""),
        ("lag_seconds > soon", "is not a duration"),
        ("lag_bytes >", "has no value"),
        ("phase > copy", "compared with == or != only"),
        ("cutover.ready == yes", "true or false"),
        ("", "expected `quantity operator value`"),
    ] {
        let err = Condition::parse(when).unwrap_err();
        assert!(err.contains(says), "{when}: {err}");
    }
}

#[test]
fn slot_conditions_need_a_slot_and_may_use_a_share_of_its_limit() {
    let mut snapshot = Snapshot::default();
    assert_eq!(holds("slot.wal_status == unreserved|lost", &snapshot), None);
    snapshot.slot = Some(SlotHealth {
        wal_status: WalStatus::Unreserved,
        retained_bytes: 950,
        safe_wal_size: Some(50),
        max_slot_wal_keep_size: Some(1000),
        ..SlotHealth::default()
    });
    assert_eq!(
        holds("slot.wal_status == unreserved|lost", &snapshot),
        Some(true)
    );
    assert_eq!(holds("slot.safe_wal_size < 10%", &snapshot), Some(true));
    assert_eq!(holds("slot.safe_wal_size < 4%", &snapshot), Some(false));
    assert_eq!(holds("slot.retained_bytes > 900", &snapshot), Some(true));
    assert_eq!(holds("slot.active == false", &snapshot), Some(true));
    // Unlimited: no safe size, no share.
    snapshot.slot.as_mut().unwrap().safe_wal_size = None;
    assert_eq!(holds("slot.safe_wal_size < 10%", &snapshot), None);
}

#[test]
fn forecasts_hold_only_while_they_are_made() {
    use crate::model::{CatchUp, CatchUpState, Eta, EtaState};
    let mut snapshot = Snapshot::default();
    for when in [
        "slot.exhausted_in < 1h",
        "eta_seconds > 2h",
        "eta.drift > 30m",
        "catch_up_seconds > 10m",
    ] {
        assert_eq!(holds(when, &snapshot), None, "{when}");
    }
    snapshot.slot = Some(SlotHealth {
        exhausted_in_sec: Some(1800),
        ..SlotHealth::default()
    });
    snapshot.eta = Some(Eta {
        state: EtaState::Estimating,
        seconds: Some(3.0 * 3600.0),
        drift_sec: Some(45.0 * 60.0),
        ..Eta::default()
    });
    snapshot.catch_up = Some(CatchUp {
        state: CatchUpState::CatchingUp,
        seconds: Some(300.0),
        growing_bytes_per_sec: None,
    });
    assert_eq!(holds("slot.exhausted_in < 1h", &snapshot), Some(true));
    assert_eq!(holds("eta_seconds > 2h", &snapshot), Some(true));
    assert_eq!(holds("eta.drift > 30m", &snapshot), Some(true));
    assert_eq!(holds("catch_up_seconds > 10m", &snapshot), Some(false));
    let drift = Condition::parse("eta.drift > 30m")
        .unwrap()
        .measure(&snapshot, 0)
        .unwrap();
    assert_eq!(drift.value, "+45m0s");
}

#[test]
fn mismatched_rows_need_a_verification_and_count_every_table() {
    use crate::model::{TableName, TableVerification, VerifyProgress, VerifyStatus};
    let mut snapshot = Snapshot::default();
    assert_eq!(holds("verify.mismatched_rows > 0", &snapshot), None);
    let table = |name, rows| TableVerification {
        status: VerifyStatus::Mismatch,
        mismatched_rows: rows,
        ..TableVerification::pending(&TableName::new("public", name))
    };
    snapshot.verify = Some(VerifyProgress::default());
    assert_eq!(holds("verify.mismatched_rows > 0", &snapshot), Some(false));
    snapshot.verify = Some(VerifyProgress {
        tables: vec![table("a", 2), table("b", 3)],
        ..VerifyProgress::default()
    });
    assert_eq!(holds("verify.mismatched_rows >= 5", &snapshot), Some(true));
    assert_eq!(holds("verify.mismatched_rows > 5", &snapshot), Some(false));
}

#[test]
fn stalled_is_the_longest_silence_of_a_copy_or_the_apply_worker() {
    let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
    let mut copying = TableProgress::new("public", "big", 10, 10);
    copying.status = TableStatus::Copying;
    copying.last_progress_at = Some(now - Duration::from_secs(700));
    let mut snapshot = Snapshot {
        timestamp: now,
        tables: vec![copying],
        ..Snapshot::default()
    };
    assert_eq!(holds("stalled_seconds > 10m", &snapshot), Some(true));
    snapshot.tables[0].status = TableStatus::Copied;
    assert_eq!(holds("stalled_seconds > 10m", &snapshot), Some(false));
    snapshot.phase = Phase::Streaming;
    snapshot.apply = Some(ApplyHealth {
        last_msg_receipt: Some(now - Duration::from_secs(900)),
        latest_end_time: None,
    });
    let measured = Condition::parse("stalled_seconds > 10m")
        .unwrap()
        .measure(&snapshot, 0)
        .unwrap();
    assert!(measured.holds);
    assert_eq!(measured.value, "15m0s");
}

#[test]
fn errors_and_the_verdict() {
    let mut snapshot = Snapshot::default();
    let errors = Condition::parse("error_count > 0").unwrap();
    assert!(!errors.measure(&snapshot, 0).unwrap().holds);
    assert!(errors.measure(&snapshot, 2).unwrap().holds);
    assert_eq!(holds("cutover.ready == true", &snapshot), None);
    snapshot.cutover = Some(Cutover::new(snapshot.timestamp, vec![], vec![]));
    assert_eq!(holds("cutover.ready == true", &snapshot), Some(true));
    assert_eq!(holds("cutover.ready != true", &snapshot), Some(false));
}

#[test]
fn nan_never_holds() {
    let snapshot = Snapshot {
        lag_seconds: f64::NAN,
        ..Snapshot::default()
    };
    assert_eq!(holds("lag_seconds > 1", &snapshot), Some(false));
    assert_eq!(holds("lag_seconds < 1", &snapshot), Some(false));
}
