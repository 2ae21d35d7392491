//! choose: which unwinder a recording uses, and why (`--unwind auto` decides from the files).
//!
//! - `fp`: the kernel's frame-pointer walk. Right when the program *and* the library code on
//!   its lock paths keep frame pointers (Rust programs: std's futex paths keep them and call
//!   only glibc's `syscall()`, a leaf whose caller is put back from the word at SP).
//! - `fp+cfi`: the program keeps frame pointers but calls glibc's blocking primitives
//!   (`pthread_mutex_lock`, `pthread_cond_wait`, …) and this glibc has none (Debian, Ubuntu ≤
//!   22.04). The walk from `rbp` would skip the program's function that took the lock. A 4 KiB
//!   stack copy is unwound with CFI through the frameless frames and joined to the kernel walk.
//! - `dwarf`: the program keeps no frame pointers: a 16 KiB copy unwound with CFI.
use std::path::{Path, PathBuf};

use tracer_common::{
    TargetFlags, SNAPSHOT_SMALL_BYTES, TARGET_FP, TARGET_SNAP_FULL, TARGET_SNAP_SMALL,
};

use super::prologue::{export_opens_frame, imports, prologues, StartsFrom};
use crate::sys::Target;

/// How stacks are walked, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwind {
    FramePointers,
    /// Stack snapshots of this many bytes.
    Dwarf(u32),
    /// Dwarf (with this many bytes) if the executable lacks frame pointers.
    Auto(u32),
}

/// The unwinder of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwindMode {
    FramePointers,
    FpCfi,
    Dwarf,
}

/// The profile stores which unwinder a recording used.
impl From<UnwindMode> for crate::profile::Unwinder {
    fn from(m: UnwindMode) -> Self {
        match m {
            UnwindMode::FramePointers => crate::profile::Unwinder::FramePointers,
            UnwindMode::FpCfi => crate::profile::Unwinder::FpCfi,
            UnwindMode::Dwarf => crate::profile::Unwinder::Dwarf,
        }
    }
}

impl UnwindMode {
    /// The `TARGETS` flags (set mode) that ask the kernel for this mode's stack copies.
    pub fn target_flags(self) -> TargetFlags {
        match self {
            UnwindMode::FramePointers => TARGET_FP,
            UnwindMode::FpCfi => TARGET_SNAP_SMALL,
            UnwindMode::Dwarf => TARGET_SNAP_FULL,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UnwindMode::FramePointers => "fp",
            UnwindMode::FpCfi => "fp+cfi",
            UnwindMode::Dwarf => "dwarf",
        }
    }
}

impl Unwind {
    /// The stack-copy size to load the kernel programs with when processes may each choose
    /// their mode (set mode): 0 only when no process can want copies.
    pub fn load_bytes(self) -> u32 {
        match self {
            Unwind::FramePointers => 0,
            Unwind::Dwarf(bytes) | Unwind::Auto(bytes) => bytes,
        }
    }
}

/// The mode, the bytes of stack the kernel copies per wait (0 in `fp`), and why `auto` chose
/// it (`None` when the user did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnwindPlan {
    pub mode: UnwindMode,
    pub snapshot_bytes: u32,
    pub why: Option<String>,
}

/// glibc's blocking primitives: a program that imports one waits inside frameless glibc code.
const GLIBC_BLOCKING: [&str; 16] = [
    "pthread_mutex_lock",
    "pthread_mutex_timedlock",
    "pthread_mutex_clocklock",
    "pthread_rwlock_rdlock",
    "pthread_rwlock_wrlock",
    "pthread_rwlock_timedrdlock",
    "pthread_rwlock_timedwrlock",
    "pthread_rwlock_clockrdlock",
    "pthread_rwlock_clockwrlock",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "pthread_cond_clockwait",
    "sem_wait",
    "sem_timedwait",
    "sem_clockwait",
    "pthread_barrier_wait",
];

/// Where glibc lives when the target's maps do not say (a command not started yet).
const LIBC_PATHS: [&str; 4] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
];

/// The C library a live target has mapped, else the system's.
fn libc_of(pid: u32) -> Option<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mapped = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libc.so"))
        })
        .map(PathBuf::from);
    mapped.or_else(|| LIBC_PATHS.iter().map(PathBuf::from).find(|p| p.exists()))
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The plan for `unwind` on `target`.
pub fn choose(unwind: Unwind, target: &Target) -> UnwindPlan {
    let plan = |mode, snapshot_bytes, why: String| UnwindPlan {
        mode,
        snapshot_bytes,
        why: Some(why),
    };
    let bytes = match unwind {
        Unwind::FramePointers => {
            return UnwindPlan {
                mode: UnwindMode::FramePointers,
                snapshot_bytes: 0,
                why: None,
            };
        }
        Unwind::Dwarf(bytes) => {
            return UnwindPlan {
                mode: UnwindMode::Dwarf,
                snapshot_bytes: bytes,
                why: None,
            };
        }
        Unwind::Auto(bytes) => bytes,
    };
    // Go on amd64 always keeps frame pointers, set up after its stack-growth check (so the
    // prologue test would miss them), and makes its futex calls from its own code.
    if let Some(go) = &target.go {
        return plan(
            UnwindMode::FramePointers,
            0,
            format!("auto: {go} keeps frame pointers"),
        );
    }
    let Some(exe) = target.exe.as_deref() else {
        return plan(
            UnwindMode::FramePointers,
            0,
            "auto: executable unreadable".into(),
        );
    };
    let name = file_name(exe);
    let Some(own) = prologues(exe) else {
        return plan(
            UnwindMode::FramePointers,
            0,
            format!("auto: cannot read {name}'s code"),
        );
    };
    if !own.keeps_frame_pointers() {
        let why = match own.from {
            StartsFrom::Symbols => format!("auto: {name} has no frame pointers — {}", own.describe()),
            StartsFrom::EhFrame => format!(
                "auto: {name} is stripped and not nine in ten of its functions keep frame pointers — {}",
                own.describe()
            ),
        };
        return plan(UnwindMode::Dwarf, bytes, why);
    }
    let imported = imports(exe);
    let blocking = GLIBC_BLOCKING
        .iter()
        .find(|f| imported.iter().any(|i| i == *f));
    if let (Some(f), Some(libc)) = (blocking, libc_of(target.tgid)) {
        if export_opens_frame(&libc, f) == Some(false) {
            return plan(
                UnwindMode::FpCfi,
                SNAPSHOT_SMALL_BYTES as u32,
                format!(
                    "auto: {name} keeps frame pointers but calls {f}, which {} runs without them",
                    file_name(&libc)
                ),
            );
        }
    }
    plan(
        UnwindMode::FramePointers,
        0,
        format!("auto: {name} keeps frame pointers — {}", own.describe()),
    )
}

