//! When each table is done on the copy's workers: the tables in flight
//! at their own speed, the waiting ones largest first onto the worker free
//! first, every speed changing with the number in flight.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How much of the copy's throughput the tables in flight share: with
/// `k` tables in flight instead of the `now` there are, each goes
/// `(now / k)^(1 − elasticity)` times as fast. An elasticity of 1 is a
/// copy bound by its workers (a table's rate is its own, whatever the
/// others do); 0 is one bound by a shared resource (CPU, disk, network:
/// a table left alone takes all of the throughput).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sharing {
    pub(crate) now: usize,
    pub(crate) elasticity: f64,
}

impl Sharing {
    fn speed(self, k: usize) -> f64 {
        if self.now == 0 || k == 0 {
            return 1.0;
        }
        (self.now as f64 / k as f64).powf(1.0 - self.elasticity.clamp(0.0, 1.0))
    }

    /// The elasticity that explains throughputs `(tables in flight, mean
    /// throughput)` seen at two or more counts: fitted between the two
    /// counts seen longest; `None` with fewer.
    pub(crate) fn fit(seen: &[(usize, f64)]) -> Option<f64> {
        let [(n1, x1), (n2, x2)] = [*seen.first()?, *seen.get(1)?];
        let ratio = (n1 as f64 / n2 as f64).ln();
        (n1 != n2 && x1 > 0.0 && x2 > 0.0 && ratio != 0.0)
            .then(|| ((x1 / x2).ln() / ratio).clamp(0.0, 1.0))
    }
}

/// When each table is done, in seconds from now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finish {
    /// Each table in flight, in the order given.
    pub(crate) in_flight: Vec<f64>,
    /// Each waiting table, in the order given.
    pub(crate) waiting: Vec<f64>,
    /// The last of them.
    pub(crate) last: f64,
}

