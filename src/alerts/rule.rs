//! A rule's condition: a quantity of the snapshot, an operator and a value
//! with the units people write (`lag_bytes > 1MB`, `lag_seconds >= 5m`,
//! `slot.wal_status == unreserved|lost`), parsed once and measured on
//! every snapshot.

use std::fmt;
use std::time::Duration;

use crate::model::Snapshot;
use crate::units::{format_bytes, format_duration};
use crate::units::{parse_bytes, parse_seconds};

/// What a condition measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// WAL not yet applied, in bytes.
    LagBytes,
    /// Time lag, in seconds.
    LagSeconds,
    /// Rows applied per second.
    RowsPerSec,
    /// How many errors happened within the rule's `window`.
    ErrorCount,
    /// The longest time a copying table went without progress, or the apply
    /// worker without a message from the source.
    StalledSeconds,
    /// WAL the replication slot holds on the source, in bytes.
    SlotRetainedBytes,
    /// WAL the slot may still take before it is in danger, in bytes.
    SlotSafeWalSize,
    /// The slot's `wal_status`.
    SlotWalStatus,
    /// Seconds until the slot's headroom runs out at the rate it shrinks.
    SlotExhaustedIn,
    /// Whether a walsender streams from the slot.
    SlotActive,
    /// The migration's phase.
    Phase,
    /// Whether the cutover verdict is ready.
    CutoverReady,
    /// Rows data verification found different, in every table (`--verify`).
    VerifyMismatchedRows,
    /// Seconds until the copy is done, as forecast (while estimating).
    EtaSeconds,
    /// How far the copy's forecast finish moved over the last hour, in
    /// seconds (positive: later).
    EtaDrift,
    /// Seconds until streaming has caught up, while catching up.
    CatchUpSeconds,
}

/// How a quantity's values are written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Bytes,
    Seconds,
    Number,
    Text,
    Bool,
}

impl Quantity {
    const ALL: [(&'static str, Quantity); 16] = [
        ("lag_bytes", Quantity::LagBytes),
        ("lag_seconds", Quantity::LagSeconds),
        ("rows_per_sec", Quantity::RowsPerSec),
        ("error_count", Quantity::ErrorCount),
        ("stalled_seconds", Quantity::StalledSeconds),
        ("slot.retained_bytes", Quantity::SlotRetainedBytes),
        ("slot.safe_wal_size", Quantity::SlotSafeWalSize),
        ("slot.wal_status", Quantity::SlotWalStatus),
        ("slot.exhausted_in", Quantity::SlotExhaustedIn),
        ("slot.active", Quantity::SlotActive),
        ("phase", Quantity::Phase),
        ("cutover.ready", Quantity::CutoverReady),
        ("verify.mismatched_rows", Quantity::VerifyMismatchedRows),
        ("eta_seconds", Quantity::EtaSeconds),
        ("eta.drift", Quantity::EtaDrift),
        ("catch_up_seconds", Quantity::CatchUpSeconds),
    ];

    /// The quantity's name in rules.
    pub fn name(self) -> &'static str {
        Quantity::ALL
            .iter()
            .find(|(_, q)| *q == self)
            .map_or("", |(name, _)| name)
    }

