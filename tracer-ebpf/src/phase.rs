//! Uprobes on the bundled map's slow-path phase functions: count them, time them, and note
//! per thread when each last finished, so a woken waiter can be blamed on what its waker did.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::{Phase, PhaseLast, PhaseStats, NO_PHASE, NUM_PHASES};

/// Totals per phase.
#[map]
pub static PHASE_STATS: PerCpuArray<PhaseStats> =
    PerCpuArray::with_max_entries(NUM_PHASES as u32, 0);

/// Entry time of a phase in progress, by `tid << 32 | phase`.
#[map]
pub static PHASE_START: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);

/// When each phase last finished, by tid.
#[map]
pub static PHASE_LAST: HashMap<u32, PhaseLast> = HashMap::with_max_entries(16384, 0);

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
fn finished(tid: u32, phase: Phase, now: u64) {
    if let Some(last) = PHASE_LAST.get_ptr_mut(tid) {
        // SAFETY: only this thread's programs write its entry.
        if let Some(slot) = unsafe { (*last).end_ns.get_mut(phase as usize) } {
            *slot = now;
        }
        return;
    }
    let mut last = PhaseLast::default();
    if let Some(slot) = last.end_ns.get_mut(phase as usize) {
        *slot = now;
    }
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
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(s) = stats(phase) {
        s.calls += 1;
    }
    if phase.probes_return() {
        PHASE_START.insert((u64::from(tid) << 32) | phase as u64, now, 0)?;
    } else {
        finished(tid, phase, now);
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
    let key = (u64::from(tid) << 32) | phase as u64;
    // SAFETY: copied out before removal.
    let Some(start) = (unsafe { PHASE_START.get(key) }).copied() else {
        return Ok(());
    };
    let _ = PHASE_START.remove(key);
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let took = now.saturating_sub(start);
    let ret: u64 = ctx.ret();
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
    finished(tid, phase, now);
    Ok(())
}

/// The heaviest phase `holder` finished at or after `since` (while the waiter waited), as
/// stored in `WaitKey::holder_phase`.
#[inline(always)]
pub fn blame(holder: u32, since: u64) -> u32 {
    // SAFETY: copied out at once.
    let Some(last) = (unsafe { PHASE_LAST.get(holder) }).copied() else {
        return NO_PHASE;
    };
    let mut best = NO_PHASE;
    for p in Phase::ALL {
        if let Some(&end) = last.end_ns.get(p as usize) {
            if end >= since {
                best = p as u32 + 1;
            }
        }
    }
    best
}
