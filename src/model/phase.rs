//! The pipeline's phase.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The migration pipeline's phase.
///
/// In JSON a lower-case string (`"switchover-complete"` for
/// [`Phase::SwitchoverComplete`]). A phase this version does not know, say
/// from a state file written by a newer pipeline, loads as [`Phase::Other`]
/// and is written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Phase {
    /// Nothing has started.
    #[default]
    Idle,
    /// Connecting to the source and destination.
    Connecting,
    /// Copying the schema.
    Schema,
    /// Resuming an interrupted migration.
    Resuming,
    /// Parallel COPY of the tables.
    Copy,
    /// Streaming changes over logical replication.
    Streaming,
    /// Switching applications over to the destination.
    Switchover,
    /// The switchover finished.
    SwitchoverComplete,
    /// The migration is over.
    Done,
    /// A phase this version does not know, kept as it was written.
    Other(String),
}

impl Phase {
    /// Every phase this version knows, in pipeline order.
    pub const KNOWN: [Phase; 9] = [
        Phase::Idle,
        Phase::Connecting,
        Phase::Schema,
        Phase::Resuming,
        Phase::Copy,
        Phase::Streaming,
        Phase::Switchover,
        Phase::SwitchoverComplete,
        Phase::Done,
    ];

    /// The phase's name as written in JSON and shown to people.
    pub fn as_str(&self) -> &str {
        match self {
            Phase::Idle => "idle",
            Phase::Connecting => "connecting",
            Phase::Schema => "schema",
            Phase::Resuming => "resuming",
            Phase::Copy => "copy",
            Phase::Streaming => "streaming",
            Phase::Switchover => "switchover",
            Phase::SwitchoverComplete => "switchover-complete",
            Phase::Done => "done",
            Phase::Other(name) => name,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = std::convert::Infallible;

    /// Never fails: an unknown name becomes [`Phase::Other`]; an empty one
    /// (a Go collector that never had its phase set) is [`Phase::Idle`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Phase::KNOWN
            .into_iter()
            .find(|phase| phase.as_str() == s)
            .unwrap_or_else(|| match s {
                "" => Phase::Idle,
                other => Phase::Other(other.to_owned()),
            }))
    }
}

impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Ok(name.parse().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_round_trip_through_json() {
        for phase in Phase::KNOWN {
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{}\"", phase.as_str()));
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), phase);
        }
        assert_eq!(
            serde_json::to_string(&Phase::SwitchoverComplete).unwrap(),
            "\"switchover-complete\""
        );
    }

    #[test]
    fn unknown_phase_loads_and_is_written_back_unchanged() {
        let phase: Phase = serde_json::from_str("\"validating\"").unwrap();
        assert_eq!(phase, Phase::Other("validating".into()));
        assert_eq!(serde_json::to_string(&phase).unwrap(), "\"validating\"");
        assert_eq!("".parse::<Phase>().unwrap(), Phase::Idle);
    }
}
