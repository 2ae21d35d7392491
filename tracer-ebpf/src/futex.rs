//! futex syscall probes: pair entry and exit per thread, aggregate waits and wakes by stack.
//!
//! Only what the data needs is paid for. Each call keeps its arguments in its thread's slot
//! of an array (no hash insert or delete per call). A wait's entry stamps the time; its exit
//! takes a stack only if it really slept, so EAGAIN returns stay cheap. A wake takes a stack
//! only at its exit, and only if it woke someone. The waiter then finds that waker's stack, or, if the
//! waiter's exit ran first, leaves its wait for the waker to record (`handoff`).
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use aya_log_ebpf::debug;
use tracer_common::{
    classify_futex_op, futex::IGNORED_OP, inflight_slot, is_wait_kind, waker_id, Counter, InFlight,
    LastWaker, OpKind, Outcome, WaitKey, WakeKey, HANDED_OFF, NO_STACK, NUM_PHASES,
};

use crate::{
    filter::current_tgid,
    handoff::{self, Left},
    maps::{bump, INFLIGHT, LAST_WAKER},
    phase, rows, snapshot, stack,
};

// Field offsets, from /sys/kernel/tracing/events/syscalls/*/format.
const ARG0: usize = 16;
const ARG1: usize = 24;
const EXIT_RET: usize = 16;
/// `struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 reserved; }`
const WAITV_UADDR: usize = 8;

pub type Res = Result<(), i64>;

pub use crate::filter::target_tid;

#[inline(always)]
fn arg(ctx: &TracePointContext, offset: usize) -> Result<u64, i64> {
    // A direct load: a tracepoint program may read its record in place, which costs no helper
    // call (bpf_probe_read_kernel, aya's `read_at`, took a measurable share of an EAGAIN
    // wait's cost).
    // SAFETY: offsets come from the syscall tracepoints' format files (8-byte fields inside
    // the record); the verifier checks the access against the context's size.
    Ok(unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(offset) as *const u64) })
}

#[tracepoint]
pub fn futex_enter(ctx: TracePointContext) -> u32 {
    let _ = enter(|| Ok((Op::Classic(arg(&ctx, ARG1)? as u32), arg(&ctx, ARG0)?)));
    0
}

#[tracepoint]
pub fn futex_wait_enter(ctx: TracePointContext) -> u32 {
    let _ = enter(|| Ok((Op::Futex2(OpKind::Wait2), arg(&ctx, ARG0)?)));
    0
}

#[tracepoint]
pub fn futex_wake_enter(ctx: TracePointContext) -> u32 {
    let _ = enter(|| Ok((Op::Futex2(OpKind::Wake2), arg(&ctx, ARG0)?)));
    0
}

#[tracepoint]
pub fn futex_waitv_enter(ctx: TracePointContext) -> u32 {
    let _ = enter(|| Ok((Op::Futex2(OpKind::Waitv), first_uaddr(arg(&ctx, ARG0)?))));
    0
}

/// The operation a futex entry hook sees.
pub enum Op {
    /// futex(2), with its raw `op` argument.
    Classic(u32),
    /// One of the futex2 calls (`futex_wait`, `futex_wake`, `futex_waitv`).
    Futex2(OpKind),
}

/// The entry preamble every futex entry hook shares, syscall tracepoints and BPF trampolines
/// alike: the target filter, the call count, the op's classification, then [`on_enter`].
/// `call` reads the op and the futex word from the hook's context; it runs only for a traced
/// thread, so untraced ones pay the filter alone.
#[inline(always)]
pub fn enter(call: impl FnOnce() -> Result<(Op, u64), i64>) -> Res {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    bump(Counter::Calls);
    let (op, uaddr) = call()?;
    let kind = match op {
        Op::Futex2(kind) => kind,
        Op::Classic(op) => match classify_futex_op(op) {
            Some(kind) => kind,
            None => {
                debug!(&(), "futex op {} neither waits nor wakes: not traced", op);
                // Its exit is then known for what it is, not taken for a call from before
                // attach.
                if let Some(slot) = claim_slot(tid) {
                    // SAFETY: this thread's slot (see claim_slot).
                    unsafe { (*slot).kind = IGNORED_OP };
                }
                return Ok(());
            }
        },
    };
    on_enter(tid, kind, uaddr)
}

/// futex_waitv(2): the first futex word of the vector `waiters` (the one recorded).
#[inline(always)]
pub fn first_uaddr(waiters: u64) -> u64 {
    // SAFETY: a user pointer read through the checked helper.
    unsafe { bpf_probe_read_user((waiters as usize + WAITV_UADDR) as *const u64) }.unwrap_or(0)
}

/// Thread `tid`'s [`INFLIGHT`] slot, taken for a call that begins now (the tid is written; the
/// caller fills in the rest). A slot still holding another thread's call (two tids that share
/// a slot) is taken over: that call is lost, and counted as [`Counter::InflightFull`].
#[inline(always)]
pub fn claim_slot(tid: u32) -> Option<*mut InFlight> {
    let slot = INFLIGHT.get_ptr_mut(inflight_slot(tid))?;
    // SAFETY: the slot of this thread's tid; only this thread's calls write it (a thread whose
    // tid shares the slot and is in a call at the same time is counted here, and caught at
    // its exit by the tid).
    unsafe {
        let held = (*slot).tid;
        if held != 0 && held != tid {
            bump(Counter::InflightFull);
        }
        (*slot).tid = tid;
    }
    Some(slot)
}

