//! Checks made before anything is attached, each failing with the exact fix.
use std::fs;
use std::path::Path;

use anyhow::{bail, Result};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set from the text of /proc/self/status.
pub fn effective_caps(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

pub fn can_trace(caps: u64) -> bool {
    let has = |c: u32| caps & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

pub fn check_privileges() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !can_trace(effective_caps(&status)) {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "lockscope".into());
        bail!(
            "loading eBPF programs needs root or CAP_BPF+CAP_PERFMON: run it with sudo, or grant them once with `sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep {exe}`"
        );
    }
    Ok(())
}

/// The four ids (real, effective, saved, filesystem) of a `Uid:` or `Gid:` line of
/// /proc/PID/status.
fn ids(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a caller with real ids (`uid`, `gid`) may read a process as the kernel's ptrace
/// access check would let that user, without the capabilities lockscope runs with: the
/// process runs as that user and group throughout (no setuid/setgid transition), and is
/// dumpable (a non-dumpable process's /proc files belong to root: `owner`).
pub fn user_may_trace(uid: u32, gid: u32, status: &str, owner: u32) -> bool {
    let uids = ids(status, "Uid:");
    let gids = ids(status, "Gid:");
    uid == 0
        || (!uids.is_empty()
            && uids.iter().all(|&u| u == uid)
            && gids.iter().all(|&g| g == gid)
            && owner == uid)
}

/// A caller that is not root (capabilities granted by `setcap`) may trace only what it could
/// ptrace itself: the capabilities let lockscope load eBPF, not read other users' processes.
pub fn check_may_trace(pid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if uid == 0 {
        return Ok(());
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let owner = fs::metadata(format!("/proc/{pid}")).map_or(0, |m| m.uid());
    if !user_may_trace(uid, gid, &status, owner) {
        bail!(
            "you (uid {uid}) may not trace PID {pid}: it runs as another user, or changed ids, or is not dumpable; run lockscope as root or as that process's user"
        );
    }
    Ok(())
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// Tracepoints attach through tracefs; some systems never mount it. Mount it if we can.
pub fn ensure_tracefs() -> Result<()> {
    let events = Path::new(TRACEFS).join("events");
    if events.is_dir() || Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return Ok(());
    }
    let src = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: all pointers are NUL-terminated C string literals; data may be NULL.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 || !events.is_dir() {
        let err = std::io::Error::last_os_error();
        bail!("tracefs is not mounted and mounting it failed ({err}): run `sudo mount -t tracefs nodev {TRACEFS}`");
    }
    eprintln!("lockscope: mounted tracefs at {TRACEFS}");
    Ok(())
}

/// Whether the kernel has a syscall tracepoint (the futex2 ones are newer than futex).
pub fn has_tracepoint(category: &str, name: &str) -> bool {
    [TRACEFS, "/sys/kernel/debug/tracing"].iter().any(|root| {
        Path::new(root)
            .join("events")
            .join(category)
            .join(name)
            .is_dir()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_rules() {
        assert!(!can_trace(0));
        assert!(can_trace(1 << CAP_SYS_ADMIN));
        assert!(!can_trace(1 << CAP_BPF));
        assert!(can_trace((1 << CAP_BPF) | (1 << CAP_PERFMON)));
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert!(can_trace(effective_caps(root)));
        assert!(!can_trace(effective_caps("CapEff:\t0000000000000000\n")));
    }

    #[test]
    fn ptrace_rules_for_users() {
        let mine = "Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n";
        assert!(user_may_trace(1000, 1000, mine, 1000));
        // Another user's process, a setuid transition, a non-dumpable process.
        assert!(!user_may_trace(1001, 1001, mine, 1000));
        let setuid = "Uid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert!(!user_may_trace(1000, 1000, setuid, 1000));
        assert!(!user_may_trace(1000, 1000, mine, 0));
        // Root may; an unreadable status says nothing, so no.
        assert!(user_may_trace(0, 0, mine, 1000));
        assert!(!user_may_trace(1000, 1000, "", 1000));
    }
}
