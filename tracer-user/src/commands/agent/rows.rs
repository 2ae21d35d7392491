//! rows: the agent's arithmetic on the kernel's rows — what a profile counts from, the
//! difference of two reads, and deleting the rows of a process that is gone.
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use anyhow::{Context, Result};
use aya::maps::{Array, PerCpuHashMap};
use tracer_common::NUM_PHASES;
use tracer_common::{inflight_slot, map, InFlight, WaitKey, WaitStats, WakeKey, WakeStats};

use crate::attach::Tracer;
use crate::collect::SnapshotRows;

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

/// Deletes rows from the kernel's maps (those of a process that is gone), and the calls its
/// threads left in flight (a thread killed in a wait never returns from it).
pub fn forget_rows<'a>(
    tracer: &mut Tracer,
    waits: impl Iterator<Item = &'a WaitKey>,
    wakes: impl Iterator<Item = &'a WakeKey>,
    tids: &BTreeSet<u32>,
) -> Result<()> {
    let ebpf = &mut tracer.ebpf;
    // A row already gone (or never spilled) is fine: only ENOENT can fail a delete here.
    let waits: Vec<&WaitKey> = waits.collect();
    for name in [map::WAITS, map::WAITS_SPILL] {
        let mut w: PerCpuHashMap<_, WaitKey, WaitStats> =
            PerCpuHashMap::try_from(ebpf.map_mut(name).with_context(|| format!("{name} map"))?)?;
        for k in &waits {
            let _ = w.remove(k);
        }
    }
    let wakes: Vec<&WakeKey> = wakes.collect();
    for name in [map::WAKES, map::WAKES_SPILL] {
        let mut w: PerCpuHashMap<_, WakeKey, WakeStats> =
            PerCpuHashMap::try_from(ebpf.map_mut(name).with_context(|| format!("{name} map"))?)?;
        for k in &wakes {
            let _ = w.remove(k);
        }
    }
    if !tids.is_empty() {
        let mut inflight: Array<_, InFlight> =
            Array::try_from(ebpf.map_mut(map::INFLIGHT).context("INFLIGHT map")?)?;
        for &tid in tids {
            let slot = inflight_slot(tid);
            if inflight.get(&slot, 0).is_ok_and(|c| c.tid == tid) {
                inflight.set(slot, InFlight::default(), 0)?;
            }
        }
    }
    Ok(())
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
