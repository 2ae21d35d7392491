//! lockscope's kernel programs: futex contention tracing, aggregated in the kernel.
#![no_std]
#![no_main]
// Compare-and-swap (`sched::tasks::claim`): the target has atomics but no `AtomicU64` CAS.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod arch;
mod filter;
mod futex;
mod goroutine;
mod handoff;
mod lockhint;
mod maps;
mod oncpu;
mod phase;
mod rows;
mod sched;
mod snapshot;
mod stack;
mod tokio;
mod trampoline;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the BPF verifier rejects any program that could reach a panic, so this is never
    // entered at run time.
    unsafe { core::hint::unreachable_unchecked() }
}

/// `bpf_get_stack` and `bpf_probe_read_user` are GPL-only helpers.
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
