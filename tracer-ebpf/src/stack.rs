//! User stack capture: a frame-pointer walk (`fpwalk`, else the kernel's), deduplicated by our
//! own 64-bit hash (a STACK_TRACE map drops a stack whenever two stacks share one of its
//! buckets).
use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{
        bpf_get_current_task_btf, bpf_probe_read_user,
        generated::{bpf_get_stack, bpf_task_pt_regs},
    },
    EbpfContext,
};
use tracer_common::{
    stack_hash_finish, stack_hash_step, Counter, MAX_STACK_DEPTH, NO_STACK, STACK_HASH_SEED,
};

use aya_log_ebpf::{debug, warn};

use crate::arch::{user_reg, word};
use crate::maps::{bump, NEW_STACKS, SCRATCH, STACKS};

mod fpwalk;
pub use fpwalk::WINDOW_WORDS;

const EEXIST: i32 = 17;

/// Captures the current thread's user stack. Returns (stack id, leaf return address); the id
/// is [`NO_STACK`] when the capture failed (counted).
#[inline(always)]
pub fn capture<C: EbpfContext>(ctx: &C) -> (u64, u64) {
    capture_upto::<C, MAX_STACK_DEPTH>(ctx)
}

/// [`capture`], walking at most [`SHALLOW_DEPTH`] frames: a walk costs per frame, and a
/// releasing side needs only the frames down to the first caller outside the lock code.
#[inline(always)]
pub fn capture_shallow<C: EbpfContext>(ctx: &C) -> (u64, u64) {
    capture_upto::<C, SHALLOW_DEPTH>(ctx)
}

/// Frames [`capture_shallow`] walks.
pub const SHALLOW_DEPTH: usize = 16;

/// The stack id alone ([`capture`] without the leaf return address).
#[inline(always)]
pub fn capture_id<C: EbpfContext>(ctx: &C) -> u64 {
    capture_upto::<C, MAX_STACK_DEPTH>(ctx).0
}

/// The stack id of at most `DEPTH` frames (≤ [`MAX_STACK_DEPTH`]) and the leaf return
/// address: walked by [`fpwalk`] in one copy of the stack's top where it can be, else by the
/// kernel (`bpf_get_stack`, one user read per word).
#[inline(always)]
fn capture_upto<C: EbpfContext, const DEPTH: usize>(ctx: &C) -> (u64, u64) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return (NO_STACK, 0);
    };
    // SAFETY: per-CPU scratch slot, used by one program at a time on this CPU.
    let buf = unsafe { &mut (*scratch).stack };
    let (depth, leaf_ret) = match fpwalk::walk::<DEPTH>(&mut buf.frames) {
        Some(walked) => walked,
        None => match kernel_walk::<C, DEPTH>(ctx, &mut buf.frames) {
            Some(depth) => (depth, leaf_return_address()),
            None => return (NO_STACK, leaf_return_address()),
        },
    };
    let mut h = STACK_HASH_SEED;
    for i in 0..MAX_STACK_DEPTH {
        if i >= depth {
            break;
        }
        h = stack_hash_step(h, buf.frames[i]);
    }
    let id = stack_hash_finish(h, depth as u32);
    buf.len = depth as u32;
    if STACKS.get_ptr(id).is_none() {
        match STACKS.insert(id, &*buf, BPF_NOEXIST as u64) {
            // A stack seen for the first time: user space checks that the memory maps it
            // holds cover its addresses while the target still lives (a library loaded
            // just now, or a program about to exit).
            Ok(()) => {
                if NEW_STACKS.output::<u64>(id, 0).is_err() {
                    bump(Counter::NewStackNoticesLost);
                }
            }
            // Another CPU inserting the same stack first is fine.
            Err(e) if e as i32 == -EEXIST => {}
            Err(e) => {
                bump(Counter::StackMapFull);
                warn!(&(), "stack map full ({}): event kept without its stack", e);
                return (NO_STACK, leaf_ret);
            }
        }
    }
    (id, leaf_ret)
}

/// The kernel's frame-pointer walk (`bpf_get_stack`) into `frames`: its depth, or `None`
/// (counted) when it failed.
#[inline(always)]
fn kernel_walk<C: EbpfContext, const DEPTH: usize>(
    ctx: &C,
    frames: &mut [u64; MAX_STACK_DEPTH],
) -> Option<usize> {
    // SAFETY: the buffer is MAX_STACK_DEPTH u64s of map memory we own.
    let bytes = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            frames.as_mut_ptr().cast(),
            (DEPTH * 8) as u32,
            BPF_F_USER_STACK as u64,
        )
    };
    if bytes <= 0 {
        bump(Counter::StackErrors);
        debug!(
            &(),
            "user stack not captured: bpf_get_stack returned {}", bytes
        );
        return None;
    }
    Some((bytes as usize / 8).min(MAX_STACK_DEPTH))
}

/// The word at the user stack pointer at syscall entry. When the syscall wrapper is a
/// frameless leaf (glibc's `syscall()`, Go's `runtime.futex`), this is the return address into
/// its caller — the frame the frame-pointer walk skips. User space validates it.
#[inline(always)]
fn leaf_return_address() -> u64 {
    // SAFETY: the current task's saved user registers (see `arch::user_reg`); the user read is
    // checked by its helper (a fault yields Err).
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        if regs.is_null() {
            return 0;
        }
        let sp = user_reg(regs, word::SP);
        bpf_probe_read_user(sp as *const u64).unwrap_or(0)
    }
}
