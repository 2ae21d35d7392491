//! Types shared by the lockscope eBPF programs and the user-space tracer.
//!
//! Every struct here crosses the kernel/user boundary as raw bytes, so each is `#[repr(C)]`
//! with explicit padding (no implicit holes the verifier or `Pod` could trip on). The `user`
//! feature adds `aya::Pod` so user space can read the maps.
#![cfg_attr(not(test), no_std)]

pub mod blame;
pub mod counter;
pub mod filter;
pub mod futex;
pub mod goroutine;
pub mod handoff;
mod layout;
pub mod sched;
pub mod snapshot;
pub mod wait_stats;

pub use blame::{ClockRead, MapClock, Phase, PhaseCookie, PhaseStats, MAP_SLOTS, NUM_PHASES};
pub use counter::{Counter, NUM_COUNTERS};
pub use filter::{
    TargetFlags, MAX_TARGETS, TARGET_FP, TARGET_SNAP_FULL, TARGET_SNAP_SMALL, TGID_SET,
};
pub use futex::{classify_futex_op, is_wait_kind, OpKind, Outcome};
pub use goroutine::{GoCall, GoFrame, GoRef, GoStack, GO_CALLER_SLOTS};
pub use handoff::{Handoff, HandoffKey, HANDED_OFF, HANDOFF_SLOTS, TIMED_OUT_SNAPSHOT};
pub use sched::{SchedWait, SCHED_NOT_WOKEN};
pub use snapshot::{
    SmallStackSnapshot, SnapshotHeader, StackSnapshot, StackSnapshotOf, SNAPSHOT_MAX_BYTES,
    SNAPSHOT_MIN_BYTES, SNAPSHOT_RING_BYTES, SNAPSHOT_RING_OFF_BYTES, SNAPSHOT_RING_WAKE_BYTES,
    SNAPSHOT_SMALL_BYTES, SNAP_SWITCH_OUT, SNAP_WAIT_END, SNAP_WHOLE,
};
pub use wait_stats::WaitStats;

/// Deepest user stack the kernel side records (the kernel's default `perf_event_max_stack`).
pub const MAX_STACK_DEPTH: usize = 127;

/// Log2 wait-time histogram buckets: bucket 0 is 0 ns, bucket `b` holds `[2^(b-1), 2^b)` ns,
/// and the last bucket is open-ended (2^38 ns ≈ 275 s and above).
pub const HIST_BUCKETS: usize = 40;

/// Stack id meaning "no stack": the capture failed, or no waker is known.
pub const NO_STACK: u64 = 0;

/// Wait aggregate key: one row per (waiter stack, waker stack, futex, thread, op kind).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WaitKey {
    /// Hash of the waiter's user stack ([`NO_STACK`] if it could not be captured).
    pub stack_id: u64,
    /// The wake that ended the wait, as [`waker_id`] of its stack and leaf ([`NO_STACK`] when
    /// none is known, e.g. a timeout or a wake from before attach).
    pub waker_id: u64,
    /// The futex word's user address.
    pub uaddr: u64,
    /// The word at the user SP at syscall entry: the return address into the caller of a
    /// frameless leaf such as glibc's `syscall()`, which the frame-pointer walk skips.
    pub leaf_ret: u64,
    pub tid: u32,
    /// [`OpKind`] as u32.
    pub kind: u32,
    /// [`HANDED_OFF`] when the waker's exit recorded this wait (the waiter exited first).
    pub flags: u32,
    /// The waiter's process: its rows are told apart by process even once the thread is gone
    /// (the agent and `--follow-forks` trace many).
    pub tgid: u32,
}

/// [`WaitKey::flags`]: `uaddr` is not the futex word slept on but the lock a lock library's
/// slow path was entered for (its `&self`; e.g. a DashMap shard's `RawRwLock`, whose waits
/// park on parking_lot_core's per-thread word, which says nothing of the lock).
pub const LOCK_HINTED: u32 = 4;

/// Wake aggregate key: one row per (waker stack, futex, thread, op kind).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WakeKey {
    pub stack_id: u64,
    pub uaddr: u64,
    pub leaf_ret: u64,
    pub tid: u32,
    pub kind: u32,
}

/// Wake aggregate value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WakeStats {
    /// Wake calls made.
    pub calls: u64,
    /// Threads those calls woke (sum of the syscall's return values).
    pub woken: u64,
    /// Calls that woke nobody.
    pub empty: u64,
    pub _reserved: u64,
}

/// A futex call in progress on one thread, in slot [`inflight_slot`] of its tid. A slot
/// holding another tid is not this thread's call (two threads whose tids share a slot, or a
/// thread that died inside a call).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Waits only: when the call entered.
    pub start_ns: u64,
    pub uaddr: u64,
    /// The thread in the call; 0: the slot is free.
    pub tid: u32,
    /// [`OpKind`] as u32.
    pub kind: u32,
    /// Waits only: the lock's phase clock when the wait began.
    pub clock: ClockRead,
}