/// A futex call of the target's thread `tid` begins.
#[inline(always)]
pub fn on_enter(tid: u32, kind: OpKind, uaddr: u64) -> Res {
    let Some(slot) = claim_slot(tid) else {
        return Ok(());
    };
    // SAFETY: this thread's slot (see claim_slot).
    let slot = unsafe { &mut *slot };
    slot.kind = kind as u32;
    slot.uaddr = uaddr;
    if kind.is_wait() {
        bump(Counter::WaitEnters);
        // SAFETY: a helper with no preconditions.
        slot.start_ns = unsafe { bpf_ktime_get_ns() };
        if phase::on() {
            slot.clock = phase::read_clock(u64::from(tid), uaddr);
        } else {
            // Marks the clock unread without writing all of it.
            slot.clock.map = 0;
        }
    } else {
        bump(Counter::WakeEnters);
    }
    Ok(())
}

/// One program serves every futex exit tracepoint: they all carry just `ret`.
#[tracepoint]
pub fn futex_exit(ctx: TracePointContext) -> u32 {
    let _ = try_futex_exit(&ctx);
    0
}

fn try_futex_exit(ctx: &TracePointContext) -> Res {
    on_exit(ctx, arg(ctx, EXIT_RET)? as i64)
}

/// A futex call of the target ends with `ret`; `ctx` is the probe's (for the user stack).
#[inline(always)]
pub fn on_exit<C: EbpfContext>(ctx: &C, ret: i64) -> Res {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let Some(slot) = INFLIGHT.get_ptr_mut(inflight_slot(tid)) else {
        return Ok(());
    };
    // SAFETY: this thread's slot (see on_enter); copied out, then freed.
    let call = unsafe {
        if (*slot).tid != tid {
            // A call from before tracing began, or one whose slot another thread took.
            bump(Counter::ExitWithoutEnter);
            return Ok(());
        }
        (*slot).tid = 0;
        *slot
    };
    if call.kind == IGNORED_OP {
        return Ok(());
    }
    if is_wait_kind(call.kind) {
        on_wait_exit(ctx, tid, &call, ret)
    } else {
        on_wake_exit(ctx, tid, call.kind, call.uaddr, ret)
    }
}

#[inline(always)]
fn on_wait_exit<C: EbpfContext>(ctx: &C, tid: u32, call: &InFlight, ret: i64) -> Res {
    let outcome = Outcome::of_wait(ret);
    if outcome == Outcome::Again {
        bump(Counter::Eagain);
        return Ok(());
    }
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let waited = now.saturating_sub(call.start_ns);
    bump(Counter::Slept);
    let (stack_id, leaf_ret) = stack::capture(ctx);
    let mut key = WaitKey {
        stack_id,
        waker_id: NO_STACK,
        uaddr: call.uaddr,
        leaf_ret,
        tid,
        kind: call.kind,
        flags: 0,
        tgid: current_tgid(),
    };
    if outcome != Outcome::Woken {
        return rows::record_wait(&key, waited, &[0; NUM_PHASES], outcome);
    }
    let blamed = phase::split(u64::from(tid), call.uaddr, &call.clock, call.start_ns, now);
    if let Some(waker) = handoff::waker_since(call.uaddr, call.start_ns) {
        key.waker_id = waker;
        return rows::record_wait(&key, waited, &blamed, outcome);
    }
    // Woken, but the waker's exit has not run yet.
    match handoff::leave(&key, waited, call.start_ns, &blamed, outcome) {
        Left::Back(waker) => {
            key.waker_id = waker;
            rows::record_wait(&key, waited, &blamed, outcome)
        }
        Left::Taken(waker) => {
            key.waker_id = waker;
            key.flags = HANDED_OFF;
            snapshot::emit(&key, waited);
            Ok(())
        }
        // The snapshot goes without its waker; user space pairs it with the waker's row.
        Left::Waiting => {
            key.flags = HANDED_OFF;
            snapshot::emit(&key, waited);
            Ok(())
        }
        Left::Full => rows::record_wait(&key, waited, &blamed, outcome),
    }
}

/// A wake's exit. One that woke nobody is only counted; one that woke someone takes its
/// stack, becomes its futex word's last waker, and records any wait its waiter left.
#[inline(always)]
fn on_wake_exit<C: EbpfContext>(ctx: &C, tid: u32, kind: u32, uaddr: u64, ret: i64) -> Res {
    if ret <= 0 {
        bump(Counter::EmptyWakes);
        return Ok(());
    }
    let (stack_id, leaf_ret) = stack::capture(ctx);
    let id = waker_id(stack_id, leaf_ret);
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let waker = LastWaker {
        stack_id: id,
        ts_ns: now,
        tid,
        _pad: 0,
    };
    if LAST_WAKER.insert(uaddr, waker, 0).is_err() {
        bump(Counter::WakerMapFull);
    }
    handoff::settle(uaddr, id, now);
    phase::learn_lock(u64::from(tid), uaddr);
    let key = WakeKey {
        stack_id,
        uaddr,
        leaf_ret,
        tid,
        kind,
    };
    rows::add_wake(&key, ret as u64)
}
