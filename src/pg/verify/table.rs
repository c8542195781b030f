//! Verifying one table: its chunks in key order, each chunk's digests
//! compared, a chunk that differs bisected down to its rows, and those
//! rows read again until they settle; a lost connection is taken up again
//! from the last verified key.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::VerifyOptions;
use super::compare_rows;
use super::pace::Pace;
use super::reads::{
    Digest, Range, Shape, SourceChunk, boundary, differing_rows, digest, read_both, rows_by_key,
    shape, slot_lag, source_chunk,
};
use super::session::{Failure, Sessions};
use crate::backoff::Backoff;
use crate::model::{DifferenceKind, RowDifference, TableName, TableVerification, VerifyStatus};
use crate::pg::{ConnInfo, MonitorError};
use crate::printable::printable_line;
use crate::units::format_bytes;

/// A range that differs is bisected until it holds this many source rows
/// or fewer, then compared row by row.
pub(super) const ROW_COMPARE_ROWS: u64 = 1_000;
/// Attempts to reconnect after a connection is lost mid-table.
const RECONNECTS: u32 = 5;
/// Keys read again at once while rows settle.
const SETTLE_BATCH: usize = 1_000;
/// Time between two readings of the lag while paused.
const PAUSED_POLL: Duration = Duration::from_secs(1);

/// How differing keys are shown: escaped and cut at 200 characters, or
/// (`--verify-hide-keys`) a short hash, keyed afresh for each run so the
/// same row keeps its mark within a run but a list of likely keys cannot
/// be hashed to find it.
#[derive(Debug)]
pub(super) struct KeyHasher(Option<std::collections::hash_map::RandomState>);

impl KeyHasher {
    pub(super) fn new(hide: bool) -> KeyHasher {
        KeyHasher(hide.then(std::collections::hash_map::RandomState::new))
    }

    fn show(&self, key: &str) -> String {
        match &self.0 {
            Some(state) => format!("#{:016x}", state.hash_one(key)),
            None => printable_line(key, 200).into_owned(),
        }
    }
}

/// One connection pair verifying a table at a time.
pub(super) struct Worker {
    servers: (ConnInfo, ConnInfo),
    sessions: Option<Sessions>,
    slot: Option<String>,
    options: VerifyOptions,
    pace: Pace,
    keys: Arc<KeyHasher>,
    reports: mpsc::UnboundedSender<(usize, TableVerification)>,
}

/// A table being verified: what is known of it so far, and where to go on.
struct Run {
    index: usize,
    table: TableName,
    out: TableVerification,
    shape: Option<Shape>,
    /// The last key verified; `None` before the first chunk.
    lo: Option<Vec<String>>,
    /// Whether some rows kept changing on the source.
    unstable: bool,
}

impl Worker {
    pub(super) fn new(
        servers: (ConnInfo, ConnInfo),
        sessions: Sessions,
        slot: Option<String>,
        options: VerifyOptions,
        keys: Arc<KeyHasher>,
        reports: mpsc::UnboundedSender<(usize, TableVerification)>,
    ) -> Worker {
        let rate = options.max_rate.map(|bytes| bytes as f64);
        Worker {
            pace: Pace::new(options.chunk_time, options.chunk_rows, rate),
            servers,
            sessions: Some(sessions),
            slot,
            options,
            keys,
            reports,
        }
    }

    /// Verifies `table` (number `index` of the round), reporting after each
    /// chunk. An error means the connections are gone for good; the table
    /// is reported unverifiable first.
    pub(super) async fn verify(
        &mut self,
        index: usize,
        table: &TableName,
    ) -> Result<(), MonitorError> {
        let mut run = Run {
            index,
            table: table.clone(),
            out: TableVerification {
                status: VerifyStatus::Verifying,
                ..TableVerification::pending(table)
            },
            shape: None,
            lo: None,
            unstable: false,
        };
        self.report(&run);
        loop {
            match self.go_on(&mut run).await {
                Ok(()) => break,
                Err(Failure::Table(why)) => {
                    run.out.status = VerifyStatus::Unverifiable;
                    run.out.detail = why;
                    break;
                }
                Err(Failure::Lost(why)) => {
                    tracing::info!(table = %run.table, reason = %why, "verifying lost a connection; reconnecting");
                    if let Err(err) = self.reconnect().await {
                        run.out.status = VerifyStatus::Unverifiable;
                        run.out.detail = format!("lost the connection: {why}");
                        self.report(&run);
                        return Err(err);
                    }
                }
            }
        }
        if run.out.status == VerifyStatus::Verifying {
            run.out.status = if run.unstable {
                VerifyStatus::Unstable
            } else {
                VerifyStatus::Verified
            };
        }
        if run.out.status != VerifyStatus::Unverifiable {
            run.out.verified_at = Some(OffsetDateTime::now_utc());
            run.out.bytes_verified = run.out.bytes_total;
            run.out.chunks_total = run.out.chunks_done;
        }
        self.report(&run);
        Ok(())
    }