/// Slots of the in-flight array: a power of two, indexed by the low bits of the tid.
pub const INFLIGHT_SLOTS: u32 = 32768;

/// The attach cookie of `prog::TOKIO_POLL_AT`: bits 0–7 the word of x86-64 `struct pt_regs`
/// that holds a register; with this bit set, `self` is the word at that register plus the
/// signed offset in bits 32–63, else the register itself.
pub const SELF_IN_MEMORY: u64 = 1 << 8;

/// The in-flight slot of thread `tid`.
#[inline(always)]
pub fn inflight_slot(tid: u32) -> u32 {
    tid & (INFLIGHT_SLOTS - 1)
}

/// The last waker of a futex word, keyed by uaddr; read by the waiter it woke. `stack_id` is
/// the waker's [`waker_id`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastWaker {
    pub stack_id: u64,
    pub ts_ns: u64,
    pub tid: u32,
    pub _pad: u32,
}

/// A user stack as the kernel captured it: `frames[0]` is the instruction pointer, the rest
/// are return addresses, innermost first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StackFrames {
    pub len: u32,
    pub _pad: u32,
    pub frames: [u64; MAX_STACK_DEPTH],
}

/// Per-CPU scratch space: too large for the 512-byte BPF stack.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scratch {
    pub stack: StackFrames,
    /// Always zero: the initial value inserted for a new wait row.
    pub zero_wait: WaitStats,
}

/// Map names, shared so neither side spells them twice.
pub mod map {
    pub const INFLIGHT: &str = "INFLIGHT";
    pub const WAITS: &str = "WAITS";
    pub const WAKES: &str = "WAKES";
    /// Rows that found [`WAITS`]/[`WAKES`] unable to take a new key: read with them.
    pub const WAITS_SPILL: &str = "WAITS_SPILL";
    pub const WAKES_SPILL: &str = "WAKES_SPILL";
    pub const STACKS: &str = "STACKS";
    pub const LAST_WAKER: &str = "LAST_WAKER";
    pub const COUNTERS: &str = "COUNTERS";
    pub const SCRATCH: &str = "SCRATCH";
    pub const PHASE_STATS: &str = "PHASE_STATS";
    pub const PHASE_START: &str = "PHASE_START";
    pub const MAP_CLOCKS: &str = "MAP_CLOCKS";
    /// Goroutines in a `sync` semaphore acquire, by `g`.
    pub const GO_INFLIGHT: &str = "GO_INFLIGHT";
    /// DWARF mode: ring buffer of [`super::StackSnapshot`]s.
    pub const SNAPSHOTS: &str = "SNAPSHOTS";
    pub const NEW_STACKS: &str = "NEW_STACKS";
    pub const HANDOFFS: &str = "HANDOFFS";
    pub const PHASES_ON: &str = "PHASES_ON";
    pub const GO_CALLERS: &str = "GO_CALLERS";
    /// `--go-sample`: the share of goroutine waits followed (a threshold; 0: all).
    pub const GO_SAMPLE: &str = "GO_SAMPLE";
    /// tokio's async acquires in flight, by `Acquire` address.
    pub const TOKIO_INFLIGHT: &str = "TOKIO_INFLIGHT";
    /// The last release of each tokio semaphore, by address.
    pub const TOKIO_RELEASES: &str = "TOKIO_RELEASES";
    /// Set mode: the tgids to trace (see [`super::TGID_SET`]).
    pub const TARGETS: &str = "TARGETS";
    /// On-CPU samples of the target per user stack id (see [`super::ONCPU_HZ`]); key
    /// [`super::NO_STACK`] counts samples whose stack was not kept.
    pub const ONCPU: &str = "ONCPU";
    /// The sampled stacks by id: apart from `STACKS`, so samples never crowd out wait stacks.
    pub const ONCPU_STACKS: &str = "ONCPU_STACKS";
    /// Scheduler hooks: target threads asleep in a futex wait, by task address.
    pub const SCHED_TASKS: &str = "SCHED_TASKS";
    /// Scheduler hooks: waits asleep at attach, by futex word (their tid).
    pub const SEEDED: &str = "SEEDED";
    /// Slot 0 nonzero once lock-hint probes are attached (see [`super::prog::LOCK_HINT`]).
    pub const LOCK_HINTS_ON: &str = "LOCK_HINTS_ON";
    /// Every lock address a lock-hint probe saw, keyed by the address tagged with its process;
    /// the value is `[address, tgid]`. User space reads new ones while the target lives.
    pub const LOCK_HINT_ADDRS: &str = "LOCK_HINT_ADDRS";
}