    fn unit(self) -> Unit {
        match self {
            Quantity::LagBytes | Quantity::SlotRetainedBytes | Quantity::SlotSafeWalSize => {
                Unit::Bytes
            }
            Quantity::LagSeconds
            | Quantity::StalledSeconds
            | Quantity::SlotExhaustedIn
            | Quantity::EtaSeconds
            | Quantity::EtaDrift
            | Quantity::CatchUpSeconds => Unit::Seconds,
            Quantity::RowsPerSec | Quantity::ErrorCount | Quantity::VerifyMismatchedRows => {
                Unit::Number
            }
            Quantity::SlotWalStatus | Quantity::Phase => Unit::Text,
            Quantity::CutoverReady | Quantity::SlotActive => Unit::Bool,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds<T: PartialOrd>(self, left: T, right: T) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
enum Threshold {
    /// Bytes, seconds or a plain number.
    Number(f64),
    /// A share of the slot's `max_slot_wal_keep_size` (`10%`).
    PercentOfSlotLimit(f64),
    /// One of these words (`unreserved|lost`).
    Words(Vec<String>),
    Bool(bool),
}

/// `quantity op value`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    quantity: Quantity,
    op: Op,
    threshold: Threshold,
    /// The value as written, for messages.
    written: String,
}

/// What a condition saw in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Whether the condition holds.
    pub holds: bool,
    /// The value, for people.
    pub value: String,
}

impl Condition {
    /// Parses `lag_bytes > 1MB` and the like; the error says what is wrong
    /// in words a person can act on.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let mut parts = text.split_whitespace();
        let (Some(name), Some(op)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "expected `quantity operator value`, e.g. `lag_bytes > 1MB`, not {text:?}"
            ));
        };
        let written = parts.collect::<Vec<_>>().join(" ");
        if written.is_empty() {
            return Err(format!("{text:?} has no value to compare with"));
        }
        let quantity = Quantity::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, q)| *q)
            .ok_or_else(|| {
                let known: Vec<&str> = Quantity::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown quantity {name:?} (one of {})", known.join(", "))
            })?;
        let op = Op::parse(op)
            .ok_or_else(|| format!("unknown operator {op:?} (one of >, >=, <, <=, ==, !=)"))?;
        let unit = quantity.unit();
        let threshold = match unit {
            Unit::Bytes => match written.strip_suffix('%') {
                Some(percent)
                    if quantity == Quantity::SlotSafeWalSize
                        || quantity == Quantity::SlotRetainedBytes =>
                {
                    Threshold::PercentOfSlotLimit(parse_number(percent.trim())?)
                }
                _ => Threshold::Number(parse_bytes(&written)? as f64),
            },
            Unit::Seconds => Threshold::Number(parse_seconds(&written)?),
            Unit::Number => Threshold::Number(parse_number(&written)?),
            Unit::Text => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(format!("{name} is compared with == or != only"));
                }
                Threshold::Words(written.split('|').map(|w| w.trim().to_owned()).collect())
            }
            Unit::Bool => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(format!("{name} is compared with == or != only"));
                }
                match written.as_str() {
                    "true" => Threshold::Bool(true),
                    "false" => Threshold::Bool(false),
                    other => return Err(format!("{name} is true or false, not {other:?}")),
                }
            }
        };
        Ok(Condition {
            quantity,
            op,
            threshold,
            written,
        })
    }

    /// What it measures.
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }

    /// The value compared with, as written (`1MB`).
    pub fn threshold(&self) -> &str {
        &self.written
    }

    /// Measures the condition on `snapshot`; `errors_in_window` is the
    /// error count's increase within the rule's window. `None` when the
    /// snapshot does not have the quantity (no slot yet, no verdict yet):
    /// the condition does not hold.
    pub fn measure(&self, snapshot: &Snapshot, errors_in_window: u64) -> Option<Measured> {
        let number = |value: f64, shown: String| {
            let holds = match &self.threshold {
                Threshold::Number(limit) => value.is_finite() && self.op.holds(value, *limit),
                _ => false,
            };
            Some(Measured {
                holds,
                value: shown,
            })
        };
        match self.quantity {
            Quantity::LagBytes => {
                number(snapshot.lag_bytes as f64, format_bytes(snapshot.lag_bytes))
            }
            Quantity::LagSeconds => number(snapshot.lag_seconds, seconds(snapshot.lag_seconds)),
            Quantity::RowsPerSec => number(
                snapshot.rows_per_sec,
                format!("{:.0} rows/s", snapshot.rows_per_sec),
            ),
            Quantity::ErrorCount => number(errors_in_window as f64, errors_in_window.to_string()),
            Quantity::StalledSeconds => {
                let stalled = snapshot.stalled_seconds();
                number(stalled, seconds(stalled))
            }
            Quantity::SlotRetainedBytes | Quantity::SlotSafeWalSize => {
                let slot = snapshot.slot.as_ref()?;
                let bytes = if self.quantity == Quantity::SlotRetainedBytes {
                    slot.retained_bytes as f64
                } else {
                    // Unlimited (no max_slot_wal_keep_size): no figure.
                    slot.safe_wal_size? as f64
                };
                let shown = format_bytes(bytes.max(0.0) as u64);
                if let Threshold::PercentOfSlotLimit(percent) = self.threshold {
                    let limit = slot.max_slot_wal_keep_size.filter(|l| *l > 0)? as f64;
                    let share = bytes / limit * 100.0;
                    return Some(Measured {
                        holds: self.op.holds(share, percent),
                        value: format!("{shown} ({share:.0}% of max_slot_wal_keep_size)"),
                    });
                }
                number(bytes, shown)
            }
            Quantity::SlotWalStatus => {
                let status = snapshot.slot.as_ref()?.wal_status.as_str().to_owned();
                Some(self.words(status))
            }
            Quantity::SlotExhaustedIn => {
                // Absent while the headroom does not shrink: nothing holds.
                let left = snapshot.slot.as_ref()?.exhausted_in_sec? as f64;
                number(left, seconds(left))
            }
            Quantity::Phase => Some(self.words(snapshot.phase.as_str().to_owned())),
            Quantity::CutoverReady => self.flag(snapshot.cutover.as_ref()?.ready),
            Quantity::SlotActive => self.flag(snapshot.slot.as_ref()?.active),
            Quantity::VerifyMismatchedRows => {
                let rows = snapshot.verify.as_ref()?.mismatched_rows();
                number(rows as f64, format!("{rows} rows"))
            }
            // Absent while not estimating or catching up: nothing holds.
            Quantity::EtaSeconds => {
                let left = snapshot.eta?.seconds?;
                number(left, seconds(left))
            }
            Quantity::EtaDrift => {
                let drift = snapshot.eta?.drift_sec?;
                let sign = if drift < 0.0 { "−" } else { "+" };
                number(drift, format!("{sign}{}", seconds(drift.abs())))
            }
            Quantity::CatchUpSeconds => {
                let left = snapshot.catch_up?.seconds?;
                number(left, seconds(left))
            }
        }
    }

    fn flag(&self, value: bool) -> Option<Measured> {
        let Threshold::Bool(wanted) = self.threshold else {
            return None;
        };
        Some(Measured {
            holds: self.op.holds(value, wanted),
            value: value.to_string(),
        })
    }

    fn words(&self, value: String) -> Measured {
        let listed = match &self.threshold {
            Threshold::Words(words) => words.contains(&value),
            _ => false,
        };
        Measured {
            holds: if self.op == Op::Eq { listed } else { !listed },
            value,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.quantity.name(),
            self.op.as_str(),
            self.written
        )
    }
}

fn seconds(value: f64) -> String {
    if value.is_finite() && value >= 0.0 {
        format_duration(Duration::from_secs_f64(value.min(1e12)))
    } else {
        "unknown".to_owned()
    }
}

/// A plain number: `100`, `2.5`, `10k`, `1M`.
fn parse_number(text: &str) -> Result<f64, String> {
    let (digits, scale) = match text.strip_suffix(['k', 'K']) {
        Some(digits) => (digits, 1e3),
        None => match text.strip_suffix('M') {
            Some(digits) => (digits, 1e6),
            None => (text, 1.0),
        },
    };
    match digits.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n * scale),
        _ => Err(format!("{text:?} is not a number (e.g. 100, 2.5, 10k)")),
    }
}

#[cfg(test)]
#[path = "rule_tests.rs"]
mod tests;
