//! fleet: the recording engine for a set of processes (the agent). One loaded object in set
//! mode serves them all; each tick the kernel's rows are read once and split by the process
//! the kernel saw each wait in (its thread's, for a wake), so every member keeps its own
//! cumulative rows, memory maps, thread names and namer, and any member's profile since any
//! point comes from the one builder. Hand-offs no waker claimed are taken out of the kernel
//! once; a dropped member's rows, in-flight slots and stacks are freed. The driver's own state
//! of each process rides along as `X`.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use tracer_common::{WaitKey, WaitStats, WakeKey, WakeStats, NUM_COUNTERS};

use super::lockshards::{LockShards, Retry};
use super::{
    build, consume_leftovers, read_rows, rows_since, Base, Inputs, Namer, Raw, Since,
    SnapshotDrain, SnapshotRows,
};
use crate::attach::{Hooks, Tracer};
use crate::profile::{LockWrappers, Profile, StopReason, TokioTarget};
use crate::symbolize::{SharedNames, StackSymbolizer};
use crate::sys::{self, thread_names, MapHistory, Target};
use crate::tracee::BundledMap;
use crate::unwind::{UnwindMode, UnwindPlan};

mod owners;
mod upkeep;

/// How long a hand-off waits for its waker's exit before it is taken with no waker.
const LEFTOVER_AGE: Duration = Duration::from_secs(2);

/// The longest a tick waits for the snapshot reader to unwind what the ring holds.
const CATCH_UP: Duration = Duration::from_millis(500);

/// How long the threads of a dropped member are remembered.
const RETIRED_FOR: Duration = Duration::from_secs(5);

/// One traced process.
pub struct Member<X> {
    pub target: Target,
    /// The bundled map or Go `sync.Map` found in it, probed.
    pub map: Option<BundledMap>,
    /// How its stacks are walked, chosen for its executable as it was attached.
    pub plan: UnwindPlan,
    /// Goroutine uprobes placed in it.
    pub go_probes: usize,
    /// What was found of tokio.
    pub tokio: Option<TokioTarget>,
    pub attached_unix_ms: u64,
    pub attached: Instant,
    /// From finding the process until its probes were live.
    pub attach_ns: u64,
    pub(super) maps: MapHistory,
    pub(super) threads: BTreeMap<u32, String>,
    /// Its symbolizer and the lock wrappers found in its code.
    namer: Namer,
    /// The kernel's rows for it: cumulative since it was attached (with the hand-off
    /// leftovers taken so far).
    pub waits: HashMap<WaitKey, WaitStats>,
    /// Waits taken out of the kernel's hand-off slots (no waker came), cumulative: the slots
    /// are emptied when read, so these rows live here.
    leftovers: HashMap<WaitKey, WaitStats>,
    wakes: HashMap<WakeKey, WakeStats>,
    /// Snapshot modes: its waits by unwound stack, cumulative since it was attached.
    snaps: SnapshotRows,
    /// The rows at the start of the last whole window and of the current one, and when.
    window: [Option<(Instant, Base)>; 2],
    /// The driver's own state of it.
    pub ext: X,
}

impl<X> Member<X> {
    /// Its cumulative rows now, for a later profile to subtract.
    pub fn base(&self) -> Base {
        Base {
            waits: self.waits.clone(),
            snaps: self.snaps.clone(),
        }
    }

    /// Offsets its symbolizer looked up itself (not found by build id in the names another
    /// process of the same binary already found).
    pub fn symbol_lookups(&self) -> u64 {
        self.namer.lookups()
    }

    /// The threads seen in it.
    pub fn tids(&self) -> BTreeSet<u32> {
        self.threads.keys().copied().collect()
    }
}

/// What a new member is, as the driver attached it.
pub struct Joining<X> {
    pub target: Target,
    pub map: Option<BundledMap>,
    pub plan: UnwindPlan,
    pub attached_unix_ms: u64,
    pub attached: Instant,
    pub ext: X,
}

impl<X> Joining<X> {
    /// A process attached now.
    pub fn now(target: Target, map: Option<BundledMap>, plan: UnwindPlan, ext: X) -> Joining<X> {
        Joining {
            target,
            map,
            plan,
            attached_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            attached: Instant::now(),
            ext,
        }
    }
}

/// Which hand-offs a read takes out of the kernel's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Those waiting longer than a waker's exit takes (a live read).
    Aged,
    /// All of them (the probes are gone: no waker will come).
    All,
}

