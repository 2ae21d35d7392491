//! Unit tests of `--probe-windows`' option and of the weighting of sampled rows.
use super::*;
use tracer_common::Outcome;

/// A row key of op `kind` (also the goroutine sample's tests').
pub(crate) fn key(kind: OpKind) -> WaitKey {
    WaitKey {
        stack_id: 1,
        waker_id: 0,
        uaddr: 0,
        leaf_ret: 0,
        tid: 1,
        kind: kind as u32,
        flags: 0,
        tgid: 0,
    }
}

fn sampled(windows: u64) -> WindowsRecord {
    WindowsRecord {
        percent: 10,
        window_ns: 100_000_000,
        windows,
    }
}

#[test]
fn percents_outside_1_to_100_are_refused_and_the_period_follows_the_percent() {
    assert!(WindowShare::new(0).is_err());
    assert!(WindowShare::new(101).is_err());
    assert_eq!(
        WindowShare::new(10).unwrap().period(),
        Duration::from_secs(1)
    );
    assert_eq!(WindowShare::new(100).unwrap().period(), WINDOW);
}

#[test]
fn short_waits_are_weighted_by_the_share_of_time_watched_and_other_rows_are_left() {
    let mut s = WaitStats::default();
    for _ in 0..100 {
        s.add_wait(1_000, &Default::default(), Outcome::Woken);
    }
    let mut rows = vec![(key(OpKind::TokioAcquire), s), (key(OpKind::Wait), s)];
    // 3 windows of 100 ms in 3 s: a 1 µs wait was watched 10% of the time.
    scale_rows(
        &mut rows,
        OpKind::TokioAcquire,
        &sampled(3),
        Duration::from_secs(3),
    );
    let t = &rows[0].1;
    assert_eq!(t.count, 1000, "{t:?}");
    assert!(
        (990_000..=1_010_000).contains(&t.total_ns),
        "{}",
        t.total_ns
    );
    assert_eq!(t.max_ns, 1_000);
    assert_eq!(t.hist.iter().sum::<u64>(), 1000);
    assert_eq!(rows[1].1.count, 100, "a futex row was scaled");
}

#[test]
fn long_waits_weigh_more_but_their_weight_is_capped_at_half_a_window() {
    let one = |ns: u64| {
        let mut s = WaitStats::default();
        s.add_wait(ns, &Default::default(), Outcome::Woken);
        let mut rows = vec![(key(OpKind::TokioAcquire), s)];
        scale_rows(
            &mut rows,
            OpKind::TokioAcquire,
            &sampled(3),
            Duration::from_secs(3),
        );
        rows[0].1.count
    };
    // 20 ms (bucket middle ~23.7 ms): seen with chance 3 × 76.3 ms / 3 s, weight ~13.
    assert_eq!(one(20_000_000), 13);
    // 70 and 90 ms: weighted as if 50 ms long, weight 20.
    assert_eq!(one(70_000_000), 20);
    assert_eq!(one(90_000_000), 20);
}

#[test]
fn no_window_means_no_weighting() {
    let mut s = WaitStats::default();
    s.add_wait(1_000, &Default::default(), Outcome::Woken);
    let mut rows = vec![(key(OpKind::TokioAcquire), s)];
    scale_rows(
        &mut rows,
        OpKind::TokioAcquire,
        &sampled(0),
        Duration::from_secs(3),
    );
    assert_eq!(rows[0].1.count, 1);
}

#[test]
fn only_the_windowed_probes_rows_are_weighted() {
    let mut s = WaitStats::default();
    s.add_wait(1_000, &Default::default(), Outcome::Woken);
    let mut rows = vec![
        (key(OpKind::GoSemacquire), s),
        (key(OpKind::TokioAcquire), s),
    ];
    scale_rows(
        &mut rows,
        OpKind::GoSemacquire,
        &sampled(3),
        Duration::from_secs(3),
    );
    assert_eq!((rows[0].1.count, rows[1].1.count), (10, 1));
}
