//! Recorded progress traces (`benches/traces/*.csv`) replayed through a
//! collector in paused time, and the copy's forecasts scored against the
//! true finish: ours, gh-ost's (what is left ÷ the last second's rate,
//! else the whole run's average), pt-online-schema-change's (what is left ÷
//! the whole run's average) and a plain 60-second moving average.
//!
//! A trace's file is named for its class, and for its run after a `-`
//! when a class was recorded more than once (`indexed.csv`,
//! `indexed-2.csv`): a class is scored over the checkpoints of every run.
//!
//! A trace's lines: `time_sec,table,status,rows,bytes,rows_total,size_bytes,worker`,
//! `status` `copying` (progress of a table a worker is on) or `done`;
//! lines starting with `#` say where the trace comes from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgmigrator_metrics::{Collector, Eta, EtaState, TableProgress};

/// Where the way through a copy is scored, as fractions of its duration.
pub const CHECKPOINTS: [f64; 5] = [0.10, 0.25, 0.50, 0.75, 0.90];

/// One line of a trace.
#[derive(Debug, Clone)]
pub struct Sample {
    pub time: f64,
    pub table: String,
    pub done: bool,
    pub rows: i64,
    pub bytes: i64,
    pub rows_total: i64,
    pub size_bytes: i64,
    pub worker: Option<u32>,
}

/// A recorded copy.
#[derive(Debug, Clone)]
pub struct Trace {
    pub name: String,
    /// What the trace's `#` lines say of it.
    pub about: String,
    pub samples: Vec<Sample>,
}

impl Trace {
    /// The trace in `text`, named `name`.
    pub fn parse(name: &str, text: &str) -> Trace {
        let mut about = Vec::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix('#') {
                about.push(comment.trim().to_owned());
                continue;
            }
            if line.starts_with("time_sec") || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 8, "{name}: {line}");
            let number = |i: usize| -> i64 { f[i].parse().unwrap_or_else(|_| panic!("{line}")) };
            samples.push(Sample {
                time: f[0].parse().unwrap(),
                table: f[1].to_owned(),
                done: f[2] == "done",
                rows: number(3),
                bytes: number(4),
                rows_total: number(5),
                size_bytes: number(6),
                worker: f[7].parse().ok(),
            });
        }
        samples.sort_by(|a, b| a.time.total_cmp(&b.time));
        Trace {
            name: name.to_owned(),
            about: about.join(" "),
            samples,
        }
    }

    /// Every trace in `benches/traces`, by name.
    pub fn all() -> Vec<Trace> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/traces");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy();
                Trace::parse(&name, &std::fs::read_to_string(p).unwrap())
            })
            .collect()
    }

    /// The class of copy it is a run of: its name before any `-`.
    pub fn class(&self) -> &str {
        self.name.split('-').next().unwrap_or(&self.name)
    }

    /// When the last table was done.
    pub fn finish(&self) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.done)
            .map(|s| s.time)
            .fold(0.0, f64::max)
    }

    /// The rows `table` had when it was done.
    fn final_rows(&self, table: &str) -> i64 {
        self.samples
            .iter()
            .rfind(|s| s.done && s.table == table)
            .map(|s| s.rows)
            .unwrap_or(0)
    }

    /// How many tables were copied at once, at most: the workers.
    pub fn workers(&self) -> u32 {
        self.samples
            .iter()
            .filter_map(|s| s.worker)
            .max()
            .map_or(1, |w| w + 1)
    }

    /// Each table's estimates as a pipeline lists them before copying.
    fn listing(&self) -> Vec<TableProgress> {
        let mut tables: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for s in &self.samples {
            tables
                .entry(&s.table)
                .or_insert((s.rows_total, s.size_bytes));
        }
        tables
            .into_iter()
            .map(|(name, (rows, size))| TableProgress::new("public", name, rows, size))
            .collect()
    }
}

/// What each method said at one checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The fraction of the way.
    pub fraction: f64,
    /// Seconds truly left.
    pub left: f64,
    pub ours: Option<Eta>,
    pub ghost: Option<f64>,
    pub pt_osc: Option<f64>,
    pub moving: Option<f64>,
}

/// The rows copied so far over every table, after each sample.
struct Copied {
    per_table: BTreeMap<String, i64>,
    total_rows: i64,
    /// (time, rows copied) after each sample.
    seen: Vec<(f64, i64)>,
}

impl Copied {
    fn add(&mut self, s: &Sample) {
        self.per_table.insert(s.table.clone(), s.rows);
        let copied: i64 = self.per_table.values().sum();
        self.seen.push((s.time, copied));
    }

    /// Rows copied at `time` (the last sample at or before it).
    fn at(&self, time: f64) -> i64 {
        self.seen
            .iter()
            .rev()
            .find(|(t, _)| *t <= time)
            .map_or(0, |(_, rows)| *rows)
    }

