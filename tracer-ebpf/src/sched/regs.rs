//! What a task's saved user registers (`bpf_task_pt_regs`) say it is doing: a futex call
//! (x86_64 or ia32 numbering and registers; offsets from `crate::arch`), a restart, sending
//! or handling a signal.
use aya_ebpf::bindings::task_struct;
use aya_ebpf::helpers::{bpf_get_current_task_btf, generated::bpf_task_pt_regs};
use tracer_common::{classify_futex_op, OpKind};

use crate::arch::{user_reg, word, USER32_CS};
use crate::futex::first_uaddr;

// The saved user registers from `r10` to `cs`; indexes into that block.
const R10: usize = 0;
const R8: usize = word::R8 - word::R10;
const AX: usize = word::AX - word::R10;
const CX: usize = word::CX - word::R10;
const SI: usize = word::SI - word::R10;
const DI: usize = word::DI - word::R10;
const ORIG_AX: usize = word::ORIG_AX - word::R10;
const CS: usize = word::CS - word::R10;
const REGS_WORDS: usize = CS + 1;

// Syscall numbers, x86_64 and ia32 (the futex2 ones are shared).
const NR_FUTEX: u64 = 202;
const NR32_FUTEX: u64 = 240;
const NR32_FUTEX_TIME64: u64 = 422;
const NR_FUTEX_WAITV: u64 = 449;
const NR_FUTEX_WAKE: u64 = 454;
const NR_FUTEX_WAIT: u64 = 455;
const NR_FUTEX_REQUEUE: u64 = 456;
const NR_RESTART_SYSCALL: u64 = 219;
const NR32_RESTART_SYSCALL: u64 = 0;
/// Calls that send a signal: kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo,
/// pidfd_send_signal (x86_64).
const NR_SIGNALS: [u64; 6] = [62, 200, 234, 129, 297, 424];
/// The same on ia32: kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo.
const NR32_SIGNALS: [u64; 5] = [37, 238, 270, 178, 335];

/// Whether a wait call was given a timeout.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Timed {
    Yes,
    No,
}

impl Timed {
    pub(super) fn of(timeout: u64) -> Timed {
        if timeout == 0 {
            Timed::No
        } else {
            Timed::Yes
        }
    }
}

/// What the current task's saved user registers say it is doing.
pub(super) enum Call {
    /// A futex call of this kind on this word.
    Futex(OpKind, u64, Timed),
    /// `restart_syscall`: resuming an interrupted call.
    Restart,
    /// Sending a signal.
    Signal,
    Other,
}

/// A task's saved user registers from `r10` to `cs` (those read: the rest stay 0), and for a
/// compat task its `bx`.
#[inline(always)]
fn saved_regs(task: *mut task_struct) -> Option<([u64; REGS_WORDS], Option<u64>)> {
    // SAFETY: the task's saved user registers, read by plain loads the verifier checks against
    // `struct pt_regs` (see `arch::user_reg`).
    unsafe {
        let regs = bpf_task_pt_regs(task) as *const u8;
        if regs.is_null() {
            return None;
        }
        let mut r = [0u64; REGS_WORDS];
        for w in [
            word::R10,
            word::R8,
            word::AX,
            word::CX,
            word::SI,
            word::DI,
            word::ORIG_AX,
            word::CS,
        ] {
            r[w - word::R10] = user_reg(regs, w);
        }
        // ia32: uaddr in bx, op in cx.
        let compat = (r[CS] == USER32_CS).then(|| user_reg(regs, word::BX));
        Some((r, compat))
    }
}

/// The word another task `p` is in a futex wait on, if it is in one (classic `futex` or
/// futex2 `futex_wait`; not `futex_waitv`, whose word list is in `p`'s memory).
#[inline(always)]
pub(super) fn waiting_word_of(p: u64) -> Option<u64> {
    let (r, compat) = saved_regs(p as *mut task_struct)?;
    let nr = r[ORIG_AX];
    let (uaddr, op) = match compat {
        Some(bx) => (bx & 0xffff_ffff, r[CX] & 0xffff_ffff),
        None => (r[DI], r[SI]),
    };
    let classic = match compat {
        Some(_) => nr == NR32_FUTEX || nr == NR32_FUTEX_TIME64,
        None => nr == NR_FUTEX,
    };
    if classic {
        return classify_futex_op(op as u32)
            .filter(|k| k.is_wait() && *k != OpKind::Waitv)
            .map(|_| uaddr);
    }
    (nr == NR_FUTEX_WAIT && compat.is_none()).then_some(r[DI])
}

#[inline(always)]
pub(super) fn current_call() -> Call {
    // SAFETY: a helper with no preconditions.
    let Some((r, compat)) = saved_regs(unsafe { bpf_get_current_task_btf() }) else {
        return Call::Other;
    };
    let nr = r[ORIG_AX];
    // futex(2)'s word, op and timeout: ia32 passes them in bx, cx and si.
    let (uaddr, op, timeout) = match compat {
        Some(bx) => (bx & 0xffff_ffff, r[CX] & 0xffff_ffff, r[SI] & 0xffff_ffff),
        None => (r[DI], r[SI], r[R10]),
    };
    let classic = match compat {
        Some(_) => nr == NR32_FUTEX || nr == NR32_FUTEX_TIME64,
        None => nr == NR_FUTEX,
    };
    if classic {
        return match classify_futex_op(op as u32) {
            Some(kind) => Call::Futex(kind, uaddr, Timed::of(timeout)),
            None => Call::Other,
        };
    }
    // The futex2 calls (x86_64 registers; ia32 passes the same arguments in bx, cx, dx, si,
    // di: only their word is read there).
    let (a0, timeout2, timeoutv) = match compat {
        Some(_) => (uaddr, 0, 0),
        None => (r[DI], r[R8], r[R10]),
    };
    match nr {
        NR_FUTEX_WAIT => Call::Futex(OpKind::Wait2, a0, Timed::of(timeout2)),
        NR_FUTEX_WAKE => Call::Futex(OpKind::Wake2, a0, Timed::No),
        NR_FUTEX_WAITV => Call::Futex(OpKind::Waitv, first_uaddr(a0), Timed::of(timeoutv)),
        NR_FUTEX_REQUEUE => Call::Futex(OpKind::Requeue, first_uaddr(a0), Timed::No),
        _ => {
            let restart = match compat {
                Some(_) => NR32_RESTART_SYSCALL,
                None => NR_RESTART_SYSCALL,
            };
            if nr == restart {
                return Call::Restart;
            }
            let signal = match compat {
                Some(_) => NR32_SIGNALS.iter().any(|&s| s == nr),
                None => NR_SIGNALS.iter().any(|&s| s == nr),
            };
            // A thread returning from a call a signal cut short (the return value is set, its
            // signals are being handled: e.g. it spreads a group stop to its siblings).
            let ret = r[AX] as i64;
            let handling = matches!(ret, -4 | -512 | -513 | -514 | -516) && (nr as i64) >= 0;
            if signal || handling {
                Call::Signal
            } else {
                Call::Other
            }
        }
    }
}
