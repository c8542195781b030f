//! Alerts as every surface shows them: which rule, in what state, since
//! when, and the value that made it so.

use super::named::named_enum;

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

named_enum! {
    /// The states of an alert.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum AlertState {
        /// Its condition holds, but not yet for the rule's `for`.
        Pending = "pending",
        /// Its condition has held for the rule's `for`; people were told.
        Firing = "firing",
        /// It fired and its condition no longer holds; people were told.
        Resolved = "resolved",
    }
}

named_enum! {
    /// How bad an alert is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Severity {
        /// Worth knowing (ready to cut over, done).
        Info = "info",
        /// Needs a look soon.
        Warning = "warning",
        /// Needs action now.
        Critical = "critical",
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
