//! The pipeline's phase.

use std::str::FromStr;

use super::named::named_enum;

named_enum! {
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
        Idle = "idle" | "",
        /// Connecting to the source and destination.
        Connecting = "connecting",
        /// Copying the schema.
        Schema = "schema",
        /// Resuming an interrupted migration.
        Resuming = "resuming",
        /// Parallel COPY of the tables.
        Copy = "copy",
        /// Streaming changes over logical replication.
        Streaming = "streaming",
        /// Switching applications over to the destination.
        Switchover = "switchover",
        /// The switchover finished.
        SwitchoverComplete = "switchover-complete",
        /// The migration is over.
        Done = "done",
    }
    keep unknown names in Other(String);
}

impl FromStr for Phase {
    type Err = std::convert::Infallible;

    /// Never fails: an unknown name becomes [`Phase::Other`]; an empty one
    /// (a Go collector that never had its phase set) is [`Phase::Idle`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Phase::from_name(s))
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
