//! Warnings and errors on standard error, for an operator running
//! `pgmigrator` in a terminal or under systemd.

use std::collections::BTreeMap;
use std::io::Write as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::printable::printable;
use crate::redact::{MASK, is_secret_key, redact};
use crate::trace_fields::{EventText, level};

/// A [`tracing_subscriber::Layer`] that prints warnings and errors on
/// standard error, one line each (`pgmigrator: warn: message key=value`),
/// with fields named for secrets masked, every value passed through
/// [`redact`](crate::redact()), and control characters escaped.
#[derive(Debug, Clone)]
pub struct StderrLayer {
    max_level: Level,
}

impl Default for StderrLayer {
    fn default() -> Self {
        StderrLayer {
            max_level: Level::WARN,
        }
    }
}

impl StderrLayer {
    /// Prints events up to `level` in verbosity (`Level::WARN`, the
    /// default, prints warnings and errors).
    pub fn with_max_level(mut self, level: Level) -> Self {
        self.max_level = level;
        self
    }

    /// The line printed for an event at `level`.
    fn line(level: Level, message: &str, fields: &BTreeMap<String, String>) -> String {
        let mut line = format!("pgmigrator: {}: {}", self::level(level), redact(message));
        for (key, value) in fields {
            let value = if is_secret_key(key) {
                MASK.into()
            } else {
                redact(value)
            };
            line.push_str(&format!(" {key}={value}"));
        }
        printable(&line).into_owned()
    }
}

impl<S: Subscriber> Layer<S> for StderrLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max_level {
            return;
        }
        let text = EventText::of(event);
        let line = Self::line(level, &text.message, &text.fields);
        // Nowhere to report a failure to write to stderr.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_mask_secrets_and_escape_controls() {
        let fields = [
            ("password", "hunter2"),
            ("dsn", "postgres://u:pw@h/db"),
            ("path", "/tmp/\x1b]0;x\x07"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let line = StderrLayer::line(tracing::Level::WARN, "cannot write\nhere", &fields);
        assert_eq!(
            line,
            r"pgmigrator: warn: cannot write\nhere dsn=postgres://u:********@h/db password=******** path=/tmp/\e]0;x\x07"
        );
    }
}
