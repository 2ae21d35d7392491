//! futex syscall probes: pair entry and exit per thread, aggregate waits and wakes by stack.
//!
//! Entry does the minimum (filter by tgid, classify, stamp the time); waits capture their stack
//! only at exit and only if they really slept, so EAGAIN returns stay cheap.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    classify_futex_op, hist_bucket, is_wait_kind, Counter, InFlight, LastWaker, OpKind, Outcome,
    WaitKey, WakeKey, WakeStats, NO_STACK, NUM_PHASES,
};

use crate::{
    maps::{bump, INFLIGHT, LAST_WAKER, SCRATCH, WAITS, WAKES},
    phase, snapshot, stack,
};

/// Process to trace; set by user space before load.
#[no_mangle]
static TARGET_TGID: u32 = 0;

// Field offsets, from /sys/kernel/tracing/events/syscalls/*/format.
const ARG0: usize = 16;
const ARG1: usize = 24;
const EXIT_RET: usize = 16;
/// `struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 reserved; }`
const WAITV_UADDR: usize = 8;

pub type Res = Result<(), i64>;

#[inline(always)]
pub fn target_tid() -> Option<u32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: a plain read of a static; volatile so the compiler cannot fold the 0 it was
    // compiled with (user space rewrites it before load).
    let target = unsafe { core::ptr::read_volatile(&TARGET_TGID) };
    if (pid_tgid >> 32) as u32 == target {
        Some(pid_tgid as u32)
    } else {
        None
    }
}

#[inline(always)]
fn arg(ctx: &TracePointContext, offset: usize) -> Result<u64, i64> {
    // SAFETY: offsets come from the tracepoints' format files; the read is bounds-checked.
    unsafe { ctx.read_at::<u64>(offset) }.map_err(|e| e as i64)
}

#[tracepoint]
pub fn futex_enter(ctx: TracePointContext) -> u32 {
    let _ = try_futex_enter(&ctx);
    0
}

fn try_futex_enter(ctx: &TracePointContext) -> Res {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    bump(Counter::Calls);
    let Some(kind) = classify_futex_op(arg(ctx, ARG1)? as u32) else {
        return Ok(());
    };
    on_enter(ctx, tid, kind, arg(ctx, ARG0)?)
}

#[tracepoint]
pub fn futex_wait_enter(ctx: TracePointContext) -> u32 {
    let _ = try_futex2_enter(&ctx, OpKind::Wait2);
    0
}

#[tracepoint]
pub fn futex_wake_enter(ctx: TracePointContext) -> u32 {
    let _ = try_futex2_enter(&ctx, OpKind::Wake2);
    0
}

fn try_futex2_enter(ctx: &TracePointContext, kind: OpKind) -> Res {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    bump(Counter::Calls);
    on_enter(ctx, tid, kind, arg(ctx, ARG0)?)
}

#[tracepoint]
pub fn futex_waitv_enter(ctx: TracePointContext) -> u32 {
    let _ = try_futex_waitv_enter(&ctx);
    0
}

fn try_futex_waitv_enter(ctx: &TracePointContext) -> Res {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    bump(Counter::Calls);
    let waiters = arg(ctx, ARG0)?;
    // SAFETY: a user pointer read through the checked helper.
    let uaddr =
        unsafe { bpf_probe_read_user((waiters as usize + WAITV_UADDR) as *const u64) }.unwrap_or(0);
    on_enter(ctx, tid, OpKind::Waitv, uaddr)
}