    fn report(&self, run: &Run) {
        // A round no one follows any more is dropped with its workers.
        let _ = self.reports.send((run.index, run.out.clone()));
    }

    fn sessions(&self) -> Result<&Sessions, Failure> {
        self.sessions
            .as_ref()
            .ok_or_else(|| Failure::Lost("not connected".into()))
    }

    async fn reconnect(&mut self) -> Result<(), MonitorError> {
        self.sessions = None;
        let mut backoff = Backoff::default();
        let mut attempt = 0;
        loop {
            tokio::time::sleep(backoff.next_wait()).await;
            attempt += 1;
            let (source, dest) = &self.servers;
            match Sessions::open(source, dest, &self.options).await {
                Ok(sessions) => {
                    self.sessions = Some(sessions);
                    return Ok(());
                }
                Err(err) if attempt >= RECONNECTS => return Err(err),
                Err(_) => {}
            }
        }
    }

    /// Goes on with `run` from where it stands until the table is done.
    async fn go_on(&mut self, run: &mut Run) -> Result<(), Failure> {
        let shape = match &run.shape {
            Some(shape) => shape.clone(),
            None => {
                let found = shape(self.sessions()?, &run.table).await?;
                run.out.bytes_total = found.bytes;
                run.shape = Some(found.clone());
                found
            }
        };
        if shape.has_key() {
            self.chunks(run, &shape).await
        } else {
            self.whole_table(run, &shape).await
        }
    }

    /// A table without a key: one digest of it all, read again while it
    /// differs; it can say whether, not which, rows differ.
    async fn whole_table(&self, run: &mut Run, shape: &Shape) -> Result<(), Failure> {
        let slot = self.slot.as_deref();
        let s = self.sessions()?;
        let whole = Range::default();
        let mut previous: Option<Digest> = None;
        let mut changing = false;
        let (mut theirs, mut ours);
        let mut attempt = 0;
        loop {
            let both = (digest(&s.src, shape, &whole), digest(&s.dst, shape, &whole));
            (theirs, ours) = read_both(&s.src, slot, both.0, both.1).await?;
            if theirs == ours || attempt >= self.options.retries {
                break;
            }
            changing = previous.as_ref().is_some_and(|p| *p != theirs);
            previous = Some(theirs);
            attempt += 1;
            run.out.chunks_retried = 1;
            tokio::time::sleep(Duration::from_millis(200) * attempt).await;
        }
        changing |= previous.as_ref().is_some_and(|p| *p != theirs);
        run.out.chunks_done = 1;
        run.out.rows = theirs.rows;
        run.out.detail = "no primary key or replica identity index: compared as one \
                          whole-table digest, which cannot say which rows differ"
            .into();
        if theirs != ours {
            if changing {
                run.unstable = true;
            } else {
                run.out.status = VerifyStatus::Mismatch;
                run.out.mismatched_rows = theirs.rows.abs_diff(ours.rows).max(1);
            }
        }
        Ok(())
    }

