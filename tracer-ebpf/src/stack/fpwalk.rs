//! fpwalk: the frame-pointer walk of the current thread's user stack, done on one copy of the
//! stack's top. The kernel's walk (`bpf_get_stack`) reads two user words per frame, each a
//! fault-checked access (~70 ns each here, so ~1 µs for a six-frame stack); one copy of
//! [`WINDOW_WORDS`] words from the stack pointer costs about what two of those do, and every
//! frame record inside it is then a plain load. A record outside the copy (a deep stack, a
//! large frame, a chain that moves to another stack) is read on its own, as the kernel would.
//!
//! The result is the kernel's: the user instruction pointer, then the return address of each
//! record on the `rbp` chain, stopping at the first record that cannot be read, at a null
//! frame pointer, or at `DEPTH` entries. The word at the stack pointer (the leaf return
//! address, see `stack::leaf_return_address`) is the copy's first. A compat (ia32) task, a
//! stack whose top cannot be copied, or a chain longer than [`FAST_DEPTH`] whose records all
//! climb the stack is left to the kernel; a longer chain that does not climb (junk `rbp` in
//! code built without frame pointers, or a switch of stacks) is cut at [`FAST_DEPTH`].
use aya_ebpf::helpers::{
    bpf_get_current_task_btf, bpf_probe_read_user,
    generated::{bpf_probe_read_user as read_user_raw, bpf_task_pt_regs},
};
use tracer_common::MAX_STACK_DEPTH;

use crate::arch::{user_reg, word, USER32_CS};
use crate::maps::STACK_WINDOW;

/// Words copied from the user stack pointer (a power of two): 2 KiB.
pub const WINDOW_WORDS: usize = 256;
/// The window's word after its two slack words: whether the chain went down (see `walk`).
const DESCENDED: usize = WINDOW_WORDS + 2;
/// Frames this walk takes at most; a longer chain is left to the kernel's walk. Every step is
/// verified on its own at load (the verifier unrolls the loop), so this bounds the load time:
/// 32 steps added ~35 ms to an idle attach here, all 127 ~340 ms.
pub const FAST_DEPTH: usize = 32;
/// The lowest user address an unprivileged mapping can have (`vm.mmap_min_addr`); set by user
/// space before load. A frame pointer below it is data, not a record: in glibc's lock code
/// `rbp` holds the mutex, whose first word (the lock word, 2 while contended) then reads as
/// the next frame pointer. The kernel's walk reads it and fails; a failed read of an unmapped
/// user address takes a page fault, which cost ~300 ns here, half of a stress-ng switch-out.
/// Not reading it gives the same stack.
#[no_mangle]
static USER_MIN_ADDR: u64 = 0;

/// The copy tried when the full one fails (the stack's top is nearer than 2 KiB to the end of
/// its mapping: a main thread's first frames).
const SMALL_WORDS: usize = 32;

