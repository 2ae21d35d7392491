//! The aggregate rows: one finished wait or one wake that woke someone, added to its per-CPU
//! row. The arithmetic itself is `WaitStats::add_wait`, shared with user space.
use aya_ebpf::{bindings::BPF_NOEXIST, maps::PerCpuHashMap};
use aya_log_ebpf::warn;
use tracer_common::{
    Counter, Outcome, WaitKey, WakeKey, WakeStats, NUM_PHASES, TIMED_OUT_SNAPSHOT,
};

use crate::{
    futex::Res,
    maps::{bump, SCRATCH, WAITS, WAITS_SPILL, WAKES, WAKES_SPILL},
    snapshot,
};

/// Adds one finished wait and, in the snapshot modes, sends the waiter's stack snapshot
/// (waits that may count as contention need a better stack: timed-out ones too, flagged).
#[inline(always)]
pub fn record_wait(
    key: &WaitKey,
    waited: u64,
    blamed: &[u64; NUM_PHASES],
    outcome: Outcome,
) -> Res {
    match outcome {
        Outcome::Woken | Outcome::Interrupted => snapshot::emit(key, waited),
        Outcome::TimedOut => {
            let mut timed_out = *key;
            timed_out.flags |= TIMED_OUT_SNAPSHOT;
            snapshot::emit(&timed_out, waited);
        }
        _ => {}
    }
    add_wait(key, waited, blamed, outcome)
}

/// This CPU's row for `key`, made if new: in `map`, else (no room, or no memory for a new
/// element at this moment) in its preallocated `spill`.
#[inline(always)]
fn row<K, V>(
    map: &PerCpuHashMap<K, V>,
    spill: &PerCpuHashMap<K, V>,
    key: &K,
    zero: &V,
) -> Option<*mut V> {
    if let Some(row) = map.get_ptr_mut(key) {
        return Some(row);
    }
    let _ = map.insert(key, zero, BPF_NOEXIST as u64);
    if let Some(row) = map.get_ptr_mut(key) {
        return Some(row);
    }
    if let Some(row) = spill.get_ptr_mut(key) {
        return Some(row);
    }
    let _ = spill.insert(key, zero, BPF_NOEXIST as u64);
    spill.get_ptr_mut(key)
}

/// Adds one finished wait, with the ns each holder phase is blamed for, to its row; no
/// snapshot (a waker recording a handed-off wait is not the waiter).
#[inline(always)]
pub fn add_wait(key: &WaitKey, waited: u64, blamed: &[u64; NUM_PHASES], outcome: Outcome) -> Res {
    let Some(scratch) = SCRATCH.get_ptr(0) else {
        return Ok(());
    };
    // SAFETY: `zero_wait` is never written, so it is an all-zero WaitStats.
    let zero = unsafe { &(*scratch).zero_wait };
    let Some(row) = row(&WAITS, &WAITS_SPILL, key, zero) else {
        bump(Counter::WaitMapFull);
        warn!(
            &(),
            "wait aggregate maps full: a wait of {} ns is lost", waited
        );
        return Ok(());
    };
    // SAFETY: this CPU's copy of a per-CPU value; no other writer while we run.
    unsafe { &mut *row }.add_wait(waited, blamed, outcome);
    Ok(())
}

/// Adds one wake call that woke `woken` threads to its row.
#[inline(always)]
pub fn add_wake(key: &WakeKey, woken: u64) -> Res {
    let Some(row) = row(&WAKES, &WAKES_SPILL, key, &WakeStats::default()) else {
        bump(Counter::WakeMapFull);
        warn!(&(), "wake aggregate maps full: a wake is lost");
        return Ok(());
    };
    // SAFETY: this CPU's copy of a per-CPU value; no other writer while we run.
    let row = unsafe { &mut *row };
    row.calls += 1;
    row.woken += woken;
    Ok(())
}
