//! The alert states: for each rule, quiet → pending → firing → resolved,
//! driven by the snapshots it is shown and the time it is told. Pure: no
//! clock of its own, no I/O, tested without waiting.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::rule::Condition;
use crate::model::serde_util::timestamp;
use crate::model::{AlertState, AlertStatus, Severity, Snapshot};

/// How long a resolved alert stays listed.
const RESOLVED_SHOWN: Duration = Duration::from_secs(600);

/// One rule, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its name, unique in the file.
    pub name: String,
    /// What must hold.
    pub condition: Condition,
    /// How long it must hold before the alert fires (`for`).
    pub hold_for: Duration,
    /// How bad it is.
    pub severity: Severity,
    /// A template with `{name}`, `{value}`, `{threshold}`, `{severity}`.
    pub summary: Option<String>,
    /// A reminder this often while firing.
    pub repeat: Duration,
    /// For `error_count`: errors within this window count.
    pub window: Duration,
}

impl Rule {
    fn summary(&self, value: &str) -> String {
        match &self.summary {
            Some(template) => template
                .replace("{name}", &self.name)
                .replace("{value}", value)
                .replace("{threshold}", self.condition.threshold())
                .replace("{severity}", self.severity.as_str()),
            None => format!("{}: {} (now {value})", self.name, self.condition),
        }
    }
}

/// Something to tell people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The rule's name.
    pub alert: String,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// A reminder of an alert still firing.
    pub reminder: bool,
    /// The rule's severity.
    pub severity: Severity,
    /// The value seen.
    pub value: String,
    /// The value compared with, as written.
    pub threshold: String,
    /// When the alert started firing (or resolved).
    #[serde(with = "timestamp")]
    pub since: OffsetDateTime,
    /// The rule's summary, filled in.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Quiet,
    Pending {
        started: Instant,
        since: OffsetDateTime,
    },
    Firing {
        since: OffsetDateTime,
        last_sent: Instant,
    },
    Resolved {
        at: Instant,
        since: OffsetDateTime,
    },
}

#[derive(Debug, Clone)]
struct Tracked {
    phase: Phase,
    value: String,
}

/// Every rule's state.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    tracked: Vec<Tracked>,
    /// `(when, error_count)`, oldest first, as long as the longest window.
    errors: VecDeque<(Instant, u64)>,
}

/// What is kept across restarts: the alerts firing, and when people were
/// last told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// By rule name.
    pub firing: BTreeMap<String, SavedFiring>,
}

/// A firing alert, as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFiring {
    /// When it started firing.
    #[serde(with = "timestamp")]
    pub since: OffsetDateTime,
    /// When people were last told.
    #[serde(with = "timestamp")]
    pub last_sent: OffsetDateTime,
}

