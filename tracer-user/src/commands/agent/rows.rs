//! rows: deleting the kernel's rows of a process the agent dropped, and the calls its
//! threads left in flight.
use std::collections::BTreeSet;

use anyhow::{Context, Result};
use aya::maps::{Array, PerCpuHashMap};
use tracer_common::{inflight_slot, map, InFlight, WaitKey, WaitStats, WakeKey, WakeStats};

use crate::attach::Tracer;

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
