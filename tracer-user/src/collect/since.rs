//! since: rows since a point — a profile of the last window or of the last N seconds is
//! the difference of two cumulative reads of the same rows (the kernel's and the unwound
//! snapshots), taken row by row.
use std::collections::HashMap;
use std::time::Instant;

use tracer_common::{WaitKey, WaitStats, NUM_PHASES};

use super::{pair_snapshots, SnapshotRows};

/// What a profile's waits are counted from.
pub enum Since<'a> {
    Attach,
    /// The start of the last whole `--window` (of the current one when none has ended).
    LastWindow,
    /// Rows read earlier, and when (the start of a `seconds=N` request).
    Rows(Instant, &'a Base),
}

/// A target's cumulative rows at one instant, for a later profile to subtract: the kernel's
/// and, in the snapshot modes, the unwound ones.
#[derive(Clone, Default)]
pub struct Base {
    pub waits: HashMap<WaitKey, WaitStats>,
    pub snaps: SnapshotRows,
}

/// `now - before` for one row read twice: every count and sum is the difference; the longest
/// wait stays the cumulative one (maxima do not subtract).
pub fn minus(now: &WaitStats, before: Option<&WaitStats>) -> WaitStats {
    let Some(b) = before else {
        return *now;
    };
    let mut d = now.minus(b);
    d.max_ns = now.max_ns;
    d.interrupted = now.interrupted.saturating_sub(b.interrupted);
    d.timeouts = now.timeouts.saturating_sub(b.timeouts);
    d.timeout_ns = now.timeout_ns.saturating_sub(b.timeout_ns);
    d.errors = now.errors.saturating_sub(b.errors);
    d.covered = now.covered.saturating_sub(b.covered);
    for i in 0..NUM_PHASES {
        d.blamed_ns[i] = now.blamed_ns[i].saturating_sub(b.blamed_ns[i]);
        d.blamed_waits[i] = now.blamed_waits[i].saturating_sub(b.blamed_waits[i]);
    }
    d
}

/// The waits of `now` since `base` (all of them when `None`), rows with nothing left dropped;
/// with `snaps` (the snapshot modes) the unwound rows of the same span too, paired with the
/// kernel's as a recording pairs them.
pub fn rows_since(
    now: &HashMap<WaitKey, WaitStats>,
    snaps: Option<&SnapshotRows>,
    base: Option<&Base>,
) -> (Vec<(WaitKey, WaitStats)>, Option<SnapshotRows>) {
    let waits: Vec<(WaitKey, WaitStats)> = now
        .iter()
        .map(|(k, v)| (*k, minus(v, base.and_then(|b| b.waits.get(k)))))
        .filter(|(_, v)| v.count > 0 || v.timeouts > 0 || v.errors > 0)
        .collect();
    let dwarf = snaps.map(|snaps| {
        let snaps: SnapshotRows = snaps
            .iter()
            .map(|(k, v)| (k.clone(), minus(v, base.and_then(|b| b.snaps.get(k)))))
            .filter(|(_, v)| v.count > 0 || v.timeouts > 0)
            .collect();
        pair_snapshots(&waits, snaps)
    });
    (waits, dwarf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_the_difference_of_two_reads() {
        let mut before = WaitStats {
            count: 3,
            total_ns: 300,
            max_ns: 200,
            ..WaitStats::default()
        };
        before.hist[5] = 3;
        let mut now = before;
        now.count = 5;
        now.total_ns = 1_000;
        now.max_ns = 600;
        now.hist[5] = 4;
        now.hist[9] = 1;
        let d = minus(&now, Some(&before));
        assert_eq!((d.count, d.total_ns, d.max_ns), (2, 700, 600));
        assert_eq!((d.hist[5], d.hist[9]), (1, 1));
        assert_eq!(minus(&now, None), now);
    }
}
