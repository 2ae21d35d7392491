//! Uprobes on the slow-path phase functions of the bundled map and of Go's `sync.Map`
//! (per-kind totals: [`PhaseCookie`]): count them, time them, and keep
//! each map's phase clock (see `tracer_common::blame`), which waits on the map's lock read to
//! split their time across the phases that overlapped them.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::bpf_get_attach_cookie,
    },
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::blame::MAP_LOCK_SPAN;
use tracer_common::{
    blame, ClockRead, Counter, MapClock, Phase, PhaseCookie, PhaseStats, NUM_PHASES,
};

use crate::maps::{bump, LAST_MAP, LOCK_MAP, MAP_CLOCKS, PHASES_ON, PHASE_START, PHASE_STATS};

#[inline(always)]
fn phase_of<C: EbpfContext>(ctx: &C) -> Option<PhaseCookie> {
    // SAFETY: the helper reads the cookie user space set at attach; it has no preconditions.
    PhaseCookie::decode(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) })
}

#[inline(always)]
fn stats(cookie: PhaseCookie) -> Option<&'static mut PhaseStats> {
    // SAFETY: this CPU's slot of a per-CPU array; programs run with migration disabled.
    PHASE_STATS
        .get_ptr_mut(cookie.stats_index())
        .map(|p| unsafe { &mut *p })
}

/// `len(dirty)` of the Go map at `map`: its dirty map's pointer is `dirty_at` bytes into the
/// map object, and a Go map header starts with its count. 0 if unreadable or nil.
#[inline(always)]
fn go_dirty_len(map: u64, dirty_at: u32) -> u64 {
    // SAFETY: reads of user memory through the helper, which fails cleanly on a bad address.
    let Ok(header) = (unsafe { bpf_probe_read_user((map + u64::from(dirty_at)) as *const u64) })
    else {
        return 0;
    };
    if header == 0 {
        return 0;
    }
    // SAFETY: as above.
    unsafe { bpf_probe_read_user(header as *const u64) }.unwrap_or(0)
}

/// The map's clock, created on first use.
#[inline(always)]
fn clock(map: u64) -> Option<*mut MapClock> {
    if let Some(c) = MAP_CLOCKS.get_ptr_mut(map) {
        return Some(c);
    }
    // An LRU: room is made by evicting the clock of the map least recently used.
    let _ = MAP_CLOCKS.insert(map, MapClock::default(), 0);
    MAP_CLOCKS.get_ptr_mut(map)
}

#[uprobe]
pub fn phase_enter(ctx: ProbeContext) -> u32 {
    let _ = try_phase_enter(&ctx);
    0
}

fn try_phase_enter(ctx: &ProbeContext) -> Result<(), i64> {
    let Some(cookie) = phase_of(ctx) else {
        return Ok(());
    };
    let tid = u64::from(bpf_get_current_pid_tgid() as u32);
    // SAFETY: `regs` is the probed thread's saved user registers. A phase is a method of the
    // map: `&self` is the first argument (RDI).
    let map = unsafe { (*ctx.regs).rdi };
    phase_entered(cookie, tid, (tid << 32) | cookie.phase as u64, map)
}

/// Go: phases are keyed by goroutine (`g` in R14, 8-byte aligned, so `g | phase` is unique),
/// since a goroutine can move to another thread between a phase's entry and return. The
/// receiver (the map) is the first argument, in RAX under the register ABI.
#[uprobe]
pub fn go_phase_enter(ctx: ProbeContext) -> u32 {
    if let Some(cookie) = phase_of(&ctx) {
        // SAFETY: `regs` is the probed thread's saved user registers.
        let (g, map) = unsafe { ((*ctx.regs).r14, (*ctx.regs).rax) };
        let _ = phase_entered(cookie, g, g | cookie.phase as u64, map);
    }
    0
}

#[inline(always)]
fn phase_entered(cookie: PhaseCookie, runner: u64, key: u64, map: u64) -> Result<(), i64> {
    let phase = cookie.phase;
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(s) = stats(cookie) {
        s.calls += 1;
    }
    // LRU maps (see `maps`): room is made by eviction.
    let _ = LAST_MAP.insert(runner, map, 0);
    if cookie.lock_at != 0 {
        let word = map + u64::from(cookie.lock_at);
        // SAFETY: copied out at once.
        if unsafe { LOCK_MAP.get(word) }.is_none() {
            let _ = LOCK_MAP.insert(word, map, 0);
        }
    }
    let Some(c) = clock(map) else {
        return Ok(());
    };
    if phase.probes_return() {
        if PHASE_START.insert(key, [now, map], 0).is_err() {
            // The run is counted in `calls` but neither timed nor on the clock.
            bump(Counter::MapInsertFailed);
            return Ok(());
        }
        // SAFETY: a map value; phases of one map run under its lock, one at a time.
        unsafe { (*c).began(phase, runner, now) };
    } else {
        // SAFETY: as above.
        unsafe { (*c).ended(phase, runner, now, now) };
    }
    Ok(())
}

