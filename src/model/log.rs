//! Lines of the log viewer.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::serde_util::{null_as_default, timestamp};

/// Severity of a [`LogEntry`]. In JSON `"debug"`, `"info"`, `"warn"` or `"error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detail for developers.
    Debug,
    /// Normal operation.
    Info,
    /// Something an operator may want to look at.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The level's name as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the log viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When it was logged.
    #[serde(with = "timestamp")]
    pub time: OffsetDateTime,
    /// Severity.
    pub level: LogLevel,
    /// The message, with secrets masked once it is in the collector.
    pub message: String,
    /// Structured fields; omitted when empty.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub fields: BTreeMap<String, String>,
}

impl LogEntry {
    /// An entry stamped with the current time and no fields.
    pub fn new(level: LogLevel, message: impl Into<String>) -> Self {
        LogEntry {
            time: OffsetDateTime::now_utc(),
            level,
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// The same entry with one more field.
    pub fn with_field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entry_builder_sets_fields_and_json_omits_empty_fields() {
        let entry = LogEntry::new(LogLevel::Info, "copied").with_field("table", "public.users");
        assert_eq!(entry.fields["table"], "public.users");
        let plain = serde_json::to_value(LogEntry::new(LogLevel::Error, "x")).unwrap();
        assert!(plain.get("fields").is_none());
        assert_eq!(plain["level"], "error");
    }
}
