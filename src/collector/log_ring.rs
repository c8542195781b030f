//! The log viewer's ring of recent entries.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogLevel;
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
