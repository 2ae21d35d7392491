//! read: the kernel's aggregates read out as rows — waits and wakes summed over CPUs,
//! stacks, counters, phase totals, and the waits still in flight.
use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap};
use tracer_common::{
    map, InFlight, PhaseStats, StackFrames, WaitKey, WaitStats, WakeKey, WakeStats, MAP_SLOTS,
    NUM_COUNTERS, NUM_PHASES,
};

use crate::attach::Tracer;
use crate::sys::monotonic_ns;

pub(super) fn read_counters(tracer: &Tracer) -> Result<[u64; NUM_COUNTERS as usize]> {
    let counters: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(tracer.ebpf.map(map::COUNTERS).context("COUNTERS map")?)?;
    let mut out = [0u64; NUM_COUNTERS as usize];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = counters.get(&(i as u32), 0)?.iter().sum();
    }
    Ok(out)
}

/// Traced phase totals per map kind ([`crate::profile::MapKind::slot`]).
pub type SlotPhases = [[PhaseStats; NUM_PHASES]; MAP_SLOTS];

/// Traced phase totals, summed over CPUs, per map kind.
pub(super) fn read_phases(tracer: &Tracer) -> Result<SlotPhases> {
    let phase_map: PerCpuArray<&MapData, PhaseStats> = PerCpuArray::try_from(
        tracer
            .ebpf
            .map(map::PHASE_STATS)
            .context("PHASE_STATS map")?,
    )?;
    let mut phases = [[PhaseStats::default(); NUM_PHASES]; MAP_SLOTS];
    for (i, p) in phases.iter_mut().flatten().enumerate() {
        for v in phase_map.get(&(i as u32), 0)?.iter() {
            p.calls += v.calls;
            p.returns += v.returns;
            p.total_ns += v.total_ns;
            p.max_ns = p.max_ns.max(v.max_ns);
            p.items += v.items;
        }
    }
    Ok(phases)
}

/// The kernel's rows and counters (the hand-off slots are the caller's to consume once,
/// [`super::consume_leftovers`]).
pub struct Rows {
    pub waits: Vec<(WaitKey, WaitStats)>,
    pub wakes: Vec<(WakeKey, WakeStats)>,
    pub stacks: HashMap<u64, Vec<u64>>,
    pub counters: [u64; NUM_COUNTERS as usize],
}

pub fn read_rows(tracer: &Tracer) -> Result<Rows> {
    let ebpf = &tracer.ebpf;
    let counters = read_counters(tracer)?;

    // A row can be in both the map and its spill (see the kernel's `WAITS_SPILL`): merged.
    let mut by_key: HashMap<WaitKey, WaitStats> = HashMap::new();
    for name in [map::WAITS, map::WAITS_SPILL] {
        let rows: PerCpuHashMap<&MapData, WaitKey, WaitStats> =
            PerCpuHashMap::try_from(ebpf.map(name).with_context(|| format!("{name} map"))?)?;
        for item in rows.iter() {
            let (key, per_cpu) = item?;
            let sum = by_key.entry(key).or_default();
            for v in per_cpu.iter() {
                sum.merge(v);
            }
        }
    }
    let waits: Vec<(WaitKey, WaitStats)> = by_key.into_iter().collect();

    let mut by_key: HashMap<WakeKey, WakeStats> = HashMap::new();
    for name in [map::WAKES, map::WAKES_SPILL] {
        let rows: PerCpuHashMap<&MapData, WakeKey, WakeStats> =
            PerCpuHashMap::try_from(ebpf.map(name).with_context(|| format!("{name} map"))?)?;
        for item in rows.iter() {
            let (key, per_cpu) = item?;
            let sum = by_key.entry(key).or_default();
            for v in per_cpu.iter() {
                sum.calls += v.calls;
                sum.woken += v.woken;
            }
        }
    }
    let wakes: Vec<(WakeKey, WakeStats)> = by_key.into_iter().collect();

    let stacks_map: BpfHashMap<&MapData, u64, StackFrames> =
        BpfHashMap::try_from(ebpf.map(map::STACKS).context("STACKS map")?)?;
    let mut stacks = HashMap::new();
    for item in stacks_map.iter() {
        let (id, s) = item?;
        let n = (s.len as usize).min(s.frames.len());
        stacks.insert(id, s.frames[..n].to_vec());
    }

    Ok(Rows {
        waits,
        wakes,
        stacks,
        counters,
    })
}

/// The waits still blocked now (real contention the rows do not hold yet), and the longest
/// of them so far.
pub(super) fn in_flight(tracer: &Tracer) -> Result<(u64, u64)> {
    let inflight: Array<&MapData, InFlight> =
        Array::try_from(tracer.ebpf.map(map::INFLIGHT).context("INFLIGHT map")?)?;
    let now = monotonic_ns();
    let (mut still_waiting, mut longest) = (0, 0);
    for call in inflight.iter() {
        let call = call?;
        if call.tid != 0 && tracer_common::is_wait_kind(call.kind) {
            still_waiting += 1;
            longest = longest.max(now.saturating_sub(call.start_ns));
        }
    }
    Ok((still_waiting, longest))
}
