//! oncpu: a perf-event program on each CPU's software clock that counts, per user stack, the
//! samples that land on a traced thread. User space turns those counts into an estimate of
//! the share of `sync.Map`'s CPU time spent in lock-free reads. The stacks are hashed like
//! the wait stacks (`stack`) but kept in their own maps and scratch: a sampled stack differs
//! with every interrupted instruction, and must never crowd a wait stack out of `STACKS`.
use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::generated::bpf_get_stack,
    macros::perf_event,
    programs::PerfEventContext,
    EbpfContext,
};
use tracer_common::{
    stack_hash_finish, stack_hash_step, Counter, MAX_STACK_DEPTH, NO_STACK, STACK_HASH_SEED,
};

use crate::filter::target_tid;
use crate::maps::{bump, ONCPU, ONCPU_SCRATCH, ONCPU_STACKS};

const EEXIST: i32 = 17;

#[perf_event]
pub fn oncpu_sample(ctx: PerfEventContext) -> u32 {
    // Attached system-wide per CPU: every thread on the host is sampled, and only the
    // target's are kept (a scalar compare for the others).
    if target_tid().is_none() {
        return 0;
    }
    let id = capture(&ctx);
    match ONCPU.get_ptr_mut(id) {
        // SAFETY: a per-CPU value; BPF programs run with migration disabled, so nothing else
        // on this CPU writes it concurrently.
        Some(n) => unsafe { *n += 1 },
        None => {
            // A full map loses the sample (counted).
            if ONCPU.insert(id, 1u64, 0).is_err() {
                bump(Counter::MapInsertFailed);
            }
        }
    }
    0
}

/// The interrupted thread's user stack, stored by hash; [`NO_STACK`] when it was not kept.
#[inline(always)]
fn capture(ctx: &PerfEventContext) -> u64 {
    let Some(buf) = ONCPU_SCRATCH.get_ptr_mut(0) else {
        return NO_STACK;
    };
    // SAFETY: per-CPU scratch slot; a perf-event program does not nest on one CPU.
    let buf = unsafe { &mut *buf };
    // SAFETY: the buffer is MAX_STACK_DEPTH u64s of map memory we own.
    let bytes = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            buf.frames.as_mut_ptr().cast(),
            (MAX_STACK_DEPTH * 8) as u32,
            BPF_F_USER_STACK as u64,
        )
    };
    if bytes <= 0 {
        return NO_STACK;
    }
    let depth = (bytes as usize / 8).min(MAX_STACK_DEPTH);
    let mut h = STACK_HASH_SEED;
    for i in 0..MAX_STACK_DEPTH {
        if i >= depth {
            break;
        }
        h = stack_hash_step(h, buf.frames[i]);
    }
    let id = stack_hash_finish(h, depth as u32);
    buf.len = depth as u32;
    if ONCPU_STACKS.get_ptr(id).is_none() {
        match ONCPU_STACKS.insert(id, &*buf, BPF_NOEXIST as u64) {
            Ok(()) => {}
            // Another CPU stored the same stack first.
            Err(e) if e as i32 == -EEXIST => {}
            Err(_) => return NO_STACK,
        }
    }
    id
}
