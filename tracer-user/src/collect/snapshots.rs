//! snapshots: DWARF and `fp+cfi` modes' stream of stack snapshots from the ring buffer,
//! unwound as they arrive (the copies are never kept) with the unwinding of the process each
//! came from, joined to the kernel's frame-pointer walk where the copy ran out, and
//! aggregated like the kernel's rows, per process. `drain` runs it on a thread of its own from
//! the moment the programs are attached.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use tracer_common::{
    hist_bucket, map, SnapshotHeader, StackFrames, WaitKey, WaitStats, SNAP_SWITCH_OUT,
    SNAP_WAIT_END, TIMED_OUT_SNAPSHOT,
};

use crate::attach::Tracer;
use crate::symbolize::Addr;
use crate::sys::MapHistory;
use crate::unwind::{stitch, Ended, Join, SnapshotUnwinder, UnwindMode};

/// The kernel's frame-pointer walks by stack id (`STACKS`), through a handle of its own.
pub type StackMap = BpfHashMap<MapData, u64, StackFrames>;

/// One traced process's unwinding: its memory maps, the CFI of its modules, and how a walk
/// that ran out of copied stack joins the kernel's (by its unwind mode).
pub struct ProcUnwind {
    maps: MapHistory,
    unwinder: SnapshotUnwinder,
    join: Join,
    /// Refreshes of the module list triggered by unknown addresses, to bound their cost.
    refreshed_at: Option<Instant>,
}

impl ProcUnwind {
    /// Reads `pid`'s maps and loads its modules' CFI (slow for a large process: done before
    /// it is handed to the reader).
    pub fn load(pid: u32, mode: UnwindMode) -> ProcUnwind {
        let mut maps = MapHistory::default();
        maps.refresh(pid);
        let mut unwinder = SnapshotUnwinder::default();
        unwinder.update(&maps);
        ProcUnwind {
            maps,
            unwinder,
            join: match mode {
                UnwindMode::FpCfi => Join::Always,
                UnwindMode::Dwarf | UnwindMode::FramePointers => Join::OnlyWhereAligned,
            },
            refreshed_at: None,
        }
    }

    /// Libraries loaded since the last look.
    pub fn refresh(&mut self, pid: u32) {
        self.maps.refresh(pid);
        self.unwinder.update(&self.maps);
    }

    /// A new image (an exec): none of the old modules is mapped any more.
    pub fn reset(&mut self, pid: u32) {
        self.maps = MapHistory::default();
        self.maps.refresh(pid);
        self.unwinder = SnapshotUnwinder::default();
        self.unwinder.update(&self.maps);
        self.refreshed_at = None;
    }

    /// Unwinds one copy; an address in no known module (a library loaded since the last look)
    /// re-reads the maps first, at most every 100 ms.
    fn unwind(&mut self, pid: u32, hdr: &SnapshotHeader, stack: &[u8]) -> (Vec<Addr>, Ended) {
        let walk = self.unwinder.unwind_ended(hdr.ip, hdr.sp, hdr.bp, stack);
        if (walk.0.len() <= 1 || self.maps.lookup(hdr.ip).is_none())
            && self
                .refreshed_at
                .is_none_or(|t| t.elapsed() > Duration::from_millis(100))
        {
            self.refreshed_at = Some(Instant::now());
            self.refresh(pid);
            return self.unwinder.unwind_ended(hdr.ip, hdr.sp, hdr.bp, stack);
        }
        walk
    }
}

/// The snapshot stream: stack snapshots from the ring buffer, unwound as they arrive (the
/// 16 KiB copies are never kept) with the unwinding of the process each came from, and
/// aggregated like the kernel's rows, per process. One process (`record`, `top`) is the
/// one-entry case of many (the agent, followed forks).
pub struct Snapshots {
    pub(super) ring: RingBuf<MapData>,
    /// The kernel's frame-pointer walks, to join where a copy ran out (a handle of the
    /// reader's own).
    pub(super) stacks: Option<StackMap>,
    pub(super) procs: HashMap<u32, ProcUnwind>,
    /// Rows by process (tgid).
    pub rows: HashMap<u32, SnapshotRows>,
    /// How a process not registered is treated.
    pub(super) unknown: Unknown,
    /// Snapshots of processes not registered: counted, not unwound.
    pub unattributed: u64,
    /// Processes removed in the last seconds, by when: their snapshots still in the ring are
    /// dropped with them, not counted.
    retired: HashMap<u32, Instant>,
    /// The kernel's frame-pointer walks by stack id, read once each.
    kernel: HashMap<u64, Vec<u64>>,
    /// Scheduler hooks: unwound stacks of waits not ended yet, by (tid, start ns), with their
    /// process.
    pending: HashMap<(u32, u64), (u32, Vec<Addr>)>,
}

/// Snapshot rows of one process: waits by kernel key and unwound stack.
pub type SnapshotRows = HashMap<(WaitKey, Vec<Addr>), WaitStats>;

/// What the reader does with a snapshot of a process it was not told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Counts it ([`Snapshots::unattributed`]); its wait keeps its kernel row's stack.
    Count,
    /// Takes the process on with this mode (`record --follow-forks`: a child forked since the
    /// last look, which the kernel traces as its parent). A child already gone is unwound with
    /// `parent`'s modules: a fork copies its parent's memory, so the two match unless it
    /// exec'd.
    Adopt { mode: UnwindMode, parent: u32 },
}

/// Whether a [`Snapshots::drain`] left the ring empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    Empty,
    More,
}

