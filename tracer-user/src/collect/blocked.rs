//! blocked: threads already asleep in a futex wait when lockscope attaches. A deadlock that
//! began before the recording makes no futex call while it lasts, so the tracepoints never
//! see it; this module finds such threads without stopping the target:
//! - at attach, `/proc/PID/task/TID/syscall` names each thread's current syscall with its
//!   arguments (futex word, op) and the user stack pointer and pc; the stack is copied from
//!   `/proc/PID/mem` and unwound by CFI (`unwind::SnapshotUnwinder`; rbp is not known);
//! - once the probes are live, each such thread is looked at again: one still in the very
//!   same call (same syscall, word, stack pointer and pc) gets a kernel in-flight entry dated
//!   at that second look, so if it wakes, the normal exit path counts the part of its wait
//!   that the recording saw. A thread that woke while the probes were being attached gets no
//!   entry: its later waits start when they start, and never inherit the scan's time or word;
//! - at the end, those still in the same wait with that entry untouched were blocked for the
//!   whole recording. For glibc mutexes the owner's tid is read from the mutex
//!   (`struct __pthread_mutex_s`: `__lock` at 0 is the futex word, `__owner` at 8), and a
//!   cycle of waiters each waiting on a mutex another holds is a possible deadlock.
use std::fs::{self, File};
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};
use aya::maps::Array;

use tracer_common::{classify_futex_op, inflight_slot, map, InFlight, OpKind};

use crate::attach::Tracer;
use crate::profile::{Blocked, Profile};
use crate::symbolize::{Addr, StackSymbolizer};
use crate::sys::MapHistory;
use crate::unwind::SnapshotUnwinder;

/// x86-64 `futex(2)`, and futex2's `futex_wait(2)` (uaddr first too).
const SYS_FUTEX: u64 = 202;
const SYS_FUTEX_WAIT: u64 = 455;
/// Stack bytes copied per blocked thread (capped at the end of its stack mapping).
const STACK_BYTES: u64 = 64 * 1024;
/// glibc's `pthread_mutex_t`: the owner's tid sits 8 bytes after the futex word.
const MUTEX_OWNER_OFFSET: u64 = 8;

/// A thread asleep in a futex wait when tracing began.
#[derive(Debug, Clone)]
pub struct Asleep {
    pub tid: u32,
    pub uaddr: u64,
    pub kind: OpKind,
    pub frames: Vec<Addr>,
    /// Where the thread sat in its syscall when scanned: the second look must match it.
    pub at: (u64, u64),
    /// The kernel in-flight entry's start (CLOCK_MONOTONIC): when the thread was last seen in
    /// this wait before the probes could see its exit (the scan, then the second look).
    pub seeded_ns: u64,
}

/// What `/proc/PID/task/TID/syscall` says of a thread in a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InSyscall {
    pub nr: u64,
    pub args: [u64; 6],
    pub sp: u64,
    pub pc: u64,
}

/// `202 0x7f.. 0x80 0x2 0x0 0x0 0x0 0x7ffd.. 0x7f..`; `None` for `running` or `-1 sp pc`.
pub fn parse_syscall(text: &str) -> Option<InSyscall> {
    let mut it = text.split_whitespace();
    let nr = it.next()?.parse().ok()?;
    let mut hex = || u64::from_str_radix(it.next()?.trim_start_matches("0x"), 16).ok();
    let mut args = [0; 6];
    for a in &mut args {
        *a = hex()?;
    }
    Some(InSyscall {
        nr,
        args,
        sp: hex()?,
        pc: hex()?,
    })
}

/// The futex wait a syscall line shows, if it is one (`futex_waitv` is not: its words are
/// behind a pointer).
fn wait_kind(s: &InSyscall) -> Option<OpKind> {
    match s.nr {
        SYS_FUTEX => classify_futex_op(s.args[1] as u32).filter(|k| k.is_wait()),
        SYS_FUTEX_WAIT => Some(OpKind::Wait2),
        _ => None,
    }
}

fn futex_wait_of(pid: u32, tid: u32) -> Option<(InSyscall, OpKind)> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    let s = parse_syscall(&text)?;
    wait_kind(&s).map(|k| (s, k))
}

