//! The copy's forecast from the collector's tables (see
//! [`crate::forecast`]): each table in flight at its own pace, the rest at
//! the pace of a worker, scheduled onto the workers.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::clock::known;
use super::table::Table;
use crate::forecast::{Band, Finish, Pace, Sharing, pace_window, schedule};
use crate::model::{Eta, EtaState, TableProgress};
use crate::rate::RateWindow;

/// Time at one count of tables in flight before its throughput is used.
const SEEN_LONG_ENOUGH: f64 = 10.0;

/// The whole copy's pace, how many tables are copied at once, and how
/// fast the copy goes with each count in flight: how much a table speeds
/// up when the others are done.
#[derive(Debug)]
pub(crate) struct Concurrency {
    /// Rows and bytes copied, in 5-second buckets.
    pace: RateWindow,
    /// Rows and bytes copied since the start.
    copied: [u64; 2],
    /// The workers the pipeline said it has.
    said: Option<u32>,
    /// The most tables seen copying at once.
    most: usize,
    last: Option<(Instant, usize, [u64; 2])>,
    /// Per count in flight: seconds seen, and rows and bytes copied.
    seen: BTreeMap<usize, (f64, [u64; 2])>,
    /// How many times the tables in flight changed.
    flight: u64,
}

impl Concurrency {
    /// Paces measured over `window`.
    pub(crate) fn new(window: Duration) -> Concurrency {
        Concurrency {
            pace: pace_window(window),
            copied: [0; 2],
            said: None,
            most: 0,
            last: None,
            seen: BTreeMap::new(),
            flight: 0,
        }
    }

    /// `rows` and `bytes` more were copied at `now`.
    pub(crate) fn copied(&mut self, now: Instant, rows: u64, bytes: u64) {
        self.pace.add(now, rows, bytes);
        self.copied[0] = self.copied[0].saturating_add(rows);
        self.copied[1] = self.copied[1].saturating_add(bytes);
    }

    /// At `now`, `in_flight` tables are being copied.
    pub(crate) fn observe(&mut self, now: Instant, in_flight: usize) {
        self.most = self.most.max(in_flight);
        if let Some((then, count, before)) = self.last
            && count > 0
        {
            let (seconds, sums) = self.seen.entry(count).or_default();
            *seconds += now.saturating_duration_since(then).as_secs_f64();
            for (sum, (after, before)) in sums.iter_mut().zip(self.copied.iter().zip(before)) {
                *sum = sum.saturating_add(after.saturating_sub(before));
            }
        }
        self.last = Some((now, in_flight, self.copied));
    }

    /// Which tables are in flight, as a number that changes whenever a
    /// table starts or stops copying: a table's slowdown is fitted only
    /// while the others it shares the copy with stay the same.
    pub(crate) fn flight(&self) -> u64 {
        self.flight
    }

    /// A table started or stopped copying.
    pub(crate) fn flight_changed(&mut self) {
        self.flight = self.flight.wrapping_add(1);
    }

    /// A worker's pace when `workers` share the whole copy's.
    fn worker_pace(&self, now: Instant, workers: usize) -> Option<[Pace; 2]> {
        Pace::of_window(&self.pace, now).map(|paces| paces.map(|p| p.split(workers)))
    }

    /// The pipeline said it copies `workers` tables at once.
    pub(crate) fn said(&mut self, workers: u32) {
        self.said = Some(workers);
    }

    /// The workers the pipeline said it has.
    pub(crate) fn workers_said(&self) -> Option<u32> {
        self.said
    }

    /// The copy's workers: as many as the pipeline said, else the most
    /// tables seen copying at once.
    fn workers(&self) -> usize {
        self.said.map_or(self.most, |w| w as usize)
    }

    /// How the throughput shares out: fitted from the two counts in flight
    /// seen longest (10 s each at least), in bytes when bytes were
    /// reported, else rows.
    fn elasticity(&self) -> Option<f64> {
        let unit = match self.seen.values().any(|(_, sums)| sums[1] > 0) {
            true => 1,
            false => 0,
        };
        let mut seen: Vec<(usize, f64, f64)> = self
            .seen
            .iter()
            .filter(|(_, (seconds, _))| *seconds >= SEEN_LONG_ENOUGH)
            .map(|(&count, (seconds, sums))| (count, *seconds, sums[unit] as f64 / seconds))
            .collect();
        seen.sort_by(|a, b| b.1.total_cmp(&a.1));
        let rates: Vec<(usize, f64)> = seen.iter().map(|&(n, _, rate)| (n, rate)).collect();
        Sharing::fit(&rates)
    }
}

/// The copy's forecast and each table's (`None` for a table that has none).
#[derive(Debug, Default)]
pub(crate) struct CopyForecast {
    pub(crate) overall: Option<Eta>,
    pub(crate) tables: Vec<Option<Eta>>,
}

/// What is left of a table, in rows when its row estimate is known, else in
/// bytes (as its percent is): the unit's index and how much.
fn left(table: &TableProgress) -> Option<(usize, f64)> {
    if table.rows_total > 0 {
        Some((0, (table.rows_total - table.rows_copied).max(0) as f64))
    } else if table.size_bytes > 0 {
        Some((1, (table.size_bytes - table.bytes_copied).max(0) as f64))
    } else {
        None
    }
}