    /// The table's chunks in key order, from the last verified key.
    ///
    /// The destination reads a chunk while the source reads the next one:
    /// the source's reading of a chunk finds where it ends, so the
    /// destination can only start once that is known.
    async fn chunks(&mut self, run: &mut Run, shape: &Shape) -> Result<(), Failure> {
        let slot = self.slot.as_deref();
        let mut next: Option<SourceChunk> = None;
        loop {
            self.wait_for_lag(run).await?;
            let s = self.sessions()?;
            let rows = self.pace.rows();
            let chunk = match next.take() {
                Some(chunk) => chunk,
                None => source_chunk(&s.src, slot, shape, run.lo.clone(), rows).await?,
            };
            let after = async {
                match &chunk.range.hi {
                    Some(hi) => Ok(Some(
                        source_chunk(&s.src, slot, shape, Some(hi.clone()), rows).await?,
                    )),
                    None => Ok(None),
                }
            };
            let (ours, after) = tokio::try_join!(digest(&s.dst, shape, &chunk.range), after)?;
            next = after;
            let SourceChunk {
                range,
                digest: theirs,
                took,
            } = chunk;
            if theirs != ours {
                run.out.chunks_retried += 1;
                let found = localize(s, slot, shape, range.clone(), theirs.rows).await?;
                let settled = settle(s, slot, shape, &range, found.rows, &self.options).await?;
                self.note(run, settled, found.cut);
            }
            let bytes =
                chunk_bytes(shape, &theirs).min(run.out.bytes_total - run.out.bytes_verified);
            run.out.chunks_done += 1;
            run.out.rows += theirs.rows;
            run.out.bytes_verified += bytes;
            self.pace.took(theirs.rows, took);
            let left = shape.rows_estimate.saturating_sub(run.out.rows);
            run.out.chunks_total = run.out.chunks_done + left.div_ceil(self.pace.rows().max(1));
            self.report(run);
            tokio::time::sleep(self.pace.read(bytes, Instant::now())).await;
            match range.hi {
                Some(hi) => run.lo = Some(hi),
                None => return Ok(()),
            }
        }
    }

    /// Records what re-reading found: the rows that differ, and those the
    /// source kept changing.
    fn note(&self, run: &mut Run, settled: Settled, cut: bool) {
        let out = &mut run.out;
        if let (Some(first), Some(last)) = (settled.changing.first(), settled.changing.last()) {
            run.unstable = true;
            out.detail = format!(
                "{} row(s) kept changing on the source, keys {} to {}",
                settled.changing.len(),
                self.keys.show(first),
                self.keys.show(last)
            );
        }
        if !settled.differ.is_empty() {
            out.status = VerifyStatus::Mismatch;
            out.mismatched_rows += settled.differ.len() as u64;
            let room = self.options.max_rows.saturating_sub(out.differences.len());
            let named = settled.differ.into_iter().take(room);
            out.differences
                .extend(named.map(|(key, kind)| RowDifference {
                    key: self.keys.show(&key),
                    kind,
                }));
        }
        if cut {
            out.detail = format!(
                "a range held more rows on one server than are compared row by row \
                 ({}); the rows past them are not counted",
                super::reads::MAX_ROWS_READ
            );
        }
    }

    /// Waits while the subscription is further behind than
    /// `--verify-pause-lag`, saying so in the table's detail.
    async fn wait_for_lag(&self, run: &mut Run) -> Result<(), Failure> {
        let (Some(slot), limit) = (self.slot.as_deref(), self.options.pause_lag) else {
            return Ok(());
        };
        if limit == 0 {
            return Ok(());
        }
        let mut paused = false;
        loop {
            let lag = slot_lag(&self.sessions()?.src, slot).await?;
            if lag <= limit {
                if paused {
                    run.out.detail.clear();
                    self.report(run);
                }
                return Ok(());
            }
            paused = true;
            run.out.detail = format!(
                "paused: the replication lag ({}) is above --verify-pause-lag ({})",
                format_bytes(lag),
                format_bytes(limit)
            );
            self.report(run);
            tokio::time::sleep(PAUSED_POLL).await;
        }
    }
}

/// The bytes of the table a chunk stands for: its share of the table's
/// size by rows, or the text read when the row count is not known.
fn chunk_bytes(shape: &Shape, digest: &Digest) -> u64 {
    if shape.rows_estimate == 0 {
        return digest.text_bytes;
    }
    let share = u128::from(digest.rows) * u128::from(shape.bytes) / u128::from(shape.rows_estimate);
    u64::try_from(share).unwrap_or(u64::MAX)
}

/// The rows of a differing range that differ at a first reading.
struct Localized {
    rows: Vec<(String, DifferenceKind)>,
    /// A range held more rows than are compared row by row.
    cut: bool,
}

