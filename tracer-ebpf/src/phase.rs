//! Uprobes on the bundled map's slow-path phase functions: count them, time them, and keep
//! each runner's (thread's, or goroutine's) runs until it releases a lock to waiters; then the
//! runs go onto that lock's phase clock, which waits read to split their time across the
//! phases that overlapped them (see `tracer_common::blame`).
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::{blame, ClockRead, LockClock, Phase, PhaseRuns, PhaseStats, NUM_PHASES};

/// Totals per phase.
#[map]
pub static PHASE_STATS: PerCpuArray<PhaseStats> =
    PerCpuArray::with_max_entries(NUM_PHASES as u32, 0);

/// Entry time of a phase in progress, by `runner << 32 | phase` (Rust: tid) or `g | phase`
/// (Go).
#[map]
pub static PHASE_START: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);

/// Each runner's phase runs (tid, or Go's g; LRU since goroutines come and go).
#[map]
pub static PHASE_RUNS: LruHashMap<u64, PhaseRuns> = LruHashMap::with_max_entries(16384, 0);

/// When a runner last flushed its runs onto a lock, by `[runner, lock]`.
#[map]
pub static FLUSHED: LruHashMap<[u64; 2], u64> = LruHashMap::with_max_entries(16384, 0);

/// Each lock's phase clock, by futex address (or Go semaphore address); ~1 KiB each.
#[map]
pub static LOCK_CLOCKS: LruHashMap<u64, LockClock> = LruHashMap::with_max_entries(2048, 0);

/// The run of each phase in progress, indexed by [`Phase`]: `[runner, start]` (start 0 when
/// none). One slot per phase: a map's phases run under its lock, one runner at a time (with
/// several bundled maps in one process, the latest entry wins).
#[map]
pub static RUNNING: Array<[u64; 2]> = Array::with_max_entries(NUM_PHASES as u32, 0);

/// Never written: the zero values new entries start from (too large for the BPF stack).
#[map]
pub static ZERO: Array<Zero> = Array::with_max_entries(1, 0);

#[repr(C)]
pub struct Zero {
    clock: LockClock,
    runs: PhaseRuns,
}

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
fn finished(runner: u64, phase: Phase, start: u64, now: u64) {
    // Index with an explicitly bounded value so the verifier can prove the write in bounds.
    let i = phase as usize;
    if i >= NUM_PHASES {
        return;
    }
    if PHASE_RUNS.get_ptr_mut(runner).is_none() {
        let Some(zero) = ZERO.get(0) else {
            return;
        };
        let _ = PHASE_RUNS.insert(runner, &zero.runs, 0);
    }
    if let Some(runs) = PHASE_RUNS.get_ptr_mut(runner) {
        // SAFETY: only this runner's programs write its entry; `i` is in bounds.
        unsafe { (*runs).runs[i].add(start, now) };
    }
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
    let tid = u64::from(bpf_get_current_pid_tgid() as u32);
    phase_entered(phase, tid, (tid << 32) | phase as u64)
}

/// Go: phases are keyed by goroutine (`g` in R14, 8-byte aligned, so `g | phase` is unique),
/// since a goroutine can move to another thread between a phase's entry and return.
#[uprobe]
pub fn go_phase_enter(ctx: ProbeContext) -> u32 {
    if let Some(phase) = phase_of(&ctx) {
        // SAFETY: `regs` is the probed thread's saved user registers.
        let g = unsafe { (*ctx.regs).r14 };
        let _ = phase_entered(phase, g, g | phase as u64);
    }
    0
}

