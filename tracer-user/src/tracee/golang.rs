//! golang: Go targets. A goroutine blocked on a sync.Mutex parks in the Go scheduler without
//! a futex call; the futex waits of a Go process are OS threads: idle ones parking, runtime
//! locks (`runtime.lock2`), GC and stop-the-world handshakes. This module recognises Go
//! executables, names those classes, and keeps idle parking out of the contention rows.
use std::path::Path;

use object::{Object, ObjectSection};

use crate::profile::Stack;

/// A Go executable's toolchain version (`go1.19.8`) from its `.go.buildinfo` section.
pub fn go_version(exe: &Path) -> Option<String> {
    let file = std::fs::read(exe).ok()?;
    let obj = object::File::parse(&*file).ok()?;
    let data = obj.section_by_name(".go.buildinfo")?.data().ok()?;
    // "\xff Go buildinf:" (14 bytes), pointer size, flags; flag 2: strings inline after the
    // 32-byte header, each a uvarint length then bytes (Go 1.18+).
    if !data.starts_with(b"\xff Go buildinf:") {
        return None;
    }
    if data.get(15).is_some_and(|f| f & 2 != 0) {
        let (len, n) = uvarint(data.get(32..)?)?;
        let start = 32 + n;
        let v = data.get(start..start + len as usize)?;
        return Some(String::from_utf8_lossy(v).into_owned());
    }
    // Older layouts point at the string instead; the section still says it is Go.
    Some("go (version not inline)".into())
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// What an OS thread of a Go process was doing in a futex wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoWait {
    /// An M with no goroutine to run, parked by the scheduler: not lock contention.
    IdleThread,
    /// Contention on a runtime-internal lock.
    RuntimeLock,
    /// GC or stop-the-world coordination (waiting for other Ms to reach a safe point).
    StopTheWorld,
    Other,
}

impl GoWait {
    pub fn label(self) -> &'static str {
        match self {
            GoWait::IdleThread => "Go idle thread parking (not contention)",
            GoWait::RuntimeLock => "Go runtime lock (runtime.lock2)",
            GoWait::StopTheWorld => "Go GC / stop-the-world handshake",
            GoWait::Other => "Go runtime futex wait",
        }
    }
}

/// Classifies a Go futex wait by the runtime functions on its stack, innermost first.
pub fn classify(stack: Option<&Stack>) -> GoWait {
    let Some(stack) = stack else {
        return GoWait::Other;
    };
    for name in crate::profile::function_names(stack) {
        match name {
            "runtime.lock2" | "runtime.lockWithRank" => return GoWait::RuntimeLock,
            // An M without work, and the runtime's own monitor threads between rounds.
            "runtime.mPark"
            | "runtime.stopm"
            | "runtime.stoplockedm"
            | "runtime.startlockedm"
            | "runtime.sysmon"
            | "runtime.templateThread" => return GoWait::IdleThread,
            "runtime.forEachP"
            | "runtime.stopTheWorldWithSema"
            | "runtime.gcMarkDone"
            | "runtime.gcMarkTermination" => return GoWait::StopTheWorld,
            _ => {}
        }
    }
    GoWait::Other
}

/// Frames past `runtime.mcall` belong to whichever goroutine last ran on this thread, not to
/// the thread's wait: the frame-pointer chain runs on into its stack. `runtime.mstart` and
/// `runtime.rt0_go` start an M's system stack; past them is whatever was in memory. Cut there.
/// True when the stack reached such a root (whatever lay past it was not this wait's, so an
/// impossible frame there cut nothing that matters).
pub fn cut_at_scheduler(stack: &mut Stack) -> bool {
    const ROOTS: [&str; 3] = ["runtime.mcall", "runtime.mstart", "runtime.rt0_go"];
    let root = stack
        .frames
        .iter()
        .position(|f| f.syms.iter().any(|s| ROOTS.contains(&s.name.as_str())));
    if let Some(i) = root {
        stack.frames.truncate(i + 1);
    }
    root.is_some()
}

/// Goroutine uprobes on a Go target (`--go-uprobes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoUprobes {
    /// On for Go targets, quietly off for others.
    Auto,
    /// Required: fail if they cannot be placed.
    On,
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::stack;

    #[test]
    fn go_waits_are_classified_and_cut_at_mcall() {
        let mut idle = stack(&[
            "runtime.futex",
            "runtime.notesleep",
            "runtime.mPark",
            "runtime.stopm",
            "runtime.findRunnable",
            "runtime.schedule",
            "runtime.park_m",
            "runtime.mcall",
            "sync.(*Mutex).lockSlow",
            "main.lockSite",
        ]);
        assert_eq!(classify(Some(&idle)), GoWait::IdleThread);
        cut_at_scheduler(&mut idle);
        assert_eq!(
            idle.frames.len(),
            8,
            "the parked goroutine's frames are not this wait's"
        );
        let lock = stack(&[
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.lock2",
            "runtime.lockWithRank",
        ]);
        assert_eq!(classify(Some(&lock)), GoWait::RuntimeLock);
        let mut sysmon = stack(&[
            "runtime.futex",
            "runtime.sysmon",
            "runtime.mstart",
            "runtime.execute",
        ]);
        assert_eq!(classify(Some(&sysmon)), GoWait::IdleThread);
        cut_at_scheduler(&mut sysmon);
        assert_eq!(
            sysmon.frames.len(),
            3,
            "nothing past the system stack's root"
        );
        let stw = stack(&["runtime.futex", "runtime.notetsleep", "runtime.forEachP"]);
        assert_eq!(classify(Some(&stw)), GoWait::StopTheWorld);
        assert_eq!(classify(None), GoWait::Other);
    }
}
