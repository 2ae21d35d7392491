//! infer: in a lock storm the snapshot ring fills and some waits' stack copies are dropped.
//! Such a wait takes the unwound stacks of the other waits of its kernel row. A kernel row is
//! one thread, one futex word, one frame-walk stack and leaf, and one waker: the waits of it
//! that have snapshots show where such waits were taken, and the rest are shared among those
//! stacks in proportion to their waits. A row no snapshot reached keeps its frame-walk stack.
use std::collections::HashMap;

use tracer_common::{WaitKey, WaitStats};

use super::SnapshotRows;
use crate::symbolize::Addr;

/// Shares each kernel row's waits that no snapshot explains among the row's snapshot rows.
/// Returns how many waits took their stack so.
pub fn spread_remainders(waits: &[(WaitKey, WaitStats)], dwarf: &mut SnapshotRows) -> u64 {
    let mut explained: HashMap<WaitKey, WaitStats> = HashMap::new();
    let mut stacks: HashMap<WaitKey, Vec<Vec<Addr>>> = HashMap::new();
    for ((k, frames), st) in dwarf.iter() {
        explained.entry(*k).or_default().merge(st);
        stacks.entry(*k).or_default().push(frames.clone());
    }
    let mut inferred = 0;
    for (k, whole) in waits {
        let Some(seen) = explained.get(k) else {
            continue;
        };
        let rest = whole.minus(seen);
        let whole_weight = weight(seen);
        if weight(&rest) == 0 || whole_weight == 0 {
            continue;
        }
        // In a fixed order: the last row takes the rounding.
        let mut rows = stacks.remove(k).unwrap_or_default();
        rows.sort_by_cached_key(|f| format!("{f:?}"));
        let mut given = WaitStats::default();
        let last = rows.len().saturating_sub(1);
        for (i, frames) in rows.into_iter().enumerate() {
            let Some(st) = dwarf.get_mut(&(*k, frames)) else {
                continue;
            };
            let part = match i == last {
                // The last takes what rounding left, so the row adds up exactly.
                true => rest.minus(&given),
                false => share(&rest, weight(st), whole_weight),
            };
            given.merge(&part);
            st.merge(&WaitStats { max_ns: 0, ..part });
        }
        inferred += rest.count + rest.timeouts;
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
}
