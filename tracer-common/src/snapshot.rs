//! DWARF and `fp+cfi` modes' stack snapshot records (the `SNAPSHOTS` ring buffer).
use crate::WaitKey;

/// The largest user-stack copy a DWARF-mode snapshot holds. Reads are tried at this size and
/// at halves down to [`SNAPSHOT_MIN_BYTES`], since a copy may not run past the stack's top.
pub const SNAPSHOT_MAX_BYTES: usize = 16384;
pub const SNAPSHOT_MIN_BYTES: usize = 1024;
/// `fp+cfi` mode's copy: enough for the frameless library frames between the futex call and
/// the first frame that keeps a frame pointer; the frame-pointer walk goes on from there.
/// Snapshots this small use records of this size, so the ring holds 4× as many.
pub const SNAPSHOT_SMALL_BYTES: usize = 4096;
/// The snapshot ring buffer's size: ~2,000 DWARF records or ~8,000 `fp+cfi` records, 50 ms of
/// a 40k-waits/s storm, for a reader thread the target's own threads keep off the CPU.
pub const SNAPSHOT_RING_BYTES: usize = 32 << 20;
/// Unread bytes past which a record wakes the reader at once (~128 DWARF records); below
/// that it reads on its own clock, so a wait costs the target no cross-CPU wakeup.
pub const SNAPSHOT_RING_WAKE_BYTES: usize = 2 << 20;
/// The ring's size when snapshots are off (frame-pointer mode): one page, not 32 MiB of
/// kernel memory nothing writes.
pub const SNAPSHOT_RING_OFF_BYTES: usize = 4096;

/// One wait that slept, in DWARF mode: its aggregate key and wait time, the user registers
/// unwinding starts from, and a copy of the user stack from `sp` up.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SnapshotHeader {
    pub key: WaitKey,
    pub wait_ns: u64,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// Bytes of `data` that hold stack (0 when no read succeeded).
    pub len: u32,
    /// Which part of a wait the record carries: [`SNAP_WHOLE`], [`SNAP_SWITCH_OUT`] or
    /// [`SNAP_WAIT_END`].
    pub part: u32,
    /// The waiter's process (0 in [`SNAP_WAIT_END`] records: their stack, sent before, names
    /// it). Set mode traces many processes through one ring.
    pub tgid: u32,
    pub _pad: u32,
}

/// A whole wait (syscall hooks: sent at the syscall's exit).
pub const SNAP_WHOLE: u32 = 0;
/// Scheduler hooks: the stack of a wait as its thread left the CPU, the only time it can be
/// copied; `wait_ns` holds the wait's start (ns), which names it, and `key.waker_id` is unknown.
pub const SNAP_SWITCH_OUT: u32 = 1;
/// Scheduler hooks: the end of the wait that thread `key.tid` began at `ip` (ns): its final key
/// and `wait_ns`; no stack.
pub const SNAP_WAIT_END: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackSnapshotOf<const N: usize> {
    pub hdr: SnapshotHeader,
    pub data: [u8; N],
}

/// A DWARF-mode record.
pub type StackSnapshot = StackSnapshotOf<SNAPSHOT_MAX_BYTES>;
/// An `fp+cfi`-mode record.
pub type SmallStackSnapshot = StackSnapshotOf<SNAPSHOT_SMALL_BYTES>;
