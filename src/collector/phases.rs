//! The pipeline's phases: the current one, the span of each so far, and
//! how long the migration has run.

use tokio::time::Instant;

use super::clock::{Moment, Stopwatch};
use crate::model::{Phase, PhaseSpan};

#[derive(Debug)]
pub(crate) struct Phases {
    current: Phase,
    /// Phase history; the last span is open unless the phase is `done`.
    records: Vec<PhaseRecord>,
    /// Time since the first phase was set; stopped at `done`.
    elapsed: Stopwatch,
    /// Set once the pipeline has set a phase (or a run was resumed).
    started: bool,
}

#[derive(Debug, Clone)]
struct PhaseRecord {
    phase: Phase,
    started_at: time::OffsetDateTime,
    ended_at: Option<time::OffsetDateTime>,
    duration: Stopwatch,
}

impl Phases {
    /// Nothing set yet: `idle`.
    pub(crate) fn new() -> Phases {
        Phases {
            current: Phase::Idle,
            records: Vec::new(),
            elapsed: Stopwatch::default(),
            started: false,
        }
    }

    /// The phases a state file had: `current`, after `elapsed_sec`, with
    /// `spans`; the clocks run on at `now` unless it was idle or done.
    pub(crate) fn resumed(
        current: Phase,
        elapsed_sec: f64,
        spans: Vec<PhaseSpan>,
        now: Instant,
    ) -> Phases {
        let running = !matches!(current, Phase::Idle | Phase::Done);
        let open = spans.len().saturating_sub(1);
        let records = spans
            .into_iter()
            .enumerate()
            .map(|(i, span)| {
                let still_open = i == open && span.ended_at.is_none() && running;
                PhaseRecord {
                    duration: Stopwatch::resumed(span.duration_sec, still_open, now),
                    phase: span.phase,
                    started_at: span.started_at,
                    ended_at: span.ended_at,
                }
            })
            .collect();
        Phases {
            started: current != Phase::Idle || elapsed_sec > 0.0,
            elapsed: Stopwatch::resumed(elapsed_sec, running, now),
            current,
            records,
        }
    }

    /// The pipeline is in `phase` from `at` on (the same phase again
    /// changes nothing).
    pub(crate) fn set(&mut self, phase: Phase, at: &Moment) {
        if !self.started {
            self.started = true;
            self.elapsed = Stopwatch::started(at.instant);
        }
        if !self.records.is_empty() && phase == self.current {
            return;
        }
        if let Some(open) = self.records.last_mut().filter(|p| p.ended_at.is_none()) {
            open.ended_at = Some(at.wall);
            open.duration.stop(at.instant);
        }
        let done = phase == Phase::Done;
        if done {
            self.elapsed.stop(at.instant);
        } else {
            self.elapsed.start(at.instant);
        }
        self.records.push(PhaseRecord {
            phase: phase.clone(),
            started_at: at.wall,
            // `done` is a terminal marker: it has no duration of its own.
            ended_at: done.then_some(at.wall),
            duration: Stopwatch::resumed(0.0, !done, at.instant),
        });
        self.current = phase;
    }

    pub(crate) fn current(&self) -> &Phase {
        &self.current
    }

    /// Seconds the migration has run at `now`.
    pub(crate) fn elapsed(&self, now: Instant) -> f64 {
        self.elapsed.seconds(now)
    }

    /// Each phase's span as published at `now`.
    pub(crate) fn spans(&self, now: Instant) -> Vec<PhaseSpan> {
        self.records
            .iter()
            .map(|p| PhaseSpan {
                phase: p.phase.clone(),
                started_at: p.started_at,
                ended_at: p.ended_at,
                duration_sec: p.duration.seconds(now),
            })
            .collect()
    }
}
