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
}