/// Bisects `range` (`rows` source rows) by the source's keys into ranges
/// of at most [`ROW_COMPARE_ROWS`] rows, keeping only the
/// halves whose digests differ, and compares those row by row.
async fn localize(
    s: &Sessions,
    slot: Option<&str>,
    shape: &Shape,
    range: Range,
    rows: u64,
) -> Result<Localized, Failure> {
    let mut found = Localized {
        rows: Vec::new(),
        cut: false,
    };
    let mut ranges = vec![(range, rows)];
    while let Some((range, rows)) = ranges.pop() {
        let middle = match rows > ROW_COMPARE_ROWS {
            true => boundary(&s.src, shape, &range, rows / 2).await?,
            false => None,
        };
        // The source's middle key, unless the source holds too few rows
        // there to halve the range (the destination holds the most).
        let middle = middle.filter(|middle| range.hi.as_ref() != Some(middle));
        let Some(middle) = middle else {
            let (differ, cut) = differing_rows(s, slot, shape, &range).await?;
            found.rows.extend(differ);
            found.cut |= cut;
            continue;
        };
        let halves = [
            Range {
                lo: range.lo.clone(),
                hi: Some(middle.clone()),
            },
            Range {
                lo: Some(middle),
                hi: range.hi,
            },
        ];
        // The second half goes on the stack first: keys come out in order.
        for half in halves.into_iter().rev() {
            let (on_source, on_dest) = (digest(&s.src, shape, &half), digest(&s.dst, shape, &half));
            let (theirs, ours) = read_both(&s.src, slot, on_source, on_dest).await?;
            if theirs != ours {
                ranges.push((half, theirs.rows));
            }
        }
    }
    Ok(found)
}

/// What reading differing rows again found.
#[derive(Debug, Default)]
struct Settled {
    /// Rows that still differ, in key order.
    differ: Vec<(String, DifferenceKind)>,
    /// Rows that still differ but changed on the source between the last
    /// two reads: in flight, not a difference.
    changing: Vec<String>,
}

/// Reads `suspects` (rows of `range`) again, only them, up to
/// `--verify-retries` times with a growing wait, each time from a new
/// source snapshot once the destination applied it.
async fn settle(
    s: &Sessions,
    slot: Option<&str>,
    shape: &Shape,
    range: &Range,
    mut suspects: Vec<(String, DifferenceKind)>,
    options: &VerifyOptions,
) -> Result<Settled, Failure> {
    let mut previous: Option<HashMap<String, String>> = None;
    let mut changing: HashSet<String> = HashSet::new();
    for attempt in 1..=options.retries {
        if suspects.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200) * attempt).await;
        let keys: Vec<String> = suspects.iter().map(|(key, _)| key.clone()).collect();
        let (mut theirs, mut ours) = (Vec::new(), Vec::new());
        for batch in keys.chunks(SETTLE_BATCH) {
            let both = (
                rows_by_key(&s.src, shape, range, batch),
                rows_by_key(&s.dst, shape, range, batch),
            );
            let (source_rows, dest_rows) = read_both(&s.src, slot, both.0, both.1).await?;
            theirs.extend(source_rows);
            ours.extend(dest_rows);
        }
        suspects = compare_rows(&theirs, &ours);
        let now: HashMap<String, String> = theirs.into_iter().collect();
        changing = match &previous {
            Some(before) => keys
                .into_iter()
                .filter(|key| before.get(key) != now.get(key))
                .collect(),
            None => HashSet::new(),
        };
        previous = Some(now);
    }
    let (unstable, differ): (Vec<_>, Vec<_>) = suspects
        .into_iter()
        .partition(|(key, _)| changing.contains(key));
    Ok(Settled {
        differ,
        changing: unstable.into_iter().map(|(key, _)| key).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_escaped_and_cut_or_hashed() {
        let shown = KeyHasher::new(false);
        assert_eq!(shown.show("(5)"), "(5)");
        assert!(!shown.show("(\"a\x1b[2J\")").contains('\x1b'));
        let long = shown.show(&"x".repeat(1000));
        assert!(
            long.len() < 240 && long.ends_with("(800 more characters)"),
            "{long}"
        );
        let hidden = KeyHasher::new(true);
        let mark = hidden.show("(alice@example.com)");
        assert!(mark.starts_with('#') && !mark.contains("alice"), "{mark}");
        assert_eq!(hidden.show("(alice@example.com)"), mark, "stable in a run");
        assert_ne!(hidden.show("(bob@example.com)"), mark);
    }
}
