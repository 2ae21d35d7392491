//! Scheduler hooks: futex waits seen from `sched_switch` and `sched_waking` instead of the
//! syscall tracepoints, so no task on the host gets the syscall-work flag. Untraced tasks pay
//! one scalar tgid compare when they leave the CPU, and a read of their tid and one array load
//! when they are switched in or woken.
//!
//! - A target thread that leaves the CPU asleep (not preempted) while its saved user registers
//!   show it inside a futex wait call begins a wait there: its futex word, start time and user
//!   stack (it is still `current`). The wait goes in its tid's [`INFLIGHT`] slot, as on the
//!   syscall path; the sleep goes in its tid's slot of [`SCHED_TASKS`] (`tasks`).
//! - `sched_waking` runs in the waker's context: if the woken task is such a waiter, the
//!   waker's registers say whether it is in a futex wake (its stack is then taken, and its
//!   wake row counted), in a signal-sending call (the wait was interrupted), or neither: a
//!   timer if the wait had a timeout (recorded as a timeout), else the kernel (e.g. the wake
//!   of a `pthread_join` at thread exit: woken, waker unknown).
//! - The wait ends when the task is switched in again.
//!
//! In DWARF mode the waiter's stack copy goes at its switch-out and a header-only record at
//! its end; user space joins them by (tid, start).
//!
//! Not seen here: waits that returned at once (EAGAIN) or were woken before they slept, and
//! wakes that woke nobody. `--hooks syscalls` counts those.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{
    inflight_slot, waker_id, Counter, OpKind, Outcome, SchedWait, WaitKey, WakeKey, NO_STACK,
    NUM_PHASES, SCHED_NOT_WOKEN, SNAP_SWITCH_OUT, TIMED_OUT_SNAPSHOT,
};

use crate::{
    filter::current_tgid,
    futex::{claim_slot, target_tid},
    lockhint,
    maps::{bump, INFLIGHT, RESTARTABLE, SEEDED},
    phase, rows, snapshot, stack,
};

/// `TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE` (include/linux/sched.h).
const TASK_SLEEPING: u32 = 0x3;

mod early;
mod regs;
mod tasks;
pub use early::EarlyWake;
use regs::{current_call, waiting_word_of, Call, Timed};

/// `sched_switch(bool preempt, task *prev, task *next, unsigned int prev_state)`; `prev` is
/// still `current` here.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    let preempt: u64 = ctx.arg(0);
    let next: u64 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    // Preemption inside the call is not a wait; a task still runnable did not sleep.
    if preempt & 0xff == 0 && (prev_state as u32) & TASK_SLEEPING != 0 {
        if let Some(tid) = target_tid() {
            switch_out(&ctx, tid);
        }
    }
    switch_in(next);
    0
}

#[inline(always)]
fn switch_out(ctx: &BtfTracePointContext, tid: u32) {
    let (kind, uaddr, timed) = match current_call() {
        Call::Futex(kind, uaddr, timed) if kind.is_wait() => (kind, uaddr, timed),
        Call::Restart => {
            // SAFETY: copied out at once.
            let Some(w) = (unsafe { RESTARTABLE.get(&tid) }).copied() else {
                return;
            };
            let _ = RESTARTABLE.remove(&tid);
            // Only a timed wait restarts this way (an untimed one is re-entered as itself).
            match OpKind::from_u32(w[1] as u32) {
                Some(kind) => (kind, w[0], Timed::Yes),
                None => return,
            }
        }
        _ => return,
    };
    // A slot another thread's wait held is counted there (that wait is lost: its switch-in
    // finds the slot taken).
    let Some(slot) = claim_slot(tid) else {
        return;
    };
    bump(Counter::WaitEnters);
    // SAFETY: a helper with no preconditions.
    let start_ns = unsafe { bpf_ktime_get_ns() };
    // SAFETY: the slot of this thread's tid; only this thread's switch-out writes it, and only
    // its own switch-in (which cannot run meanwhile) frees it.
    unsafe {
        (*slot).kind = kind as u32;
        (*slot).uaddr = uaddr;
        (*slot).start_ns = start_ns;
        if phase::on() {
            (*slot).clock = phase::read_clock(u64::from(tid), uaddr);
        } else {
            (*slot).clock.map = 0;
        }
    }
    // Visible to wakers before the stack is taken: a wake that runs before this insert (it
    // races the sleep) finds no waiter, and the stack walk is most of this program's time.
    // Snapshot modes: whether this process wants its stack copied (a lookup in set mode).
    let want = snapshot::wanted();
    let wait = SchedWait {
        waker_id: NO_STACK,
        stack_id: NO_STACK,
        leaf_ret: 0,
        claim: 0,
        tid,
        outcome: SCHED_NOT_WOKEN,
        timed: (timed == Timed::Yes) as u32,
        snapped: (want != 0) as u32,
        tgid: current_tgid(),
        hinted: lockhint::live(tid),
    };
    // The sleep's slot stays this thread's until its own switch-in.
    let Some(w) = tasks::record(&wait) else {
        bump(Counter::SchedTasksFull);
        // SAFETY: as above.
        unsafe { (*slot).tid = 0 };
        return;
    };
    early::take(w, tid, uaddr, start_ns, count_wake);
    let (stack_id, leaf_ret) = stack::capture(ctx);
    // SAFETY: a map value; a concurrent wake writes only `claim`, `waker_id` and `outcome`.
    unsafe {
        (*w).stack_id = stack_id;
        (*w).leaf_ret = leaf_ret;
    }
    // DWARF mode: the waiter's stack can only be copied now, while it is `current`; its
    // start time names it until its end is sent (`snapshot::emit_end`).
    if want != 0 {
        let key = WaitKey {
            stack_id,
            waker_id: NO_STACK,
            uaddr,
            leaf_ret,
            tid,
            kind: kind as u32,
            flags: 0,
            tgid: current_tgid(),
        };
        if !snapshot::emit_wanted(want, &key, start_ns, SNAP_SWITCH_OUT) {
            // Dropped (counted): no end goes either.
            // SAFETY: as above.
            unsafe { (*w).snapped = 0 };
        }
    }
}