/// Walks the current thread's user stack into `frames`: (depth, leaf return address), or
/// `None` when the kernel's walk must do it.
#[inline(always)]
pub fn walk<const DEPTH: usize>(frames: &mut [u64; MAX_STACK_DEPTH]) -> Option<(usize, u64)> {
    // SAFETY: the current task's saved user registers (see `arch::user_reg`).
    let (ip, cs, sp, mut fp) = unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        if regs.is_null() {
            return None;
        }
        let r = |w| user_reg(regs, w);
        (r(word::IP), r(word::CS), r(word::SP), r(word::BP))
    };
    if cs == USER32_CS {
        return None;
    }
    frames[0] = ip;
    // The innermost record is the running function's (or, in a frameless leaf, its caller's),
    // on the stack it runs on: at or above the stack pointer. An `rbp` below it (or null) is
    // data, not a frame pointer (in glibc's lock code it holds the mutex): the kernel's walk
    // would read the lock's words as a record (a contended cache line, then junk frames); this
    // stops, having read only the leaf word, not the whole window (code built without frame
    // pointers, like Debian's stress-ng, ends here at every wait).
    if fp < sp {
        // SAFETY: a user read the helper checks (a fault yields Err, and the leaf is then 0,
        // as `stack::leaf_return_address` gives).
        return Some((
            1,
            unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0),
        ));
    }
    let win = STACK_WINDOW.get_ptr_mut(0)?;
    // SAFETY: this CPU's window, WINDOW_WORDS u64s of map memory, used by one program at a
    // time; the helper checks the user range and fails without faulting.
    let words = unsafe {
        let dst = (*win).as_mut_ptr().cast();
        let src = sp as *const core::ffi::c_void;
        if read_user_raw(dst, (WINDOW_WORDS * 8) as u32, src) == 0 {
            WINDOW_WORDS
        } else if read_user_raw(dst, (SMALL_WORDS * 8) as u32, src) == 0 {
            SMALL_WORDS
        } else {
            return None;
        }
    };
    let mut n = 1;
    // Nonzero once a record lies at or below the one before it (callers' frames on one stack
    // lie above). Kept in map memory, not a register: the verifier then follows one state per
    // step, where a flag in a register doubled them (and the load time).
    // SAFETY: this CPU's window; its flag word.
    unsafe { (*win)[DESCENDED] = 0 };
    for _ in 1..FAST_DEPTH {
        if fp == 0 || n >= DEPTH {
            return Some((n, leaf(win)));
        }
        let off = fp.wrapping_sub(sp);
        // Both ways leave the record in the window (a record outside the copy is read into
        // its two slack words), so the verifier sees one state per step, not two.
        let i = if off & 7 == 0 && off < ((words - 1) * 8) as u64 {
            (off / 8) as usize & (WINDOW_WORDS - 1)
        } else {
            // SAFETY: the slack words of this CPU's window; the helper checks the user range
            // and fails without faulting.
            let slack = unsafe { (*win).as_mut_ptr().add(WINDOW_WORDS) };
            // A record below the lowest mappable address is not read (see [`USER_MIN_ADDR`]).
            // SAFETY: a plain read of a static; volatile so the compiler cannot fold the 0 it
            // was compiled with (user space rewrites it before load).
            if fp < unsafe { core::ptr::read_volatile(&USER_MIN_ADDR) }
                // SAFETY: as above (the window's slack words; a checked user read).
                || unsafe { read_user_raw(slack.cast(), 16, fp as *const core::ffi::c_void) } != 0
            {
                return Some((n, leaf(win)));
            }
            WINDOW_WORDS
        };
        // SAFETY: as above; `i + 1` is at most the last slack word.
        let (next, ret) = unsafe { ((*win)[i], (*win)[i + 1]) };
        frames[n] = ret;
        n += 1;
        // `next <= fp` as arithmetic (user addresses are below 2^63): a compare would split
        // the verifier's state in two at every step.
        // SAFETY: as above.
        unsafe { (*win)[DESCENDED] |= next.wrapping_sub(fp).wrapping_sub(1) >> 63 };
        fp = next;
    }
    // A chain that ran FAST_DEPTH records and went down somewhere is kept as walked: in code
    // built without frame pointers `rbp` is data, and the kernel's walk would follow the same
    // junk for up to 127 reads (walking it twice cost stress-ng a quarter of its throughput);
    // a real chain that changes stacks (Go's system stack, a signal stack) is cut there.
    // SAFETY: as above.
    if fp == 0 || n >= DEPTH || unsafe { (*win)[DESCENDED] } != 0 {
        return Some((n, leaf(win)));
    }
    // A clean chain deeper than this walk goes: the kernel walks it all.
    None
}

/// The copy's first word: the one at the user stack pointer.
#[inline(always)]
fn leaf(win: *const [u64; WINDOW_WORDS + 3]) -> u64 {
    // SAFETY: this CPU's window, initialised by the copy.
    unsafe { (*win)[0] }
}
