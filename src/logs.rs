//! The log viewer's ring of recent entries, and the `tracing` layer that
//! feeds it.

use std::collections::VecDeque;

use crate::model::LogEntry;

/// The newest log entries, at most `capacity`, oldest first.
#[derive(Debug, Clone)]
pub(crate) struct LogRing {
    entries: VecDeque<LogEntry>,
    capacity: usize,
    /// Counts every push, so a publisher knows when the ring changed.
    pushed: u64,
}

impl LogRing {
    pub(crate) fn new(capacity: usize) -> Self {
        LogRing {
            entries: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            pushed: 0,
        }
    }

    /// Appends `entry`, dropping the oldest one when full.
    pub(crate) fn push(&mut self, entry: LogEntry) {
        self.pushed += 1;
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// How many entries were ever pushed; changes whenever the ring does.
    pub(crate) fn version(&self) -> u64 {
        self.pushed
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter()
    }

    pub(crate) fn to_vec(&self) -> Vec<LogEntry> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(feature = "tracing-layer")]
pub use layer::{CollectorLayer, StderrLayer};

#[cfg(feature = "tracing-layer")]
mod layer {
    use std::collections::BTreeMap;
    use std::fmt;

    use time::OffsetDateTime;
    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context, Layer};

    use std::io::Write as _;

    use crate::collector::LogSink;
    use crate::model::{LogEntry, LogLevel};
    use crate::printable::printable;
    use crate::redact::{MASK, is_secret_key, redact};

    /// A [`tracing_subscriber::Layer`] that turns `tracing` events into
    /// entries of a collector's log ring, with their fields and target.
    ///
    /// Made by [`Collector::tracing_layer`](crate::Collector::tracing_layer).
    /// It never blocks the thread that logs: when the collector's channel is
    /// full the entry is dropped and counted in the snapshot's
    /// `logs_dropped`. It holds no strong handle, so it does not keep a
    /// collector alive; once the collector is gone it does nothing.
    pub struct CollectorLayer {
        sink: LogSink,
        max_level: Level,
    }

    impl fmt::Debug for CollectorLayer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CollectorLayer")
                .field("max_level", &self.max_level)
                .finish_non_exhaustive()
        }
    }

    impl CollectorLayer {
        pub(crate) fn new(sink: LogSink) -> Self {
            CollectorLayer {
                sink,
                max_level: Level::INFO,
            }
        }

        /// Keeps events up to `level` in verbosity (`Level::INFO`, the
        /// default, keeps info, warn and error).
        pub fn with_max_level(mut self, level: Level) -> Self {
            self.max_level = level;
            self
        }
    }

    impl<S: Subscriber> Layer<S> for CollectorLayer {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let metadata = event.metadata();
            if *metadata.level() > self.max_level {
                return;
            }
            let mut visitor = FieldVisitor::default();
            event.record(&mut visitor);
            visitor
                .fields
                .insert("target".to_owned(), metadata.target().to_owned());
            self.sink.try_log(LogEntry {
                time: OffsetDateTime::now_utc(),
                level: level(*metadata.level()),
                message: visitor.message,
                fields: visitor.fields,
            });
        }
    }

    /// A [`tracing_subscriber::Layer`] that prints warnings and errors on
    /// standard error, one line each (`pgmigrator: warn: message key=value`),
    /// with fields named for secrets masked, every value passed through
    /// [`redact`](crate::redact()), and control characters escaped: what an
    /// operator running `pgmigrator` in a terminal or under systemd sees.
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
        pub(crate) fn line(
            level: Level,
            message: &str,
            fields: &BTreeMap<String, String>,
        ) -> String {
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
            let mut visitor = FieldVisitor::default();
            event.record(&mut visitor);
            let line = Self::line(level, &visitor.message, &visitor.fields);
            // Nowhere to report a failure to write to stderr.
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }

    fn level(level: Level) -> LogLevel {
        match level {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }

    #[derive(Default)]
    struct FieldVisitor {
        message: String,
        fields: BTreeMap<String, String>,
    }

    impl Visit for FieldVisitor {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.record(field, value.to_owned());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.record(field, format!("{value:?}"));
        }
    }

    impl FieldVisitor {
        fn record(&mut self, field: &Field, value: String) {
            if field.name() == "message" {
                self.message = value;
            } else {
                self.fields.insert(field.name().to_owned(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogLevel;

    #[cfg(feature = "tracing-layer")]
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

    #[test]
    fn ring_keeps_the_newest_entries_oldest_first() {
        let mut ring = LogRing::new(500);
        for i in 0..600 {
            ring.push(LogEntry::new(LogLevel::Info, i.to_string()));
        }
        let entries = ring.to_vec();
        assert_eq!(entries.len(), 500);
        assert_eq!(entries[0].message, "100");
        assert_eq!(entries[499].message, "599");
        assert_eq!(ring.version(), 600);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut ring = LogRing::new(0);
        ring.push(LogEntry::new(LogLevel::Info, "x"));
        assert!(ring.to_vec().is_empty());
    }
}