/// Pending stacks kept at most: waits that never end as contention (timeouts) leave theirs.
const MAX_PENDING: usize = 65536;
/// How long the snapshots of a removed process are dropped quietly.
const RETIRED_SECS: u64 = 5;
/// Kernel walks cached at most (the agent's stacks come and go with its targets).
const MAX_KERNEL: usize = 65536;

impl Snapshots {
    /// Takes the ring buffer out of the loaded object.
    pub fn take(tracer: &mut Tracer, unknown: Unknown) -> Result<Snapshots> {
        let ring = RingBuf::try_from(
            tracer
                .ebpf
                .take_map(map::SNAPSHOTS)
                .context("SNAPSHOTS map")?,
        )?;
        Ok(Snapshots {
            ring,
            stacks: None,
            procs: HashMap::new(),
            rows: HashMap::new(),
            unknown,
            unattributed: 0,
            retired: HashMap::new(),
            kernel: HashMap::new(),
            pending: HashMap::new(),
        })
    }

    /// Unwinds and aggregates up to `limit` snapshots waiting in the ring buffer, and says
    /// whether it emptied it. A walk that ran out of copied stack is joined to the kernel's
    /// frame-pointer walk of the same wait (read from `STACKS`).
    pub fn drain(&mut self, limit: usize) -> Drained {
        const HDR: usize = std::mem::size_of::<SnapshotHeader>();
        for _ in 0..limit {
            let Some(item) = self.ring.next() else {
                return Drained::Empty;
            };
            if item.len() < HDR {
                continue;
            }
            // SAFETY: the record starts with a SnapshotHeader written by the kernel program:
            // #[repr(C)], integers only, so any bytes are a valid value; read unaligned.
            let hdr: SnapshotHeader =
                unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SnapshotHeader>()) };
            if hdr.part == SNAP_WAIT_END {
                drop(item);
                // Its stack came with its switch-out (lost if the ring was full then: the
                // kernel row keeps that wait under its frame-pointer stack).
                if let Some((tgid, frames)) = self.pending.remove(&(hdr.key.tid, hdr.ip)) {
                    self.add(tgid, hdr.key, frames, hdr.wait_ns);
                }
                continue;
            }
            let tgid = hdr.tgid;
            if !self.procs.contains_key(&tgid) {
                match self.unknown {
                    Unknown::Adopt { mode, parent } if tgid != 0 => {
                        let mut proc = ProcUnwind::load(tgid, mode);
                        if proc.maps.mappings.is_empty() {
                            proc = ProcUnwind::load(parent, mode);
                        }
                        self.procs.insert(tgid, proc);
                    }
                    _ => {
                        if !self.retired.contains_key(&tgid) {
                            self.unattributed += 1;
                        }
                        continue;
                    }
                }
            }
            let Some(proc) = self.procs.get_mut(&tgid) else {
                continue;
            };
            let len = (hdr.len as usize).min(item.len() - HDR);
            let walk = proc.unwind(tgid, &hdr, &item[HDR..HDR + len]);
            drop(item);
            let id = hdr.key.stack_id;
            if self.kernel.len() >= MAX_KERNEL {
                self.kernel.clear();
            }
            let kernel = self.kernel.entry(id).or_insert_with(|| {
                self.stacks
                    .as_ref()
                    .and_then(|m| m.get(&id, 0).ok())
                    .map(|s| s.frames[..(s.len as usize).min(s.frames.len())].to_vec())
                    .unwrap_or_default()
            });
            let frames = stitch(walk.0, walk.1, kernel, proc.join);
            if hdr.part == SNAP_SWITCH_OUT {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.clear();
                }
                self.pending
                    .insert((hdr.key.tid, hdr.wait_ns), (tgid, frames));
                continue;
            }
            self.add(tgid, hdr.key, frames, hdr.wait_ns);
        }
        Drained::More
    }

    /// The stack of a wait that thread `tid` of `tgid` began at `start_ns` with no snapshot of its own
    /// (asleep at attach), for its [`SNAP_WAIT_END`] record.
    pub fn expect(&mut self, tgid: u32, tid: u32, start_ns: u64, frames: Vec<Addr>) {
        self.pending.insert((tid, start_ns), (tgid, frames));
    }

    /// One wait of `wait_ns` under `key` and its unwound stack; a key flagged
    /// [`TIMED_OUT_SNAPSHOT`] is a timeout of the row without the flag.
    fn add(&mut self, tgid: u32, mut key: WaitKey, frames: Vec<Addr>, wait_ns: u64) {
        // A process dropped since its wait began: its rows went with it.
        if !self.procs.contains_key(&tgid) {
            return;
        }
        let timed_out = key.flags & TIMED_OUT_SNAPSHOT != 0;
        key.flags &= !TIMED_OUT_SNAPSHOT;
        let row = self
            .rows
            .entry(tgid)
            .or_default()
            .entry((key, frames))
            .or_default();
        if timed_out {
            row.timeouts += 1;
            row.timeout_ns += wait_ns;
            return;
        }
        row.count += 1;
        row.total_ns += wait_ns;
        row.max_ns = row.max_ns.max(wait_ns);
        if let Some(b) = row.hist.get_mut(hist_bucket(wait_ns)) {
            *b += 1;
        }
    }

    /// Stops unwinding `tgid` and forgets its rows and pending stacks.
    pub fn remove(&mut self, tgid: u32) {
        if self.procs.remove(&tgid).is_some() {
            self.retired
                .retain(|_, at| at.elapsed() < Duration::from_secs(RETIRED_SECS));
            self.retired.insert(tgid, Instant::now());
        }
        self.rows.remove(&tgid);
        self.pending.retain(|_, (p, _)| *p != tgid);
    }
}
