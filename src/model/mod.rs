//! The plain data every surface reads: phases, tables, snapshots, log entries.
//!
//! JSON field names are the snake_case names of the Go original, so a
//! `state.json` written by either loads in both. Fields added here are
//! optional when reading, and unknown fields are ignored, so older and newer
//! files load too.

mod alert;
mod cutover;
mod forecast;
mod log;
pub(crate) mod named;
mod phase;
pub(crate) mod serde_util;
mod slot;
mod snapshot;
mod summary;
mod table;
mod verify;

pub use alert::{AlertState, AlertStatus, Severity};
pub use cutover::{Cutover, CutoverItem, CutoverKind};
pub use forecast::{CatchUp, CatchUpState, Eta, EtaState};
pub use log::{LogEntry, LogLevel};
pub use phase::Phase;
pub use slot::{ApplyHealth, SlotHealth, WalStatus};
pub use snapshot::{ErrorEntry, PhaseSpan, STALE_AFTER, Snapshot};
pub use summary::{MigrationSummary, sort_worst_first, summarize};
pub use table::{TableName, TableProgress, TableStatus, UnknownStatus};
pub use verify::{DifferenceKind, RowDifference, TableVerification, VerifyProgress, VerifyStatus};
