//! Async lock waits in tokio targets. A task waiting on `tokio::sync::{Mutex, RwLock,
//! Semaphore}` parks no thread: its `batch_semaphore::Acquire` future queues a waiter node
//! and returns `Pending`. Two entry uprobes time it, keyed by the `Acquire`'s address (the
//! pinned future that holds the waiter node; the task may be polled on another worker each
//! time, so never by thread):
//! - `<Acquire as Future>::poll`: the first poll stamps the start; a second poll of the same
//!   `Acquire` proves the first returned `Pending` (a future is not polled after `Ready`), so
//!   the wait is real, and the task's poll stack (the same async chain down to the user's
//!   `async fn`) is taken then, once, so uncontended acquires never pay for a stack.
//! - `<Acquire as Drop>::drop`: the acquire is over (granted and completed, or cancelled);
//!   a wait that was seen pending is recorded as op `tokio acquire`.
//! - `Semaphore::release` (past its `added == 0` guard): who gave permits back, and when, by semaphore. The drop of a wait
//!   that was pending looks in its `Acquire` for the semaphore (the one word of it that is a
//!   semaphore released since the wait began) and takes that release as the one that granted
//!   it: for a `Mutex` no other release of it can come between the grant and the drop. The
//!   row gets the semaphore as its lock address and the releaser's stack as its waker, and a
//!   wake row for the releaser. The releaser's stack is taken only once the semaphore has had
//!   a waiter, so uncontended locks pay the trap alone.
//! Only function entries are probed (never uretprobes); user space checks each address.
//! Where fat LTO inlined `poll`, `tokio_poll_at` sits at the entry of each DWARF inline
//! instance instead and reads `self` from where its attach cookie says (a register, or a
//! word at a register plus an offset).
use aya_ebpf::{
    helpers::{
        bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
    },
    macros::uprobe,
    programs::ProbeContext,
    EbpfContext,
};
use tracer_common::{
    waker_id, Counter, OpKind, Outcome, WaitKey, WakeKey, NO_STACK, NUM_PHASES, SELF_IN_MEMORY,
};

use crate::filter::{current_tgid, target_tid};
use crate::maps::{bump, TOKIO_INFLIGHT, TOKIO_RELEASES};
use crate::rows::{add_wake, record_wait};
use crate::stack;

/// Words of an `Acquire` searched for its semaphore (it is 64 bytes in tokio 1.x: the waiter
/// node, the `&Semaphore`, the permits asked for and a flag, in an order rustc chooses).
const ACQUIRE_WORDS: usize = 8;

/// The last release of one semaphore.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TokioRelease {
    /// When (ns, boot clock).
    pub at_ns: u64,
    /// The releaser's stack ([`NO_STACK`] until the semaphore has had a waiter).
    pub stack_id: u64,
    /// The return address at SP then.
    pub leaf_ret: u64,
    pub tid: u32,
    /// 1 once a wait on it was seen: its releases take a stack from then on.
    pub contended: u32,
}

/// One `Acquire` in flight.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TokioCall {
    /// First poll (ns, boot clock).
    pub start_ns: u64,
    /// The poll stack, taken at the second poll; [`NO_STACK`] until then.
    pub stack_id: u64,
    /// The return address at SP at that poll (the caller the frame walk skips).
    pub leaf_ret: u64,
    /// 1 once polled again: the first poll returned `Pending`.
    pub pending: u64,
}

/// A user address as the key of this process's entry: the agent traces many processes, whose
/// heaps may hold the same address. x86-64 user addresses fit in 47 bits, above which go the
/// tgid's low 17 bits (two processes whose tgids differ only above those can still meet).
#[inline(always)]
pub(crate) fn in_process(addr: u64) -> u64 {
    addr ^ (u64::from(current_tgid()) << 47)
}

