//! snapshots: DWARF and `fp+cfi` modes' stream of stack snapshots from the ring buffer,
//! unwound as they arrive (the copies are never kept), joined to the kernel's frame-pointer
//! walk where the copy ran out, and aggregated like the kernel's rows. `drain` runs it on a
//! thread of its own from the moment the programs are attached.
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
use crate::unwind::{stitch, Join, SnapshotUnwinder, UnwindMode};

/// The kernel's frame-pointer walks by stack id (`STACKS`), through a handle of its own.
pub type StackMap = BpfHashMap<MapData, u64, StackFrames>;

/// DWARF mode's stream: stack snapshots from the ring buffer, unwound as they arrive (the
/// 16 KiB copies are never kept) and aggregated like the kernel's rows.
pub struct Snapshots {
    pub(super) ring: RingBuf<MapData>,
    unwinder: SnapshotUnwinder,
    pub rows: HashMap<(WaitKey, Vec<Addr>), WaitStats>,
    /// Refreshes of the module list triggered by unknown addresses, to bound their cost.
    refreshed_at: Option<Instant>,
    /// How a walk that ran out of copied stack joins the kernel's frame-pointer walk.
    join: Join,
    /// The kernel's frame-pointer walks by stack id, read once each.
    kernel: HashMap<u64, Vec<u64>>,
    /// Scheduler hooks: unwound stacks of waits not ended yet, by (tid, start ns).
    pending: HashMap<(u32, u64), Vec<Addr>>,
}

/// Whether a [`Snapshots::drain`] left the ring empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    Empty,
    More,
}

/// Pending stacks kept at most: waits that never end as contention (timeouts) leave theirs.
const MAX_PENDING: usize = 65536;

impl Snapshots {
    /// Takes the ring buffer out of the loaded object.
    pub fn take(
        tracer: &mut Tracer,
        unwinder: SnapshotUnwinder,
        mode: UnwindMode,
    ) -> Result<Snapshots> {
        let ring = RingBuf::try_from(
            tracer
                .ebpf
                .take_map(map::SNAPSHOTS)
                .context("SNAPSHOTS map")?,
        )?;
        Ok(Snapshots {
            ring,
            unwinder,
            rows: HashMap::new(),
            refreshed_at: None,
            join: match mode {
                UnwindMode::FpCfi => Join::Always,
                UnwindMode::Dwarf | UnwindMode::FramePointers => Join::OnlyWhereAligned,
            },
            kernel: HashMap::new(),
            pending: HashMap::new(),
        })
    }

    /// Unwinds and aggregates up to `limit` snapshots waiting in the ring buffer, and says
    /// whether it emptied it. A walk that ran out of copied stack is joined to the kernel's
    /// frame-pointer walk of the same wait (read from `stacks`).
    pub fn drain(
        &mut self,
        pid: u32,
        maps: &mut MapHistory,
        stacks: Option<&StackMap>,
        limit: usize,
    ) -> Drained {
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
                if let Some(frames) = self.pending.remove(&(hdr.key.tid, hdr.ip)) {
                    self.add(hdr.key, frames, hdr.wait_ns);
                }
                continue;
            }
            let len = (hdr.len as usize).min(item.len() - HDR);
            let stack = &item[HDR..HDR + len];
            let mut walk = self.unwinder.unwind_ended(hdr.ip, hdr.sp, hdr.bp, stack);
            // An address in no known module: a library loaded since the last look.
            if (walk.0.len() <= 1 || maps.lookup(hdr.ip).is_none())
                && self
                    .refreshed_at
                    .is_none_or(|t| t.elapsed() > Duration::from_millis(100))
            {
                self.refreshed_at = Some(Instant::now());
                maps.refresh(pid);
                self.unwinder.update(maps);
                walk = self.unwinder.unwind_ended(hdr.ip, hdr.sp, hdr.bp, stack);
            }
            drop(item);
            let id = hdr.key.stack_id;
            let kernel = self.kernel.entry(id).or_insert_with(|| {
                stacks
                    .and_then(|m| m.get(&id, 0).ok())
                    .map(|s| s.frames[..(s.len as usize).min(s.frames.len())].to_vec())
                    .unwrap_or_default()
            });
            let frames = stitch(walk.0, walk.1, kernel, self.join);
            if hdr.part == SNAP_SWITCH_OUT {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.clear();
                }
                self.pending.insert((hdr.key.tid, hdr.wait_ns), frames);
                continue;
            }
            self.add(hdr.key, frames, hdr.wait_ns);
        }
        Drained::More
    }

    /// The stack of a wait that thread `tid` began at `start_ns` with no snapshot of its own
    /// (asleep at attach), for its [`SNAP_WAIT_END`] record.
    pub fn expect(&mut self, tid: u32, start_ns: u64, frames: Vec<Addr>) {
        self.pending.insert((tid, start_ns), frames);
    }

    /// One wait of `wait_ns` under `key` and its unwound stack; a key flagged
    /// [`TIMED_OUT_SNAPSHOT`] is a timeout of the row without the flag.
    fn add(&mut self, mut key: WaitKey, frames: Vec<Addr>, wait_ns: u64) {
        let timed_out = key.flags & TIMED_OUT_SNAPSHOT != 0;
        key.flags &= !TIMED_OUT_SNAPSHOT;
        let row = self.rows.entry((key, frames)).or_default();
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

    /// New modules (called when the memory maps are re-read).
    pub fn update_modules(&mut self, maps: &MapHistory) {
        self.unwinder.update(maps);
    }

    /// A new image (an exec): none of the old modules is mapped any more.
    pub fn reset_modules(&mut self, maps: &MapHistory) {
        self.unwinder = SnapshotUnwinder::default();
        self.unwinder.update(maps);
        self.refreshed_at = None;
    }
}
