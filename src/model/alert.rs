//! Alerts as every surface shows them: which rule, in what state, since
//! when, and the value that made it so.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::serde_util::timestamp;

/// One alert rule's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertStatus {
    /// The rule's name.
    pub name: String,
    /// Pending, firing or (recently) resolved.
    pub state: AlertState,
    /// How bad it is.
    pub severity: Severity,
    /// When it entered its state.
    #[serde(with = "timestamp")]
    pub since: OffsetDateTime,
    /// The value its condition saw, for people (`1.20 GiB`, `5m 3s`).
    #[serde(default)]
    pub value: String,
    /// The rule's summary with the values filled in.
    #[serde(default)]
    pub summary: String,
}

/// The states of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Its condition holds, but not yet for the rule's `for`.
    Pending,
    /// Its condition has held for the rule's `for`; people were told.
    Firing,
    /// It fired and its condition no longer holds; people were told.
    Resolved,
}

impl AlertState {
    /// The state's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing (ready to cut over, done).
    Info,
    /// Needs a look soon.
    Warning,
    /// Needs action now.
    Critical,
}

impl Severity {
    /// Every severity, mildest first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// The severity's name, as in JSON and in alert files.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_serialize_with_snake_case_names() {
        let alert = AlertStatus {
            name: "lag".into(),
            state: AlertState::Firing,
            severity: Severity::Critical,
            since: OffsetDateTime::UNIX_EPOCH,
            value: "1.20 GB".into(),
            summary: "lag is 1.20 GB".into(),
        };
        let json = serde_json::to_value(&alert).unwrap();
        assert_eq!(json["state"], "firing");
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["since"], "1970-01-01T00:00:00.000Z");
        let back: AlertStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, alert);
    }
}
