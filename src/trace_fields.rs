//! Reading a `tracing` event's message, fields and level: what both of our
//! layers need.

use std::collections::BTreeMap;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level};

use crate::model::LogLevel;

/// An event's message and its other fields, as text.
#[derive(Debug, Default)]
pub(crate) struct EventText {
    pub(crate) message: String,
    pub(crate) fields: BTreeMap<String, String>,
}

impl EventText {
    pub(crate) fn of(event: &Event<'_>) -> EventText {
        let mut text = EventText::default();
        event.record(&mut text);
        text
    }

    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

/// Our level for a `tracing` level (trace counts as debug).
pub(crate) fn level(level: Level) -> LogLevel {
    match level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        _ => LogLevel::Debug,
    }
}