    fn left(&self, now: f64) -> f64 {
        (self.total_rows - self.at(now)).max(0) as f64
    }

    /// What is left over the rate since `since` (clamped to the start).
    fn over_rate_since(&self, now: f64, since: f64) -> Option<f64> {
        let since = since.max(0.0);
        let rate = (self.at(now) - self.at(since)) as f64 / (now - since);
        (rate > 0.0).then(|| self.left(now) / rate)
    }

    /// gh-ost: the rate of the last second seen (the last two samples at
    /// least a second apart), else the whole run's average.
    fn ghost(&self, now: f64) -> Option<f64> {
        let last = self
            .seen
            .iter()
            .rev()
            .find(|(t, _)| *t <= now)
            .map(|(t, _)| *t)?;
        let before = self
            .seen
            .iter()
            .rev()
            .find(|(t, _)| *t <= last - 1.0)
            .map(|(t, _)| *t);
        before
            .and_then(|b| {
                let rate = (self.at(last) - self.at(b)) as f64 / (last - b);
                (rate > 0.0).then(|| self.left(now) / rate)
            })
            .or_else(|| self.over_rate_since(now, 0.0))
    }
}

/// Replays `trace` through a collector in paused time (call from a
/// `start_paused` runtime) and reads every method at each checkpoint.
pub async fn replay(trace: &Trace) -> Vec<Checkpoint> {
    let finish = trace.finish();
    let collector = Collector::builder()
        .tick(Duration::from_millis(500))
        .build();
    let listing = trace.listing();
    // The anchors count rows: a table whose estimate is unknown counts with
    // the rows it turned out to have (in their favour).
    let total_rows = listing
        .iter()
        .map(|t| match t.rows_total {
            1.. => t.rows_total,
            _ => trace.final_rows(&t.name),
        })
        .sum();
    collector.set_tables(listing).await;
    collector.set_copy_workers(trace.workers()).await;
    let start = tokio::time::Instant::now();
    let mut copied = Copied {
        per_table: BTreeMap::new(),
        total_rows,
        seen: Vec::new(),
    };
    let mut started: BTreeMap<&str, ()> = BTreeMap::new();
    let mut samples = trace.samples.iter().peekable();
    let mut found = Vec::new();
    for fraction in CHECKPOINTS {
        let now = fraction * finish;
        while let Some(s) = samples.next_if(|s| s.time <= now) {
            tokio::time::sleep_until(start + Duration::from_secs_f64(s.time)).await;
            if s.done {
                collector.table_done("public", &s.table, s.rows).await;
            } else {
                if started.insert(&s.table, ()).is_none() {
                    collector.table_started("public", &s.table).await;
                }
                collector
                    .update_table_progress("public", &s.table, s.rows, s.bytes)
                    .await;
            }
            copied.add(s);
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(now)).await;
        collector.flush().await;
        let snapshot = collector.snapshot();
        found.push(Checkpoint {
            fraction,
            left: finish - now,
            ours: snapshot.eta,
            ghost: copied.ghost(now),
            pt_osc: copied.over_rate_since(now, 0.0),
            moving: copied.over_rate_since(now, now - 60.0),
        });
    }
    collector.close().await;
    found
}

/// The error of a forecast of `left` seconds, as a fraction of what was
/// truly left; a method that said nothing is wrong by all of it.
pub fn error(said: Option<f64>, left: f64) -> f64 {
    said.map_or(1.0, |s| (s - left).abs() / left.max(1.0))
}

/// The median of `values`.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// How one trace scored: each method's median error, and how often the
/// truth fell inside our band.
#[derive(Debug, Clone)]
pub struct Score {
    pub ours: f64,
    pub ghost: f64,
    pub pt_osc: f64,
    pub moving: f64,
    /// Checkpoints where our band held the truth, of those where we gave
    /// one (not while measuring).
    pub inside: usize,
    pub banded: usize,
}

pub fn score(points: &[Checkpoint]) -> Score {
    let medians = |f: &dyn Fn(&Checkpoint) -> Option<f64>| {
        let mut errors: Vec<f64> = points.iter().map(|p| error(f(p), p.left)).collect();
        median(&mut errors)
    };
    let inside = points
        .iter()
        .filter(|p| {
            p.ours.is_some_and(|eta| {
                eta.state == EtaState::Estimating
                    && eta.low.is_some_and(|low| low <= p.left)
                    && eta.high.is_some_and(|high| p.left <= high)
            })
        })
        .count();
    Score {
        ours: medians(&|p| p.ours.and_then(|e| e.seconds)),
        ghost: medians(&|p| p.ghost),
        pt_osc: medians(&|p| p.pt_osc),
        moving: medians(&|p| p.moving),
        inside,
        banded: points
            .iter()
            .filter(|p| p.ours.is_some_and(|eta| eta.state == EtaState::Estimating))
            .count(),
    }
}
