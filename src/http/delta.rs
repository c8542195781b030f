//! The frames of one tick, computed once for every client: the snapshot
//! as the Go original sent it, and for clients that asked for
//! `?mode=delta` a full frame or only what changed since the tick before.
//!
//! ```text
//! {"type":"full","seq":7,"snapshot":{…}}
//! {"type":"delta","seq":8,"from":7,"fields":{"lag_bytes":0,…},"removed":["cutover"],"tables":{"3":{…}}}
//! {"type":"logs","entries":[…]}
//! ```
//!
//! A delta applies to the frame numbered `from` (the one before, or for a
//! client that missed frames, the last one it got) and holds the top-level
//! fields whose value changed, the fields that disappeared, and the table
//! rows that changed, by index. When the table
//! list changes (a table added, removed or moved) there is no delta: every
//! delta client gets the full frame.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Map, Value};

use crate::model::{LogEntry, Snapshot};

/// One tick's frames.
#[derive(Debug)]
pub(super) struct Frames {
    /// The tick's number; a delta applies to the frame numbered one less.
    pub(super) seq: u64,
    /// The snapshot alone (the default mode).
    pub(super) plain: Utf8Bytes,
    /// What changed since the tick before, when the table list did not.
    pub(super) delta: Option<Utf8Bytes>,
    /// The log, when it changed since the tick before.
    pub(super) logs: Option<Utf8Bytes>,
    /// The snapshot and its top-level fields, for a client that missed
    /// frames to catch up from the last one it got (delta mode only).
    pub(super) base: Option<Base>,
    full: OnceLock<Utf8Bytes>,
}

/// A snapshot as a delta starts from: the snapshot and its top-level
/// fields but its tables, as JSON.
#[derive(Debug, Clone)]
pub(super) struct Base {
    snapshot: Arc<Snapshot>,
    head: Arc<Map<String, Value>>,
}

impl Base {
    /// What a delta starts from after `snapshot`.
    pub(super) fn of(snapshot: &Arc<Snapshot>) -> Base {
        Base {
            snapshot: Arc::clone(snapshot),
            head: Arc::new(head(snapshot)),
        }
    }

    /// The delta from `self` (frame `from`) to `to` (frame `seq`);
    /// `None` when the table list changed in between.
    pub(super) fn delta_to(&self, from: u64, to: &Base, seq: u64) -> Option<Utf8Bytes> {
        delta(seq, from, self, &to.snapshot, &to.head).map(Utf8Bytes::from)
    }
}

impl Frames {
    /// `{"type":"full",…}`, made once, by the first client that needs it.
    pub(super) fn full(&self) -> Utf8Bytes {
        self.full
            .get_or_init(|| full_frame(self.seq, &self.plain))
            .clone()
    }
}

/// A full frame around a snapshot's JSON.
pub(super) fn full_frame(seq: u64, plain: &str) -> Utf8Bytes {
    Utf8Bytes::from(format!(
        "{{\"type\":\"full\",\"seq\":{seq},\"snapshot\":{plain}}}"
    ))
}

/// Numbers the ticks and computes each one's frames from the one before.
#[derive(Default)]
pub(super) struct Differ {
    seq: u64,
    previous: Option<Base>,
    logs: Option<Arc<Vec<LogEntry>>>,
}

impl Differ {
    /// The frames of `snapshot` (serialized as `plain`). Deltas and log
    /// frames are computed only when `for_deltas`: with no delta client,
    /// the next delta client starts from a full frame anyway.
    pub(super) fn next(
        &mut self,
        snapshot: &Arc<Snapshot>,
        plain: Utf8Bytes,
        logs: Arc<Vec<LogEntry>>,
        for_deltas: bool,
    ) -> Frames {
        self.seq += 1;
        let mut frames = Frames {
            seq: self.seq,
            plain,
            delta: None,
            logs: None,
            base: None,
            full: OnceLock::new(),
        };
        if !for_deltas {
            self.previous = None;
            self.logs = None;
            return frames;
        }
        let base = Base::of(snapshot);
        if let Some(previous) = &self.previous {
            frames.delta = previous.delta_to(self.seq - 1, &base, self.seq);
        }
        self.previous = Some(base.clone());
        frames.base = Some(base);
        let changed = !self.logs.as_ref().is_some_and(|l| Arc::ptr_eq(l, &logs));
        if changed {
            frames.logs = Some(logs_frame(&logs));
            self.logs = Some(logs);
        }
        frames
    }
}

/// `{"type":"logs","entries":[…]}`.
pub(super) fn logs_frame(logs: &[LogEntry]) -> Utf8Bytes {
    let entries = serde_json::to_string(logs).unwrap_or_else(|_| "[]".to_owned());
    Utf8Bytes::from(format!("{{\"type\":\"logs\",\"entries\":{entries}}}"))
}

/// The snapshot's top-level fields but `tables`.
fn head(snapshot: &Snapshot) -> Map<String, Value> {
    // Serializing the snapshot whole and dropping its tables costs about
    // what serializing it once does; it happens once a tick, for all.
    match serde_json::to_value(snapshot) {
        Ok(Value::Object(mut fields)) => {
            fields.remove("tables");
            fields
        }
        _ => Map::new(),
    }
}

