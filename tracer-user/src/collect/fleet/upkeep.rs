//! upkeep: what a fleet frees in the kernel — a dropped member's rows, in-flight slots and
//! stacks, the rows of threads of no member, and stacks no row has named for a while.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap as BpfHashMap, PerCpuHashMap};
use tracer_common::{
    inflight_slot, map, InFlight, StackFrames, WaitKey, WaitStats, WakeKey, WakeStats,
};

use super::{Fleet, Member};
use crate::attach::Tracer;

/// Reads in a row a stack must go unnamed by any row before it is deleted: longer than a
/// hand-off can wait in its slot (2 s) plus a tick, so a stack whose row is still to come is
/// never taken.
const SWEEP_AFTER: u32 = 4;

impl<X> Fleet<X> {
    /// Stops tracing `pid` and frees what the kernel held for it: its place in the set, its
    /// rows, in-flight slots and the stacks no other member's rows name. Returns the member
    /// (its uprobes are the driver's to detach).
    pub fn leave(&mut self, tracer: &mut Tracer, pid: u32) -> Result<Option<Member<X>>> {
        let Some(t) = self.members.remove(&pid) else {
            return Ok(None);
        };
        tracer.remove_target(pid)?;
        if let Some(d) = &self.drain {
            d.remove(pid);
        }
        self.shards.forget(pid);
        let tids = t.tids();
        self.owner.retain(|_, p| *p != pid);
        let now = Instant::now();
        // Its rows still in the kernel name its threads, and (the kernel's key) the process.
        self.retired
            .extend(tids.iter().chain([&pid]).map(|&tid| (tid, now)));
        forget_rows(tracer, t.waits.keys(), t.wakes.keys(), &tids)?;
        let kept: HashSet<u64> = self.named_stacks();
        let mut stacks: BpfHashMap<_, u64, StackFrames> =
            BpfHashMap::try_from(tracer.ebpf.map_mut(map::STACKS).context("STACKS map")?)?;
        for id in t
            .waits
            .keys()
            .map(|k| k.stack_id)
            .chain(t.wakes.keys().map(|k| k.stack_id))
            .filter(|id| !kept.contains(id))
        {
            // Already gone is fine.
            let _ = stacks.remove(&id);
            self.stacks.remove(&id);
        }
        Ok(Some(t))
    }

    /// Drops every member, freeing nothing (the tracer's drop frees the rest); returns them.
    pub fn leave_all(&mut self) -> Vec<Member<X>> {
        let members = std::mem::take(&mut self.members);
        if let Some(d) = &self.drain {
            for pid in members.keys() {
                d.remove(*pid);
            }
        }
        members.into_values().collect()
    }

    /// The stacks some member's rows name.
    fn named_stacks(&self) -> HashSet<u64> {
        self.members
            .values()
            .flat_map(|t| {
                t.waits
                    .keys()
                    .map(|k| k.stack_id)
                    .chain(t.wakes.keys().map(|k| k.stack_id))
            })
            .collect()
    }

    /// Deletes the kernel's stacks that no member's rows have named for [`SWEEP_AFTER`]
    /// reads: those of waits deleted as lost or of threads already gone.
    pub(super) fn sweep_stacks(&mut self, tracer: &mut Tracer) -> Result<()> {
        let named = self.named_stacks();
        let mut stale = Vec::new();
        let mut next = HashMap::new();
        for &id in self.stacks.keys().filter(|id| !named.contains(id)) {
            let n = self.unreferenced.get(&id).copied().unwrap_or(0) + 1;
            if n >= SWEEP_AFTER {
                stale.push(id);
            } else {
                next.insert(id, n);
            }
        }
        self.unreferenced = next;
        if stale.is_empty() {
            return Ok(());
        }
        let mut stacks: BpfHashMap<_, u64, StackFrames> =
            BpfHashMap::try_from(tracer.ebpf.map_mut(map::STACKS).context("STACKS map")?)?;
        for id in stale {
            let _ = stacks.remove(&id);
            self.stacks.remove(&id);
        }
        Ok(())
    }
}

/// Deletes rows from the kernel's maps (those of a process that is gone), and the calls its
/// threads left in flight (a thread killed in a wait never returns from it).
pub(super) fn forget_rows<'a>(
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
