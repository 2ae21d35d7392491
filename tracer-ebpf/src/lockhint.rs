//! Lock hints: which lock a thread's next futex park is for, when the futex word does not say.
//! A `lock_api`-style lock (DashMap's shard `RawRwLock`) parks through parking_lot_core, whose
//! futex word is the parking THREAD's own, not the lock's. An entry uprobe on the lock's
//! out-of-line slow path (`lock_exclusive_slow`/`lock_shared_slow(&self)`) keeps, per thread,
//! the lock's address (RDI) with the stack pointer at entry and the return address there.
//!
//! A probe on each `ret` of the slow path drops the hint: a later park elsewhere (a parking_lot
//! `Mutex`) keeps its futex word. The check alone was not enough: a stale hint's return
//! address survived in an unwritten slot of `log_line`'s frame on dashlog. The scheduler hook's
//! switch-out also takes the hint only while its call looks live (a call left by unwinding
//! passes no `ret`): the sleeping thread's user SP is below the entry SP and the word at the
//! entry SP is still the return address seen at entry. The switch-in then names the hinted lock in the row's `uaddr` and flags it
//! [`LOCK_HINTED`].
//!
//! Each lock address is also put once (by address tagged with the process) in
//! [`LOCK_HINT_ADDRS`], which user space reads while the target lives to work out which shard
//! of which map the lock is. Nothing runs unless user space attached a hint probe
//! ([`LOCK_HINTS_ON`]).
use aya_ebpf::{
    helpers::{bpf_get_current_task_btf, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{WaitKey, LOCK_HINTED};

use crate::arch::{user_reg, word};
use crate::filter::{current_tgid, target_tid};
use crate::maps::{LOCK_HINTS, LOCK_HINTS_ON, LOCK_HINT_ADDRS};
use crate::tokio::in_process;
use aya_ebpf::helpers::generated::bpf_task_pt_regs;

/// The lock a thread's slow path was entered for, and how to tell that call is still live.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct LockHint {
    /// The lock (`&self` of the slow path).
    pub addr: u64,
    /// The user SP at the slow path's entry: where its return address is.
    pub sp: u64,
    /// The return address at `sp` at entry.
    pub ret: u64,
}

/// True once user space attached a lock-hint probe: before that the scheduler hook skips the
/// lookups.
#[inline(always)]
pub fn on() -> bool {
    LOCK_HINTS_ON.get(0).is_some_and(|v| *v != 0)
}

#[uprobe]
pub fn lock_hint(ctx: ProbeContext) -> u32 {
    let Some(tid) = target_tid() else {
        return 0;
    };
    // SAFETY: `regs` is the probed thread's saved user registers; at a function's entry RDI is
    // `&self` (the lock) and RSP points at the return address.
    let (addr, sp) = unsafe { ((*ctx.regs).rdi, (*ctx.regs).rsp) };
    // SAFETY: a user-memory read the helper checks; a fault yields Err.
    let Ok(ret) = (unsafe { bpf_probe_read_user(sp as *const u64) }) else {
        return 0;
    };
    // An LRU: room is made by evicting the hint of a thread long idle (its next park then
    // keeps its futex word).
    let _ = LOCK_HINTS.insert(&tid, &LockHint { addr, sp, ret }, 0);
    let key = in_process(addr);
    // SAFETY: only tested for presence.
    if unsafe { LOCK_HINT_ADDRS.get(&key) }.is_none() {
        let _ = LOCK_HINT_ADDRS.insert(&key, &[addr, u64::from(current_tgid())], 0);
    }
    0
}

#[uprobe]
pub fn lock_hint_exit(_ctx: ProbeContext) -> u32 {
    if let Some(tid) = target_tid() {
        let _ = LOCK_HINTS.remove(&tid);
    }
    0
}

/// Whether thread `tid` (the current task, about to sleep) is parking inside the slow path its
/// hint was taken in (see the module doc). Returns 1 if so, else 0 (for
/// `SchedWait::hinted`).
#[inline(always)]
pub fn live(tid: u32) -> u32 {
    if !on() {
        return 0;
    }
    // SAFETY: copied out at once.
    let Some(h) = (unsafe { LOCK_HINTS.get(&tid) }).copied() else {
        return 0;
    };
    // SAFETY: the current task's saved user registers (see `arch::user_reg`).
    let sp = unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        if regs.is_null() {
            u64::MAX
        } else {
            user_reg(regs, word::SP)
        }
    };
    if sp >= h.sp {
        return 0;
    }
    // SAFETY: a user-memory read the helper checks; a fault yields Err.
    let at = unsafe { bpf_probe_read_user(h.sp as *const u64) };
    u32::from(at == Ok(h.ret))
}

/// The word a wake row of a wake of thread `woken`'s park is keyed by: the lock its hint
/// names while it has one (so the lock's releasers are found by its address, as the waits'
/// rows are), else the futex word woken (`uaddr`, the thread's own parking word).
#[inline(always)]
pub fn wake_word(woken: u32, uaddr: u64) -> u64 {
    if woken == 0 || !on() {
        return uaddr;
    }
    // SAFETY: copied out at once.
    unsafe { LOCK_HINTS.get(&woken) }.map_or(uaddr, |h| h.addr)
}

/// For a wait whose switch-out found a live hint (`hinted` nonzero): names the hinted lock in
/// `key` instead of the futex word. `key.tid`'s hint cannot have changed: it slept meanwhile.
#[inline(always)]
pub fn apply(hinted: u32, key: &mut WaitKey) {
    if hinted == 0 {
        return;
    }
    // SAFETY: copied out at once.
    if let Some(h) = unsafe { LOCK_HINTS.get(&key.tid) } {
        key.uaddr = h.addr;
        key.flags |= LOCK_HINTED;
    }
}