/// When the work is done on `workers` workers: the tables in flight take
/// `in_flight[i]` seconds at the speed they go now, each waiting table,
/// largest first, goes to the worker free first and takes `waiting[j]`
/// seconds at a worker's speed now, and every speed changes with the
/// number in flight as `sharing` says.
pub(crate) fn schedule(
    in_flight: &[f64],
    waiting: &[f64],
    workers: usize,
    sharing: Sharing,
) -> Finish {
    let workers = workers.max(in_flight.len()).max(1);
    // No work below zero, and none in what is not a number.
    let waiting: Vec<f64> = waiting.iter().map(|w| w.max(0.0)).collect();
    let mut queue: Vec<usize> = (0..waiting.len()).collect();
    queue.sort_by(|&a, &b| waiting[a].total_cmp(&waiting[b]));
    // Every table running goes at the same speed, so their order of
    // finishing never changes: each is kept by the work done (in seconds at
    // today's speed) at which it ends, the soonest first. The bits of a
    // non-negative float order as the float does.
    let ends = |work: f64| work.max(0.0).to_bits();
    let mut running: BinaryHeap<Reverse<(u64, Result<usize, usize>)>> = in_flight
        .iter()
        .enumerate()
        .map(|(i, &t)| Reverse((ends(t), Ok(i))))
        .collect();
    let mut done = Finish {
        in_flight: vec![0.0; in_flight.len()],
        waiting: vec![0.0; waiting.len()],
        last: 0.0,
    };
    let (mut clock, mut work) = (0.0, 0.0);
    loop {
        while running.len() < workers
            && let Some(j) = queue.pop()
        {
            running.push(Reverse((ends(work + waiting[j]), Err(j))));
        }
        let speed = sharing.speed(running.len());
        let Some(Reverse((end, table))) = running.pop() else {
            break;
        };
        let end = f64::from_bits(end);
        clock += (end - work) / speed;
        work = end;
        match table {
            Ok(i) => done.in_flight[i] = clock,
            Err(j) => done.waiting[j] = clock,
        }
    }
    done.last = clock;
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Sharing = Sharing {
        now: 0,
        elasticity: 1.0,
    };

    #[test]
    fn the_last_table_in_flight_bounds_the_finish_from_below() {
        // One table with 18 s left, one worker idle, nothing waiting: 18 s,
        // not (bytes left ÷ both workers' rate).
        assert_eq!(schedule(&[18.0], &[], 2, OWN).last, 18.0);
        assert_eq!(schedule(&[], &[], 4, OWN).last, 0.0);
    }

    #[test]
    fn waiting_tables_go_largest_first_to_the_worker_free_first() {
        // Workers free at 2 s and 10 s; tables of 4 s, 8 s and 1 s waiting:
        // 8 s at 2 → 10, 4 s at 10 → 14, 1 s at 10 → 11.
        let finish = schedule(&[2.0, 10.0], &[4.0, 8.0, 1.0], 2, OWN);
        assert_eq!(finish.in_flight, [2.0, 10.0]);
        assert_eq!(finish.waiting, [14.0, 10.0, 11.0]);
        assert_eq!(finish.last, 14.0);
        // More workers than tables in flight start the waiting ones now.
        let finish = schedule(&[5.0], &[3.0, 3.0], 3, OWN);
        assert_eq!((finish.waiting, finish.last), (vec![3.0, 3.0], 5.0));
        // Fewer workers said than tables in flight: each in flight has one.
        assert_eq!(schedule(&[1.0, 1.0, 1.0], &[1.0], 1, OWN).last, 2.0);
    }

    #[test]
    fn ten_thousand_tables_in_flight_finish_each_at_its_own_time() {
        // A state file may list every table as copying: one pass each.
        let times: Vec<f64> = (0..10_000).rev().map(f64::from).collect();
        let finish = schedule(&times, &[f64::NAN, 1.0], 1, OWN);
        assert_eq!(finish.in_flight, times);
        // The 1 s table takes the worker free at 0 s; the NaN one (no work)
        // the next, at 1 s.
        assert_eq!(finish.waiting, [1.0, 1.0], "NaN is no work");
        let infinite = schedule(&[f64::INFINITY, 1.0], &[], 2, OWN);
        assert_eq!(infinite.in_flight, [f64::INFINITY, 1.0]);
    }

    #[test]
    fn a_shared_throughput_goes_to_the_tables_left_in_flight() {
        // Two tables of 10 s and 30 s at today's speed on a shared resource:
        // once the first is done the second goes twice as fast, so its
        // last 20 s take 10.
        let shared = Sharing {
            now: 2,
            elasticity: 0.0,
        };
        let finish = schedule(&[10.0, 30.0], &[], 2, shared);
        assert_eq!((finish.in_flight, finish.last), (vec![10.0, 20.0], 20.0));
        let halfway = Sharing {
            now: 2,
            elasticity: 0.5,
        };
        let last = schedule(&[10.0, 30.0], &[], 2, halfway).last;
        assert!((last - (10.0 + 20.0 / 2f64.sqrt())).abs() < 1e-9, "{last}");
        // A waiting table started by a free worker keeps the count.
        assert_eq!(schedule(&[10.0, 30.0], &[20.0], 2, shared).last, 30.0);
    }

    #[test]
    fn the_elasticity_is_fitted_from_two_counts_in_flight() {
        assert_eq!(Sharing::fit(&[(2, 100.0)]), None);
        assert_eq!(Sharing::fit(&[(2, 100.0), (1, 50.0)]), Some(1.0));
        assert_eq!(Sharing::fit(&[(2, 100.0), (1, 100.0)]), Some(0.0));
        let e = Sharing::fit(&[(2, 100.0), (1, 75.0)]).unwrap();
        assert!((e - (4.0f64 / 3.0).ln() / 2f64.ln()).abs() < 1e-9);
        assert_eq!(
            Sharing::fit(&[(2, 100.0), (1, 200.0)]),
            Some(0.0),
            "clamped"
        );
    }
}
