//! Every map of the kernel programs, declared here and nowhere else, grouped by the feature
//! that uses them. Names, types and sizes are part of the contract with user space: the maps
//! it opens are named in `tracer_common::map` (a host test in tracer-user checks each is in
//! the object). Maps user space never opens (the LRU side tables, the scratch buffers) are
//! the kernel side's own.
//!
//! Losses: every insert that can fail for lack of room bumps a [`Counter`], except in the LRU
//! maps, which make room by evicting their oldest entry — by design, each says what an
//! eviction costs.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use tracer_common::{
    Counter, GoCall, Handoff, HandoffKey, InFlight, LastWaker, MapClock, PhaseStats, SchedWait,
    Scratch, StackFrames, WaitKey, WaitStats, WakeKey, WakeStats, GO_CALLER_SLOTS, INFLIGHT_SLOTS,
    MAP_SLOTS, MAX_TARGETS, NUM_COUNTERS, NUM_PHASES, SNAPSHOT_RING_BYTES,
};

use crate::lockhint::LockHint;
use crate::sched::EarlyWake;
use crate::tokio::{TokioCall, TokioRelease};

// ---- Futex waits and wakes (syscall tracepoints, trampolines and scheduler hooks) ----

/// Futex calls in progress, one slot per tid's low bits (`inflight_slot`): an array, because
/// a hash insert and delete on every call cost more than the rest of the call's tracing.
#[map]
pub static INFLIGHT: Array<InFlight> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

/// Wait aggregates. Per CPU so the hot path never bounces a cache line between CPUs; not
/// preallocated so memory follows the rows used rather than rows x CPUs.
#[map]
pub static WAITS: PerCpuHashMap<WaitKey, WaitStats> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// Wake aggregates, like [`WAITS`].
#[map]
pub static WAKES: PerCpuHashMap<WakeKey, WakeStats> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// Rows [`WAITS`] could not take. A map that is not preallocated takes new elements from a
/// per-CPU cache that is refilled from interrupt work; a burst of new rows from the scheduler
/// hooks (interrupts off) can empty it for a moment (28-32 waits of ~12k lost under load on
/// MariaDB). These are preallocated (~430 KiB per CPU), so a new row never needs memory.
#[map]
pub static WAITS_SPILL: PerCpuHashMap<WaitKey, WaitStats> =
    PerCpuHashMap::with_max_entries(1024, 0);

/// Rows [`WAKES`] could not take, like [`WAITS_SPILL`].
#[map]
pub static WAKES_SPILL: PerCpuHashMap<WakeKey, WakeStats> =
    PerCpuHashMap::with_max_entries(1024, 0);

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

/// Per-CPU event and loss counters, indexed by [`Counter`].
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

/// Per-CPU copy of the top of the user stack being walked (`stack::fpwalk`), with two words of
/// slack after it (so the verifier can see a frame record read at any 8-byte offset of the copy
/// stays inside the value) and a flag word.
#[map]
pub static STACK_WINDOW: PerCpuArray<[u64; crate::stack::WINDOW_WORDS + 3]> =
    PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room for one stack and a zero wait row (too large for the BPF stack).
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

// ---- Which processes are traced (`filter`) ----

/// Set mode: the tgids to trace (the value is unused). User space adds and removes them.
#[map]
pub static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

// ---- Scheduler hooks (`sched`) ----

/// Target threads asleep in a futex wait, one slot per tid's low bits (see `sched::tasks`).
#[map]
pub static SCHED_TASKS: Array<SchedWait> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

/// Waits already asleep at attach (seeded by user space from /proc), by futex word: their tid.
/// The first futex wake of the word by a target thread ends one (see `seeded_wake`).
#[map]
pub static SEEDED: HashMap<u64, u32> = HashMap::with_max_entries(1024, 0);

/// Waits a signal interrupted, by tid: `(uaddr, kind)`, for the `restart_syscall` that resumes
/// them (its registers no longer hold the futex arguments). Rare, so an LRU is plenty: an
/// eviction costs a resumed timed wait its start (it is then not seen).
#[map]
pub static RESTARTABLE: LruHashMap<u32, [u64; 2]> = LruHashMap::with_max_entries(1024, 0);

/// Wakes that reached a target thread before its switch-out recorded its wait, one slot per
/// tid's low bits, written by the waker only (see `sched::early`).
#[map]
pub static EARLY_WAKES: Array<EarlyWake> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

// ---- Holder blame: map phases (`phase`) ----