/// An executable file as [`PlanCache`] knows it: device, inode, size and modification time.
type FileKey = (u64, u64, u64, i64, i64);

/// Plans already chosen, by executable file: a daemon sees the same binaries start over and
/// over, and choosing reads the whole executable's code (hundreds of ms for a large one).
#[derive(Default)]
pub struct PlanCache {
    plans: std::collections::HashMap<FileKey, UnwindPlan>,
}

/// Files remembered at most; past this the cache starts over.
const PLANS_KEPT: usize = 1024;

impl PlanCache {
    /// [`choose`], or what it chose before for the same file (its glibc is assumed to be the
    /// same too: a program's libc changes with an upgrade of the system, not between runs).
    pub fn choose(&mut self, unwind: Unwind, target: &Target) -> UnwindPlan {
        use std::os::unix::fs::MetadataExt;
        let key = target
            .exe
            .as_deref()
            .and_then(|e| std::fs::metadata(e).ok())
            .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        let Some(key) = key else {
            return choose(unwind, target);
        };
        if let Some(p) = self.plans.get(&key) {
            return p.clone();
        }
        let plan = choose(unwind, target);
        if self.plans.len() >= PLANS_KEPT {
            self.plans.clear();
        }
        self.plans.insert(key, plan.clone());
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::procfs_tests::target;

    fn with_exe(exe: Option<&str>, go: Option<&str>) -> Target {
        Target {
            exe: exe.map(PathBuf::from),
            go: go.map(String::from),
            ..target()
        }
    }

    #[test]
    fn a_file_is_chosen_for_once() {
        let me = std::env::current_exe().unwrap();
        let t = with_exe(me.to_str(), None);
        let mut cache = PlanCache::default();
        let first = cache.choose(Unwind::Auto(16384), &t);
        assert_eq!(first, choose(Unwind::Auto(16384), &t));
        assert_eq!(cache.plans.len(), 1);
        assert_eq!(cache.choose(Unwind::Auto(16384), &t), first);
        assert_eq!(cache.plans.len(), 1);
        // No file to key on: chosen each time, nothing kept.
        let gone = with_exe(Some("/nonexistent"), None);
        assert_eq!(
            cache.choose(Unwind::Auto(16384), &gone).mode,
            UnwindMode::FramePointers
        );
        assert_eq!(cache.plans.len(), 1);
    }

    #[test]
    fn explicit_modes_are_kept() {
        let none = with_exe(None, None);
        assert_eq!(
            choose(Unwind::FramePointers, &none).mode,
            UnwindMode::FramePointers
        );
        let d = choose(Unwind::Dwarf(8192), &none);
        assert_eq!((d.mode, d.snapshot_bytes), (UnwindMode::Dwarf, 8192));
        assert_eq!(d.why, None, "the user's own choice needs no explanation");
    }

    #[test]
    fn auto_keeps_the_frame_walk_where_it_is_right() {
        // This test binary has frame pointers (the workspace forces them) and, being Rust,
        // imports none of glibc's blocking primitives.
        let me = std::env::current_exe().unwrap();
        let p = choose(Unwind::Auto(16384), &with_exe(me.to_str(), None));
        assert_eq!((p.mode, p.snapshot_bytes), (UnwindMode::FramePointers, 0));
        let why = p.why.unwrap();
        assert!(why.contains("keeps frame pointers"), "{why}");
        // Unreadable: keep the cheap mode rather than guess, and say so.
        let gone = choose(Unwind::Auto(16384), &with_exe(Some("/nonexistent"), None));
        assert_eq!(gone.mode, UnwindMode::FramePointers);
        let why = gone.why.unwrap();
        assert!(why.contains("cannot read"), "{why}");
        // Go keeps frame pointers even though its prologue starts with the stack check.
        let go = choose(
            Unwind::Auto(16384),
            &with_exe(Some("/nonexistent"), Some("go1.19.8")),
        );
        assert_eq!(go.mode, UnwindMode::FramePointers);
    }

    /// Debian's stripped binaries: no `.symtab`, so the decision comes from `.eh_frame_hdr`.
    #[test]
    fn stripped_system_binaries_are_read_from_their_cfi() {
        for exe in ["/usr/bin/pigz", "/usr/bin/rg", "/bin/ls"] {
            if !Path::new(exe).exists() {
                continue;
            }
            let p = choose(Unwind::Auto(16384), &with_exe(Some(exe), None));
            let why = p.why.unwrap_or_default();
            assert_eq!(p.mode, UnwindMode::Dwarf, "{exe}: {why}");
            assert!(why.contains(".eh_frame"), "{exe}: {why}");
        }
    }
}
