//! The scheduler hooks' state for one sleeping waiter (see tracer-ebpf's `sched`).

/// Scheduler hooks: a target thread asleep in a futex wait, in the slot of its tid's low bits
/// ([`crate::inflight_slot`]; a scheduler tracepoint is handed a task, whose tid the kernel
/// program reads at `task_struct.pid`). Its wait itself is in [`crate::InFlight`], as on the
/// syscall path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedWait {
    /// The wake that woke it, as [`crate::waker_id`] ([`crate::NO_STACK`]: none seen yet, or unknown).
    pub waker_id: u64,
    /// The waiter's user stack, taken as it left the CPU ([`crate::NO_STACK`] if that failed).
    pub stack_id: u64,
    /// The waiter's leaf return address (see [`crate::WaitKey::leaf_ret`]).
    pub leaf_ret: u64,
    /// 0 until a wake claims this sleep (a compare-and-swap to 1: the waker's `sched_waking`
    /// and the waiter's own switch-out, applying a wake that came before it, can race; the
    /// one that claims it sets `outcome` and `waker_id` and counts the wake).
    pub claim: u64,
    pub tid: u32,
    /// [`crate::Outcome`] as u32, set by the wake; [`SCHED_NOT_WOKEN`] until then.
    pub outcome: u32,
    /// Nonzero when the wait call had a timeout: a wake from outside a futex call is then
    /// taken for its timer.
    pub timed: u32,
    /// Nonzero when its switch-out sent a stack snapshot (the process wants them): its end is
    /// then sent too.
    pub snapped: u32,
    /// The waiter's process (see [`crate::WaitKey::tgid`]).
    pub tgid: u32,
    /// Nonzero when its switch-out found a live lock hint for the thread (a lock-library slow
    /// path it entered and has not left, see [`crate::LOCK_HINTED`]): its row then names the
    /// hinted lock instead of the futex word.
    pub hinted: u32,
}

/// [`SchedWait::outcome`] before any wake was seen.
pub const SCHED_NOT_WOKEN: u32 = u32::MAX;