fn estimating(band: Band) -> Eta {
    Eta {
        state: EtaState::Estimating,
        seconds: known(band.mid),
        low: known(band.low),
        high: known(band.high),
        drift_sec: None,
    }
}

/// The forecast at `now` on the copy's workers (at least as many as are
/// copying now). Until the copy has been seen with two counts of
/// tables in flight, how a table speeds up when others are done is not
/// known: the band then runs from a shared throughput (low) to a table's
/// own rate (high), the middle between.
pub(crate) fn copy_forecast(
    tables: &[Table],
    now: Instant,
    concurrency: &Concurrency,
) -> CopyForecast {
    let workers = concurrency.workers();
    let mut found = CopyForecast {
        overall: None,
        tables: vec![None; tables.len()],
    };
    if tables.is_empty() {
        return found;
    }
    let paces: Vec<Option<[Pace; 2]>> = tables.iter().map(|t| t.pace(now)).collect();
    // A worker's pace, per unit: the mean of the tables in flight measured,
    // else the whole copy's shared by the workers (tables too short to be
    // measured one by one).
    let whole = concurrency.worker_pace(now, workers);
    let worker = [0, 1].map(|unit| {
        let measured: Vec<Pace> = paces
            .iter()
            .flatten()
            .map(|p| p[unit])
            .filter(|p| p.mean > 0.0)
            .collect();
        Pace::mean_of(&measured).or(whole.map(|w| w[unit]).filter(|p| p.mean > 0.0))
    });
    let (mut in_flight, mut waiting) = (Vec::new(), Vec::new());
    let mut state = EtaState::Estimating;
    let mut worst = |next: EtaState| {
        let rank = |s: EtaState| match s {
            EtaState::Unknown => 3,
            EtaState::Stalled => 2,
            EtaState::Measuring => 1,
            _ => 0,
        };
        if rank(next) > rank(state) {
            state = next;
        }
    };
    for (i, table) in tables.iter().enumerate() {
        let progress = &table.progress;
        if progress.status.is_copied() {
            found.tables[i] = Some(Eta::done());
            continue;
        }
        let Some((unit, left)) = left(progress) else {
            found.tables[i] = Some(Eta::bare(EtaState::Unknown));
            worst(EtaState::Unknown);
            continue;
        };
        if !table.in_flight() {
            match worker[unit].and_then(|pace| pace.seconds(left)) {
                Some(cost) => waiting.push((i, cost)),
                None => worst(EtaState::Measuring),
            }
            continue;
        }
        match paces[i].map(|pace| pace[unit]) {
            Some(pace) => match pace.seconds(left) {
                Some(band) => {
                    found.tables[i] = Some(Eta::bare(EtaState::Estimating));
                    in_flight.push((i, band));
                }
                None => {
                    found.tables[i] = Some(Eta::bare(EtaState::Stalled));
                    worst(EtaState::Stalled);
                }
            },
            None => {
                // Too new to have a pace of its own: a worker's, if known.
                found.tables[i] = Some(Eta::bare(EtaState::Measuring));
                match worker[unit].and_then(|pace| pace.seconds(left)) {
                    Some(band) => in_flight.push((i, band)),
                    None => worst(EtaState::Measuring),
                }
            }
        }
    }
    let in_flight_now = in_flight.len();
    let workers = workers.max(in_flight_now);
    let fitted = concurrency.elasticity();
    let run = |pick: fn(&Band) -> f64, unknown: f64| {
        let flying: Vec<f64> = in_flight.iter().map(|(_, b)| pick(b)).collect();
        let costs: Vec<f64> = waiting.iter().map(|(_, cost)| pick(cost)).collect();
        let sharing = Sharing {
            now: in_flight_now,
            elasticity: fitted.unwrap_or(unknown),
        };
        schedule(&flying, &costs, workers, sharing)
    };
    let (low, mid, high) = (
        run(|b| b.low, 0.0),
        run(|b| b.mid, 0.5),
        run(|b| b.high, 1.0),
    );
    let band = |each: fn(&Finish) -> &Vec<f64>, k: usize| Band {
        low: each(&low)[k],
        mid: each(&mid)[k],
        high: each(&high)[k],
    };
    for (k, (i, _)) in in_flight.iter().enumerate() {
        if let Some(Eta {
            state: EtaState::Estimating,
            ..
        }) = found.tables[*i]
        {
            found.tables[*i] = Some(estimating(band(|f| &f.in_flight, k)));
        }
    }
    for (k, (i, _)) in waiting.iter().enumerate() {
        found.tables[*i] = Some(estimating(band(|f| &f.waiting, k)));
    }
    let (low, mid, high) = (low.last, mid.last, high.last);
    let all_copied = tables.iter().all(|t| t.progress.status.is_copied());
    found.overall = Some(match (all_copied, state) {
        (true, _) => Eta::done(),
        (false, EtaState::Estimating) => estimating(Band { low, mid, high }),
        (false, state) => Eta::bare(state),
    });
    found
}
