//! BPF trampolines (fentry/fexit) on the kernel's futex functions: the same events as the
//! syscall tracepoints, without the syscall-work flag that a syscall tracepoint sets on every
//! task of the host (so untraced processes pay nothing). Kernels that refuse trampolines
//! (lockdown, or no BTF) get the tracepoints instead; user space probes which at start.
//!
//! futex(2) is hooked at `do_futex`, whose arguments are the call's; the futex2 syscalls at
//! their entry points, whose one argument is the saved user registers. Both ends share the
//! tracepoints' logic (`futex::on_enter`, `futex::on_exit`).
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use tracer_common::{classify_futex_op, Counter, OpKind};

use crate::arch::PT_REGS_DI;
use crate::futex::{first_uaddr, on_enter, on_exit, target_tid};
use crate::maps::bump;

/// The first syscall argument from a futex2 entry point's `const struct pt_regs *regs`.
#[inline(always)]
fn first_arg(ctx: &FEntryContext) -> u64 {
    let regs: *const u8 = ctx.arg(0);
    // SAFETY: a kernel pointer read through the checked helper.
    unsafe { bpf_probe_read_kernel(regs.add(PT_REGS_DI).cast::<u64>()) }.unwrap_or(0)
}

#[fentry(function = "do_futex")]
pub fn do_futex_entry(ctx: FEntryContext) -> u32 {
    let Some(tid) = target_tid() else {
        return 0;
    };
    bump(Counter::Calls);
    let uaddr: u64 = ctx.arg(0);
    let op: u32 = ctx.arg(1);
    if let Some(kind) = classify_futex_op(op) {
        let _ = on_enter(tid, kind, uaddr);
    }
    0
}

#[fentry(function = "__x64_sys_futex_wait")]
pub fn futex_wait_fentry(ctx: FEntryContext) -> u32 {
    futex2_entry(&ctx, OpKind::Wait2)
}

#[fentry(function = "__x64_sys_futex_wake")]
pub fn futex_wake_fentry(ctx: FEntryContext) -> u32 {
    futex2_entry(&ctx, OpKind::Wake2)
}

#[fentry(function = "__x64_sys_futex_waitv")]
pub fn futex_waitv_fentry(ctx: FEntryContext) -> u32 {
    futex2_entry(&ctx, OpKind::Waitv)
}

#[inline(always)]
fn futex2_entry(ctx: &FEntryContext, kind: OpKind) -> u32 {
    let Some(tid) = target_tid() else {
        return 0;
    };
    bump(Counter::Calls);
    let arg = first_arg(ctx);
    let uaddr = if kind == OpKind::Waitv {
        first_uaddr(arg)
    } else {
        arg
    };
    let _ = on_enter(tid, kind, uaddr);
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
