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
    for name in ["demo", "indexed", "throttled"] {
        let score = &scores[name];
        assert!(
            anchors(score).iter().all(|e| score.ours < *e),
            "{name}: {score:?}"
        );
    }
    // One huge table whose rate falls as its index grows: ours is the
    // moving average's method there, a hair apart from it, far ahead of
    // the whole run's average (gh-ost's last second is luckier).
    let score = &scores["many_small"];
    assert!(
        score.ours < score.moving + 0.01 && score.ours < score.pt_osc,
        "many_small: {score:?}"
    );
    // Over every trace, ours errs least.
    let mean =
        |f: &dyn Fn(&Score) -> f64| scores.values().map(f).sum::<f64>() / scores.len() as f64;
    let ours = mean(&|s| s.ours);
    for (i, anchor) in ["gh-ost", "pt-osc", "moving average"].iter().enumerate() {
        let theirs = mean(&|s| anchors(s)[i]);
        assert!(ours < theirs, "ours {ours:.3} against {anchor} {theirs:.3}");
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