#[inline(always)]
fn on_enter(ctx: &TracePointContext, tid: u32, kind: OpKind, uaddr: u64) -> Res {
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut call = InFlight {
        start_ns: now,
        uaddr,
        kind: kind as u32,
        ..InFlight::default()
    };
    if kind.is_wait() {
        bump(Counter::WaitEnters);
        call.clock = phase::read_clock(u64::from(tid), uaddr);
    } else {
        bump(Counter::WakeEnters);
        // The waker's stack is taken now, before any waiter runs, so the waiter's exit can
        // name it.
        let (stack_id, leaf_ret) = stack::capture(ctx);
        call.stack_id = stack_id;
        call.leaf_ret = leaf_ret;
        let waker = LastWaker {
            stack_id,
            ts_ns: now,
            tid,
            _pad: 0,
        };
        if LAST_WAKER.insert(uaddr, waker, 0).is_err() {
            bump(Counter::WakerMapFull);
        }
        phase::learn_lock(u64::from(tid), uaddr);
    }
    if INFLIGHT.insert(tid, call, 0).is_err() {
        bump(Counter::InflightFull);
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
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    let Some(call) = INFLIGHT.get_ptr(tid) else {
        bump(Counter::ExitWithoutEnter);
        return Ok(());
    };
    // SAFETY: copied out before the entry is removed.
    let call = unsafe { *call };
    let _ = INFLIGHT.remove(tid);
    let ret = arg(ctx, EXIT_RET)? as i64;
    if is_wait_kind(call.kind) {
        on_wait_exit(ctx, tid, &call, ret)
    } else {
        on_wake_exit(tid, &call, ret)
    }
}

#[inline(always)]
fn on_wait_exit(ctx: &TracePointContext, tid: u32, call: &InFlight, ret: i64) -> Res {
    // SAFETY: a helper with no preconditions.
    let waited = unsafe { bpf_ktime_get_ns() }.saturating_sub(call.start_ns);
    let outcome = Outcome::of_wait(ret);
    if outcome == Outcome::Again {
        bump(Counter::Eagain);
        return Ok(());
    }
    bump(Counter::Slept);
    let (stack_id, leaf_ret) = stack::capture(ctx);
    let (waker_stack_id, blamed) = if outcome == Outcome::Woken {
        // SAFETY: copied out at once; an LRU entry may be recycled later.
        let stack = unsafe { LAST_WAKER.get(call.uaddr) }.map_or(NO_STACK, |w| w.stack_id);
        let end = call.start_ns + waited;
        (
            stack,
            phase::split(u64::from(tid), call.uaddr, &call.clock, call.start_ns, end),
        )
    } else {
        (NO_STACK, [0; NUM_PHASES])
    };
    let key = WaitKey {
        stack_id,
        waker_stack_id,
        uaddr: call.uaddr,
        leaf_ret,
        tid,
        kind: call.kind,
        _pad: [0; 2],
    };
    record_wait(&key, waited, &blamed, outcome)
}

/// Adds one finished wait, with the ns each holder phase is blamed for, to its aggregate row
/// (and, in DWARF mode, sends its snapshot).
#[inline(always)]
pub fn record_wait(
    key: &WaitKey,
    waited: u64,
    blamed: &[u64; NUM_PHASES],
    outcome: Outcome,
) -> Res {
    let row = match WAITS.get_ptr_mut(*key) {
        Some(row) => row,
        None => {
            let Some(scratch) = SCRATCH.get_ptr(0) else {
                return Ok(());
            };
            // SAFETY: `zero_wait` is never written, so it is an all-zero WaitStats.
            let zero = unsafe { &(*scratch).zero_wait };
            let _ = WAITS.insert(*key, zero, BPF_NOEXIST as u64);
            match WAITS.get_ptr_mut(*key) {
                Some(row) => row,
                None => {
                    bump(Counter::WaitMapFull);
                    return Ok(());
                }
            }
        }
    };
    // SAFETY: this CPU's copy of a per-CPU value; no other writer while we run.
    let row = unsafe { &mut *row };
    match outcome {
        Outcome::Woken | Outcome::Interrupted => {
            // Only waits counted as contention need a better stack.
            snapshot::emit(key, waited);
            row.count += 1;
            row.total_ns += waited;
            if waited > row.max_ns {
                row.max_ns = waited;
            }
            let b = hist_bucket(waited);
            if let Some(slot) = row.hist.get_mut(b) {
                *slot += 1;
            }
            if outcome == Outcome::Interrupted {
                row.interrupted += 1;
            }
            let mut i = 0;
            let mut sum = 0;
            while i < NUM_PHASES {
                if blamed[i] > 0 {
                    row.blamed_ns[i] += blamed[i];
                    row.blamed_waits[i] += 1;
                    sum += blamed[i];
                }
                i += 1;
            }
            if sum >= waited && waited > 0 {
                row.covered += 1;
            }
        }
        Outcome::TimedOut => {
            row.timeouts += 1;
            row.timeout_ns += waited;
        }
        Outcome::Error | Outcome::Again => row.errors += 1,
    }
    Ok(())
}

#[inline(always)]
fn on_wake_exit(tid: u32, call: &InFlight, ret: i64) -> Res {
    let key = WakeKey {
        stack_id: call.stack_id,
        uaddr: call.uaddr,
        leaf_ret: call.leaf_ret,
        tid,
        kind: call.kind,
    };
    let row = match WAKES.get_ptr_mut(key) {
        Some(row) => row,
        None => {
            let _ = WAKES.insert(key, WakeStats::default(), BPF_NOEXIST as u64);
            match WAKES.get_ptr_mut(key) {
                Some(row) => row,
                None => {
                    bump(Counter::WakeMapFull);
                    return Ok(());
                }
            }
        }
    };
    // SAFETY: this CPU's copy of a per-CPU value; no other writer while we run.
    let row = unsafe { &mut *row };
    row.calls += 1;
    if ret > 0 {
        row.woken += ret as u64;
    } else {
        row.empty += 1;
    }
    Ok(())
}