fn tids(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn read_u32(mem: &File, addr: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    mem.read_exact_at(&mut b, addr).ok()?;
    Some(u32::from_le_bytes(b))
}

/// Up to `STACK_BYTES` of user stack from `sp`, page by page: a stack's mapping may end
/// sooner (the main thread's is near the top of its mapping).
fn read_stack(mem: &File, sp: u64) -> Vec<u8> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = sp;
    while at < sp + STACK_BYTES {
        let next = (at / PAGE + 1) * PAGE;
        let mut chunk = vec![0u8; (next - at) as usize];
        if mem.read_exact_at(&mut chunk, at).is_err() {
            break;
        }
        out.extend_from_slice(&chunk);
        at = next;
    }
    out
}

/// Threads of `pid` asleep in a futex wait now, with their user stacks.
pub fn scan(pid: u32, now_ns: u64) -> Vec<Asleep> {
    let mut maps = MapHistory::default();
    if !maps.refresh(pid) {
        return Vec::new();
    }
    let mut unwinder = SnapshotUnwinder::default();
    unwinder.update(&maps);
    let mem = File::open(format!("/proc/{pid}/mem")).ok();
    let mut out = Vec::new();
    for tid in tids(pid) {
        let Some((s, kind)) = futex_wait_of(pid, tid) else {
            continue;
        };
        let stack = mem
            .as_ref()
            .map(|m| read_stack(m, s.sp))
            .unwrap_or_default();
        let mut frames = if stack.is_empty() {
            Vec::new()
        } else {
            unwinder.unwind_ended(s.pc, s.sp, 0, &stack).0
        };
        if frames.is_empty() {
            frames.push(Addr::Ip(s.pc));
        }
        out.push(Asleep {
            tid,
            uaddr: s.args[0],
            kind,
            frames,
            at: (s.sp, s.pc),
            seeded_ns: now_ns,
        });
    }
    out
}

/// Called once the probes are live: keeps the threads still in the very call the scan saw
/// (same word, kind, stack pointer and pc), and gives each a kernel in-flight entry dated now,
/// so a wake is counted by the normal exit path from an instant it was seen asleep. A thread
/// that already entered a new call keeps its own entry; one that left its wait while the
/// probes were attached is dropped, so no later wait inherits the scan's start or word.
pub fn seed(tracer: &mut Tracer, asleep: &mut Vec<Asleep>, pid: u32) -> Result<()> {
    let mut inflight: Array<_, InFlight> =
        Array::try_from(tracer.ebpf.map_mut(map::INFLIGHT).context("INFLIGHT map")?)?;
    asleep.retain_mut(|a| {
        let now_ns = crate::sys::monotonic_ns();
        let same = futex_wait_of(pid, a.tid)
            .is_some_and(|(s, k)| s.args[0] == a.uaddr && k == a.kind && (s.sp, s.pc) == a.at);
        if !same {
            return false;
        }
        let slot = inflight_slot(a.tid);
        // Never overwrite a call the probes saw begin.
        if inflight.get(&slot, 0).is_ok_and(|c| c.tid == a.tid) {
            return false;
        }
        a.seeded_ns = now_ns;
        let call = InFlight {
            start_ns: now_ns,
            uaddr: a.uaddr,
            tid: a.tid,
            kind: a.kind as u32,
            ..InFlight::default()
        };
        inflight.set(slot, call, 0).is_ok()
    });
    // The scheduler hooks see no call: they end a seeded wait at the first futex wake of its
    // word by the target (one thread per word).
    let mut words: aya::maps::HashMap<_, u64, u32> =
        aya::maps::HashMap::try_from(tracer.ebpf.map_mut(map::SEEDED).context("SEEDED map")?)?;
    for a in asleep.iter() {
        let _ = words.insert(a.uaddr, a.tid, 0);
    }
    Ok(())
}

/// Frame-pointer mode: the ended waits of threads seen asleep at attach, under the stack the
/// scan read. The kernel took none for them (the scheduler hooks end such a wait in its
/// waker's context), and without one a few long waits ranked first as `[stack lost]`
/// contention on MariaDB. They join the user-unwound rows, as DWARF mode's snapshot reader
/// files them from the same scan.
pub fn lend_scanned_stacks(raw: &mut super::Raw, asleep: &[Asleep]) {
    if raw.dwarf.is_some() {
        return;
    }
    let mut lent = std::collections::HashMap::new();
    for (k, st) in &raw.waits {
        let scanned = asleep
            .iter()
            .find(|a| a.tid == k.tid && a.uaddr == k.uaddr && !a.frames.is_empty());
        if let (tracer_common::NO_STACK, Some(a)) = (k.stack_id, scanned) {
            lent.insert((*k, a.frames.clone()), *st);
        }
    }
    if !lent.is_empty() {
        raw.dwarf = Some(lent);
    }
}

