//! The copy's forecast replayed on the recorded traces and scored against
//! the anchors' methods (`replay`). `cargo bench --bench forecast` prints
//! the table the README shows; this checks what the README claims of it.

use std::collections::BTreeMap;

use pgmigrator_metrics::EtaState;

use crate::replay::{self, Score, Trace};

#[tokio::test(start_paused = true)]
async fn replayed_traces_score_as_the_readme_says() {
    let traces = Trace::all();
    let mut classes: BTreeMap<String, Vec<replay::Checkpoint>> = BTreeMap::new();
    for trace in &traces {
        let points = replay::replay(trace).await;
        for p in &points {
            let at = p.fraction * trace.finish();
            let eta = p.ours.expect("a forecast at every checkpoint");
            // Measuring for the first 10 s of progress seen, estimating after.
            if at >= trace.samples[0].time + 10.0 {
                assert_eq!(
                    eta.state,
                    EtaState::Estimating,
                    "{} at {at:.0} s",
                    trace.name
                );
            }
            if eta.state == EtaState::Estimating {
                let (low, mid) = (eta.low.unwrap(), eta.seconds.unwrap());
                assert!(
                    low <= mid && eta.high.is_none_or(|high| mid <= high),
                    "{eta:?}"
                );
            }
        }
        assert!(
            !trace.about.is_empty(),
            "{} says where it comes from",
            trace.name
        );
        classes
            .entry(trace.class().to_owned())
            .or_default()
            .extend(points);
    }
    // Each class scored over the checkpoints of all of its runs.
    let scores: BTreeMap<String, Score> = classes
        .iter()
        .map(|(class, points)| (class.clone(), replay::score(points)))
        .collect();
    let inside: usize = scores.values().map(|s| s.inside).sum();
    let banded: usize = scores.values().map(|s| s.banded).sum();
    let anchors = |s: &Score| [s.ghost, s.pt_osc, s.moving];
    // On every class, ours errs least: the goal.
    for (name, score) in &scores {
        assert!(
            anchors(score).iter().all(|e| score.ours < *e),
            "{name}: {score:?}"
        );
    }
    assert!(
        inside * 10 >= banded * 8,
        "inside our band {inside} of {banded}"
    );
    // Counting the checkpoints still measuring as misses too.
    let checkpoints = classes.values().map(Vec::len).sum::<usize>();
    assert!(
        inside * 10 >= checkpoints * 8,
        "inside our band {inside} of {checkpoints}"
    );
}