#[uprobe]
pub fn tokio_poll(ctx: ProbeContext) -> u32 {
    if target_tid().is_none() {
        return 0;
    }
    // SAFETY: `regs` is the probed thread's saved user registers; RDI is `self`.
    poll(&ctx, unsafe { (*ctx.regs).rdi }, Probed::AtEntry)
}

/// `Acquire::poll` inlined (fat LTO): a probe at the entry of one inline instance, whose
/// attach cookie says where `self` (the `Acquire`'s address) is there, from DWARF.
#[uprobe]
pub fn tokio_poll_at(ctx: ProbeContext) -> u32 {
    if target_tid().is_none() {
        return 0;
    }
    match self_from_cookie(&ctx) {
        Some(acquire) => poll(&ctx, acquire, Probed::Inside),
        None => 0,
    }
}

/// `self` at an inline site, where the probe's attach cookie says it is (`None`: unreadable).
#[inline(always)]
fn self_from_cookie(ctx: &ProbeContext) -> Option<u64> {
    // SAFETY: a helper reading the cookie user space attached this probe with.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let reg = pt_regs_word(ctx, cookie & 0xff)?;
    let v = if cookie & SELF_IN_MEMORY != 0 {
        let at = reg.wrapping_add((cookie >> 32) as i32 as i64 as u64);
        // SAFETY: a user-memory read the helper checks; a fault yields Err.
        unsafe { bpf_probe_read_user(at as *const u64) }.ok()?
    } else {
        reg
    };
    (v != 0).then_some(v)
}

/// Where a poll probe sits: at a function's entry, where the word at SP is the return
/// address into its caller, or inside a function (an inline site), where it is not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probed {
    AtEntry,
    Inside,
}

/// Word `n` of the probed thread's saved user registers (`struct pt_regs`, 21 words on
/// x86-64), copied whole first: a load from the context at a computed offset is refused.
#[inline(always)]
fn pt_regs_word(ctx: &ProbeContext, n: u64) -> Option<u64> {
    // SAFETY: `regs` points at the probed thread's saved user registers (21 words); the
    // helper checks the read.
    let regs = unsafe { bpf_probe_read_kernel(ctx.regs as *const [u64; 21]) }.ok()?;
    regs.get(n as usize).copied()
}

/// A poll of the `Acquire` at `addr`: the first stamps the start, the second takes the stack.
#[inline(always)]
fn poll(ctx: &ProbeContext, addr: u64, probed: Probed) -> u32 {
    let acquire = in_process(addr);
    if let Some(call) = TOKIO_INFLIGHT.get_ptr_mut(acquire) {
        // SAFETY: a map value; one task polls its own `Acquire`, one poll at a time.
        unsafe {
            if (*call).pending == 0 {
                (*call).pending = 1;
                let (id, leaf) = stack::capture(ctx);
                (*call).stack_id = id;
                (*call).leaf_ret = if probed == Probed::AtEntry { leaf } else { 0 };
            }
        }
        return 0;
    }
    let call = TokioCall {
        // SAFETY: a helper with no preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        stack_id: NO_STACK,
        leaf_ret: 0,
        pending: 0,
    };
    if TOKIO_INFLIGHT.insert(acquire, &call, 0).is_err() {
        bump(Counter::InflightFull);
    }
    0
}

