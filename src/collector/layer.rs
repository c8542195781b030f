//! The `tracing` layer that feeds a collector's log ring.

use std::fmt;

use time::OffsetDateTime;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::LogSink;
use crate::model::LogEntry;
use crate::trace_fields::{EventText, level};

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
    pub(super) fn new(sink: LogSink) -> Self {
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
        let EventText {
            message,
            mut fields,
        } = EventText::of(event);
        fields.insert("target".to_owned(), metadata.target().to_owned());
        self.sink.try_log(LogEntry {
            time: OffsetDateTime::now_utc(),
            level: level(*metadata.level()),
            message,
            fields,
        });
    }
}