#[inline(always)]
fn phase_entered(phase: Phase, runner: u64, key: u64) -> Result<(), i64> {
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(s) = stats(phase) {
        s.calls += 1;
    }
    if phase.probes_return() {
        PHASE_START.insert(key, now, 0)?;
        if let Some(slot) = RUNNING.get_ptr_mut(phase as u32) {
            // SAFETY: a plain array slot; a racing writer can only be another runner of the
            // same phase, and either value is a run in progress.
            unsafe { *slot = [runner, now] };
        }
    } else {
        finished(runner, phase, now, now);
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
    let tid = u64::from(bpf_get_current_pid_tgid() as u32);
    phase_returned(phase, tid, (tid << 32) | phase as u64, ctx.ret())
}

/// Go: a uprobe on each return instruction of a phase function (uretprobes break on Go's
/// movable stacks). The return value is in RAX under both ABIs.
#[uprobe]
pub fn go_phase_exit(ctx: ProbeContext) -> u32 {
    if let Some(phase) = phase_of(&ctx) {
        // SAFETY: `regs` is the probed thread's saved user registers.
        let (ret, g) = unsafe { ((*ctx.regs).rax, (*ctx.regs).r14) };
        let _ = phase_returned(phase, g, g | phase as u64, ret);
    }
    0
}

#[inline(always)]
fn phase_returned(phase: Phase, runner: u64, key: u64, ret: u64) -> Result<(), i64> {
    // SAFETY: copied out before removal.
    let Some(start) = (unsafe { PHASE_START.get(key) }).copied() else {
        return Ok(());
    };
    let _ = PHASE_START.remove(key);
    if let Some(slot) = RUNNING.get_ptr_mut(phase as u32) {
        // SAFETY: as at entry; cleared only if the slot is still this run's.
        unsafe {
            if (*slot)[0] == runner {
                *slot = [0, 0];
            }
        }
    }
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
    finished(runner, phase, start, now);
    Ok(())
}

/// The releasing `runner` (tid, or Go's g) is about to wake waiters on `uaddr` at `now`:
/// charge the phase runs it finished since its last flush onto this lock to the lock's clock.
#[inline(always)]
pub fn flush(runner: u64, uaddr: u64, now: u64) {
    let Some(mine) = PHASE_RUNS.get_ptr(runner) else {
        return;
    };
    let pair = [runner, uaddr];
    // SAFETY: copied out at once.
    let since = unsafe { FLUSHED.get(&pair) }.copied().unwrap_or(0);
    if LOCK_CLOCKS.get_ptr_mut(uaddr).is_none() {
        let Some(zero) = ZERO.get(0) else {
            return;
        };
        let _ = LOCK_CLOCKS.insert(uaddr, &zero.clock, 0);
    }
    if let Some(lock) = LOCK_CLOCKS.get_ptr_mut(uaddr) {
        // SAFETY: both point into map values. Only the lock's holder flushes onto it; a wait
        // reading it on another CPU meanwhile may see a flush half done (a blame estimate).
        unsafe { (*lock).flush(&*mine, since) };
    }
    let _ = FLUSHED.insert(&pair, &now, 0);
}

/// The lock's clock now, for a wait on `uaddr` that begins.
#[inline(always)]
pub fn read_clock(uaddr: u64) -> ClockRead {
    match LOCK_CLOCKS.get_ptr(uaddr) {
        // SAFETY: a map value, copied field by field into a small struct at once.
        Some(lock) => unsafe { (*lock).read() },
        None => ClockRead::default(),
    }
}

/// ns per phase that holders of `uaddr` ran during the wait `[wait_start, now]` of `runner`
/// that read the clock `at_start` when it began.
#[inline(always)]
pub fn split(
    runner: u64,
    uaddr: u64,
    at_start: &ClockRead,
    wait_start: u64,
    now: u64,
) -> [u64; NUM_PHASES] {
    // Runs still in progress, by another runner that has released this lock to waiters
    // before (it will flush them only after this wait is over).
    let mut running = [0u64; NUM_PHASES];
    let mut i = 0;
    while i < NUM_PHASES {
        if let Some(slot) = RUNNING.get(i as u32) {
            let [who, since] = *slot;
            // SAFETY: copied out at once.
            if since != 0 && who != runner && unsafe { FLUSHED.get(&[who, uaddr]) }.is_some() {
                running[i] = since;
            }
        }
        i += 1;
    }
    let lock = match LOCK_CLOCKS.get_ptr(uaddr) {
        // SAFETY: a map value, read in place (too large for the stack).
        Some(lock) => unsafe { &*lock },
        None => match ZERO.get(0) {
            Some(zero) => &zero.clock,
            None => return [0; NUM_PHASES],
        },
    };
    blame::split(lock, at_start, &running, wait_start, now)
}
