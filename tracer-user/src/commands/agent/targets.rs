//! targets: the processes the agent traces and what it last read for each. One loaded eBPF
//! object in set mode serves them all; each tick the kernel's rows are read once and split
//! by process (a row's tid → its process, from /proc), so every target keeps its own
//! cumulative rows, memory maps and symbolizer.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use aya::maps::{Array, PerCpuHashMap};
use tracer_common::{inflight_slot, map, InFlight, WaitKey, WaitStats, WakeKey, WakeStats};
use tracer_common::{NUM_COUNTERS, NUM_PHASES};

use crate::attach::{Tracer, Uprobes};
use crate::collect::{self, build_profile, Raw};
use crate::commands::session::{self, Probes};
use crate::profile::{Profile, StopReason};
use crate::symbolize::{SharedNames, StackSymbolizer};
use crate::sys::{self, thread_names, MapHistory, Target};
use crate::tracee::BundledMap;

/// Losses only the agent can have, beside the kernel's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct AgentLosses {
    /// Matching processes not traced because `--max-targets` were already traced.
    pub target_cap: u64,
    /// Matching processes whose probes could not be placed.
    pub attach_failed: u64,
    /// Waits of threads that exited before their process was known (counted, then dropped).
    pub unattributed: u64,
}

/// One traced process.
pub struct Traced {
    pub target: Target,
    /// The process's cgroup (v2 path), a label: which container or service it is.
    pub cgroup: String,
    pub map: Option<BundledMap>,
    uprobes: Uprobes,
    pub probes: usize,
    pub attached_unix_ms: u64,
    attached: Instant,
    maps: MapHistory,
    threads: BTreeMap<u32, String>,
    sym: StackSymbolizer,
    /// The kernel's rows for this process: cumulative since it was attached.
    pub waits: HashMap<WaitKey, WaitStats>,
    wakes: HashMap<WakeKey, WakeStats>,
    /// The rows at the start of the last whole window and of the current one, and when.
    window: [Option<(Instant, HashMap<WaitKey, WaitStats>)>; 2],
    /// Lock sites with their own metric label, in the order they got one (kept for good, so
    /// every series only grows).
    pub sites: Vec<String>,
}

impl Traced {
    /// Offsets this process's symbolizer looked up itself (not found by build id in the
    /// names another process of the same binary already found).
    pub fn symbol_lookups(&self) -> u64 {
        self.sym.lookups
    }
}

/// Everything the agent knows; the HTTP handlers read it between ticks.
pub struct State {
    pub targets: BTreeMap<u32, Traced>,
    stacks: HashMap<u64, Vec<u64>>,
    pub counters: [u64; NUM_COUNTERS as usize],
    pub losses: AgentLosses,
    /// Matching processes left out by the cap (counted once each).
    refused: BTreeSet<u32>,
    /// Thread → process, for every thread seen in a traced process.
    owner: HashMap<u32, u32>,
    window_started: Instant,
    pub started: Instant,
    /// Symbol names by build id, for every target's symbolizer.
    names: SharedNames,
}

impl State {
    pub fn new() -> State {
        State {
            targets: BTreeMap::new(),
            stacks: HashMap::new(),
            counters: [0; NUM_COUNTERS as usize],
            losses: AgentLosses::default(),
            refused: BTreeSet::new(),
            owner: HashMap::new(),
            window_started: Instant::now(),
            started: Instant::now(),
            names: SharedNames::default(),
        }
    }

    /// Attaches to the processes that appeared, drops those that are gone.
    pub fn update_targets(
        &mut self,
        tracer: &mut Tracer,
        running: &BTreeSet<u32>,
        probes: &Probes,
        max_targets: usize,
    ) {
        let gone: Vec<u32> = self
            .targets
            .keys()
            .filter(|p| !running.contains(p))
            .copied()
            .collect();
        for pid in gone {
            if let Err(e) = self.drop_target(tracer, pid) {
                eprintln!("lockscope agent: dropping pid {pid}: {e:#}");
            }
        }
        self.refused.retain(|p| running.contains(p));
        for &pid in running {
            if self.targets.contains_key(&pid) || self.refused.contains(&pid) {
                continue;
            }
            if self.targets.len() >= max_targets {
                self.refused.insert(pid);
                self.losses.target_cap += 1;
                continue;
            }
            match attach_target(tracer, pid, probes, &self.names) {
                Ok(t) => {
                    eprintln!(
                        "lockscope agent: tracing pid {pid} ({})",
                        crate::profile::term_safe(&t.target.comm)
                    );
                    self.targets.insert(pid, t);
                }
                Err(e) => {
                    // Tried once: a process that cannot be traced now will not be later.
                    self.refused.insert(pid);
                    self.losses.attach_failed += 1;
                    eprintln!("lockscope agent: cannot trace pid {pid}: {e:#}");
                }
            }
        }
    }

