//! Maps shared by the probes. Names match `tracer_common::map` (the user side looks them up).
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use tracer_common::{
    Counter, Handoff, HandoffKey, InFlight, LastWaker, Scratch, StackFrames, WaitKey, WaitStats,
    WakeKey, WakeStats, INFLIGHT_SLOTS, NUM_COUNTERS, SNAPSHOT_RING_BYTES,
};

/// Futex calls in progress, one slot per tid's low bits (`inflight_slot`): an array, because
/// a hash insert and delete on every call cost more than the rest of the call's tracing.
#[map]
pub static INFLIGHT: Array<InFlight> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

/// Wait aggregates. Per CPU so the hot path never bounces a cache line between CPUs; not
/// preallocated so memory follows the rows used rather than rows x CPUs.
#[map]
pub static WAITS: PerCpuHashMap<WaitKey, WaitStats> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

#[map]
pub static WAKES: PerCpuHashMap<WakeKey, WakeStats> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// User stacks by hash, written once per distinct stack. Room for 64k distinct stacks, but
/// allocated as they come (each is ~1 KiB), not up front.
#[map]
pub static STACKS: HashMap<u64, StackFrames> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// Last wake per futex word that woke someone, written at its syscall's exit; LRU because
/// futex words come and go with the objects they live in.
#[map]
pub static LAST_WAKER: LruHashMap<u64, LastWaker> = LruHashMap::with_max_entries(8192, 0);

/// Finished waits whose waker had not exited yet (see `handoff`). Entries live for
/// microseconds; user space records what is left at the end.
#[map]
pub static HANDOFFS: HashMap<HandoffKey, Handoff> = HashMap::with_max_entries(4096, 0);

/// Slot 0 is nonzero once phase probes are attached: only then do waits read phase clocks.
#[map]
pub static PHASES_ON: Array<u32> = Array::with_max_entries(1, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NUM_COUNTERS, 0);

/// DWARF mode's stack snapshots (~16 KiB each): room for ~2,000 in flight before drops
/// (counted). User space shrinks it to one page when snapshots are off.
#[map]
pub static SNAPSHOTS: RingBuf = RingBuf::with_byte_size(SNAPSHOT_RING_BYTES as u32, 0);

/// Ids of stacks just added to [`STACKS`]: rare (once per distinct stack), so each wakes user
/// space, which checks their addresses against the memory maps it holds.
#[map]
pub static NEW_STACKS: RingBuf = RingBuf::with_byte_size(64 << 10, 0);

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn bump(c: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot; BPF programs run with migration disabled, so nothing else
        // writes it concurrently.
        unsafe { *p += 1 }
    }
}
