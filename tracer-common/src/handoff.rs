//! Waiter/waker pairing when a woken waiter's syscall ends before its waker's: the waiter
//! leaves its finished wait in a slot keyed by the futex word, for the waker to record.
use crate::{WaitKey, NUM_PHASES};

/// [`WaitKey::flags`]: the waiter exited before its waker, so the waker recorded the wait (or
/// the snapshot of such a wait, whose waker the waiter could not know yet).
pub const HANDED_OFF: u32 = 1;

/// On a DWARF-mode stack snapshot's key only (never on a row): the wait timed out. User space
/// clears it and counts the snapshot as a timeout of that row (a timed-out wait needs its
/// stack too: CPython waits for the GIL in 5 ms timed waits).
pub const TIMED_OUT_SNAPSHOT: u32 = 2;

/// Where a waiter that exited before its waker leaves its finished wait: one of
/// [`HANDOFF_SLOTS`] slots per futex word. The next wake of that word that woke someone
/// records it under its own stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HandoffKey {
    pub uaddr: u64,
    pub slot: u32,
    pub _pad: u32,
}

/// Slots per futex word for waits waiting on their waker's exit.
pub const HANDOFF_SLOTS: u32 = 4;

/// A finished wait whose waker has not exited yet: everything needed to record it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// The waiter's key; `waker_id` is filled in by the waker.
    pub key: WaitKey,
    pub waited: u64,
    /// When the wait began: a wake that exited before this did not wake it.
    pub start_ns: u64,
    pub blamed: [u64; NUM_PHASES],
    /// [`Outcome`] as u32 ([`Outcome::as_u32`]).
    pub outcome: u32,
    pub _pad: u32,
}
