//! The messages writers send to the collector's actor.

use tokio::sync::oneshot;

use super::table::TableKey;
use crate::lsn::Lsn;
use crate::model::{LogEntry, Phase, TableProgress};

/// A change to the migration's state; applied by [`super::state::State::apply`].
#[derive(Debug)]
pub(crate) enum Update {
    SetPhase(Phase),
    SetTables(Vec<TableProgress>),
    TableStarted(TableKey),
    TableProgress {
        table: TableKey,
        rows: i64,
        bytes: i64,
    },
    TableDone {
        table: TableKey,
        rows: i64,
    },
    TableStreaming(TableKey),
    Applied {
        lsn: Lsn,
        rows: i64,
        bytes: i64,
    },
    ConfirmedLsn(Lsn),
    LatestLsn(Lsn),
    Error(String),
    /// Boxed: log entries are rare and large; this keeps every message small.
    Log(Box<LogEntry>),
}

/// What travels over the collector's channel.
#[derive(Debug)]
pub(crate) enum Message {
    Update(Update),
    /// Publish a snapshot now, then reply.
    Flush(oneshot::Sender<()>),
    /// Stop taking messages, apply what is queued, publish, stop.
    Close,
}
