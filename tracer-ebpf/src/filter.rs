//! filter: which threads the probes trace. One process (a scalar compare, as cheap as the
//! filter can be: it runs for every futex syscall on the host), or, when user space sets
//! [`TARGET_TGID`] to [`TGID_SET`], the processes in the [`TARGETS`] set (the agent and
//! `record --follow-forks`), at the cost of one hash lookup.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use tracer_common::{Counter, TargetFlags, TARGET_SNAP_FULL, TGID_SET};

use crate::maps::{bump, TARGETS};

/// Process to trace, or [`TGID_SET`]; set by user space before load.
#[no_mangle]
static TARGET_TGID: u32 = 0;

/// The calling thread's tid if its process is traced.
#[inline(always)]
pub fn target_tid() -> Option<u32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: a plain read of a static; volatile so the compiler cannot fold the 0 it was
    // compiled with (user space rewrites it before load).
    let target = unsafe { core::ptr::read_volatile(&TARGET_TGID) };
    if tgid == target {
        return Some(pid_tgid as u32);
    }
    // SAFETY: a map lookup whose value is only tested for presence, never read.
    if target == TGID_SET && unsafe { TARGETS.get(&tgid) }.is_some() {
        return Some(pid_tgid as u32);
    }
    None
}

/// The current thread's process.
#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// What the current process wants copied of its stack: in set mode its [`TARGETS`] flags
/// (0 if untraced); with one target, [`TARGET_SNAP_FULL`], so the load-time snapshot size alone
/// decides, as it always did. Called only where a snapshot could be sent.
#[inline(always)]
pub fn snapshot_flags() -> TargetFlags {
    // SAFETY: as in `target_tid`.
    let target = unsafe { core::ptr::read_volatile(&TARGET_TGID) };
    if target != TGID_SET {
        return TARGET_SNAP_FULL;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a map lookup; the one-byte value is copied out at once.
    unsafe { TARGETS.get(&tgid) }.copied().unwrap_or(0)
}

/// `task:task_newtask` fields, from its format file.
const NEWTASK_PID: usize = 8;
const NEWTASK_CLONE_FLAGS: usize = 32;
/// `CLONE_THREAD` from include/uapi/linux/sched.h: a new thread, not a new process.
const CLONE_THREAD: u64 = 0x0001_0000;

/// `record --follow-forks`: a process forked by a traced process is traced too, from before
/// it first runs (the tracepoint fires in the parent, inside fork), with its parent's
/// [`TargetFlags`]. Attached only then, and only in set mode.
#[tracepoint]
pub fn follow_fork(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file; reads are bounds-checked.
    let (child, flags) = unsafe {
        (
            ctx.read_at::<i32>(NEWTASK_PID),
            ctx.read_at::<u64>(NEWTASK_CLONE_FLAGS),
        )
    };
    let (Ok(child), Ok(flags)) = (child, flags) else {
        return 0;
    };
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a map lookup; the one-byte value is copied out at once.
    if let Some(&wants) = unsafe { TARGETS.get(&parent) } {
        // The child wants what its parent did (user space may change that once it has seen
        // what the child runs). A full set leaves the child untraced (user space sees it
        // missing from the set).
        if TARGETS.insert(child as u32, wants, 0).is_err() {
            bump(Counter::MapInsertFailed);
        }
    }
    0
}
