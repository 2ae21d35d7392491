//! Waiter/waker pairing when the waker's stack is taken at its syscall's exit. A woken
//! waiter's exit can run before its waker's: the waiter then leaves its finished wait in a
//! slot keyed by the futex word, and the waker's exit records it under the waker's stack.
//! Whoever deletes the slot records the wait, so each wait is recorded exactly once.
use aya_ebpf::bindings::BPF_NOEXIST;
use aya_log_ebpf::debug;
use tracer_common::{
    Counter, Handoff, HandoffKey, Outcome, WaitKey, HANDED_OFF, HANDOFF_SLOTS, NUM_PHASES,
};

use crate::{
    maps::{bump, HANDOFFS, LAST_WAKER},
    rows,
};

/// The [`tracer_common::waker_id`] of a wake of `uaddr` that woke someone and exited after
/// `since` (the wait's start): the wake that ended the wait.
#[inline(always)]
pub fn waker_since(uaddr: u64, since: u64) -> Option<u64> {
    // SAFETY: copied out at once; an LRU entry may be recycled later.
    let w = unsafe { LAST_WAKER.get(uaddr) }.copied()?;
    (w.ts_ns >= since).then_some(w.stack_id)
}

/// What became of a wait whose waker had not exited yet.
pub enum Left {
    /// The waker's exit came meanwhile: the waiter took the wait back and records it itself
    /// under this waker.
    Back(u64),
    /// A waker recorded it, under this waker (flagged [`HANDED_OFF`]).
    Taken(u64),
    /// It waits in its slot for the waker's exit.
    Waiting,
    /// No free slot: the waiter records it with no waker.
    Full,
}

/// Leaves a finished wait for the waker of `key.uaddr`.
#[inline(always)]
pub fn leave(
    key: &WaitKey,
    waited: u64,
    start_ns: u64,
    blamed: &[u64; NUM_PHASES],
    outcome: Outcome,
) -> Left {
    bump(Counter::HandedOff);
    let wait = Handoff {
        key: *key,
        waited,
        start_ns,
        blamed: *blamed,
        outcome: outcome.as_u32(),
        _pad: 0,
    };
    let mut slot = HandoffKey {
        uaddr: key.uaddr,
        slot: 0,
        _pad: 0,
    };
    let mut placed = false;
    for i in 0..HANDOFF_SLOTS {
        slot.slot = i;
        if HANDOFFS.insert(&slot, &wait, BPF_NOEXIST as u64).is_ok() {
            placed = true;
            break;
        }
    }
    if !placed {
        bump(Counter::HandoffsFull);
        debug!(
            &(),
            "hand-off slots of futex {:x} full: wait recorded without its waker", key.uaddr
        );
        return Left::Full;
    }
    // The waker may have exited between the first look and the insert, and found no slot.
    match waker_since(key.uaddr, start_ns) {
        Some(stack) if HANDOFFS.remove(&slot).is_ok() => Left::Back(stack),
        Some(stack) => Left::Taken(stack),
        None => Left::Waiting,
    }
}

/// At the exit of a wake of `uaddr` that woke someone, ended at `now`, with waker id `waker`:
/// records the waits its waiters left.
#[inline(always)]
pub fn settle(uaddr: u64, waker: u64, now: u64) {
    let mut slot = HandoffKey {
        uaddr,
        slot: 0,
        _pad: 0,
    };
    for i in 0..HANDOFF_SLOTS {
        slot.slot = i;
        // SAFETY: copied out at once, before the delete that claims it.
        let Some(wait) = (unsafe { HANDOFFS.get(&slot) }).copied() else {
            continue;
        };
        // A wait that began after this wake was not ended by it.
        if wait.start_ns > now || HANDOFFS.remove(&slot).is_err() {
            continue;
        }
        let mut key = wait.key;
        key.waker_id = waker;
        key.flags = HANDED_OFF;
        let _ = rows::add_wait(
            &key,
            wait.waited,
            &wait.blamed,
            Outcome::from_u32(wait.outcome),
        );
    }
}
