//! BPF trampolines (fentry/fexit) on the kernel's futex functions: the same events as the
//! syscall tracepoints, without the syscall-work flag that a syscall tracepoint sets on every
//! task of the host (so untraced processes pay nothing). Kernels that refuse trampolines
//! (lockdown, or no BTF) get the tracepoints instead; user space probes which at start.
//!
//! futex(2) is hooked at `do_futex`, whose arguments are the call's; the futex2 syscalls at
//! their entry points, whose one argument is the saved user registers. Both ends share the
//! tracepoints' logic: one entry preamble (`futex::enter`: filter, count, classify, and
//! mark an op that neither waits nor wakes) and one exit (`futex::on_exit`). This kernel
//! refuses trampolines (EPERM), so this path is checked by building only.
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use tracer_common::OpKind;

use crate::arch::PT_REGS_DI;
use crate::futex::{enter, first_uaddr, on_exit, Op};

/// The first syscall argument from a futex2 entry point's `const struct pt_regs *regs`.
#[inline(always)]
fn first_arg(ctx: &FEntryContext) -> u64 {
    let regs: *const u8 = ctx.arg(0);
    // SAFETY: a kernel pointer read through the checked helper.
    unsafe { bpf_probe_read_kernel(regs.add(PT_REGS_DI).cast::<u64>()) }.unwrap_or(0)
}

#[fentry(function = "do_futex")]
pub fn do_futex_entry(ctx: FEntryContext) -> u32 {
    let _ = enter(|| Ok((Op::Classic(ctx.arg(1)), ctx.arg(0))));
    0
}

#[fentry(function = "__x64_sys_futex_wait")]
pub fn futex_wait_fentry(ctx: FEntryContext) -> u32 {
    let _ = enter(|| Ok((Op::Futex2(OpKind::Wait2), first_arg(&ctx))));
    0
}

#[fentry(function = "__x64_sys_futex_wake")]
pub fn futex_wake_fentry(ctx: FEntryContext) -> u32 {
    let _ = enter(|| Ok((Op::Futex2(OpKind::Wake2), first_arg(&ctx))));
    0
}

#[fentry(function = "__x64_sys_futex_waitv")]
pub fn futex_waitv_fentry(ctx: FEntryContext) -> u32 {
    let _ = enter(|| Ok((Op::Futex2(OpKind::Waitv), first_uaddr(first_arg(&ctx)))));
    0
}

#[fexit(function = "do_futex")]
pub fn do_futex_exit(ctx: FExitContext) -> u32 {
    exit(&ctx)
}

#[fexit(function = "__x64_sys_futex_wait")]
pub fn futex_wait_fexit(ctx: FExitContext) -> u32 {
    exit(&ctx)
}

#[fexit(function = "__x64_sys_futex_wake")]
pub fn futex_wake_fexit(ctx: FExitContext) -> u32 {
    exit(&ctx)
}

#[fexit(function = "__x64_sys_futex_waitv")]
pub fn futex_waitv_fexit(ctx: FExitContext) -> u32 {
    exit(&ctx)
}

#[inline(always)]
fn exit(ctx: &FExitContext) -> u32 {
    if let Ok(ret) = ctx.ret::<i64>() {
        let _ = on_exit(ctx, ret);
    }
    0
}