/// On-CPU sampling frequency per CPU (software CPU clock) for the `sync.Map` fast-path
/// estimate: an odd rate, so it does not beat in step with periodic work.
pub const ONCPU_HZ: u64 = 99;

/// Global (`static`) names set by user space before load.
pub mod global {
    /// The tgid (process id) to trace, or [`super::TGID_SET`].
    pub const TARGET_TGID: &str = "TARGET_TGID";
    /// Nonzero: send a stack snapshot for every wait that slept (DWARF unwinding).
    pub const SNAPSHOT_BYTES: &str = "SNAPSHOT_BYTES";
    /// Byte offset of `pid` in the kernel's `struct task_struct` (from its BTF), for the
    /// scheduler hooks.
    pub const TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
    /// The lowest user address that can be mapped (`vm.mmap_min_addr`): the frame walk never
    /// reads below it.
    pub const USER_MIN_ADDR: &str = "USER_MIN_ADDR";
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)], made only of integers and arrays of integers, with all
    // padding explicit, so every bit pattern is a valid value.
    unsafe impl aya::Pod for WaitKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for WaitStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for WakeKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for WakeStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for StackFrames {}
    // SAFETY: as above.
    unsafe impl aya::Pod for InFlight {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PhaseStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for GoCall {}
    // SAFETY: as above.
    unsafe impl aya::Pod for HandoffKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Handoff {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SchedWait {}
}

/// Histogram bucket for a wait of `ns` nanoseconds: `floor(log2(ns)) + 1`, 0 for 0, clamped to
/// the last bucket. Written as a branchy binary search: the BPF target has no count-leading-
/// zeros instruction.
#[inline(always)]
pub fn hist_bucket(ns: u64) -> usize {
    if ns == 0 {
        return 0;
    }
    let mut v = ns;
    let mut b = 1usize;
    if v >= 1 << 32 {
        v >>= 32;
        b += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        b += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        b += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        b += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        b += 2;
    }
    if v >= 1 << 1 {
        b += 1;
    }
    if b >= HIST_BUCKETS {
        HIST_BUCKETS - 1
    } else {
        b
    }
}

/// Lower bound in ns of histogram bucket `b` (see [`HIST_BUCKETS`]).
pub const fn bucket_floor_ns(b: usize) -> u64 {
    if b == 0 {
        0
    } else {
        1u64 << (b - 1)
    }
}

/// Mixes one frame into a 64-bit stack hash (FNV-1a over the frame's 8 bytes at once, then a
/// multiply-xorshift finaliser so near-equal addresses spread). Never returns [`NO_STACK`].
#[inline(always)]
pub fn stack_hash_step(h: u64, frame: u64) -> u64 {
    let mut x = (h ^ frame).wrapping_mul(0x0000_0100_0000_01b3);
    x ^= x >> 29;
    x
}

pub const STACK_HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// A waker's identity: its stack id and its leaf return address together. The leaf matters:
/// where the syscall wrapper is frameless and the program keeps no frame pointers, the
/// kernel's walk is the same for every caller, and only the leaf tells them apart.
#[inline(always)]
pub fn waker_id(stack_id: u64, leaf_ret: u64) -> u64 {
    if stack_id == NO_STACK {
        return NO_STACK;
    }
    stack_hash_finish(stack_hash_step(stack_id, leaf_ret), 1)
}

/// Finishes a stack hash; maps the reserved [`NO_STACK`] value away.
#[inline(always)]
pub fn stack_hash_finish(h: u64, len: u32) -> u64 {
    let x = stack_hash_step(h, len as u64);
    if x == NO_STACK {
        1
    } else {
        x
    }
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;

/// Program names (the `#[tracepoint]` fn names in tracer-ebpf) and what each attaches to.
pub mod prog {
    pub const FUTEX_ENTER: &str = "futex_enter";
    pub const FUTEX_WAIT_ENTER: &str = "futex_wait_enter";
    pub const FUTEX_WAITV_ENTER: &str = "futex_waitv_enter";
    pub const FUTEX_WAKE_ENTER: &str = "futex_wake_enter";
    pub const FUTEX_EXIT: &str = "futex_exit";
    /// uprobe on each probed phase function; the attach cookie is a [`super::PhaseCookie`].
    pub const PHASE_ENTER: &str = "phase_enter";
    /// uretprobe on phase functions whose return is probed.
    pub const PHASE_EXIT: &str = "phase_exit";
    /// Go: uprobe on a phase function's entry, keyed by goroutine (instead of PHASE_ENTER).
    pub const GO_PHASE_ENTER: &str = "go_phase_enter";
    /// Go: uprobe on each return instruction of a phase function (instead of PHASE_EXIT).
    pub const GO_PHASE_EXIT: &str = "go_phase_exit";
    /// uprobe on the entry of Go's `sync.runtime_SemacquireMutex` (and RWMutex variants).
    pub const GO_SEMA_ENTER: &str = "go_sema_enter";
    /// uprobe on each return instruction of those functions: never a uretprobe, whose
    /// trampoline breaks when Go moves a goroutine's stack.
    pub const GO_SEMA_EXIT: &str = "go_sema_exit";
    /// uprobe on `runtime.ready(gp)`: stamps when a waiting goroutine became runnable.
    pub const GO_READY: &str = "go_ready";
    /// uprobe on `runtime.park_m(gp)`: stamps when a goroutine in an acquire first parked.
    pub const GO_PARK: &str = "go_park";
    /// uprobe on the semaphore code's call to gopark, where its frame layout is known: the
    /// acquire begins there (no entry or return-instruction probes needed).
    pub const GO_SEMA_PARK: &str = "go_sema_park";
    /// uprobe on the entry of tokio's `<batch_semaphore::Acquire as Future>::poll`: a second
    /// poll of the same `Acquire` means the first returned `Pending`.
    pub const TOKIO_POLL: &str = "tokio_poll";
    /// uprobe on the entry of `<batch_semaphore::Acquire as Drop>::drop`: the acquire is over.
    pub const TOKIO_DROP: &str = "tokio_drop";
    /// uprobe at a DWARF inline site of `Acquire::poll` (fat LTO inlines it); the attach
    /// cookie says where `self` is there (see [`super::SELF_IN_MEMORY`]).
    pub const TOKIO_POLL_AT: &str = "tokio_poll_at";
    /// tokio: `batch_semaphore::Semaphore::release`, past its `added == 0` guard (who gave
    /// permits back).
    pub const TOKIO_RELEASE: &str = "tokio_release";
    /// tokio: a DWARF inline site of `Semaphore::release` (cookie as for `TOKIO_POLL_AT`).
    pub const TOKIO_RELEASE_AT: &str = "tokio_release_at";
    /// uprobe on the entry of a lock library's out-of-line slow path (DashMap's
    /// `RawRwLock::lock_{exclusive,shared}_slow`): the lock address (RDI) the thread's next
    /// park is for, kept until the call returns (see [`super::LOCK_HINTED`]).
    pub const LOCK_HINT: &str = "lock_hint";
    /// uprobe on each `ret` of those slow paths: the call is over, its hint is dropped.
    pub const LOCK_HINT_EXIT: &str = "lock_hint_exit";
    /// `task:task_newtask`: adds a traced process's new child process to the set
    /// (`record --follow-forks`).
    pub const FOLLOW_FORK: &str = "follow_fork";
    /// perf-event program on each CPU's software clock: counts the target's on-CPU user
    /// stacks (Go `sync.Map` targets only).
    pub const ONCPU_SAMPLE: &str = "oncpu_sample";

    /// (program, syscalls tracepoints). Exits come first: attached before the entries, every
    /// entry seen has its exit seen too.
    pub const ATTACH_ORDER: [(&str, &[&str]); 5] = [
        (
            FUTEX_EXIT,
            &[
                "sys_exit_futex",
                "sys_exit_futex_wait",
                "sys_exit_futex_waitv",
                "sys_exit_futex_wake",
            ],
        ),
        (FUTEX_ENTER, &["sys_enter_futex"]),
        (FUTEX_WAIT_ENTER, &["sys_enter_futex_wait"]),
        (FUTEX_WAITV_ENTER, &["sys_enter_futex_waitv"]),
        (FUTEX_WAKE_ENTER, &["sys_enter_futex_wake"]),
    ];

    /// Scheduler hooks (`tp_btf`): a target thread leaves the CPU asleep in a futex wait.
    pub const SCHED_SWITCH: &str = "sched_switch";
    /// Scheduler hooks (`tp_btf`): in the waker's context, a sleeping target thread is woken.
    pub const SCHED_WAKING: &str = "sched_waking";
    /// (program, `tp_btf` event), in attach order: the switch, which ends waits, first.
    pub const SCHED: [(&str, &str); 2] = [
        (SCHED_SWITCH, "sched_switch"),
        (SCHED_WAKING, "sched_waking"),
    ];

    /// BPF trampolines on the kernel's futex functions, where the kernel allows them:
    /// (entry program, exit program, kernel function). Exits first, as above.
    pub const TRAMPOLINES: [(&str, &str, &str); 4] = [
        ("do_futex_entry", "do_futex_exit", "do_futex"),
        (
            "futex_wait_fentry",
            "futex_wait_fexit",
            "__x64_sys_futex_wait",
        ),
        (
            "futex_wake_fentry",
            "futex_wake_fexit",
            "__x64_sys_futex_wake",
        ),
        (
            "futex_waitv_fentry",
            "futex_waitv_fexit",
            "__x64_sys_futex_waitv",
        ),
    ];
}
