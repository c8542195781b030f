//! The copy's forecast replayed on the recorded traces and scored against
//! the anchors' methods (`replay`). `cargo bench --bench forecast` prints
//! the table the README shows; this checks what the README claims of it.

use std::collections::BTreeMap;

use pgmigrator_metrics::EtaState;

use crate::replay::{self, Score, Trace};

#[tokio::test(start_paused = true)]
async fn replayed_traces_score_as_the_readme_says() {
    let traces = Trace::all();
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let (mut inside, mut banded) = (0, 0);
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
        let score = replay::score(&points);
        inside += score.inside;
        banded += score.banded;
        scores.insert(trace.name.clone(), score);
    }
    let anchors = |s: &Score| [s.ghost, s.pt_osc, s.moving];
    for name in ["demo", "throttled"] {
        let score = &scores[name];
        assert!(
            anchors(score).iter().all(|e| score.ours < *e),
            "{name}: {score:?}"
        );
    }
    // Where one table is left, ours is the moving average's method: a
    // hair apart from it, far ahead of the whole run's average.
    for name in ["indexed", "many_small"] {
        let score = &scores[name];
        assert!(
            score.ours < score.moving + 0.01 && score.ours < score.pt_osc,
            "{name}: {score:?}"
        );
    }
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
}