/// The wait of `next`, if it is a target thread waking from one, ends now.
#[inline(always)]
fn switch_in(next: u64) {
    let Some(w) = tasks::take(tasks::tid_of(next)) else {
        return;
    };
    let Some(slot) = INFLIGHT.get_ptr_mut(inflight_slot(w.tid)) else {
        return;
    };
    // SAFETY: this thread's slot (see switch_out); copied out, then freed.
    let call = unsafe {
        if (*slot).tid != w.tid {
            return;
        }
        (*slot).tid = 0;
        *slot
    };
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let waited = now.saturating_sub(call.start_ns);
    bump(Counter::Slept);
    let outcome = if w.outcome == SCHED_NOT_WOKEN {
        // Woken before the switch-out was recorded (a wake racing the sleep), or by a path
        // with no wake event: a wait with no known waker.
        bump(Counter::WakerUnseen);
        Outcome::Woken
    } else {
        Outcome::from_u32(w.outcome)
    };
    if outcome == Outcome::Interrupted {
        // An LRU: room is made by eviction (see `maps::RESTARTABLE`).
        let _ = RESTARTABLE.insert(&w.tid, &[call.uaddr, u64::from(call.kind)], 0);
    }
    let mut key = WaitKey {
        stack_id: w.stack_id,
        waker_id: w.waker_id,
        uaddr: call.uaddr,
        leaf_ret: w.leaf_ret,
        tid: w.tid,
        kind: call.kind,
        flags: 0,
        tgid: w.tgid,
    };
    lockhint::apply(w.hinted, &mut key);
    let blamed = if outcome == Outcome::Woken {
        phase::split(
            u64::from(w.tid),
            call.uaddr,
            &call.clock,
            call.start_ns,
            now,
        )
    } else {
        [0; NUM_PHASES]
    };
    // `current` is not the waiter here: its stack went at the switch-out (if it wanted one).
    match outcome {
        _ if w.snapped == 0 => {}
        Outcome::Woken | Outcome::Interrupted => snapshot::emit_end(&key, waited, call.start_ns),
        Outcome::TimedOut => {
            let mut timed_out = key;
            timed_out.flags |= TIMED_OUT_SNAPSHOT;
            snapshot::emit_end(&timed_out, waited, call.start_ns);
        }
        _ => {}
    }
    let _ = rows::add_wait(&key, waited, &blamed, outcome);
}

/// `sched_waking(task *p)`, in the waker's context.
#[btf_tracepoint(function = "sched_waking")]
pub fn sched_waking(ctx: BtfTracePointContext) -> u32 {
    let p: u64 = ctx.arg(0);
    let p_tid = tasks::tid_of(p);
    let Some(w) = tasks::asleep(p_tid) else {
        if !seeded_wake(&ctx) {
            early_wake(&ctx, p, p_tid);
        }
        return 0;
    };
    // The first wake of this sleep wins (an early one its switch-out applied may have).
    if !tasks::claim(w) {
        return 0;
    }
    // SAFETY: as above.
    let tid = unsafe { (*w).tid };
    let (outcome, waker) = match current_call() {
        Call::Futex(kind, uaddr, _) if !kind.is_wait() && wakes_word_of(tid, kind, uaddr) => {
            (Outcome::Woken, wake(&ctx, kind, uaddr, tid))
        }
        Call::Signal => (Outcome::Interrupted, NO_STACK),
        // A timer (interrupt context: `current` is whoever ran) for a wait that had a timeout;
        // otherwise the kernel (e.g. the futex wake of a thread's exit, for pthread_join).
        // SAFETY: as above.
        _ if unsafe { (*w).timed } != 0 => (Outcome::TimedOut, NO_STACK),
        _ => {
            bump(Counter::WakerUnseen);
            (Outcome::Woken, NO_STACK)
        }
    };
    // SAFETY: as above.
    unsafe {
        (*w).outcome = outcome.as_u32();
        (*w).waker_id = waker;
    }
    0
}

