//! Unit tests of collect.
use super::*;

#[test]
fn per_cpu_rows_merge() {
    let mut a = WaitStats::default();
    let mut b = WaitStats {
        count: 2,
        total_ns: 300,
        max_ns: 200,
        ..WaitStats::default()
    };
    b.hist[8] = 2;
    let mut c = WaitStats {
        count: 1,
        total_ns: 50,
        max_ns: 50,
        timeouts: 1,
        ..WaitStats::default()
    };
    c.hist[6] = 1;
    merge_wait(&mut a, &b);
    merge_wait(&mut a, &c);
    assert_eq!(
        (a.count, a.total_ns, a.max_ns, a.timeouts),
        (3, 350, 200, 1)
    );
    assert_eq!((a.hist[6], a.hist[8]), (1, 2));
}
