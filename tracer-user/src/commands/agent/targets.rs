//! targets: the processes the agent traces and what it last read for each. One loaded eBPF
//! object in set mode serves them all; each tick the kernel's rows are read once and split
//! by process (a row's tid → its process, from /proc), so every target keeps its own
//! cumulative rows, memory maps and symbolizer.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;
use tracer_common::NUM_COUNTERS;
use tracer_common::{WaitKey, WaitStats, WakeKey, WakeStats};

use super::identity::Ident;
use super::rows::forget_rows;
use crate::attach::Hooks;
use crate::attach::{Tracer, Uprobes};
use crate::collect::SnapshotRows;
use crate::collect::{self, Inputs, Leftovers, Namer, Raw, SnapshotDrain};
pub use crate::collect::{Base, Since};
use crate::profile::{LockWrappers, Profile, StopReason, TokioTarget};
use crate::symbolize::SharedNames;
use crate::sys::{self, thread_names, MapHistory, Target};
use crate::tracee::BundledMap;
use crate::unwind::{PlanCache, UnwindMode, UnwindPlan};

/// How long a hand-off waits for its waker's exit before the agent takes it with no waker.
const LEFTOVER_AGE: Duration = Duration::from_secs(2);

/// The longest a read waits for the snapshot reader to unwind what the ring holds.
const CATCH_UP: Duration = Duration::from_millis(500);

/// How long the threads of a dropped target are remembered.
const RETIRED_FOR: Duration = Duration::from_secs(5);

/// Losses only the agent can have, beside the kernel's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct AgentLosses {
    /// Matching processes not traced because `--max-targets` were already traced.
    pub target_cap: u64,
    /// Matching processes whose probes could not be placed.
    pub attach_failed: u64,
    /// Waits of threads that exited before their process was known (counted, then dropped).
    pub unattributed: u64,
    /// Stack snapshots of processes the snapshot reader did not know (their waits keep their
    /// frame-pointer stacks).
    pub snapshot_unattributed: u64,
}

/// One traced process.
pub struct Traced {
    pub target: Target,
    /// The process's cgroup (v2 path), a label: which container or service it is.
    pub cgroup: String,
    pub map: Option<BundledMap>,
    pub(super) uprobes: Uprobes,
    pub probes: usize,
    /// Goroutine uprobes among them.
    pub(super) go_probes: usize,
    /// What was found of tokio.
    pub(super) tokio: Option<TokioTarget>,
    pub attached_unix_ms: u64,
    /// From finding the process until its probes were live.
    pub(super) attach_ns: u64,
    pub(super) attached: Instant,
    pub(super) maps: MapHistory,
    pub(super) threads: BTreeMap<u32, String>,
    /// Its symbolizer and the lock wrappers found in its code.
    pub(super) namer: Namer,
    /// The kernel's rows for this process: cumulative since it was attached (with the
    /// hand-off leftovers taken so far).
    pub waits: HashMap<WaitKey, WaitStats>,
    /// Waits taken out of the kernel's hand-off slots (no waker came), cumulative: the slots
    /// are emptied when read, so these rows live here.
    pub(super) leftovers: HashMap<WaitKey, WaitStats>,
    /// What `/metrics` last exported per series, in integer nanoseconds and counts: a series
    /// never goes below it (a wait that moved to another site label stays counted where it was).
    pub exported: HashMap<super::metrics::SeriesKey, (u64, u64)>,
    /// The same for the `behind` series, by phase label: ns.
    pub exported_behind: HashMap<&'static str, u64>,
    pub(super) wakes: HashMap<WakeKey, WakeStats>,
    /// How its stacks are walked, chosen for its executable as it was attached.
    pub plan: UnwindPlan,
    /// Snapshot modes: its waits by unwound stack, cumulative since it was attached.
    pub(super) snaps: SnapshotRows,
    /// The rows at the start of the last whole window and of the current one, and when.
    pub(super) window: [Option<(Instant, Base)>; 2],
    /// Lock sites with their own metric label, in the order they got one (kept for good, so
    /// every series only grows).
    pub sites: Vec<String>,
    /// The process as attached: an exec or a reused pid is a new target.
    pub(super) ident: Ident,
    /// Probes that failed to attach, retried with backoff (the futex waits are traced
    /// meanwhile).
    pub(super) retry: Option<Retry>,
}

/// A probe attach to try again.
pub struct Retry {
    pub(super) at: Instant,
    pub(super) delay: Duration,
    pub why: String,
}

impl Traced {
    /// Its cumulative rows now, for a later profile to subtract.
    pub fn base(&self) -> Base {
        Base {
            waits: self.waits.clone(),
            snaps: self.snaps.clone(),
        }
    }

    /// Offsets this process's symbolizer looked up itself (not found by build id in the
    /// names another process of the same binary already found).
    pub fn symbol_lookups(&self) -> u64 {
        self.namer.lookups()
    }
}

/// Whether the kernel programs copy stacks for the processes that ask (loaded so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    On,
    Off,
}