    /// Stops tracing `pid` and frees what the kernel held for it.
    fn drop_target(&mut self, tracer: &mut Tracer, pid: u32) -> Result<()> {
        let Some(t) = self.targets.remove(&pid) else {
            return Ok(());
        };
        eprintln!(
            "lockscope agent: pid {pid} ({}) exited; dropped",
            crate::profile::term_safe(&t.target.comm)
        );
        tracer.remove_target(pid)?;
        tracer.detach_uprobes(t.uprobes)?;
        let tids: BTreeSet<u32> = t.threads.keys().copied().collect();
        self.owner.retain(|_, p| *p != pid);
        forget_rows(tracer, t.waits.keys(), t.wakes.keys(), &tids)
    }

    /// Reads the kernel's rows and each target's maps and threads, and splits the rows.
    pub fn refresh(&mut self, tracer: &mut Tracer, window: Duration) -> Result<()> {
        for (&pid, t) in &mut self.targets {
            t.maps.refresh(pid);
            thread_names(pid, &mut t.threads);
            for &tid in t.threads.keys() {
                self.owner.insert(tid, pid);
            }
        }
        // Not the in-flight scan: ~35 ms of bpf syscalls per read, for a count the agent
        // does not report.
        let raw = collect::read_rows(tracer)?;
        self.counters = raw.counters;
        self.stacks = raw.stacks;
        let mut waits: HashMap<u32, HashMap<WaitKey, WaitStats>> = HashMap::new();
        let mut orphans = Vec::new();
        for (k, v) in raw.waits {
            match self.owner_of(k.tid) {
                Some(pid) => {
                    waits.entry(pid).or_default().insert(k, v);
                }
                None => {
                    self.losses.unattributed += v.count;
                    orphans.push(k);
                }
            }
        }
        let mut wakes: HashMap<u32, HashMap<WakeKey, WakeStats>> = HashMap::new();
        let mut orphan_wakes = Vec::new();
        for (k, v) in raw.wakes {
            match self.owner_of(k.tid) {
                Some(pid) => {
                    wakes.entry(pid).or_default().insert(k, v);
                }
                None => orphan_wakes.push(k),
            }
        }
        forget_rows(
            tracer,
            orphans.iter(),
            orphan_wakes.iter(),
            &BTreeSet::new(),
        )?;
        let rotate = self.window_started.elapsed() >= window;
        if rotate {
            self.window_started = Instant::now();
        }
        for (pid, t) in &mut self.targets {
            t.waits = waits.remove(pid).unwrap_or_default();
            t.wakes = wakes.remove(pid).unwrap_or_default();
            if rotate {
                t.window[0] = t.window[1].take();
                t.window[1] = Some((Instant::now(), t.waits.clone()));
            }
        }
        Ok(())
    }

