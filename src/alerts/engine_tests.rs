use super::*;

fn rule(name: &str, when: &str, hold_for: u64, repeat: u64) -> Rule {
    Rule {
        name: name.into(),
        condition: Condition::parse(when).unwrap(),
        hold_for: Duration::from_secs(hold_for),
        severity: Severity::Warning,
        summary: Some("lag is {value} (over {threshold})".into()),
        repeat: Duration::from_secs(repeat),
        window: Duration::from_secs(300),
    }
}

fn lag(bytes: u64) -> Snapshot {
    Snapshot {
        lag_bytes: bytes,
        timestamp: OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        ..Snapshot::default()
    }
}

fn states(notifications: &[Notification]) -> Vec<(AlertState, bool)> {
    notifications
        .iter()
        .map(|n| (n.state, n.reminder))
        .collect()
}

#[test]
fn an_alert_fires_after_its_for_reminds_and_resolves_once() {
    let mut engine = Engine::new(vec![rule("lag", "lag_bytes > 1MB", 30, 3600)]);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert!(engine.evaluate(&lag(2_000_000), at(0)).is_empty());
    assert_eq!(engine.alerts()[0].state, AlertState::Pending);
    assert!(engine.evaluate(&lag(2_000_000), at(29)).is_empty());
    let fired = engine.evaluate(&lag(2_000_000), at(30));
    assert_eq!(states(&fired), [(AlertState::Firing, false)]);
    assert_eq!(fired[0].summary, "lag is 1.91 MiB (over 1MB)");
    assert_eq!(fired[0].threshold, "1MB");
    assert_eq!(engine.alerts()[0].state, AlertState::Firing);
    assert!(
        engine.evaluate(&lag(3_000_000), at(31)).is_empty(),
        "told once"
    );
    let reminded = engine.evaluate(&lag(3_000_000), at(30 + 3600));
    assert_eq!(states(&reminded), [(AlertState::Firing, true)]);
    let resolved = engine.evaluate(&lag(0), at(4000));
    assert_eq!(states(&resolved), [(AlertState::Resolved, false)]);
    assert!(engine.evaluate(&lag(0), at(4001)).is_empty());
    assert_eq!(engine.alerts()[0].state, AlertState::Resolved);
    assert!(engine.evaluate(&lag(0), at(4000 + 600)).is_empty());
    assert!(engine.alerts().is_empty(), "resolved alerts leave the list");
}

#[test]
fn a_condition_that_stops_while_pending_tells_nobody() {
    let mut engine = Engine::new(vec![rule("lag", "lag_bytes > 1MB", 30, 3600)]);
    let t0 = Instant::now();
    engine.evaluate(&lag(2_000_000), t0);
    assert!(
        engine
            .evaluate(&lag(0), t0 + Duration::from_secs(10))
            .is_empty()
    );
    assert!(engine.alerts().is_empty());
    assert!(
        engine
            .evaluate(&lag(2_000_000), t0 + Duration::from_secs(35))
            .is_empty(),
        "pending starts over"
    );
}

#[test]
fn a_firing_alert_survives_a_restart_without_being_told_again() {
    let t0 = Instant::now();
    let wall = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut before = Engine::new(vec![rule("lag", "lag_bytes > 1MB", 0, 3600)]);
    assert_eq!(before.evaluate(&lag(2_000_000), t0).len(), 1);
    let saved = before.saved(t0 + Duration::from_secs(60), wall + Duration::from_secs(60));
    let text = serde_json::to_string(&saved).unwrap();
    let saved: Saved = serde_json::from_str(&text).unwrap();

    let mut after = Engine::new(vec![rule("lag", "lag_bytes > 1MB", 0, 3600)]);
    let t1 = t0 + Duration::from_secs(120);
    after.restore(&saved, t1, wall + Duration::from_secs(120));
    assert!(
        after.evaluate(&lag(2_000_000), t1).is_empty(),
        "not re-sent"
    );
    let reminded = after.evaluate(&lag(2_000_000), t0 + Duration::from_secs(3600));
    assert_eq!(
        states(&reminded),
        [(AlertState::Firing, true)],
        "the reminder keeps its schedule"
    );
    let resolved = after.evaluate(&lag(0), t0 + Duration::from_secs(3700));
    assert_eq!(states(&resolved), [(AlertState::Resolved, false)]);
}

#[test]
fn new_errors_count_within_the_window_only() {
    let mut engine = Engine::new(vec![rule("errors", "error_count > 0", 0, 3600)]);
    let t0 = Instant::now();
    let errors = |n: u64| Snapshot {
        error_count: n,
        ..lag(0)
    };
    assert!(
        engine.evaluate(&errors(7), t0).is_empty(),
        "old errors are not new"
    );
    let fired = engine.evaluate(&errors(8), t0 + Duration::from_secs(10));
    assert_eq!(states(&fired), [(AlertState::Firing, false)]);
    assert_eq!(fired[0].value, "1");
    assert!(
        engine
            .evaluate(&errors(8), t0 + Duration::from_secs(200))
            .is_empty()
    );
    let resolved = engine.evaluate(&errors(8), t0 + Duration::from_secs(311));
    assert_eq!(states(&resolved), [(AlertState::Resolved, false)]);
}

#[test]
fn a_quantity_the_snapshot_lacks_does_not_hold() {
    let mut engine = Engine::new(vec![rule("slot", "slot.wal_status == lost", 0, 3600)]);
    assert!(engine.evaluate(&lag(0), Instant::now()).is_empty());
    assert!(engine.alerts().is_empty());
}
