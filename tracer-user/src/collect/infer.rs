//! infer: in a lock storm the snapshot ring fills and some waits' stack copies are dropped.
//! Such a wait takes the unwound stacks of the waits that share its waiter's side of the
//! kernel key: one thread, one futex word, one frame-walk stack and leaf, whoever woke them (a
//! waiter's stack is fixed when it goes to sleep, before its waker is known). The waits with
//! snapshots show where such waits were taken, and the rest are shared among those stacks in
//! proportion to their waits. A wait none of whose kind reached user space keeps its
//! frame-walk stack.
use std::collections::HashMap;

use tracer_common::{WaitKey, WaitStats, NO_STACK};

use super::SnapshotRows;
use crate::symbolize::Addr;

/// The waiter's side of a kernel key: the waker and how the wait was recorded left out.
fn waiter(k: &WaitKey) -> WaitKey {
    WaitKey {
        waker_id: NO_STACK,
        flags: 0,
        ..*k
    }
}

/// Shares each kernel row's waits that no snapshot explains among the unwound stacks of its
/// waiter's side. Returns how many waits took their stack so.
pub fn spread_remainders(waits: &[(WaitKey, WaitStats)], dwarf: &mut SnapshotRows) -> u64 {
    let mut explained: HashMap<WaitKey, WaitStats> = HashMap::new();
    let mut seen: HashMap<WaitKey, HashMap<Vec<Addr>, u64>> = HashMap::new();
    for ((k, frames), st) in dwarf.iter() {
        explained.entry(*k).or_default().merge(st);
        *seen
            .entry(waiter(k))
            .or_default()
            .entry(frames.clone())
            .or_default() += weight(st);
    }
    // In a fixed order: the last stack takes the rounding.
    let seen: HashMap<WaitKey, Vec<(Vec<Addr>, u64)>> = seen
        .into_iter()
        .map(|(k, stacks)| {
            let mut v: Vec<(Vec<Addr>, u64)> = stacks.into_iter().collect();
            v.sort_by_cached_key(|(f, _)| format!("{f:?}"));
            (k, v)
        })
        .collect();
    let mut inferred = 0;
    for (k, whole) in waits {
        let rest = match explained.get(k) {
            Some(e) => whole.minus(e),
            None => *whole,
        };
        let Some(stacks) = seen.get(&waiter(k)) else {
            continue;
        };
        let of: u64 = stacks.iter().map(|(_, w)| w).sum();
        if weight(&rest) == 0 || of == 0 {
            continue;
        }
        let mut given = WaitStats::default();
        for (i, (frames, w)) in stacks.iter().enumerate() {
            let part = match i + 1 == stacks.len() {
                // The last takes what rounding left, so the row adds up exactly.
                true => rest.minus(&given),
                false => share(&rest, *w, of),
            };
            given.merge(&part);
            dwarf
                .entry((*k, frames.clone()))
                .or_default()
                .merge(&WaitStats { max_ns: 0, ..part });
        }
        inferred += weight(&rest);
    }
    inferred
}

/// Waits a row holds, woken or timed out.
fn weight(s: &WaitStats) -> u64 {
    s.count + s.timeouts
}

/// `part / whole` of `rest`: its waits, times and histogram (rounded down).
fn share(rest: &WaitStats, part: u64, whole: u64) -> WaitStats {
    let of = |x: u64| (u128::from(x) * u128::from(part) / u128::from(whole)) as u64;
    let mut s = WaitStats {
        count: of(rest.count),
        total_ns: of(rest.total_ns),
        timeouts: of(rest.timeouts),
        timeout_ns: of(rest.timeout_ns),
        ..WaitStats::default()
    };
    for (a, b) in s.hist.iter_mut().zip(rest.hist.iter()) {
        *a = of(*b);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::stats;

    fn key(tid: u32) -> WaitKey {
        WaitKey {
            stack_id: 1,
            uaddr: 0x5000,
            tid,
            ..WaitKey::default()
        }
    }

    #[test]
    fn dropped_snapshots_take_their_rows_stacks_in_proportion_and_the_totals_stay_exact() {
        let (a, b) = (vec![Addr::Ip(0x10)], vec![Addr::Ip(0x20)]);
        let mut dwarf = SnapshotRows::from([
            ((key(1), a.clone()), stats(3, 3_000)),
            ((key(1), b.clone()), stats(1, 1_000)),
        ]);
        // Row 1 holds 4 waits more than its snapshots; row 2 had none reach user space.
        let waits = vec![(key(1), stats(8, 8_000)), (key(2), stats(5, 5_000))];
        assert_eq!(spread_remainders(&waits, &mut dwarf), 4);
        let got = |f: &Vec<Addr>| dwarf[&(key(1), f.clone())];
        assert_eq!((got(&a).count, got(&b).count), (6, 2));
        assert_eq!(got(&a).total_ns + got(&b).total_ns, 8_000);
        let hist: u64 = got(&a).hist.iter().chain(got(&b).hist.iter()).sum();
        assert_eq!(hist, 8);
        // The longest wait stays what each stack saw.
        assert_eq!(got(&a).max_ns, 1_000);
        assert!(!dwarf.keys().any(|(k, _)| k.tid == 2));
    }

    /// A waiter's stack is fixed before its waker is known: a row of another waker takes the
    /// stacks the same waiter's other rows were unwound to.
    #[test]
    fn a_row_of_another_waker_takes_its_waiters_stacks() {
        let a = vec![Addr::Ip(0x10)];
        let mut dwarf = SnapshotRows::from([((key(1), a.clone()), stats(2, 2_000))]);
        let other_waker = WaitKey {
            waker_id: 77,
            ..key(1)
        };
        let waits = vec![(key(1), stats(2, 2_000)), (other_waker, stats(3, 3_000))];
        assert_eq!(spread_remainders(&waits, &mut dwarf), 3);
        assert_eq!(dwarf[&(other_waker, a.clone())].count, 3);
        assert_eq!(dwarf[&(key(1), a)].count, 2);
    }
}