impl Engine {
    /// Every rule quiet.
    pub fn new(rules: Vec<Rule>) -> Engine {
        let tracked = rules
            .iter()
            .map(|_| Tracked {
                phase: Phase::Quiet,
                value: String::new(),
            })
            .collect();
        Engine {
            rules,
            tracked,
            errors: VecDeque::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Alerts firing before a restart fire again without telling anyone;
    /// `now` and `wall` are the same moment on the two clocks.
    pub fn restore(&mut self, saved: &Saved, now: Instant, wall: OffsetDateTime) {
        for (rule, tracked) in self.rules.iter().zip(&mut self.tracked) {
            if let Some(firing) = saved.firing.get(&rule.name) {
                let ago: Duration = (wall - firing.last_sent).try_into().unwrap_or_default();
                tracked.phase = Phase::Firing {
                    since: firing.since,
                    last_sent: now.checked_sub(ago).unwrap_or(now),
                };
            }
        }
    }

    /// What to keep across a restart.
    pub fn saved(&self, now: Instant, wall: OffsetDateTime) -> Saved {
        let firing = self
            .rules
            .iter()
            .zip(&self.tracked)
            .filter_map(|(rule, tracked)| match tracked.phase {
                Phase::Firing { since, last_sent } => Some((
                    rule.name.clone(),
                    SavedFiring {
                        since,
                        // Whole seconds: the two clocks are read apart,
                        // and a jitter must not count as a change to save.
                        last_sent: (wall - now.duration_since(last_sent))
                            .replace_nanosecond(0)
                            .unwrap_or(wall),
                    },
                )),
                _ => None,
            })
            .collect();
        Saved { firing }
    }

    /// Evaluates every rule on `snapshot`, seen at `now`; returns what to
    /// tell people.
    pub fn evaluate(&mut self, snapshot: &Snapshot, now: Instant) -> Vec<Notification> {
        self.errors.push_back((now, snapshot.error_count));
        let longest = self
            .rules
            .iter()
            .map(|r| r.window)
            .max()
            .unwrap_or_default();
        while self
            .errors
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > longest)
        {
            self.errors.pop_front();
        }
        let wall = snapshot.timestamp;
        let mut notifications = Vec::new();
        for (rule, tracked) in self.rules.iter().zip(&mut self.tracked) {
            let errors = errors_within(&self.errors, rule.window, now, snapshot.error_count);
            let measured = rule.condition.measure(snapshot, errors);
            let holds = measured.as_ref().is_some_and(|m| m.holds);
            if let Some(measured) = measured {
                tracked.value = measured.value;
            }
            let notify = |state: AlertState, reminder: bool, since: OffsetDateTime| Notification {
                alert: rule.name.clone(),
                state,
                reminder,
                severity: rule.severity,
                value: tracked.value.clone(),
                threshold: rule.condition.threshold().to_owned(),
                since,
                summary: rule.summary(&tracked.value),
            };
            let next = match (&tracked.phase, holds) {
                (Phase::Quiet | Phase::Resolved { .. }, true) => {
                    if rule.hold_for.is_zero() {
                        notifications.push(notify(AlertState::Firing, false, wall));
                        Phase::Firing {
                            since: wall,
                            last_sent: now,
                        }
                    } else {
                        Phase::Pending {
                            started: now,
                            since: wall,
                        }
                    }
                }
                (Phase::Pending { started, .. }, true)
                    if now.duration_since(*started) >= rule.hold_for =>
                {
                    notifications.push(notify(AlertState::Firing, false, wall));
                    Phase::Firing {
                        since: wall,
                        last_sent: now,
                    }
                }
                (Phase::Firing { since, last_sent }, true)
                    if now.duration_since(*last_sent) >= rule.repeat =>
                {
                    notifications.push(notify(AlertState::Firing, true, *since));
                    Phase::Firing {
                        since: *since,
                        last_sent: now,
                    }
                }
                (Phase::Pending { .. }, false) => Phase::Quiet,
                (Phase::Firing { .. }, false) => {
                    notifications.push(notify(AlertState::Resolved, false, wall));
                    Phase::Resolved {
                        at: now,
                        since: wall,
                    }
                }
                (Phase::Resolved { at, .. }, false)
                    if now.duration_since(*at) >= RESOLVED_SHOWN =>
                {
                    Phase::Quiet
                }
                (phase, _) => phase.clone(),
            };
            tracked.phase = next;
        }
        notifications
    }

    /// Every alert pending, firing or recently resolved, as surfaces show
    /// them.
    pub fn alerts(&self) -> Vec<AlertStatus> {
        self.rules
            .iter()
            .zip(&self.tracked)
            .filter_map(|(rule, tracked)| {
                let (state, since) = match tracked.phase {
                    Phase::Quiet => return None,
                    Phase::Pending { since, .. } => (AlertState::Pending, since),
                    Phase::Firing { since, .. } => (AlertState::Firing, since),
                    Phase::Resolved { since, .. } => (AlertState::Resolved, since),
                };
                Some(AlertStatus {
                    name: rule.name.clone(),
                    state,
                    severity: rule.severity,
                    since,
                    value: tracked.value.clone(),
                    summary: rule.summary(&tracked.value),
                })
            })
            .collect()
    }
}

/// How much the error count grew within `window` before `now`.
fn errors_within(
    samples: &VecDeque<(Instant, u64)>,
    window: Duration,
    now: Instant,
    current: u64,
) -> u64 {
    let oldest = samples
        .iter()
        .find(|(at, _)| now.duration_since(*at) <= window)
        .map_or(current, |(_, count)| *count);
    current.saturating_sub(oldest)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