/// What becomes of rows of a traced process the fleet has no member for.
pub enum Strangers<X> {
    /// Counted as lost and deleted (the agent: its set holds only its members).
    Lost,
    /// Kept under a member made for them, its driver's state made so (`--follow-forks`: a
    /// child that lived and ended between two reads). One already gone is named with its
    /// `parent`'s maps: a fork copies its parent's memory, so the two match unless it exec'd.
    Join { ext: fn() -> X, parent: u32 },
}

/// Every traced process and what the engine keeps beside them.
pub struct Fleet<X> {
    pub members: BTreeMap<u32, Member<X>>,
    /// The kernel's stacks, as last read.
    stacks: HashMap<u64, Vec<u64>>,
    /// Stacks no member's rows name, by how many reads in a row they were seen so.
    unreferenced: HashMap<u64, u32>,
    pub counters: [u64; NUM_COUNTERS as usize],
    /// Waits of threads of no traced process, counted, then deleted.
    pub unattributed: u64,
    /// Stack snapshots of processes the snapshot reader did not know.
    pub snapshot_unattributed: u64,
    /// Thread → process, for every thread seen in a member.
    owner: HashMap<u32, u32>,
    /// Threads (and processes) of members dropped in the last seconds: their last rows are
    /// deleted, not counted as lost.
    retired: HashMap<u32, Instant>,
    window_started: Instant,
    /// Symbol names by build id, for every member's symbolizer.
    names: SharedNames,
    /// The stack-snapshot reader of every member whose mode copies stacks.
    pub drain: Option<SnapshotDrain>,
    /// Which kernel hooks carry the futex events (every profile says).
    hooks: Hooks,
    strangers: Strangers<X>,
    /// The shards of the members' hinted locks (DashMap's), read while they live.
    pub shards: LockShards,
}

impl<X> Fleet<X> {
    pub fn new(hooks: Hooks, strangers: Strangers<X>) -> Fleet<X> {
        Fleet {
            members: BTreeMap::new(),
            stacks: HashMap::new(),
            unreferenced: HashMap::new(),
            counters: [0; NUM_COUNTERS as usize],
            unattributed: 0,
            snapshot_unattributed: 0,
            owner: HashMap::new(),
            retired: HashMap::new(),
            window_started: Instant::now(),
            names: SharedNames::default(),
            drain: None,
            hooks,
            strangers,
            shards: LockShards::default(),
        }
    }

    /// Adds a process already in the kernel's set; its maps are read now.
    pub fn join(&mut self, j: Joining<X>) -> &mut Member<X> {
        let pid = j.target.tgid;
        let mut maps = MapHistory::default();
        maps.refresh(pid);
        let mut threads = BTreeMap::new();
        thread_names(pid, &mut threads);
        for &tid in threads.keys() {
            self.owner.insert(tid, pid);
        }
        let mut sym = StackSymbolizer::new(MapHistory::default());
        sym.share_names(self.names.clone());
        let member = Member {
            target: j.target,
            map: j.map,
            plan: j.plan,
            go_probes: 0,
            tokio: None,
            attached_unix_ms: j.attached_unix_ms,
            attached: j.attached,
            attach_ns: 0,
            maps,
            threads,
            namer: Namer::new(sym),
            waits: HashMap::new(),
            leftovers: HashMap::new(),
            wakes: HashMap::new(),
            snaps: SnapshotRows::default(),
            window: [None, None],
            ext: j.ext,
        };
        self.members.entry(pid).or_insert(member)
    }

    /// Stacks in the kernel's map now.
    pub fn stack_entries(&self) -> usize {
        self.stacks.len()
    }

    /// One tick of a live reader (the agent): [`Fleet::watch`], then [`Fleet::read`] taking the
    /// aged hand-offs. A `window` boundary passed rotates every member's window.
    pub fn tick(&mut self, tracer: &mut Tracer, window: Duration) -> Result<()> {
        self.watch();
        self.read(tracer, Take::Aged)?;
        let members = &self.members;
        self.shards
            .read(tracer, Retry::NewOnly, |t| members.contains_key(&t));
        if self.window_started.elapsed() >= window {
            self.window_started = Instant::now();
            for t in self.members.values_mut() {
                t.window[0] = t.window[1].take();
                t.window[1] = Some((Instant::now(), t.base()));
            }
        }
        Ok(())
    }

    /// Each member's memory maps and thread names, read again.
    pub fn watch(&mut self) {
        for (&pid, t) in &mut self.members {
            t.maps.refresh(pid);
            thread_names(pid, &mut t.threads);
            for &tid in t.threads.keys() {
                self.owner.insert(tid, pid);
            }
        }
    }