/// Whether a futex wake `kind` of `uaddr` can be what woke thread `tid`'s wait: the same
/// word, or a wake that also moves or wakes waiters of a second word (requeue, wake-op), or a
/// `futex_waitv` (which waits on several words; its first is recorded). Otherwise the current
/// task is not the waker: a timer interrupt ran in a thread that was in a wake of its own.
#[inline(always)]
fn wakes_word_of(tid: u32, kind: OpKind, uaddr: u64) -> bool {
    if matches!(kind, OpKind::Requeue | OpKind::WakeOp) {
        return true;
    }
    let Some(slot) = INFLIGHT.get(inflight_slot(tid)) else {
        return true;
    };
    slot.tid != tid || slot.uaddr == uaddr || slot.kind == OpKind::Waitv as u32
}

/// `p` is no waiter seen sleeping yet, but may be one on its way (see [`early`]): if the
/// current task is a target thread in a futex wake of the word `p`'s registers show it
/// waiting on, the wake is kept for `p`'s switch-out, or applied here if that switch-out
/// recorded the wait meanwhile.
#[inline(always)]
fn early_wake(ctx: &BtfTracePointContext, p: u64, p_tid: u32) {
    if p_tid == 0 || target_tid().is_none() {
        return;
    }
    let Call::Futex(kind, uaddr, _) = current_call() else {
        return;
    };
    if kind.is_wait() {
        return;
    }
    let Some(word) = waiting_word_of(p) else {
        return;
    };
    if word != uaddr && !matches!(kind, OpKind::Requeue | OpKind::WakeOp) {
        return;
    }
    early::keep(p_tid, word, &take_wake(ctx, kind, uaddr, p_tid), count_wake);
}

/// The woken task is no waiter seen sleeping. If the current task is a target thread in a
/// futex wake of a word a thread was asleep on at attach, that thread's wait (seeded in its
/// INFLIGHT slot) is woken by it, and ends at that thread's switch-in (with no stack of its
/// own: user space has the one it read at attach). Returns whether it was.
#[inline(always)]
fn seeded_wake(ctx: &BtfTracePointContext) -> bool {
    if target_tid().is_none() {
        return false;
    }
    let Call::Futex(kind, uaddr, _) = current_call() else {
        return false;
    };
    if kind.is_wait() {
        return false;
    }
    // SAFETY: copied out at once.
    let Some(tid) = (unsafe { SEEDED.get(&uaddr) }).copied() else {
        return false;
    };
    let _ = SEEDED.remove(&uaddr);
    let wait = SchedWait {
        waker_id: wake(ctx, kind, uaddr, tid),
        stack_id: NO_STACK,
        leaf_ret: 0,
        // Woken already.
        claim: 1,
        tid,
        outcome: Outcome::Woken.as_u32(),
        timed: 0,
        // Seeded at attach (one target only): user space holds its stack and waits for its end.
        snapped: (snapshot::enabled() != 0) as u32,
        // The waker's: a seeded wait is one of the one target's threads.
        tgid: current_tgid(),
        hinted: 0,
    };
    if tasks::record(&wait).is_none() {
        // The seeded wait's end is lost (it stays "still waiting" at the end).
        bump(Counter::SchedTasksFull);
    }
    true
}

/// A futex wake of `uaddr` by the current task woke a sleeping target thread: its stack, its
/// wake row (one thread woken), and the lock it released. Returns its waker id.
#[inline(always)]
fn wake(ctx: &BtfTracePointContext, kind: OpKind, uaddr: u64, woken: u32) -> u64 {
    count_wake(&take_wake(ctx, kind, uaddr, woken))
}

/// The current task's wake row key: its stack, taken now, and the word woken (the lock a hint
/// names for thread `woken`'s park, see `lockhint::wake_word`).
#[inline(always)]
fn take_wake(ctx: &BtfTracePointContext, kind: OpKind, uaddr: u64, woken: u32) -> WakeKey {
    let tid = bpf_get_current_pid_tgid() as u32;
    let (stack_id, leaf_ret) = stack::capture(ctx);
    WakeKey {
        stack_id,
        uaddr: lockhint::wake_word(woken, uaddr),
        leaf_ret,
        tid,
        kind: kind as u32,
    }
}

/// Counts a wake that woke a sleeping waiter (and learns the lock it released); returns the
/// waker id.
#[inline(always)]
fn count_wake(key: &WakeKey) -> u64 {
    phase::learn_lock(u64::from(key.tid), key.uaddr);
    let _ = rows::add_wake(key, 1);
    waker_id(key.stack_id, key.leaf_ret)
}
