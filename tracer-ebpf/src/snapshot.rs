//! DWARF mode: for each wait that slept, the user registers and a copy of the user stack go to
//! user space through a ring buffer, to be unwound there with the modules' CFI. Counting and
//! pairing stay in the kernel aggregates; a snapshot only refines the stack.
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_task_btf,
    generated::{bpf_probe_read_user, bpf_task_pt_regs},
};
use tracer_common::{
    Counter, SnapshotHeader, StackSnapshotOf, WaitKey, SNAPSHOT_MAX_BYTES, SNAPSHOT_MIN_BYTES,
    SNAPSHOT_RING_WAKE_BYTES, SNAPSHOT_SMALL_BYTES, SNAP_WAIT_END, SNAP_WHOLE, TARGET_SNAP_FULL,
    TARGET_SNAP_SMALL,
};

use aya_log_ebpf::debug;

use crate::arch::{user_reg, word};
use crate::filter::snapshot_flags;
use crate::maps::{bump, SNAPSHOTS};

/// Bytes of stack to copy; 0 turns snapshots off (frame-pointer mode). Set before load.
#[no_mangle]
static SNAPSHOT_BYTES: u32 = 0;

/// Unread bytes in the ring past which a submit wakes user space at once.
const RING_WAKE_AT: u64 = SNAPSHOT_RING_WAKE_BYTES as u64;

#[inline(always)]
pub fn enabled() -> u32 {
    // SAFETY: a plain read of a static; volatile so the compiled-in 0 is not folded.
    unsafe { core::ptr::read_volatile(&SNAPSHOT_BYTES) }
}

/// Bytes of stack to copy for the current thread: the load-time size, and in set mode only
/// for a process whose `TARGETS` flags ask for copies (at most the small size for `fp+cfi`).
/// 0: none. With one target this is [`enabled`] (no map lookup).
#[inline(always)]
pub fn wanted() -> usize {
    let bytes = enabled() as usize;
    if bytes == 0 {
        return 0;
    }
    match snapshot_flags() {
        TARGET_SNAP_FULL => bytes,
        TARGET_SNAP_SMALL => bytes.min(SNAPSHOT_SMALL_BYTES),
        _ => 0,
    }
}

/// Sends one snapshot of the current thread for the wait `key` that lasted `wait_ns`. A
/// request of at most [`SNAPSHOT_SMALL_BYTES`] (`fp+cfi` mode) uses the small record size.
#[inline(always)]
pub fn emit(key: &WaitKey, wait_ns: u64) {
    emit_part(key, wait_ns, SNAP_WHOLE);
}

/// [`emit`] for one `part` of a wait (`tracer_common::SNAP_*`).
#[inline(always)]
pub fn emit_part(key: &WaitKey, wait_ns: u64, part: u32) {
    let _ = emit_wanted(wanted(), key, wait_ns, part);
}

/// [`emit_part`] with [`wanted`] already known (`want`: 0 sends nothing). Returns whether a
/// record went into the ring.
#[inline(always)]
pub fn emit_wanted(want: usize, key: &WaitKey, wait_ns: u64, part: u32) -> bool {
    if want == 0 {
        return false;
    }
    if want <= SNAPSHOT_SMALL_BYTES {
        emit_sized::<SNAPSHOT_SMALL_BYTES>(key, wait_ns, want, part)
    } else {
        emit_sized::<SNAPSHOT_MAX_BYTES>(key, wait_ns, want, part)
    }
}

/// Scheduler hooks: the end of a wait whose stack went at its switch-out (begun at
/// `start_ns`): its final key and time, no stack. The caller checks that a stack went into the
/// ring (the waiter is not `current` here, so its process's flags cannot be looked up): a wait
/// whose copy was dropped sends no end, so a full ring counts it once.
#[inline(always)]
pub fn emit_end(key: &WaitKey, wait_ns: u64, start_ns: u64) {
    let Some(mut entry) = SNAPSHOTS.reserve::<SnapshotHeader>(0) else {
        bump(Counter::SnapshotsDropped);
        return;
    };
    entry.write(SnapshotHeader {
        key: *key,
        wait_ns,
        ip: start_ns,
        sp: 0,
        bp: 0,
        len: 0,
        part: SNAP_WAIT_END,
        tgid: 0,
        _pad: 0,
    });
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}

#[inline(always)]
fn emit_sized<const N: usize>(key: &WaitKey, wait_ns: u64, want: usize, part: u32) -> bool {
    let Some(mut entry) = SNAPSHOTS.reserve::<StackSnapshotOf<N>>(0) else {
        bump(Counter::SnapshotsDropped);
        debug!(
            &(),
            "snapshot ring full: a {} ns wait keeps its frame-walk stack", wait_ns
        );
        return false;
    };
    let snap = entry.as_mut_ptr();
    // SAFETY: `snap` is a reserved ring buffer record of the right size that we own until
    // submit; the helpers validate the kernel and user pointers they read from.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const u8;
        let reg = |w: usize| if regs.is_null() { 0 } else { user_reg(regs, w) };
        let (ip, sp, bp) = (reg(word::IP), reg(word::SP), reg(word::BP));
        (*snap).hdr.key = *key;
        (*snap).hdr.wait_ns = wait_ns;
        (*snap).hdr.ip = ip;
        (*snap).hdr.sp = sp;
        (*snap).hdr.bp = bp;
        (*snap).hdr.part = part;
        (*snap).hdr.tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        (*snap).hdr._pad = 0;
        // Constant sizes only (the verifier wants them); a copy may not run past the top of
        // the stack's mapping, so smaller sizes are tried in turn.
        let dst = (*snap).data.as_mut_ptr().cast();
        let mut len = 0u32;
        let mut size = N;
        while size >= SNAPSHOT_MIN_BYTES {
            if size <= want
                && bpf_probe_read_user(dst, size as u32, sp as *const core::ffi::c_void) == 0
            {
                len = size as u32;
                break;
            }
            size /= 2;
        }
        if len == 0 {
            bump(Counter::SnapshotReadErrors);
        }
        (*snap).hdr.len = len;
    }
    // User space drains the ring on its own clock; a wakeup per record would cost the target
    // a cross-CPU interrupt per wait. Only a ring with a backlog wakes it at once.
    let flags = if SNAPSHOTS.query(BPF_RB_AVAIL_DATA as u64) > RING_WAKE_AT {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
    true
}
