//! Forecasts measured against the anchors on recorded progress traces:
//! for each trace in `benches/traces`, at 10, 25, 50, 75 and 90 % of the
//! way, the error of the copy's forecast (ours, gh-ost's,
//! pt-online-schema-change's, a 60-second moving average) against the
//! true finish, and how often the truth fell inside our band. The traces
//! are replayed through a collector in paused time, so the figures are the
//! same on every machine.
//!
//! A class of copy may have several runs (`indexed.csv`, `indexed-2.csv`):
//! each run's checkpoints are printed, and each class is scored over all
//! of its runs' checkpoints.
//!
//! `cargo bench --bench forecast`; with
//! `PGMIGRATOR_RECORD_TRACES=benches/traces` the real-copy traces are
//! recorded again first (two throw-away PostgreSQL 15 clusters per trace,
//! about twelve minutes a trace, most of it loading;
//! `PGMIGRATOR_RECORD_SCENARIO=indexed` for one, `PGMIGRATOR_RECORD_RUN=2`
//! to write it as a further run, `indexed-2.csv`).

// Shared with the tests, which also use what this bench does not.
#[allow(dead_code)]
#[path = "../tests/it/cluster.rs"]
mod cluster;
#[path = "forecast/record.rs"]
mod record;
#[path = "../tests/it/replay.rs"]
mod replay;

use std::collections::BTreeMap;

use replay::{CHECKPOINTS, Trace, error};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(dir) = std::env::var_os("PGMIGRATOR_RECORD_TRACES") {
        if !cluster::available() {
            println!("PostgreSQL 15 is not installed; .ci/run installs it");
            return;
        }
        let only = std::env::var("PGMIGRATOR_RECORD_SCENARIO").ok();
        let run = std::env::var("PGMIGRATOR_RECORD_RUN").ok();
        record::record_all(std::path::Path::new(&dir), only.as_deref(), run.as_deref());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    println!(
        "median error of the forecast finish, as a share of the time truly left \
         (checkpoints at {:?} of the way):",
        CHECKPOINTS.map(|f| f * 100.0)
    );
    let percent = |e: f64| format!("{:.1} %", e * 100.0);
    // Each run's checkpoints, then every class scored over all of its runs.
    let mut classes: BTreeMap<String, (Vec<replay::Checkpoint>, Vec<String>)> = BTreeMap::new();
    for trace in Trace::all() {
        let points = rt.block_on(replay::replay(&trace));
        println!("{} ({:.0} s):", trace.name, trace.finish());
        for p in &points {
            let ours = p.ours.and_then(|e| e.seconds);
            println!(
                "    {:>3.0} %: {:.0} s left; ours {} ({}), gh-ost {}, pt-osc {}, moving {}",
                p.fraction * 100.0,
                p.left,
                percent(error(ours, p.left)),
                p.ours.map_or("none".to_owned(), |e| format!(
                    "{} {:?}..{:?}",
                    e.state.as_str(),
                    e.low.map(|s| s.round()),
                    e.high.map(|s| s.round())
                )),
                percent(error(p.ghost, p.left)),
                percent(error(p.pt_osc, p.left)),
                percent(error(p.moving, p.left)),
            );
        }
        let class = classes.entry(trace.class().to_owned()).or_default();
        class.0.extend(points);
        class.1.push(format!("{:.0} s", trace.finish()));
    }
    println!(
        "| trace class (runs) | ours | gh-ost | pt-osc | 60 s moving average | truth inside our band |"
    );
    println!("|---|---|---|---|---|---|");
    let (mut inside, mut scored) = (0, 0);
    for (class, (points, runs)) in &classes {
        let score = replay::score(points);
        println!(
            "| {class} ({}) | {} | {} | {} | {} | {} of {} |",
            runs.join(", "),
            percent(score.ours),
            percent(score.ghost),
            percent(score.pt_osc),
            percent(score.moving),
            score.inside,
            score.banded
        );
        inside += score.inside;
        scored += score.banded;
    }
    println!(
        "the truth inside our band: {inside} of the {scored} checkpoints with a band \
         (the others measuring)"
    );
    for trace in Trace::all() {
        println!("{}", trace.about);
    }
}
