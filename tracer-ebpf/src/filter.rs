//! filter: which threads the probes trace. One process (a scalar compare, as cheap as the
//! filter can be: it runs for every futex syscall on the host), or, when user space sets
//! [`TARGET_TGID`] to [`TGID_SET`], the processes in the [`TARGETS`] set (the agent and
//! `record --follow-forks`), at the cost of one hash lookup.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::map, maps::HashMap};
use tracer_common::{MAX_TARGETS, TGID_SET};

/// Process to trace, or [`TGID_SET`]; set by user space before load.
#[no_mangle]
static TARGET_TGID: u32 = 0;

/// Set mode: the tgids to trace (the value is unused). User space adds and removes them.
#[map]
pub static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

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
