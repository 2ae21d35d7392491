//! tasks: the target threads asleep in a futex wait, one [`SchedWait`] per tid's low bits (as
//! `INFLIGHT`: an array slot is a plain load, where the hash map keyed by task address this
//! replaces cost ~200 ns per insert and per lookup-and-delete here). The hooks are handed a
//! task pointer; its tid is read at `task_struct.pid`, whose offset user space takes from the
//! kernel's BTF and sets before load.
//!
//! A slot is the sleeping thread's while its `tid` is that thread's; 0 frees it. It is written
//! only by its thread's own switch-out and freed by that thread's switch-in (which cannot run
//! meanwhile); a waker on another CPU writes only `waker_id` and `outcome`, after seeing the
//! tid. So a switch-out writes the fields first and the tid last.
use core::intrinsics::{atomic_cxchg, AtomicOrdering::SeqCst};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};
use tracer_common::{inflight_slot, SchedWait};

use crate::maps::SCHED_TASKS;

/// Byte offset of `pid` in `struct task_struct`; set by user space before load.
#[no_mangle]
static TASK_PID_OFFSET: u32 = 0;

/// The tid of the task at `task` (0 if it cannot be read: no target thread has tid 0).
#[inline(always)]
pub fn tid_of(task: u64) -> u32 {
    // SAFETY: a plain read of a static; volatile so the compiler cannot fold the 0 it was
    // compiled with (user space rewrites it before load).
    let off = unsafe { read_volatile(&TASK_PID_OFFSET) };
    // SAFETY: `task` is a task pointer the hook was handed; a plain load, which the verifier
    // checks against `struct task_struct` in the kernel's BTF (`off` is a load-time constant)
    // and the JIT guards.
    unsafe { read_volatile((task + u64::from(off)) as *const u32) }
}

/// Thread `tid`'s sleeping wait, if one is recorded.
#[inline(always)]
pub fn asleep(tid: u32) -> Option<*mut SchedWait> {
    if tid == 0 {
        return None;
    }
    let w = SCHED_TASKS.get_ptr_mut(inflight_slot(tid))?;
    // SAFETY: a map value; the tid is read once.
    (unsafe { read_volatile(&(*w).tid) } == tid).then_some(w)
}

/// Records `wait` as its thread's sleeping wait and returns its slot (its thread's until its
/// own switch-in); `None` when another thread's sleep holds the slot (its low tid bits are the
/// same).
#[inline(always)]
pub fn record(wait: &SchedWait) -> Option<*mut SchedWait> {
    let w = SCHED_TASKS.get_ptr_mut(inflight_slot(wait.tid))?;
    // SAFETY: a map value; see the module doc for who writes what.
    unsafe {
        let held = read_volatile(&(*w).tid);
        if held != 0 && held != wait.tid {
            return None;
        }
        write_volatile(&mut (*w).tid, 0);
        compiler_fence(Ordering::SeqCst);
        *w = SchedWait { tid: 0, ..*wait };
        compiler_fence(Ordering::SeqCst);
        write_volatile(&mut (*w).tid, wait.tid);
    }
    Some(w)
}

/// Thread `tid`'s sleeping wait, taken out (its slot freed).
#[inline(always)]
pub fn take(tid: u32) -> Option<SchedWait> {
    let w = asleep(tid)?;
    // SAFETY: a map value of this thread's (see `asleep`); copied, then freed.
    unsafe {
        let copy = *w;
        write_volatile(&mut (*w).tid, 0);
        Some(copy)
    }
}

/// Claims sleep `w` for the wake that will end it: `false` if another wake claimed it first.
/// A 64-bit compare-and-swap (bpf-linker's `--cpu generic` has no 32-bit one).
#[inline(always)]
pub fn claim(w: *mut SchedWait) -> bool {
    // SAFETY: a map value's aligned u64, changed only by this compare-and-swap (and reset by
    // `record` while no wake can find the slot).
    unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(&mut (*w).claim, 0, 1).1 }
}

/// A full barrier: a compare-and-swap of `word` with `expected` (on x86 a locked instruction,
/// which orders every earlier store before every later load). Stores nothing new.
///
/// # Safety
/// `word` points at an aligned u64 of map memory.
#[inline(always)]
pub unsafe fn fence(word: *mut u64, expected: u64) {
    // SAFETY: the caller's pointer; a failed exchange stores nothing, a successful one
    // stores the value that was there.
    let _ = unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(word, expected, expected) };
}
