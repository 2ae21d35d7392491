//! gowait: naming a Go process's futex waits. They are OS threads, not goroutines: idle ones
//! parking in the scheduler, runtime locks (`runtime.lock2`), GC and stop-the-world
//! handshakes. Classified from the runtime functions on the stack; the frames past the
//! scheduler's root belong to another goroutine and are cut.
use crate::profile::Stack;

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
