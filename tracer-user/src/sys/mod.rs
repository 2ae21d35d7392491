//! sys: the host facts every stage reads — /proc (a target's state, memory maps and thread
//! names: the one maps parser), ELF headers, a struct member's offset in the kernel's BTF,
//! x86-64 instruction facts, the checks made before anything is attached, the attach's raised
//! priority, and starting `record -- CMD` held before exec.
//!
//! Exposes plain functions and data; it depends on no other part of lockscope.
mod btf;
mod elf;
mod launch;
mod preflight;
mod priority;
mod procfs;
mod x86;

pub(crate) use btf::{member_offset, vmlinux as vmlinux_btf};
pub(crate) use elf::{load_segments, LoadSegment};
pub(crate) use launch::spawn;
pub(crate) use preflight::{check_may_trace, check_privileges, ensure_tracefs, has_tracepoint};
pub(crate) use priority::AttachPriority;
pub(crate) use procfs::{
    cgroup, monotonic_ns, parse_regions, parse_stat, target, thread_names, MapHistory, Region,
    Target,
};
#[cfg(test)]
pub(crate) use procfs::{tests as procfs_tests, Mapping};
pub(crate) use x86::{
    call_offsets, closure_call, frame_size, instruction_starts, jumps_out, opens_like_go_function,
    past_entry_guard, preceded_by_call, return_offsets, sets_up_frame, stores_rax_at,
};