#[uretprobe]
pub fn phase_exit(ctx: RetProbeContext) -> u32 {
    let _ = try_phase_exit(&ctx);
    0
}

fn try_phase_exit(ctx: &RetProbeContext) -> Result<(), i64> {
    let Some(cookie) = phase_of(ctx) else {
        return Ok(());
    };
    let tid = u64::from(bpf_get_current_pid_tgid() as u32);
    let ret: u64 = ctx.ret();
    phase_returned(cookie, tid, (tid << 32) | cookie.phase as u64, |_| ret)
}

/// Go: a uprobe on each return instruction of a phase function (uretprobes break on Go's
/// movable stacks). The return value is in RAX under both ABIs; Go's `sync.Map.dirtyLocked`
/// returns nothing, so its entries copied are `len(dirty)` read from the map at return.
#[uprobe]
pub fn go_phase_exit(ctx: ProbeContext) -> u32 {
    if let Some(cookie) = phase_of(&ctx) {
        // SAFETY: `regs` is the probed thread's saved user registers.
        let (ret, g) = unsafe { ((*ctx.regs).rax, (*ctx.regs).r14) };
        let items = |map: u64| match cookie.dirty_at {
            0 => ret,
            at => go_dirty_len(map, at),
        };
        let _ = phase_returned(cookie, g, g | cookie.phase as u64, items);
    }
    0
}

/// `items` gives the run's return count (entries copied) from the map's address.
#[inline(always)]
fn phase_returned(
    cookie: PhaseCookie,
    runner: u64,
    key: u64,
    items: impl FnOnce(u64) -> u64,
) -> Result<(), i64> {
    let phase = cookie.phase;
    // SAFETY: copied out before removal.
    let Some([start, map]) = (unsafe { PHASE_START.get(key) }).copied() else {
        return Ok(());
    };
    let _ = PHASE_START.remove(key);
    // SAFETY: a helper with no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let took = now.saturating_sub(start);
    if let Some(s) = stats(cookie) {
        s.returns += 1;
        s.total_ns += took;
        if took > s.max_ns {
            s.max_ns = took;
        }
        if phase == Phase::Rebuild {
            s.items += items(map);
        }
    }
    if let Some(c) = clock(map) {
        // SAFETY: as at entry.
        unsafe { (*c).ended(phase, runner, start, now) };
    }
    Ok(())
}

/// `runner` (tid, or Go's g) releases the lock word `uaddr` to waiters: if its last phase ran
/// on a map whose object holds that word, the word is that map's lock.
#[inline(always)]
pub fn learn_lock(runner: u64, uaddr: u64) {
    if !on() {
        return;
    }
    // SAFETY: copied out at once.
    if unsafe { LOCK_MAP.get(uaddr) }.is_some() {
        return;
    }
    // SAFETY: as above.
    let Some(map) = (unsafe { LAST_MAP.get(runner) }).copied() else {
        return;
    };
    if uaddr >= map && uaddr - map < MAP_LOCK_SPAN {
        // An LRU: room is made by eviction.
        let _ = LOCK_MAP.insert(uaddr, map, 0);
    }
}

/// True once user space attached phase probes: before that no lock word belongs to a map,
/// so waits skip the lookups.
#[inline(always)]
pub fn on() -> bool {
    PHASES_ON.get(0).is_some_and(|v| *v != 0)
}

/// The phase clock of the map `uaddr` belongs to, as `runner` (a waiter) sees it now.
#[inline(always)]
pub fn read_clock(runner: u64, uaddr: u64) -> ClockRead {
    if !on() {
        return ClockRead::default();
    }
    // SAFETY: copied out at once.
    let Some(map) = (unsafe { LOCK_MAP.get(uaddr) }).copied() else {
        return ClockRead::default();
    };
    match MAP_CLOCKS.get_ptr(map) {
        // SAFETY: a map value, copied field by field.
        Some(c) => unsafe { (*c).read(map, runner) },
        None => ClockRead::default(),
    }
}

/// ns per phase that the lock's holders ran during `runner`'s wait `[wait_start, now]`, which
/// read the clock `at_start` when it began.
#[inline(always)]
pub fn split(
    runner: u64,
    uaddr: u64,
    at_start: &ClockRead,
    wait_start: u64,
    now: u64,
) -> [u64; NUM_PHASES] {
    if at_start.map == 0 {
        return [0; NUM_PHASES];
    }
    let at_end = read_clock(runner, uaddr);
    blame::split(at_start, &at_end, wait_start, now)
}