/// Slot 0 is nonzero once phase probes are attached: only then do waits read phase clocks.
#[map]
pub static PHASES_ON: Array<u32> = Array::with_max_entries(1, 0);

/// Totals per phase, per map kind ([`tracer_common::PhaseCookie::stats_index`]).
#[map]
pub static PHASE_STATS: PerCpuArray<PhaseStats> =
    PerCpuArray::with_max_entries((NUM_PHASES * MAP_SLOTS) as u32, 0);

/// A phase in progress, by `tid << 32 | phase` (Rust) or `g | phase` (Go): `[start, map]`.
#[map]
pub static PHASE_START: HashMap<u64, [u64; 2]> = HashMap::with_max_entries(16384, 0);

/// Each map's phase clock, by the map's address. LRU: a map not used for a while loses its
/// clock, and a wait on it then gets no phase split (as before its first phase).
#[map]
pub static MAP_CLOCKS: LruHashMap<u64, MapClock> = LruHashMap::with_max_entries(1024, 0);

/// The map each runner (tid, or Go's g) last ran a phase on. LRU: an evicted runner's next
/// wake of a lock word does not teach which map the word belongs to; a later one does.
#[map]
pub static LAST_MAP: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// The map a lock word (futex, or Go semaphore) belongs to. LRU: an evicted word is learnt
/// again at its next wake or phase run.
#[map]
pub static LOCK_MAP: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

// ---- Go goroutine waits (`goroutine`) ----

/// Goroutines in a semaphore acquire, by `g`.
#[map]
pub static GO_INFLIGHT: HashMap<u64, GoCall> = HashMap::with_max_entries(65536, 0);

/// `--go-sample`: slot 0 is the share of goroutine waits followed, as a threshold on a
/// random u32 (0: every wait). The choice is made where a wait begins, so each wait is
/// followed whole or not at all, and the ones not chosen cost only the probes' traps and a
/// map lookup.
#[map]
pub static GO_SAMPLE: Array<u32> = Array::with_max_entries(1, 0);

/// Return addresses into the `sync` acquires (see `GoCallers` in user space); 0: unused.
#[map]
pub static GO_CALLERS: Array<u64> = Array::with_max_entries(GO_CALLER_SLOTS, 0);

// ---- tokio async waits (`tokio`) ----

/// `Acquire`s polled at least once and not yet dropped, by address tagged with the process.
/// LRU: an `Acquire` that is never dropped (`mem::forget`) ages out instead of filling the map.
#[map]
pub static TOKIO_INFLIGHT: LruHashMap<u64, TokioCall> = LruHashMap::with_max_entries(65536, 0);

/// The last release of each semaphore, by address tagged with the process. LRU: semaphores
/// come and go with the program's locks.
#[map]
pub static TOKIO_RELEASES: LruHashMap<u64, TokioRelease> = LruHashMap::with_max_entries(16384, 0);

// ---- Lock hints (`lockhint`) ----

/// Slot 0 is nonzero once a lock-hint probe is attached: only then does the switch-out look
/// for hints.
#[map]
pub static LOCK_HINTS_ON: Array<u32> = Array::with_max_entries(1, 0);

/// Each thread's last lock-library slow-path entry, by tid. LRU: an evicted hint costs that
/// thread's next park its lock name (the row keeps the futex word).
#[map]
pub static LOCK_HINTS: LruHashMap<u32, LockHint> = LruHashMap::with_max_entries(16384, 0);

/// Every lock address a hint probe saw, by address tagged with the process: `[addr, tgid]`.
/// LRU: an evicted address is put back at its next slow path; user space keeps what it read.
#[map]
pub static LOCK_HINT_ADDRS: LruHashMap<u64, [u64; 2]> = LruHashMap::with_max_entries(4096, 0);

// ---- On-CPU samples (`oncpu`) ----

/// Samples per stack id ([`tracer_common::NO_STACK`]: the stack was not kept). Per CPU, so
/// counting needs no atomics; allocated as stacks come.
#[map]
pub static ONCPU: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// The sampled stacks (~1 KiB each, allocated as they come; 8 MiB at most).
#[map]
pub static ONCPU_STACKS: HashMap<u64, StackFrames> =
    HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// Per-CPU room for one sampled stack (too large for the BPF stack).
#[map]
pub static ONCPU_SCRATCH: PerCpuArray<StackFrames> = PerCpuArray::with_max_entries(1, 0);

/// Counts one event of `c` on this CPU.
#[inline(always)]
pub fn bump(c: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot; BPF programs run with migration disabled, so nothing else
        // writes it concurrently.
        unsafe { *p += 1 }
    }
}
