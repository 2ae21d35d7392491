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
//! Only function entries are probed (never uretprobes); user space checks each address.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::uprobe, programs::ProbeContext};
use tracer_common::{Counter, OpKind, Outcome, WaitKey, NO_STACK, NUM_PHASES};

use crate::filter::{current_tgid, target_tid};
use crate::maps::{bump, TOKIO_INFLIGHT};
use crate::rows::record_wait;
use crate::stack;

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

#[uprobe]
pub fn tokio_poll(ctx: ProbeContext) -> u32 {
    if target_tid().is_none() {
        return 0;
    }
    // SAFETY: `regs` is the probed thread's saved user registers; RDI is `self`.
    let acquire = unsafe { (*ctx.regs).rdi };
    if let Some(call) = TOKIO_INFLIGHT.get_ptr_mut(acquire) {
        // SAFETY: a map value; one task polls its own `Acquire`, one poll at a time.
        unsafe {
            if (*call).pending == 0 {
                (*call).pending = 1;
                let (id, leaf) = stack::capture(&ctx);
                (*call).stack_id = id;
                (*call).leaf_ret = leaf;
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
    let acquire = unsafe { (*ctx.regs).rdi };
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
    let key = WaitKey {
        stack_id: call.stack_id,
        waker_id: NO_STACK,
        uaddr: 0,
        leaf_ret: call.leaf_ret,
        tid,
        kind: OpKind::TokioAcquire as u32,
        flags: 0,
        tgid: current_tgid(),
    };
    bump(Counter::Slept);
    let _ = record_wait(&key, waited, &[0; NUM_PHASES], Outcome::Woken);
    0
}
