//! counters: the recording's event counts that are not rows, and what the kernel side lost.
use serde::{Deserialize, Serialize};

/// Event counts that are not contention rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Futex calls the target made.
    pub calls: u64,
    pub wait_calls: u64,
    pub wake_calls: u64,
    /// Waits that returned EAGAIN at once: the word changed before the thread slept.
    pub eagain: u64,
    /// Exits seen with no entry: calls already in progress when tracing began.
    pub in_flight_at_start: u64,
    /// Waits still blocked when recording stopped, and the longest of them so far.
    pub still_waiting_at_end: u64,
    pub longest_unfinished_ns: u64,
    /// Wake calls that woke nobody: counted, no stack taken.
    #[serde(default)]
    pub empty_wakes: u64,
    /// Woken waits whose waker's syscall ended after theirs: the waker recorded them.
    #[serde(default)]
    pub handed_off: u64,
    /// Woken waits with no waker known: woken by no traced wake (the kernel wakes a joiner
    /// when a thread exits), or no free hand-off slot on their futex word.
    #[serde(default)]
    pub waker_unknown: u64,
    /// Snapshot modes: waits whose stack copy was dropped that took the unwound stacks of
    /// their kernel row's other waits (same thread, futex word, frame walk and waker).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stacks_inferred: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Everything the kernel side had to drop. Rows are exact only when all are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Losses {
    /// Events whose stack could not be captured (kept under an unknown stack).
    pub stack_errors: u64,
    /// Events whose stack did not fit the stack map (kept under an unknown stack).
    pub stack_map_full: u64,
    /// Waits dropped: the wait aggregate map was full.
    pub wait_map_full: u64,
    /// Wakes dropped: the wake aggregate map was full.
    pub wake_map_full: u64,
    /// Calls dropped: too many threads in futex calls at once.
    pub inflight_full: u64,
    /// Waker updates dropped (pairing of waiters with wakers degrades).
    pub waker_map_full: u64,
    /// DWARF mode: waits whose stack snapshot was dropped (ring buffer full); they keep their
    /// frame-pointer stack.
    #[serde(default)]
    pub snapshots_dropped: u64,
    /// DWARF mode: snapshots sent without stack bytes (the stack could not be read).
    #[serde(default)]
    pub snapshot_read_errors: u64,
    /// Stacks cut at their first impossible frame (an address in no executable mapping, or
    /// a return address that follows no call): a frame walk through code without frame
    /// pointers reads garbage there.
    #[serde(default)]
    pub stacks_cut: u64,
    /// New stacks whose addresses were checked against the memory maps only at the next
    /// periodic read (their notice ring was full).
    #[serde(default)]
    pub new_stack_notices_lost: u64,
    /// Other kernel map inserts that found their map full: a forked child left untraced, a
    /// map phase run not timed, an on-CPU sample dropped. Not in [`Losses::events`]: none is
    /// a wait or a wake.
    #[serde(default)]
    pub map_insert_failed: u64,
}

impl Losses {
    /// Events not counted at all.
    pub fn events(&self) -> u64 {
        self.wait_map_full + self.wake_map_full + self.inflight_full
    }
    /// Events counted without their stack.
    pub fn stacks(&self) -> u64 {
        self.stack_errors + self.stack_map_full + self.snapshots_dropped + self.snapshot_read_errors
    }
}
