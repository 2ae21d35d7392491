//! Goroutine-level contention in Go targets. A goroutine blocked on a sync.Mutex or RWMutex
//! parks in the Go scheduler without a futex call, inside `sync.runtime_SemacquireMutex`. An
//! entry uprobe stamps the goroutine (its `g`, in R14 under the register ABI: goroutines move
//! between threads) with the time and its stack; uprobes on each of the function's return
//! instructions (user space finds them by disassembly; never uretprobes on Go) record the
//! wait in the same aggregate rows as futex waits, as op `go semacquire`. Holder blame: the
//! acquire reads its map's phase clock at entry, and again when the goroutine is readied.
use aya_ebpf::{
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::bpf_get_attach_cookie,
    },
    macros::uprobe,
    programs::ProbeContext,
    EbpfContext,
};
use tracer_common::{
    Counter, GoCall, GoFrame, GoRef, GoStack, OpKind, Outcome, WaitKey, GO_CALLER_SLOTS, NO_STACK,
    NUM_PHASES,
};

use crate::phase;

use crate::filter::current_tgid;
use crate::futex::{target_tid, Res};
use crate::maps::{bump, GO_CALLERS, GO_INFLIGHT, GO_SAMPLE};
use crate::rows::record_wait;
use crate::stack;

#[uprobe]
pub fn go_sema_enter(ctx: ProbeContext) -> u32 {
    let _ = try_go_sema_enter(&ctx);
    0
}

fn try_go_sema_enter(ctx: &ProbeContext) -> Res {
    if target_tid().is_none() {
        return Ok(());
    }
    // SAFETY: `regs` is the probed thread's saved user registers, valid for this program;
    // the helper reads the cookie set at attach.
    let (g, sema, at) = unsafe {
        (
            (*ctx.regs).r14,
            (*ctx.regs).rax,
            GoStack::from_u64(bpf_get_attach_cookie(ctx.as_ptr())),
        )
    };
    if !chosen() {
        return Ok(());
    }
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let (stack_id, leaf_ret) = match at {
        GoStack::AtEntry => stack::capture(ctx),
        GoStack::AtPark => (NO_STACK, 0),
    };
    let clock = phase::read_clock(g, sema);
    let call = GoCall {
        start_ns: now,
        stack_id,
        leaf_ret,
        uaddr: sema,
        ready_ns: 0,
        clock,
        blamed: [0; NUM_PHASES],
        park_ns: 0,
    };
    // A goroutine is in one acquire at a time: an entry left by a missed return is replaced.
    if GO_INFLIGHT.insert(g, &call, 0).is_err() {
        bump(Counter::InflightFull);
    }
    Ok(())
}

/// Whether to follow a wait that begins now.
#[inline(always)]
fn chosen() -> bool {
    match GO_SAMPLE.get(0).copied().unwrap_or(0) {
        0 => true,
        // SAFETY: a helper with no preconditions.
        threshold => (unsafe { bpf_get_prandom_u32() }) < threshold,
    }
}

/// Precise mode: the semaphore code's slow path, at the top of its queue-and-park loop (its
/// call to lock the semaphore root), just after Go's block profile starts its clock. The
/// first pass begins the wait; a pass after a wake that lost the race goes on with it. The
/// fast paths hit no probe. The semaphore address comes from the frame's spill slot. The
/// stack is taken here, before the goroutine queues: taken on the way out (`go_sema_exit`),
/// it ran inside the caller's critical section (a writer that waited for readers already
/// holds the RWMutex there), and BenchmarkRWMutexWrite100 ran 21-24 ns/op traced instead of
/// 14-18.
#[uprobe]
pub fn go_sema_park(ctx: ProbeContext) -> u32 {
    let _ = try_go_sema_begin(&ctx);
    0
}

fn try_go_sema_begin(ctx: &ProbeContext) -> Res {
    if target_tid().is_none() {
        return Ok(());
    }
    // SAFETY: `regs` is the probed thread's saved user registers, valid for this program.
    let (g, sp) = unsafe { ((*ctx.regs).r14, (*ctx.regs).rsp) };
    // A goroutine already in this acquire goes on waiting.
    if GO_INFLIGHT.get_ptr(g).is_some() || !chosen() {
        return Ok(());
    }
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let frame = GoFrame::from_cookie(cookie(ctx));
    // SAFETY: user stack reads through the checked helper.
    let (ret, sema) = unsafe {
        (
            bpf_probe_read_user((sp + u64::from(frame.ret_at)) as *const u64).unwrap_or(0),
            bpf_probe_read_user((sp + u64::from(frame.sema_at)) as *const u64).unwrap_or(0),
        )
    };
    if !from_sync_acquire(ret) {
        return Ok(());
    }
    let call = GoCall {
        start_ns: now,
        stack_id: stack::capture_id(ctx),
        leaf_ret: 0,
        uaddr: sema,
        ready_ns: 0,
        clock: phase::read_clock(g, sema),
        blamed: [0; NUM_PHASES],
        park_ns: 0,
    };
    if GO_INFLIGHT.insert(g, &call, 0).is_err() {
        bump(Counter::InflightFull);
    }
    Ok(())
}

