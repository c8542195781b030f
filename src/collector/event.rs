//! The messages writers send to the collector's actor. [`Update`] is the
//! one vocabulary of change: the public methods wrap it, and the monitor's
//! diff produces it directly.

use tokio::sync::oneshot;

use crate::cutover::CutoverLimits;
use crate::lsn::Lsn;
use crate::model::{
    AlertStatus, ApplyHealth, Cutover, LogEntry, Phase, SlotHealth, TableName, TableProgress,
    VerifyProgress,
};

/// A change to the migration's state; applied by [`super::state::State::apply`].
#[derive(Debug, PartialEq)]
pub(crate) enum Update {
    SetPhase(Phase),
    SetTables(Vec<TableProgress>),
    TableStarted(TableName),
    TableProgress {
        table: TableName,
        rows: i64,
        bytes: i64,
    },
    TableDone {
        table: TableName,
        rows: i64,
    },
    TableStreaming(TableName),
    /// Changes applied to a streaming table since the last report.
    TableChanges {
        table: TableName,
        changes: u64,
    },
    Applied {
        lsn: Lsn,
        rows: i64,
        bytes: i64,
    },
    ConfirmedLsn(Lsn),
    LatestLsn(Lsn),
    Error(String),
    /// Boxed: reported once a poll, and larger than the other updates.
    Slot(Box<SlotHealth>),
    Apply(ApplyHealth),
    /// A verdict as given; boxed, like the slot: large and rare.
    Cutover(Box<Cutover>),
    /// The catalog checks' verdict; the snapshot's own blockers (tables,
    /// lag, slot, errors) are added under `limits` at every publication.
    Checks(Box<(Cutover, CutoverLimits)>),
    /// How many tables the pipeline copies at once.
    CopyWorkers(u32),
    /// Data verification's progress; boxed: large and rare.
    Verify(Box<VerifyProgress>),
    /// The alerts and the notifications given up on; boxed, like the slot.
    Alerts(Box<(Vec<AlertStatus>, u64)>),
    /// Boxed: log entries are rare and large; this keeps every message small.
    Log(Box<LogEntry>),
}

/// A message and when it was sent; the inbox orders by the stamp.
#[derive(Debug)]
pub(crate) struct Envelope {
    /// Send time; `std` rather than Tokio time so that the order holds when
    /// Tokio's clock is paused in tests.
    pub(crate) sent: std::time::Instant,
    pub(crate) message: Message,
}

impl Envelope {
    pub(crate) fn new(message: Message) -> Self {
        Envelope {
            sent: std::time::Instant::now(),
            message,
        }
    }
}

/// What travels over the collector's channels.
#[derive(Debug)]
pub(crate) enum Message {
    Update(Update),
    /// Publish a snapshot now, then reply.
    Flush(oneshot::Sender<()>),
    /// Stop taking messages, apply what is queued, publish, stop.
    Close,
}
