//! DashMap: where the lock hints are probed. A DashMap shard is a `lock_api::RwLock` over
//! dashmap's own `RawRwLock`, whose waits park through parking_lot_core on the parking
//! thread's own futex word: the word names no shard. dashmap compiles the raw lock's slow
//! paths `#[cold]` and out of line (`dashmap::lock::RawRwLock::lock_exclusive_slow` and
//! `lock_shared_slow`, both `(&self)`), so an entry uprobe on each sees the shard's lock
//! address in RDI before the thread parks (see the kernel's `lockhint`). Each entry is checked
//! against the bytes on disk before a probe goes there; none is placed when the symbols are
//! absent (no DashMap, or a stripped executable).
use std::fs;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol};

use super::tokioprobes::entry_point;

/// The functions probed, by demangled name without the hash.
const SLOW_PATHS: [&str; 2] = [
    "dashmap::lock::RawRwLock::lock_exclusive_slow",
    "dashmap::lock::RawRwLock::lock_shared_slow",
];

/// The lock-hint probe points found in an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintPoints {
    pub exe: PathBuf,
    /// (demangled function, file offset of its entry), each checked.
    pub points: Vec<(&'static str, u64)>,
}

impl HintPoints {
    /// The probed functions' short names, for the setup line: `lock_exclusive_slow, …`.
    pub fn names(&self) -> String {
        self.points
            .iter()
            .map(|(n, _)| n.rsplit("::").next().unwrap_or(n))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Looks for DashMap's raw-lock slow paths in `exe`; `None` when there are none to probe.
pub fn dashmap_hints(exe: &Path) -> Option<HintPoints> {
    let file = fs::read(exe).ok()?;
    let obj = object::File::parse(&*file).ok()?;
    // Cheap first: the mangled names carry the path pieces.
    let present = obj.symbols().any(|s| {
        s.name()
            .is_ok_and(|n| n.contains("dashmap") && n.contains("RawRwLock"))
    });
    if !present {
        return None;
    }
    let points: Vec<(&'static str, u64)> = SLOW_PATHS
        .iter()
        .filter_map(|&want| {
            entry_point(&obj, &file, want)
                .ok()
                .map(|(at, _)| (want, at))
        })
        .collect();
    (!points.is_empty()).then(|| HintPoints {
        exe: exe.to_path_buf(),
        points,
    })
}