/// The delta from `previous` to `snapshot`, or `None` when the table list
/// changed.
fn delta(
    seq: u64,
    from: u64,
    previous: &Base,
    snapshot: &Snapshot,
    head: &Map<String, Value>,
) -> Option<String> {
    let (before, after) = (&previous.snapshot.tables, &snapshot.tables);
    let same_list = before.len() == after.len()
        && before
            .iter()
            .zip(after)
            .all(|(b, a)| b.schema == a.schema && b.name == a.name);
    if !same_list {
        return None;
    }
    let fields: Map<String, Value> = head
        .iter()
        .filter(|(key, value)| previous.head.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let removed: Vec<&String> = previous
        .head
        .keys()
        .filter(|key| !head.contains_key(*key))
        .collect();
    let tables: Map<String, Value> = before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (b, a))| b != a)
        .filter_map(|(index, (_, a))| Some((index.to_string(), serde_json::to_value(a).ok()?)))
        .collect();
    serde_json::to_string(&serde_json::json!({
        "type": "delta",
        "seq": seq,
        "from": from,
        "fields": fields,
        "removed": removed,
        "tables": tables,
    }))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cutover, TableProgress};

    fn snapshot(tables: usize) -> Snapshot {
        Snapshot {
            tables: (0..tables)
                .map(|i| TableProgress::new("public", &format!("t{i}"), 100, 1000))
                .collect(),
            cutover: Some(Cutover::new(
                time::OffsetDateTime::UNIX_EPOCH,
                vec![],
                vec![],
            )),
            ..Snapshot::default()
        }
    }

    fn frames(differ: &mut Differ, snapshot: Snapshot) -> Frames {
        let snapshot = Arc::new(snapshot);
        let plain = Utf8Bytes::from(serde_json::to_string(&*snapshot).unwrap());
        differ.next(&snapshot, plain, Arc::default(), true)
    }

    /// Applies a delta frame to `state` as a client does.
    fn apply(state: &mut Value, delta: &str) {
        let delta: Value = serde_json::from_str(delta).unwrap();
        let object = state.as_object_mut().unwrap();
        for (key, value) in delta["fields"].as_object().unwrap() {
            object.insert(key.clone(), value.clone());
        }
        for key in delta["removed"].as_array().unwrap() {
            object.remove(key.as_str().unwrap());
        }
        for (index, row) in delta["tables"].as_object().unwrap() {
            object["tables"][index.parse::<usize>().unwrap()] = row.clone();
        }
    }

    #[test]
    fn a_delta_carries_only_what_changed_and_rebuilds_the_snapshot() {
        let mut differ = Differ::default();
        let first = snapshot(100);
        let frames_1 = frames(&mut differ, first.clone());
        assert!(frames_1.delta.is_none(), "nothing to compare with yet");
        let full: Value = serde_json::from_str(&frames_1.full()).unwrap();
        assert_eq!(full["type"], "full");
        assert_eq!(full["seq"], 1);

        let mut second = first.clone();
        second.lag_bytes = 4096;
        second.tables[42].rows_copied = 50;
        second.cutover = None;
        let frames_2 = frames(&mut differ, second.clone());
        let delta = frames_2.delta.as_deref().unwrap();
        let parsed: Value = serde_json::from_str(delta).unwrap();
        assert_eq!(parsed["seq"], 2);
        assert_eq!(parsed["tables"].as_object().unwrap().len(), 1);
        assert_eq!(parsed["fields"].as_object().unwrap().len(), 1, "{delta}");
        assert_eq!(parsed["removed"][0], "cutover");
        assert!(
            delta.len() * 20 < frames_2.plain.len(),
            "{} vs {}",
            delta.len(),
            frames_2.plain.len()
        );

        let mut state = full["snapshot"].clone();
        apply(&mut state, delta);
        assert_eq!(state, serde_json::to_value(&second).unwrap());
    }

    #[test]
    fn a_changed_table_list_has_no_delta_and_logs_go_once() {
        let mut differ = Differ::default();
        frames(&mut differ, snapshot(3));
        assert!(frames(&mut differ, snapshot(4)).delta.is_none());
        let mut moved = snapshot(4);
        moved.tables.swap(0, 1);
        assert!(frames(&mut differ, moved).delta.is_none());

        let logs = Arc::new(vec![LogEntry::new(crate::model::LogLevel::Info, "hello")]);
        let snap = Arc::new(snapshot(1));
        let plain = Utf8Bytes::from_static("{}");
        let first = differ.next(&snap, plain.clone(), Arc::clone(&logs), true);
        assert!(first.logs.unwrap().contains("\"hello\""));
        let again = differ.next(&snap, plain.clone(), Arc::clone(&logs), true);
        assert!(again.logs.is_none(), "unchanged logs are not sent again");
        let plain_only = differ.next(&snap, plain, logs, false);
        assert!(plain_only.delta.is_none() && plain_only.logs.is_none());
    }
}