/// True if `ret` returns into one of the `sync` acquires.
#[inline(always)]
fn from_sync_acquire(ret: u64) -> bool {
    let mut i = 0;
    while i < GO_CALLER_SLOTS {
        match GO_CALLERS.get(i) {
            Some(&a) if a == ret && a != 0 => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

#[uprobe]
pub fn go_sema_exit(ctx: ProbeContext) -> u32 {
    let _ = try_go_sema_exit(&ctx);
    0
}

fn try_go_sema_exit(ctx: &ProbeContext) -> Res {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    // SAFETY: as above.
    let g = unsafe { (*ctx.regs).r14 };
    // SAFETY: copied out at once, before the entry is removed.
    let Some(call) = (unsafe { GO_INFLIGHT.get(g) }).copied() else {
        return Ok(());
    };
    let _ = GO_INFLIGHT.remove(g);
    // Never made runnable: the semaphore was taken without parking. Not a wait (Go's block
    // profile leaves these out too).
    if call.ready_ns == 0 {
        return Ok(());
    }
    // Taken at the wait's start (precise mode) or here (a fallback entry probe that had no
    // stack): the goroutine is still inside the acquire.
    let stack_id = if call.stack_id == NO_STACK {
        stack::capture_id(ctx)
    } else {
        call.stack_id
    };
    // The wait ended when the goroutine was last made runnable.
    let waited = call.ready_ns.saturating_sub(wait_start(&call));
    let key = WaitKey {
        stack_id,
        waker_id: NO_STACK,
        uaddr: call.uaddr,
        leaf_ret: call.leaf_ret,
        tid,
        kind: OpKind::GoSemacquire as u32,
        flags: 0,
        tgid: current_tgid(),
    };
    bump(Counter::Slept);
    record_wait(&key, waited, &call.blamed, Outcome::Woken)
}

/// A goroutine `gp` is readied: at `readyWithTime`'s call of `goready(gp)` (Go 1.19: `gp` in
/// RAX) or of `systemstack` with the inlined `goready`'s closure (Go 1.21+: `gp` captured in
/// it), or, where neither is found, at `runtime.ready(gp)` (every goroutine made runnable). If
/// `gp` is one of ours in a semaphore acquire, its wait ends now. The last ready wins: a goroutine woken while another barges in re-parks
/// inside the same acquire, and its wait goes on (Go's block profile counts it the same way).
#[uprobe]
pub fn go_ready(ctx: ProbeContext) -> u32 {
    if target_tid().is_none() {
        return 0;
    }
    // The clock is read before the goroutine is: reading it from the closure (a user memory
    // read) took ~250 ns per wait on this machine, which the wait then counted.
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let gp = goroutine(&ctx);
    if let Some(call) = GO_INFLIGHT.get_ptr_mut(gp) {
        // SAFETY: a map value we only write these fields of; `gp` is parked, so nothing else
        // readies it at the same time.
        unsafe {
            (*call).ready_ns = now;
            (*call).blamed =
                phase::split(gp, (*call).uaddr, &(*call).clock, wait_start(&*call), now);
        }
    }
    0
}

/// Bytes from a Go closure's start (its function pointer) to its first captured variable.
const CLOSURE_FIRST_CAPTURE: u64 = 8;

/// The goroutine a ready or park probe is about, as its attach cookie says where to find it.
#[inline(always)]
fn goroutine(ctx: &ProbeContext) -> u64 {
    // SAFETY: the helper reads the cookie set at attach; `regs` is the probed thread's saved
    // user registers; user memory is read only through the checked helper.
    unsafe {
        // Both registers are read, then one is chosen: a load at a computed offset into the
        // context is something the verifier refuses.
        let (rax, r14) = (
            core::ptr::read_volatile(&(*ctx.regs).rax),
            core::ptr::read_volatile(&(*ctx.regs).r14),
        );
        match GoRef::from_u64(cookie(ctx)) {
            GoRef::GInRax => rax,
            GoRef::Current => r14,
            // The closure is on the readying goroutine's stack: a checked user read (0, which
            // no goroutine is keyed by, if it fails).
            GoRef::ClosureGInRax => {
                bpf_probe_read_user((rax + CLOSURE_FIRST_CAPTURE) as *const u64).unwrap_or(0)
            }
        }
    }
}

/// Where a goroutine's wait starts: its first park, or (if that was not seen) the acquire's
/// entry.
#[inline(always)]
fn wait_start(call: &GoCall) -> u64 {
    if call.park_ns != 0 {
        call.park_ns
    } else {
        call.start_ns
    }
}

/// A goroutine parks: at the call to `gopark` inside `runtime.semacquire1` (semaphore parks
/// only) or, where that is not found, `runtime.park_m(gp)` (every park). If it is one of ours
/// in a semaphore acquire, its wait starts now (the first park counts; a re-park after losing
/// the race keeps waiting).
#[uprobe]
pub fn go_park(ctx: ProbeContext) -> u32 {
    if target_tid().is_none() {
        return 0;
    }
    let gp = goroutine(&ctx);
    if let Some(call) = GO_INFLIGHT.get_ptr_mut(gp) {
        // SAFETY: a map value; only `gp`'s own thread writes these fields, before it parks.
        unsafe {
            if (*call).park_ns == 0 {
                (*call).park_ns = bpf_ktime_get_ns();
            }
            // On the goroutine's own stack (the semaphore code's park): the acquire's stack,
            // taken once. The word at SP mid-function is no return address: no leaf.
            if (*call).stack_id == NO_STACK && GoRef::from_u64(cookie(&ctx)) == GoRef::Current {
                (*call).stack_id = stack::capture_id(&ctx);
            }
        }
    }
    0
}

#[inline(always)]
fn cookie(ctx: &ProbeContext) -> u64 {
    // SAFETY: the helper reads the cookie set at attach; it has no preconditions.
    unsafe { bpf_get_attach_cookie(ctx.as_ptr()) }
}
