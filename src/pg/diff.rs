//! From one observation to the next: which collector updates bring the
//! collector from what it was told before to what the servers show now. A
//! pure function of (what was seen, what is seen), tested without a server.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::observe::{Estimate, Observation, SyncState};
use crate::collector::Update;
use crate::lsn::Lsn;
use crate::model::{ApplyHealth, Phase, SlotHealth, TableName, TableProgress, WalStatus};

/// What the monitor has told the collector so far.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Last state seen per table.
    states: HashMap<TableName, SyncState>,
    /// The table set last listed, sorted.
    listed: Vec<TableName>,
    /// Change counters of ready tables, to apply their growth.
    counters: HashMap<TableName, i64>,
    /// Last COPY progress seen per table (rows, bytes).
    copied: HashMap<TableName, (i64, i64)>,
    last_applied: Option<Lsn>,
    errors_seen: Option<i64>,
    phase: Option<Phase>,
    /// When the slot was first seen inactive, for servers (before 17) that
    /// do not say since when.
    inactive_seen: Option<OffsetDateTime>,
}

impl Tracker {
    /// The tables to read estimates for before [`changes`](Self::changes):
    /// the observed set, when it differs from the one listed.
    pub(crate) fn unlisted(&self, observation: &Observation) -> Option<Vec<TableName>> {
        let mut names: Vec<TableName> = observation.tables.iter().map(|t| t.name.clone()).collect();
        names.sort();
        (names != self.listed).then_some(names)
    }

    /// The updates for `observation`, in the order to send them: the phase
    /// first (so no snapshot shows the tables under the old one), the table
    /// list when `estimates` come with a new set, per-table progress, then
    /// positions and errors.
    pub(crate) fn changes(
        &mut self,
        observation: &Observation,
        estimates: Option<Vec<Estimate>>,
        subscription: &str,
        now: OffsetDateTime,
    ) -> Vec<Update> {
        let mut changes = Vec::new();
        let phase = if observation
            .tables
            .iter()
            .all(|t| t.state == SyncState::Ready)
        {
            Phase::Streaming
        } else {
            Phase::Copy
        };
        if self.phase.as_ref() != Some(&phase) {
            changes.push(Update::SetPhase(phase.clone()));
            self.phase = Some(phase);
        }
        if let Some(estimates) = estimates {
            changes.push(Update::SetTables(self.list(observation, estimates)));
        }
        let applied_rows = self.tables(observation, &mut changes);
        self.positions(observation, applied_rows, &mut changes);
        if let Some(slot) = self.slot(observation, now) {
            changes.push(Update::Slot(Box::new(slot)));
        }
        if let Some(apply) = &observation.apply {
            changes.push(Update::Apply(ApplyHealth {
                last_msg_receipt: apply.time("last_msg_receipt_time"),
                latest_end_time: apply.time("latest_end_time"),
            }));
        }
        if let Some(total) = observation.error_total {
            let before = self.errors_seen.unwrap_or(total);
            if total > before {
                changes.push(Update::Error(format!(
                    "subscription {subscription}: {} new apply or sync errors on the destination \
                     ({total} in all); see its server log",
                    total - before
                )));
            }
            self.errors_seen = Some(total);
        }
        changes
    }

    /// The new table list, largest first, with the source's estimates; a
    /// table gone from the set is forgotten, so it starts afresh if it
    /// comes back.
    fn list(&mut self, observation: &Observation, estimates: Vec<Estimate>) -> Vec<TableProgress> {
        let mut names: Vec<TableName> = observation.tables.iter().map(|t| t.name.clone()).collect();
        names.sort();
        let mut listing: Vec<TableProgress> = estimates
            .into_iter()
            .filter(|e| names.binary_search(&e.name).is_ok())
            // reltuples is -1 for a table never analysed: unknown, not 0.
            .map(|e| TableProgress::new(&e.name.schema, &e.name.name, e.rows.max(-1), e.bytes))
            .collect();
        // Tables the source does not have (yet) still show, unknown.
        for name in &names {
            if !listing
                .iter()
                .any(|t| t.schema == name.schema && t.name == name.name)
            {
                listing.push(TableProgress::new(&name.schema, &name.name, -1, 0));
            }
        }
        listing.sort_by(|a, b| {
            b.size_bytes
                .cmp(&a.size_bytes)
                .then_with(|| a.table_name().cmp(&b.table_name()))
        });
        let kept = |name: &TableName| names.binary_search(name).is_ok();
        self.states.retain(|name, _| kept(name));
        self.counters.retain(|name, _| kept(name));
        self.copied.retain(|name, _| kept(name));
        self.listed = names;
        listing
    }

