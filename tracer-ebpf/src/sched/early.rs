//! early: wakes that reach a target thread before `sched_switch` has recorded its wait. The
//! kernel takes a task off its run queue, may drop its lock (a new-idle balance), and only then
//! switches; a waker on another CPU wakes it in between. In a lock storm most waits begin this
//! way. The wake is kept in the woken tid's slot of `EARLY_WAKES` (an array, as
//! `SCHED_TASKS`: with the LRU hash by task it replaces, a pthread storm's switch and wake each
//! cost ~60 ns more, `bpf_stats` medians) for the switch-out to apply.
//!
//! Two CPUs race here, and the wake must be counted once:
//! - the waker writes the slot, then looks for the sleep (`tasks::asleep`) and applies the
//!   wake itself if the switch-out recorded it meanwhile;
//! - the switch-out records the sleep, then reads the slot.
//!
//! Each side puts a full barrier between its write and its read (a locked compare-and-swap,
//! [`tasks::fence`]), so at least one sees the other; the one that claims the sleep
//! ([`tasks::claim`], a compare-and-swap) applies and counts the wake. The slot is written by
//! its waker only, under a sequence count (odd while written): a switch-out that finds it
//! being written leaves it to the waker, which checks for the sleep after it is done.
//!
//! Two threads whose tids share their low bits share a slot (as in `INFLIGHT`): if both are
//! woken early within the same ~100 ns, their wakers write the slot at once and an entry can
//! mix the two (its tid check then passes for one of them). Not seen.
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use tracer_common::{inflight_slot, Outcome, SchedWait, WakeKey};

use super::tasks;
use crate::maps::EARLY_WAKES;

/// A wake kept for the tid in its slot.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EarlyWake {
    /// Even while the entry is whole, odd while its waker writes it.
    seq: u64,
    /// The waker's wake row.
    wake: WakeKey,
    /// The word the woken task waits on.
    word: u64,
    at_ns: u64,
    /// `at_ns` of the entry the woken thread's switch-out last looked at: its own word (the
    /// waker never writes it), so one entry is applied to one sleep at most.
    seen_at: u64,
    /// The woken thread; 0 once its waker applied the entry itself.
    tid: u32,
    _pad: u32,
}

/// An early wake older than this at the switch-out is not this wait's: it woke an earlier
/// wait of the same word before that one slept (the task then did not sleep), and it was
/// never taken. A wake that races a switch-out is microseconds old.
const MAX_AGE_NS: u64 = 1_000_000;

/// The waker's side: keeps `wake` of thread `tid`'s wait on `word`, or applies it at once if
/// the thread's sleep is recorded by now. `count` counts the wake and returns its waker id.
#[inline(always)]
pub fn keep(tid: u32, word: u64, wake: &WakeKey, count: impl Fn(&WakeKey) -> u64) {
    let Some(e) = EARLY_WAKES.get_ptr_mut(inflight_slot(tid)) else {
        return;
    };
    // SAFETY: a map value; this waker is its only writer now (the woken thread is on its way
    // to sleep, and only a wake of it writes here), and its switch-out reads it under `seq`.
    let even = unsafe {
        let odd = read_volatile(&(*e).seq) | 1;
        write_volatile(&mut (*e).seq, odd);
        compiler_fence(Ordering::SeqCst);
        write_volatile(&mut (*e).wake, *wake);
        write_volatile(&mut (*e).word, word);
        write_volatile(&mut (*e).at_ns, bpf_ktime_get_ns());
        write_volatile(&mut (*e).tid, tid);
        compiler_fence(Ordering::SeqCst);
        write_volatile(&mut (*e).seq, odd + 1);
        odd + 1
    };
    // SAFETY: as above; a compare-and-swap of the value just written (a full barrier).
    unsafe { tasks::fence(&mut (*e).seq, even) };
    let Some(w) = tasks::asleep(tid) else {
        return;
    };
    if !tasks::claim(w) {
        return;
    }
    apply(w, count(wake));
    // Applied here: retired, so a later sleep's switch-out does not apply it again.
    // SAFETY: as above.
    unsafe {
        write_volatile(&mut (*e).seq, even + 1);
        compiler_fence(Ordering::SeqCst);
        write_volatile(&mut (*e).tid, 0);
        compiler_fence(Ordering::SeqCst);
        write_volatile(&mut (*e).seq, even + 2);
    }
}

/// The switch-out's side: thread `tid`'s sleep `w`, on `word` since `start_ns`, was recorded
/// just now; a wake kept for it is applied.
#[inline(always)]
pub fn take(
    w: *mut SchedWait,
    tid: u32,
    word: u64,
    start_ns: u64,
    count: impl Fn(&WakeKey) -> u64,
) {
    // SAFETY: the sleep's own claim word, compared with its value (a full barrier).
    unsafe { tasks::fence(&mut (*w).claim, 0) };
    let Some(e) = EARLY_WAKES.get_ptr_mut(inflight_slot(tid)) else {
        return;
    };
    // SAFETY: a map value read under its sequence count (see `keep`); `seen_at` is this
    // thread's own.
    let (wake, at_ns) = unsafe {
        let seq = read_volatile(&(*e).seq);
        if seq & 1 != 0 {
            // Being written: its waker looks for this sleep once it is done.
            return;
        }
        compiler_fence(Ordering::SeqCst);
        let (wake, kept_word, at_ns, kept_tid) = (
            read_volatile(&(*e).wake),
            read_volatile(&(*e).word),
            read_volatile(&(*e).at_ns),
            read_volatile(&(*e).tid),
        );
        compiler_fence(Ordering::SeqCst);
        if read_volatile(&(*e).seq) != seq || kept_tid != tid {
            return;
        }
        if read_volatile(&(*e).seen_at) == at_ns {
            return;
        }
        write_volatile(&mut (*e).seen_at, at_ns);
        if kept_word != word {
            return;
        }
        (wake, at_ns)
    };
    if start_ns.saturating_sub(at_ns) > MAX_AGE_NS || !tasks::claim(w) {
        return;
    }
    apply(w, count(&wake));
}

/// Ends the claimed sleep `w` as woken by the wake whose id is `waker_id`.
#[inline(always)]
fn apply(w: *mut SchedWait, waker_id: u64) {
    // SAFETY: a map value this side claimed: no other wake writes these fields.
    unsafe {
        (*w).waker_id = waker_id;
        (*w).outcome = Outcome::Woken.as_u32();
    }
}