    /// The process a thread belongs to, if it is traced: known threads first, then /proc
    /// (a thread that started and waited since the last tick).
    fn owner_of(&mut self, tid: u32) -> Option<u32> {
        if let Some(&p) = self.owner.get(&tid) {
            return Some(p);
        }
        let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
        let tgid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))?
            .trim()
            .parse()
            .ok()?;
        self.targets.contains_key(&tgid).then(|| {
            self.owner.insert(tid, tgid);
            tgid
        })
    }

    /// The profile of `pid`'s waits since `base` (all of them when `None`), symbolized.
    pub fn profile(&mut self, pid: u32, base: Since) -> Option<Profile> {
        let t = self.targets.get_mut(&pid)?;
        let (base, from) = match base {
            Since::Attach => (None, t.attached),
            Since::LastWindow => match t.window[0].as_ref().or(t.window[1].as_ref()) {
                Some((at, rows)) => (Some(rows), *at),
                None => (None, t.attached),
            },
            Since::Rows(at, rows) => (Some(rows), at),
        };
        let waits: Vec<(WaitKey, WaitStats)> = t
            .waits
            .iter()
            .map(|(k, v)| (*k, minus(v, base.and_then(|b| b.get(k)))))
            .filter(|(_, v)| v.count > 0 || v.timeouts > 0 || v.errors > 0)
            .collect();
        let wakes: Vec<(WakeKey, WakeStats)> = t.wakes.iter().map(|(k, v)| (*k, *v)).collect();
        let stacks = waits
            .iter()
            .map(|(k, _)| k.stack_id)
            .chain(wakes.iter().map(|(k, _)| k.stack_id))
            .filter_map(|id| Some((id, self.stacks.get(&id)?.clone())))
            .collect();
        let raw = Raw {
            maps: t.maps.clone(),
            threads: t.threads.clone(),
            ..Raw::rows_only(
                waits,
                wakes,
                stacks,
                self.counters,
                StopReason::Duration,
                from.elapsed(),
            )
        };
        Some(build_profile(
            &t.target,
            raw,
            t.attached_unix_ms,
            t.map.as_ref(),
            &mut t.sym,
        ))
    }

    /// Drops every target: detaches their uprobes (the tracer's drop does the rest).
    pub fn detach_all(&mut self, tracer: &mut Tracer) {
        let pids: Vec<u32> = self.targets.keys().copied().collect();
        for pid in pids {
            if let Some(t) = self.targets.remove(&pid) {
                let _ = tracer.detach_uprobes(t.uprobes);
            }
        }
    }
}

/// What a profile's waits are counted from.
pub enum Since<'a> {
    Attach,
    /// The start of the last whole `--window` (of the current one when none has ended).
    LastWindow,
    /// Rows read earlier, and when (the start of a `seconds=N` request).
    Rows(Instant, &'a HashMap<WaitKey, WaitStats>),
}

/// `now - before` for one row read twice: every count and sum is the difference; the longest
/// wait stays the cumulative one (maxima do not subtract).
fn minus(now: &WaitStats, before: Option<&WaitStats>) -> WaitStats {
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

/// Finds what `pid` runs, adds it to the kernel's set and places its uprobes.
fn attach_target(
    tracer: &mut Tracer,
    pid: u32,
    probes: &Probes,
    names: &SharedNames,
) -> Result<Traced> {
    let mut target = sys::target(pid)?;
    // With capabilities rather than root, only processes the caller could ptrace.
    crate::sys::check_may_trace(target.tgid)?;
    let map = session::recognise(&mut target, probes);
    tracer.add_target(target.tgid)?;
    let placed = session::place(tracer, &target, map.as_ref(), probes);
    let uprobes = tracer.take_uprobes();
    if let Err(e) = placed {
        let _ = tracer.detach_uprobes(uprobes);
        let _ = tracer.remove_target(target.tgid);
        return Err(e);
    }
    let mut maps = MapHistory::default();
    maps.refresh(pid);
    let mut sym = StackSymbolizer::new(MapHistory::default());
    sym.share_names(names.clone());
    Ok(Traced {
        cgroup: sys::cgroup(pid),
        probes: uprobes.len(),
        target,
        map,
        uprobes,
        attached_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        attached: Instant::now(),
        maps,
        threads: BTreeMap::new(),
        sym,
        waits: HashMap::new(),
        wakes: HashMap::new(),
        window: [None, None],
        sites: Vec::new(),
    })
}

/// Deletes rows from the kernel's maps (those of a process that is gone), and the calls its
/// threads left in flight (a thread killed in a wait never returns from it).
fn forget_rows<'a>(
    tracer: &mut Tracer,
    waits: impl Iterator<Item = &'a WaitKey>,
    wakes: impl Iterator<Item = &'a WakeKey>,
    tids: &BTreeSet<u32>,
) -> Result<()> {
    let ebpf = &mut tracer.ebpf;
    let mut w: PerCpuHashMap<_, WaitKey, WaitStats> =
        PerCpuHashMap::try_from(ebpf.map_mut(map::WAITS).context("WAITS map")?)?;
    // A row already gone is fine: only ENOENT can fail a delete here.
    for k in waits {
        let _ = w.remove(k);
    }
    let mut w: PerCpuHashMap<_, WakeKey, WakeStats> =
        PerCpuHashMap::try_from(ebpf.map_mut(map::WAKES).context("WAKES map")?)?;
    for k in wakes {
        let _ = w.remove(k);
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
