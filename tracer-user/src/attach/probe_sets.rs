//! probe_sets: tokio's probes, the lock-hint probes (DashMap's shard locks), the sets `--probe-windows` switches on and off (tokio's and
//! the goroutine probes) with their in-flight maps, and the goroutine sample's threshold.
//! Split from `load` for size; the same `Tracer`.
use std::num::NonZeroU32;

use anyhow::{Context, Result};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope};
use tracer_common::{map, prog};

use super::{load_uprobes, uprobe, Tracer, Uprobes};
use crate::tracee::{HintPoints, PollAt, TokioPoints};

/// One process's tokio or goroutine probes, owned apart from the tracer's so
/// `--probe-windows` can take them off between windows; dropping them detaches them.
pub struct ProbeLinks {
    /// Held, never read: they stay attached until dropped.
    _links: Vec<UProbeLink>,
}

impl Tracer {
    /// Probes tokio's `batch_semaphore::Acquire` poll (its entry, or its DWARF inline sites
    /// with a cookie saying where `self` is) and drop entries, and
    /// `Semaphore::release` where there is one, at the file offsets given (checked by
    /// `tracee::tokio_probes`). Returns the probes attached.
    pub fn attach_tokio(
        &mut self,
        pid: u32,
        exe: &std::path::Path,
        points: &TokioPoints,
    ) -> Result<Uprobes> {
        let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).context("pid 0")?);
        // (program, file offset, attach cookie)
        let mut sites = Vec::new();
        match &points.poll {
            PollAt::Entry(at) => sites.push((prog::TOKIO_POLL, *at, None)),
            PollAt::Inline(i) => sites.extend(
                i.sites
                    .iter()
                    .map(|s| (prog::TOKIO_POLL_AT, s.offset, Some(s.self_at.cookie()))),
            ),
        }
        sites.push((prog::TOKIO_DROP, points.drop, None));
        if let Some(at) = points.release {
            sites.push((prog::TOKIO_RELEASE, at, None));
        }
        sites.extend(
            points
                .release_inline
                .iter()
                .map(|s| (prog::TOKIO_RELEASE_AT, s.offset, Some(s.self_at.cookie()))),
        );
        let mut names: Vec<&str> = sites.iter().map(|s| s.0).collect();
        names.sort_unstable();
        names.dedup();
        load_uprobes(&mut self.ebpf, names)?;
        let mut placed = Uprobes::default();
        for (name, offset, cookie) in sites {
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(offset),
                cookie,
            };
            let link = uprobe(&mut self.ebpf, name)?
                .attach(point, exe, scope)
                .with_context(|| format!("probing tokio at {offset:#x} in {}", exe.display()))?;
            placed.0.push((name, link));
        }
        Ok(placed)
    }

    /// Probes the lock-hint slow paths (checked by `tracee::dashmap_hints`) and turns the
    /// switch-out's hint lookups on. Kept for the whole recording. Returns how many.
    pub fn attach_lock_hints(&mut self, pid: u32, hints: &HintPoints) -> Result<usize> {
        let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).context("pid 0")?);
        load_uprobes(&mut self.ebpf, [prog::LOCK_HINT, prog::LOCK_HINT_EXIT])?;
        let mut on: aya::maps::Array<_, u32> = aya::maps::Array::try_from(
            self.ebpf
                .map_mut(map::LOCK_HINTS_ON)
                .context("LOCK_HINTS_ON map")?,
        )?;
        on.set(0, 1, 0).context("turning lock hints on")?;
        let mut placed = Uprobes::default();
        for p in &hints.points {
            // The returns first: an entry never leaves a hint its return cannot drop.
            let sites = p.returns.iter().map(|&r| (prog::LOCK_HINT_EXIT, r));
            for (prog, offset) in sites.chain([(prog::LOCK_HINT, p.entry)]) {
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(offset),
                    cookie: None,
                };
                let link = uprobe(&mut self.ebpf, prog)?
                    .attach(point, &hints.exe, scope)
                    .with_context(|| format!("probing {} at {offset:#x}", p.name))?;
                placed.0.push((prog, link));
            }
        }
        let n = placed.len();
        self.keep_uprobes(placed);
        Ok(n)
    }

    /// Every `(lock address, tgid)` a lock-hint probe has seen (those the kernel's LRU kept).
    pub fn lock_hint_addrs(&self) -> Result<Vec<(u64, u32)>> {
        let m: aya::maps::HashMap<_, u64, [u64; 2]> = aya::maps::HashMap::try_from(
            self.ebpf
                .map(map::LOCK_HINT_ADDRS)
                .context("LOCK_HINT_ADDRS map")?,
        )?;
        Ok(m.iter()
            .filter_map(|e| e.ok())
            .map(|(_, [addr, tgid])| (addr, tgid as u32))
            .collect())
    }

    /// Owns `probes` (from [`Tracer::attach_tokio`]) apart from the tracer.
    pub fn own_links(&mut self, probes: Uprobes) -> Result<ProbeLinks> {
        let mut links = Vec::new();
        for (name, id) in probes.0 {
            links.push(uprobe(&mut self.ebpf, name)?.take_link(id)?);
        }
        Ok(ProbeLinks { _links: links })
    }

    /// Forgets every async acquire in flight: a window's waits that were still open when
    /// its probes came off must not pair with the next window's polls.
    pub fn clear_tokio_inflight(&mut self) -> Result<()> {
        clear::<[u64; 4]>(&mut self.ebpf, map::TOKIO_INFLIGHT)
    }

    /// Forgets every goroutine wait in flight, as [`Tracer::clear_tokio_inflight`] does for
    /// tokio's.
    pub fn clear_go_inflight(&mut self) -> Result<()> {
        clear::<tracer_common::GoCall>(&mut self.ebpf, map::GO_INFLIGHT)
    }

    /// `--go-sample`: the kernel follows a goroutine wait when a random u32 falls under
    /// `threshold` (0: every wait). Set before the goroutine probes are attached.
    pub fn set_go_sample(&mut self, threshold: u32) -> Result<()> {
        let mut sample: aya::maps::Array<_, u32> = aya::maps::Array::try_from(
            self.ebpf.map_mut(map::GO_SAMPLE).context("GO_SAMPLE map")?,
        )?;
        sample
            .set(0, threshold, 0)
            .context("setting the goroutine sample")
    }
}

impl ProbeLinks {
    /// Takes the probes off on a thread of their own: the breakpoints go at once, but each
    /// detach then waits out a grace period (~90 ms), which the recording loop must not.
    pub fn detach_in_background(self) {
        let _ = std::thread::Builder::new()
            .name("lockscope-detach".into())
            .spawn(move || drop(self));
    }
}

/// Removes every entry of the hash map `name` (values of type `V`, keys u64). One gone
/// already is fine: an entry an LRU map evicted, or a probe's own removal.
fn clear<V: aya::Pod>(ebpf: &mut aya::Ebpf, name: &str) -> Result<()> {
    let mut m: aya::maps::HashMap<_, u64, V> =
        aya::maps::HashMap::try_from(ebpf.map_mut(name).with_context(|| format!("{name} map"))?)?;
    let keys: Vec<u64> = m.keys().filter_map(|k| k.ok()).collect();
    for k in keys {
        let _ = m.remove(&k);
    }
    Ok(())
}
