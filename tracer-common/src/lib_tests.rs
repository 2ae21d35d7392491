//! Unit tests of the shared types.
use super::*;

#[test]
fn buckets_follow_log2() {
    assert_eq!(hist_bucket(0), 0);
    assert_eq!(hist_bucket(1), 1);
    assert_eq!(hist_bucket(2), 2);
    assert_eq!(hist_bucket(3), 2);
    assert_eq!(hist_bucket(4), 3);
    assert_eq!(hist_bucket(1023), 10);
    assert_eq!(hist_bucket(1024), 11);
    assert_eq!(hist_bucket(u64::MAX), HIST_BUCKETS - 1);
    for b in 1..HIST_BUCKETS - 1 {
        let lo = bucket_floor_ns(b);
        assert_eq!(hist_bucket(lo), b, "floor of bucket {b}");
        assert_eq!(hist_bucket(lo * 2 - 1), b, "top of bucket {b}");
    }
}

#[test]
fn bucket_matches_leading_zeros() {
    let mut x = 1u64;
    for _ in 0..10_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = x >> (x % 64);
        let want = if v == 0 {
            0
        } else {
            (64 - v.leading_zeros()) as usize
        };
        assert_eq!(hist_bucket(v), want.min(HIST_BUCKETS - 1), "v={v}");
    }
}

#[test]
fn stack_hash_depends_on_order_and_never_zero() {
    let a = [0x1000u64, 0x2000];
    let b = [0x2000u64, 0x1000];
    let h = |f: &[u64]| {
        let mut h = STACK_HASH_SEED;
        for &x in f {
            h = stack_hash_step(h, x);
        }
        stack_hash_finish(h, f.len() as u32)
    };
    assert_ne!(h(&a), h(&b));
    assert_ne!(h(&a), NO_STACK);
    assert_ne!(h(&a[..1]), h(&a));
}

#[test]
fn a_wait_is_added_by_outcome() {
    let mut row = WaitStats::default();
    let mut blamed = [0; NUM_PHASES];
    blamed[0] = 300;
    row.add_wait(300, &blamed, Outcome::Woken);
    row.add_wait(100, &[0; NUM_PHASES], Outcome::Interrupted);
    row.add_wait(50, &[0; NUM_PHASES], Outcome::TimedOut);
    row.add_wait(0, &[0; NUM_PHASES], Outcome::Error);
    assert_eq!((row.count, row.total_ns, row.max_ns), (2, 400, 300));
    assert_eq!(
        (row.interrupted, row.timeouts, row.timeout_ns, row.errors),
        (1, 1, 50, 1)
    );
    assert_eq!(
        (row.blamed_ns[0], row.blamed_waits[0], row.covered),
        (300, 1, 1)
    );
    assert_eq!(row.hist.iter().sum::<u64>(), 2);
}

#[test]
fn rows_merge_and_subtract() {
    let mut a = WaitStats::default();
    let mut b = WaitStats::default();
    b.add_wait(200, &[0; NUM_PHASES], Outcome::Woken);
    b.add_wait(100, &[0; NUM_PHASES], Outcome::Woken);
    let mut c = WaitStats::default();
    c.add_wait(50, &[0; NUM_PHASES], Outcome::Woken);
    c.add_wait(9, &[0; NUM_PHASES], Outcome::TimedOut);
    a.merge(&b);
    a.merge(&c);
    assert_eq!(
        (a.count, a.total_ns, a.max_ns, a.timeouts),
        (3, 350, 200, 1)
    );
    assert_eq!(a.minus(&c).count, 2);
    assert_eq!(a.minus(&c).total_ns, 300);
    assert_eq!(a.minus(&c).hist, b.hist);
    let none = a.minus(&a);
    assert_eq!((none.count, none.total_ns, none.max_ns), (0, 0, 0));
}
