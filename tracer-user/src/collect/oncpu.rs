//! oncpu: the on-CPU samples the kernel counted per user stack, read out, symbolized like the
//! wait stacks, and sorted by where in Go's `sync.Map` they landed (the fast-path estimate).
use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuHashMap};
use tracer_common::{map, StackFrames, NO_STACK, ONCPU_HZ};

use crate::attach::Tracer;
use crate::profile::FastPath;
use crate::symbolize::{frames_with_leaf, StackSymbolizer};
use crate::tracee::{classify_map_sample, InMap};

/// What the sampler counted: samples per stack id, summed over CPUs (empty when it did not
/// run; [`NO_STACK`] holds those whose stack was not kept), and the stacks.
#[derive(Default)]
pub struct Samples {
    pub counts: Vec<(u64, u64)>,
    pub stacks: HashMap<u64, Vec<u64>>,
}

pub(super) fn read_samples(tracer: &Tracer) -> Result<Samples> {
    let counts: PerCpuHashMap<&MapData, u64, u64> =
        PerCpuHashMap::try_from(tracer.ebpf.map(map::ONCPU).context("ONCPU map")?)?;
    let mut out = Samples::default();
    for item in counts.iter() {
        let (id, per_cpu) = item?;
        out.counts.push((id, per_cpu.iter().sum()));
    }
    let stacks: BpfHashMap<&MapData, u64, StackFrames> = BpfHashMap::try_from(
        tracer
            .ebpf
            .map(map::ONCPU_STACKS)
            .context("ONCPU_STACKS map")?,
    )?;
    for item in stacks.iter() {
        let (id, s) = item?;
        let n = (s.len as usize).min(s.frames.len());
        out.stacks.insert(id, s.frames[..n].to_vec());
    }
    Ok(out)
}

/// The estimate from `samples` (`None`: no sample was taken, the sampler was off).
pub(crate) fn estimate(samples: &Samples, sym: &mut StackSymbolizer) -> Option<FastPath> {
    let Samples { counts, stacks } = samples;
    if counts.is_empty() {
        return None;
    }
    let (kept, frames): (Vec<u64>, Vec<_>) = counts
        .iter()
        .filter_map(|(id, n)| Some((*n, frames_with_leaf(stacks.get(id)?, 0, |_| false))))
        .unzip();
    let mut f = FastPath {
        hz: ONCPU_HZ,
        samples: counts.iter().map(|(_, n)| n).sum(),
        unstacked: counts
            .iter()
            .filter(|(id, _)| *id == NO_STACK || !stacks.contains_key(id))
            .map(|(_, n)| n)
            .sum(),
        in_map: 0,
        lock_free: 0,
    };
    for (n, stack) in kept.iter().zip(sym.symbolize(frames)) {
        let names = stack
            .frames
            .iter()
            .flat_map(|fr| fr.syms.iter().map(|s| s.name.as_str()));
        match classify_map_sample(names) {
            InMap::No => {}
            InMap::LockFreeRead => {
                f.in_map += n;
                f.lock_free += n;
            }
            InMap::Other => f.in_map += n,
        }
    }
    Some(f)
}