#[uprobe]
pub fn tokio_drop(ctx: ProbeContext) -> u32 {
    let Some(tid) = target_tid() else {
        return 0;
    };
    // SAFETY: as above; RDI is `&mut self`, the same address the polls saw.
    let addr = unsafe { (*ctx.regs).rdi };
    let acquire = in_process(addr);
    // SAFETY: copied out at once, before the entry is removed.
    let Some(call) = (unsafe { TOKIO_INFLIGHT.get(acquire) }).copied() else {
        return 0;
    };
    let _ = TOKIO_INFLIGHT.remove(acquire);
    if call.pending == 0 {
        return 0;
    }
    // SAFETY: a helper with no preconditions.
    let waited = unsafe { bpf_ktime_get_ns() }.saturating_sub(call.start_ns);
    let (sem, release) = granted_by(addr, call.start_ns);
    let key = WaitKey {
        stack_id: call.stack_id,
        waker_id: release.map_or(NO_STACK, |r| waker_id(r.stack_id, r.leaf_ret)),
        uaddr: sem,
        leaf_ret: call.leaf_ret,
        tid,
        kind: OpKind::TokioAcquire as u32,
        flags: 0,
        tgid: current_tgid(),
    };
    bump(Counter::Slept);
    let _ = record_wait(&key, waited, &[0; NUM_PHASES], Outcome::Woken);
    if let Some(r) = release {
        let wake = WakeKey {
            stack_id: r.stack_id,
            uaddr: sem,
            leaf_ret: r.leaf_ret,
            tid: r.tid,
            kind: OpKind::TokioAcquire as u32,
        };
        let _ = add_wake(&wake, 1);
    }
    0
}

/// The semaphore `acquire` waits on and its last release, if it was released since `since`
/// (0 and `None` when no word of the `Acquire` is a semaphore seen released). Marks the
/// semaphore contended, so its releases take a stack from now on.
#[inline(always)]
fn granted_by(acquire: u64, since: u64) -> (u64, Option<TokioRelease>) {
    // SAFETY: a user-memory read the helper checks; a fault yields Err.
    let Ok(words) = (unsafe { bpf_probe_read_user(acquire as *const [u64; ACQUIRE_WORDS]) }) else {
        return (0, None);
    };
    for w in words {
        if w == 0 || w == acquire {
            continue;
        }
        if let Some(r) = TOKIO_RELEASES.get_ptr_mut(in_process(w)) {
            // SAFETY: a map value; racing releases of the same semaphore may tear it, which
            // at worst names another of its releasers.
            unsafe {
                if (*r).at_ns >= since {
                    (*r).contended = 1;
                    return (w, Some(*r));
                }
            }
        }
    }
    (0, None)
}

#[uprobe]
pub fn tokio_release(ctx: ProbeContext) -> u32 {
    let Some(tid) = target_tid() else {
        return 0;
    };
    // SAFETY: as above; RDI is `&self`, the semaphore, and RSI the permits given back
    // (`release(&self, added)`; user space places the probe where both are as at entry).
    let (sem, rem) = unsafe { ((*ctx.regs).rdi, (*ctx.regs).rsi) };
    // Nothing given back (where the probe is at the entry, not past the guard).
    if rem == 0 {
        return 0;
    }
    release(&ctx, sem, tid)
}

/// `Semaphore::release` inlined (fat LTO inlines it into the guards' drops): a probe at the
/// entry of one inline instance, `self` where its cookie says. The permits given back are
/// not read (the guards give back constants); a release of none is taken as a release.
#[uprobe]
pub fn tokio_release_at(ctx: ProbeContext) -> u32 {
    let Some(tid) = target_tid() else {
        return 0;
    };
    match self_from_cookie(&ctx) {
        Some(sem) => release(&ctx, sem, tid),
        None => 0,
    }
}

/// A release of the semaphore at `sem` by thread `tid`.
#[inline(always)]
fn release(ctx: &ProbeContext, sem: u64, tid: u32) -> u32 {
    let key = in_process(sem);
    // SAFETY: read at once; a map value.
    let contended = unsafe { TOKIO_RELEASES.get(key) }.map_or(0, |r| r.contended);
    let (stack_id, leaf_ret) = if contended != 0 {
        stack::capture_shallow(ctx)
    } else {
        (NO_STACK, 0)
    };
    let r = TokioRelease {
        // SAFETY: a helper with no preconditions.
        at_ns: unsafe { bpf_ktime_get_ns() },
        stack_id,
        leaf_ret,
        tid,
        contended,
    };
    if TOKIO_RELEASES.insert(key, &r, 0).is_err() {
        bump(Counter::MapInsertFailed);
    }
    0
}
