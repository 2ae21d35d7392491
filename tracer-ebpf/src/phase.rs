//! Uprobes on the bundled map's slow-path phase functions: count them, time them, and note
//! per thread when each last finished, so a woken waiter can be blamed on what its waker did.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::{blame_phase, Phase, PhaseLast, PhaseStats, NO_PHASE, NUM_PHASES};

/// Totals per phase.
#[map]
pub static PHASE_STATS: PerCpuArray<PhaseStats> =
    PerCpuArray::with_max_entries(NUM_PHASES as u32, 0);

/// Entry time of a phase in progress, by `tid << 32 | phase`.
#[map]
pub static PHASE_START: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);

/// Each phase's last run, by tid.
#[map]
pub static PHASE_LAST: HashMap<u32, PhaseLast> = HashMap::with_max_entries(16384, 0);

/// Each phase's last run while holding a lock, by futex address: stamped by the releasing
/// thread when it wakes waiters, read by every waiter of that lock, whoever wakes it.
#[map]
pub static LOCK_PHASES: LruHashMap<u64, PhaseLast> = LruHashMap::with_max_entries(8192, 0);

#[inline(always)]
fn phase_of<C: EbpfContext>(ctx: &C) -> Option<Phase> {
    // SAFETY: the helper reads the cookie user space set at attach; it has no preconditions.
    Phase::from_u64(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) })
}

#[inline(always)]
fn stats(phase: Phase) -> Option<&'static mut PhaseStats> {
    // SAFETY: this CPU's slot of a per-CPU array; programs run with migration disabled.
    PHASE_STATS
        .get_ptr_mut(phase as u32)
        .map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn finished(tid: u32, phase: Phase, start: u64, now: u64) {
    // Index with an explicitly bounded value so the verifier can prove the write in bounds.
    let i = phase as usize;
    if i >= NUM_PHASES {
        return;
    }
    if let Some(last) = PHASE_LAST.get_ptr_mut(tid) {
        // SAFETY: only this thread's programs write its entry; `i` is in bounds.
        unsafe {
            (*last).start_ns[i] = start;
            (*last).end_ns[i] = now;
        }
        return;
    }
    let mut last = PhaseLast::default();
    last.start_ns[i] = start;
    last.end_ns[i] = now;
    let _ = PHASE_LAST.insert(tid, last, 0);
}

#[uprobe]
pub fn phase_enter(ctx: ProbeContext) -> u32 {
    let _ = try_phase_enter(&ctx);
    0
}

fn try_phase_enter(ctx: &ProbeContext) -> Result<(), i64> {
    let Some(phase) = phase_of(ctx) else {
        return Ok(());
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    phase_entered(phase, (u64::from(tid) << 32) | phase as u64)
}

/// Go: phases are keyed by goroutine (`g` in R14, 8-byte aligned, so `g | phase` is unique),
/// since a goroutine can move to another thread between a phase's entry and return.
#[uprobe]
pub fn go_phase_enter(ctx: ProbeContext) -> u32 {
    if let Some(phase) = phase_of(&ctx) {
        // SAFETY: `regs` is the probed thread's saved user registers.
        let g = unsafe { (*ctx.regs).r14 };
        let _ = phase_entered(phase, g | phase as u64);
    }
    0
}

#[inline(always)]
fn phase_entered(phase: Phase, key: u64) -> Result<(), i64> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(s) = stats(phase) {
        s.calls += 1;
    }
    if phase.probes_return() {
        PHASE_START.insert(key, now, 0)?;
    } else {
        finished(tid, phase, now, now);
    }
    Ok(())
}

#[uretprobe]
pub fn phase_exit(ctx: RetProbeContext) -> u32 {
    let _ = try_phase_exit(&ctx);
    0
}

fn try_phase_exit(ctx: &RetProbeContext) -> Result<(), i64> {
    let Some(phase) = phase_of(ctx) else {
        return Ok(());
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    phase_returned(phase, (u64::from(tid) << 32) | phase as u64, ctx.ret())
}

/// Go: a uprobe on each return instruction of a phase function (uretprobes break on Go's
/// movable stacks). The return value is in RAX under both ABIs.
#[uprobe]
pub fn go_phase_exit(ctx: ProbeContext) -> u32 {
    if let Some(phase) = phase_of(&ctx) {
        // SAFETY: `regs` is the probed thread's saved user registers.
        let (ret, g) = unsafe { ((*ctx.regs).rax, (*ctx.regs).r14) };
        let _ = phase_returned(phase, g | phase as u64, ret);
    }
    0
}

#[inline(always)]
fn phase_returned(phase: Phase, key: u64, ret: u64) -> Result<(), i64> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: copied out before removal.
    let Some(start) = (unsafe { PHASE_START.get(key) }).copied() else {
        return Ok(());
    };
    let _ = PHASE_START.remove(key);
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let took = now.saturating_sub(start);
    if let Some(s) = stats(phase) {
        s.returns += 1;
        s.total_ns += took;
        if took > s.max_ns {
            s.max_ns = took;
        }
        if phase == Phase::Rebuild {
            s.items += ret;
        }
    }
    finished(tid, phase, start, now);
    Ok(())
}

/// The releasing thread `tid` is about to wake waiters on `uaddr`: stamp the lock with the
/// phases it ran (the later run of each wins).
#[inline(always)]
pub fn stamp_lock(tid: u32, uaddr: u64) {
    // SAFETY: copied out at once.
    let Some(mine) = (unsafe { PHASE_LAST.get(tid) }).copied() else {
        return;
    };
    // SAFETY: copied out at once; an LRU entry may be recycled later.
    let mut lock = (unsafe { LOCK_PHASES.get(uaddr) })
        .copied()
        .unwrap_or_default();
    let mut changed = false;
    for i in 0..NUM_PHASES {
        if mine.end_ns[i] > lock.end_ns[i] {
            lock.start_ns[i] = mine.start_ns[i];
            lock.end_ns[i] = mine.end_ns[i];
            changed = true;
        }
    }
    if changed {
        let _ = LOCK_PHASES.insert(uaddr, lock, 0);
    }
}

/// What a wait on `uaddr` from `wait_start` to `now` is blamed on (see `blame_phase`).
#[inline(always)]
pub fn blame(uaddr: u64, wait_start: u64, now: u64) -> u32 {
    // SAFETY: copied out at once.
    match (unsafe { LOCK_PHASES.get(uaddr) }).copied() {
        Some(lock) => blame_phase(&lock, wait_start, now),
        None => NO_PHASE,
    }
}