    /// Per-table updates; returns the rows applied to ready tables since
    /// the last observation.
    fn tables(&mut self, observation: &Observation, changes: &mut Vec<Update>) -> i64 {
        let mut applied_rows = 0i64;
        for table in &observation.tables {
            let name = &table.name;
            let before = self.states.get(name).copied().unwrap_or(SyncState::Init);
            if let Some(copy) = table.copy {
                self.copied.insert(name.clone(), copy);
            }
            let (seen_rows, bytes) = self.copied.get(name).copied().unwrap_or((0, 0));
            // After the COPY ends its progress row is gone; the table's
            // statistics still count what it inserted.
            let rows = seen_rows.max(table.inserted);
            let progress = |rows: i64, bytes: i64| Update::TableProgress {
                table: name.clone(),
                rows,
                bytes,
            };
            match table.state {
                SyncState::DataCopy => {
                    if before != SyncState::DataCopy {
                        changes.push(Update::TableStarted(name.clone()));
                    }
                    if let Some((rows, bytes)) = table.copy {
                        changes.push(progress(rows, bytes));
                    }
                }
                state if state.is_copied() => {
                    if !before.is_copied() {
                        if before != SyncState::DataCopy {
                            changes.push(Update::TableStarted(name.clone()));
                        }
                        changes.push(progress(rows, bytes));
                        changes.push(Update::TableDone {
                            table: name.clone(),
                            rows,
                        });
                    }
                    if state == SyncState::Ready {
                        if before != SyncState::Ready {
                            // The tablesync worker has exited: its counts
                            // are final.
                            changes.push(progress(rows, bytes));
                            changes.push(Update::TableStreaming(name.clone()));
                            self.counters.insert(name.clone(), table.changes);
                        }
                        let baseline = self.counters.entry(name.clone()).or_insert(table.changes);
                        // A counter that went back (statistics reset, a
                        // server restart) starts a new baseline.
                        let grown = (table.changes - *baseline).max(0);
                        *baseline = table.changes;
                        applied_rows += grown;
                        if grown > 0 {
                            changes.push(Update::TableChanges {
                                table: name.clone(),
                                changes: grown as u64,
                            });
                        }
                    }
                }
                _ => {}
            }
            self.states.insert(name.clone(), table.state);
        }
        applied_rows
    }

    /// The slot's health, from its rows as the server has them: fields a
    /// major lacks are left at their defaults rather than failing the poll.
    fn slot(&mut self, observation: &Observation, now: OffsetDateTime) -> Option<SlotHealth> {
        let row = observation.slot.as_ref()?;
        let stats = observation.slot_stats.clone().unwrap_or_default();
        let active = row.bool("active").unwrap_or(false);
        let inactive_since = if active {
            self.inactive_seen = None;
            None
        } else {
            row.time("inactive_since")
                .or_else(|| Some(*self.inactive_seen.get_or_insert(now)))
        };
        let count = |field: &str| stats.int(field).map_or(0, |n| n.max(0) as u64);
        Some(SlotHealth {
            name: row.text("slot_name").unwrap_or_default().to_owned(),
            active,
            // A server that does not say is not called safe.
            wal_status: WalStatus::from_name(row.text("wal_status").unwrap_or("unknown")),
            retained_bytes: observation.retained.map_or(0, |n| n.max(0) as u64),
            safe_wal_size: row.int("safe_wal_size"),
            max_slot_wal_keep_size: observation
                .max_slot_wal_keep_size
                .filter(|bytes| *bytes >= 0)
                .map(|bytes| bytes as u64),
            inactive_since,
            spill_bytes: count("spill_bytes"),
            spill_txns: count("spill_txns"),
            stream_bytes: count("stream_bytes"),
            // The collector's forecast, from the readings.
            exhausted_in_sec: None,
        })
    }

    /// Latest, applied and confirmed positions. Applied is the walsender's
    /// replay position, or what the slot confirmed while none runs.
    fn positions(
        &mut self,
        observation: &Observation,
        applied_rows: i64,
        changes: &mut Vec<Update>,
    ) {
        if let Some(latest) = observation.latest {
            changes.push(Update::LatestLsn(latest));
        }
        match observation.replay.or(observation.confirmed) {
            Some(applied) => {
                let bytes = self
                    .last_applied
                    .map_or(0, |before| applied.0.saturating_sub(before.0));
                changes.push(Update::Applied {
                    lsn: applied,
                    rows: applied_rows,
                    bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
                });
                self.last_applied = Some(self.last_applied.map_or(applied, |b| b.max(applied)));
            }
            None if applied_rows > 0 => changes.push(Update::Applied {
                lsn: Lsn(0),
                rows: applied_rows,
                bytes: 0,
            }),
            None => {}
        }
        if let Some(confirmed) = observation.confirmed {
            changes.push(Update::ConfirmedLsn(confirmed));
        }
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