/// Of the threads asleep at attach, those still in the very same wait: their in-flight entry
/// is the one seeded (no exit since), and /proc still shows them on the same word.
pub fn still_blocked(
    tracer: &Tracer,
    pid: u32,
    asleep: Vec<Asleep>,
    now_ns: u64,
) -> Result<Vec<(Asleep, Blocked)>> {
    let inflight: Array<_, InFlight> =
        Array::try_from(tracer.ebpf.map(map::INFLIGHT).context("INFLIGHT map")?)?;
    let mem = File::open(format!("/proc/{pid}/mem")).ok();
    let live = tids(pid);
    let mut out = Vec::new();
    for a in asleep {
        let untouched = inflight
            .get(&inflight_slot(a.tid), 0)
            .is_ok_and(|c| c.tid == a.tid && c.start_ns == a.seeded_ns && c.uaddr == a.uaddr);
        let same = futex_wait_of(pid, a.tid).is_some_and(|(s, _)| s.args[0] == a.uaddr);
        if !(untouched && same) {
            continue;
        }
        let word = mem.as_ref().and_then(|m| read_u32(m, a.uaddr));
        let owner = mem
            .as_ref()
            .and_then(|m| read_u32(m, a.uaddr + MUTEX_OWNER_OFFSET))
            .filter(|&o| o != a.tid && live.contains(&o));
        let b = Blocked {
            tid: a.tid,
            uaddr: a.uaddr,
            op: a.kind.into(),
            stack: None,
            word,
            owner,
            seen_ns: now_ns.saturating_sub(a.seeded_ns),
        };
        out.push((a, b));
    }
    Ok(out)
}

/// Puts the threads blocked for the whole recording into the profile, their stacks
/// symbolized with the rest.
pub fn add_to_profile(
    profile: &mut Profile,
    blocked: Vec<(Asleep, Blocked)>,
    sym: &mut StackSymbolizer,
) {
    let (asleep, mut blocked): (Vec<Asleep>, Vec<Blocked>) = blocked.into_iter().unzip();
    let stacks = sym.symbolize(asleep.into_iter().map(|a| a.frames).collect());
    for (b, s) in blocked.iter_mut().zip(stacks) {
        profile.stacks.push(s);
        b.stack = Some(profile.stacks.len() - 1);
    }
    profile.modules = sym.modules();
    profile.blocked = blocked;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines_parse_and_running_threads_do_not() {
        let s = parse_syscall(
            "202 0x55d0c0a01040 0x80 0x2 0x0 0x0 0x0 0x7f3b2cdfed28 0x7f3b2d0a4e5e\n",
        )
        .unwrap();
        assert_eq!(s.nr, 202);
        assert_eq!(s.args[0], 0x55d0c0a01040);
        assert_eq!(s.args[1], 0x80);
        assert_eq!((s.sp, s.pc), (0x7f3b2cdfed28, 0x7f3b2d0a4e5e));
        assert_eq!(wait_kind(&s), Some(OpKind::Wait));
        // A wake, a futex2 wait, and a read(2) in progress.
        let wake = parse_syscall("202 0x1000 0x81 0x1 0x0 0x0 0x0 0x7ffd 0x7f00").unwrap();
        assert_eq!(wait_kind(&wake), None);
        // futex_wait(2) is 455; 454 is futex_wake(2).
        let wait2 = parse_syscall("455 0x1000 0x0 0xffffffff 0x82 0x0 0x1 0x7ffd 0x7f00").unwrap();
        assert_eq!(wait_kind(&wait2), Some(OpKind::Wait2));
        let wake2 = parse_syscall("454 0x1000 0xffffffff 0x1 0x82 0x0 0x0 0x7ffd 0x7f00").unwrap();
        assert_eq!(wait_kind(&wake2), None);
        let read = parse_syscall("0 0x3 0x7ffd 0x1000 0x0 0x0 0x0 0x7ffd 0x7f00").unwrap();
        assert_eq!(wait_kind(&read), None);
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f00\n"), None);
    }
}