/// Everything the agent knows; the HTTP handlers read it between ticks.
pub struct State {
    pub targets: BTreeMap<u32, Traced>,
    pub(super) stacks: HashMap<u64, Vec<u64>>,
    /// Stacks no target's rows name, by how many reads in a row they were seen so.
    pub(super) unreferenced: HashMap<u64, u32>,
    pub counters: [u64; NUM_COUNTERS as usize],
    pub losses: AgentLosses,
    /// Matching processes left out by the cap (counted once each).
    pub(super) refused: BTreeSet<u32>,
    /// Matching processes left out by `--max-targets` (each counted once; taken when room
    /// frees), and whether the cap was logged.
    pub(super) capped: BTreeSet<u32>,
    pub(super) cap_logged: bool,
    /// Thread → process, for every thread seen in a traced process.
    pub(super) owner: HashMap<u32, u32>,
    /// Threads of targets dropped in the last seconds: their last rows are deleted, not
    /// counted as lost (their process's series are gone with it).
    pub(super) retired: HashMap<u32, Instant>,
    window_started: Instant,
    pub started: Instant,
    /// Symbol names by build id, for every target's symbolizer.
    pub(super) names: SharedNames,
    /// Whether the kernel was loaded with stack copies (not with `--unwind fp`).
    pub(super) copies: Copies,
    /// The stack-snapshot reader of every target whose mode copies stacks: started with the
    /// first such target (mapping the 32 MiB ring only then).
    pub(super) drain: Option<SnapshotDrain>,
    /// Unwind plans by executable file.
    pub(super) plans: PlanCache,
    /// Which kernel hooks carry the futex events (every profile says).
    hooks: Hooks,
}

impl State {
    pub fn new(copies: Copies, hooks: Hooks) -> State {
        State {
            targets: BTreeMap::new(),
            stacks: HashMap::new(),
            unreferenced: HashMap::new(),
            counters: [0; NUM_COUNTERS as usize],
            losses: AgentLosses::default(),
            refused: BTreeSet::new(),
            capped: BTreeSet::new(),
            cap_logged: false,
            owner: HashMap::new(),
            retired: HashMap::new(),
            window_started: Instant::now(),
            started: Instant::now(),
            names: SharedNames::default(),
            copies,
            drain: None,
            plans: PlanCache::default(),
            hooks,
        }
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
        let raw = collect::read_rows(tracer, Leftovers::Skip)?;
        if let Some(d) = &self.drain {
            // The snapshots of every wait in those rows, unwound before they are split.
            d.catch_up(CATCH_UP);
            self.losses.snapshot_unattributed = d.unattributed();
        }
        self.counters = raw.counters;
        self.stacks = raw.stacks;
        // Hand-offs no waker claimed within a tick: taken out of the kernel once, kept here.
        let before = sys::monotonic_ns().saturating_sub(LEFTOVER_AGE.as_nanos() as u64);
        self.retired.retain(|_, at| at.elapsed() < RETIRED_FOR);
        for (k, v) in collect::consume_leftovers(&mut tracer.ebpf, before)? {
            match self.owner_of_row(k.tgid, k.tid) {
                Some(pid) => {
                    if let Some(t) = self.targets.get_mut(&pid) {
                        t.leftovers.entry(k).or_default().merge(&v);
                    }
                }
                None if self.retired(k.tgid, k.tid) => {}
                None => self.losses.unattributed += v.count,
            }
        }
        let mut waits: HashMap<u32, HashMap<WaitKey, WaitStats>> = HashMap::new();
        let mut orphans = Vec::new();
        for (k, v) in raw.waits {
            match self.owner_of_row(k.tgid, k.tid) {
                Some(pid) => {
                    waits.entry(pid).or_default().insert(k, v);
                }
                None => {
                    if !self.retired(k.tgid, k.tid) {
                        self.losses.unattributed += v.count;
                    }
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
            for (k, v) in &t.leftovers {
                t.waits.entry(*k).or_default().merge(v);
            }
            t.wakes = wakes.remove(pid).unwrap_or_default();
            if let (Some(d), UnwindMode::FpCfi | UnwindMode::Dwarf) = (&self.drain, t.plan.mode) {
                t.snaps = d.rows_of(*pid);
            }
            if rotate {
                t.window[0] = t.window[1].take();
                t.window[1] = Some((Instant::now(), t.base()));
            }
        }
        self.sweep_stacks(tracer)
    }

    /// Stacks in the kernel's map now.
    pub fn stack_entries(&self) -> usize {
        self.stacks.len()
    }

    /// The traced process a wait row belongs to: the process the kernel saw it in when that
    /// is traced (the thread may be gone), else its thread's.
    fn owner_of_row(&mut self, tgid: u32, tid: u32) -> Option<u32> {
        if self.targets.contains_key(&tgid) {
            self.owner.insert(tid, tgid);
            return Some(tgid);
        }
        self.owner_of(tid)
    }

    /// Whether a row is of a target dropped in the last seconds (its process, or its thread).
    fn retired(&self, tgid: u32, tid: u32) -> bool {
        self.retired.contains_key(&tid) || (tgid != 0 && self.retired.contains_key(&tgid))
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
        // Snapshot modes: the unwound rows of the same span.
        let snaps = (t.plan.mode != UnwindMode::FramePointers).then_some(&t.snaps);
        let (waits, dwarf) = collect::rows_since(&t.waits, snaps, base);
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
            dwarf,
            ..Raw::rows_only(
                waits,
                wakes,
                stacks,
                self.counters,
                StopReason::Duration,
                from.elapsed(),
            )
        };
        let inputs = Inputs {
            target: &t.target,
            start_unix_ms: t.attached_unix_ms,
            map: t.map.as_ref(),
            plan: &t.plan,
            attach_ns: t.attach_ns,
            hooks: &self.hooks,
            go_probes: t.go_probes,
            tokio: t.tokio.clone(),
            blocked: Vec::new(),
            wrappers: &LockWrappers::default(),
        };
        Some(collect::build(raw, inputs, &mut t.namer))
    }

    /// Drops every target: detaches their uprobes (the tracer's drop does the rest).
    pub fn detach_all(&mut self, tracer: &mut Tracer) {
        let pids: Vec<u32> = self.targets.keys().copied().collect();
        for pid in pids {
            if let Some(t) = self.targets.remove(&pid) {
                let _ = tracer.detach_uprobes(t.uprobes);
            }
            if let Some(d) = &self.drain {
                d.remove(pid);
            }
        }
    }
}