    /// The kernel's rows, read once and split among the members (their cumulative rows
    /// replaced), with the hand-offs `take` says taken out of the kernel once.
    pub fn read(&mut self, tracer: &mut Tracer, take: Take) -> Result<()> {
        // Not the in-flight scan: ~35 ms of bpf syscalls per read, for a count no one reads.
        let raw = read_rows(tracer)?;
        if let Some(d) = &self.drain {
            // The snapshots of every wait in those rows, unwound before they are split.
            d.catch_up(CATCH_UP);
            self.snapshot_unattributed = d.unattributed();
        }
        self.counters = raw.counters;
        self.stacks = raw.stacks;
        let before = match take {
            Take::Aged => sys::monotonic_ns().saturating_sub(LEFTOVER_AGE.as_nanos() as u64),
            Take::All => u64::MAX,
        };
        self.retired.retain(|_, at| at.elapsed() < RETIRED_FOR);
        for (k, v) in consume_leftovers(&mut tracer.ebpf, before)? {
            match self.owner_of_row(k.tgid, k.tid) {
                Some(pid) => {
                    if let Some(t) = self.members.get_mut(&pid) {
                        t.leftovers.entry(k).or_default().merge(&v);
                    }
                }
                None if self.retired(k.tgid, k.tid) => {}
                None => self.unattributed += v.count,
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
                        self.unattributed += v.count;
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
        upkeep::forget_rows(
            tracer,
            orphans.iter(),
            orphan_wakes.iter(),
            &BTreeSet::new(),
        )?;
        for (pid, t) in &mut self.members {
            t.waits = waits.remove(pid).unwrap_or_default();
            for (k, v) in &t.leftovers {
                t.waits.entry(*k).or_default().merge(v);
            }
            t.wakes = wakes.remove(pid).unwrap_or_default();
        }
        if let Some(rows) = self.drain.as_ref().map(SnapshotDrain::rows) {
            self.take_snapshots(rows);
        }
        self.sweep_stacks(tracer)
    }

    /// The snapshot rows so far (the reader's, or its last once it is stopped), given to
    /// their members by the process the kernel saw each wait in: a child's first copies,
    /// sent before it was known, are its own, not its parent's.
    pub fn take_snapshots(&mut self, rows: SnapshotRows) {
        let mut by: HashMap<u32, SnapshotRows> = HashMap::new();
        for ((k, frames), v) in rows {
            if let Some(pid) = self.owner_of_row(k.tgid, k.tid) {
                by.entry(pid).or_default().insert((k, frames), v);
            }
        }
        for (pid, t) in &mut self.members {
            t.snaps = by.remove(pid).unwrap_or_default();
        }
    }

    /// `pid`'s rows since `since`, with its maps, threads and unwound snapshots, as one
    /// recording's raw rows.
    pub fn raw(&self, pid: u32, since: Since) -> Option<Raw> {
        let t = self.members.get(&pid)?;
        let (base, from) = match since {
            Since::Attach => (None, t.attached),
            Since::LastWindow => match t.window[0].as_ref().or(t.window[1].as_ref()) {
                Some((at, rows)) => (Some(rows), *at),
                None => (None, t.attached),
            },
            Since::Rows(at, rows) => (Some(rows), at),
        };
        // Snapshot modes (and a child's copies taken in its parent's mode before it was
        // known): the unwound rows of the same span.
        let unwound = t.plan.mode != UnwindMode::FramePointers || !t.snaps.is_empty();
        let (waits, dwarf) = rows_since(&t.waits, unwound.then_some(&t.snaps), base);
        let wakes: Vec<(WakeKey, WakeStats)> = t.wakes.iter().map(|(k, v)| (*k, *v)).collect();
        let stacks = waits
            .iter()
            .map(|(k, _)| k.stack_id)
            .chain(wakes.iter().map(|(k, _)| k.stack_id))
            .filter_map(|id| Some((id, self.stacks.get(&id)?.clone())))
            .collect();
        Some(Raw {
            maps: t.maps.clone(),
            threads: t.threads.clone(),
            dwarf,
            // Woken waits whose waker never exited: taken from the kernel with no waker.
            handoffs_left: t.leftovers.values().map(|v| v.count).sum(),
            lock_shards: self.shards.of(pid),
            ..Raw::rows_only(
                waits,
                wakes,
                stacks,
                self.counters,
                StopReason::Duration,
                from.elapsed(),
            )
        })
    }

    /// The profile of `pid`'s waits since `since`, symbolized.
    pub fn profile(&mut self, pid: u32, since: Since) -> Option<Profile> {
        let raw = self.raw(pid, since)?;
        let t = self.members.get_mut(&pid)?;
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
        Some(build(raw, inputs, &mut t.namer))
    }
}
