//! DashMap: where the lock hints are probed. A DashMap shard is a `lock_api::RwLock` over
//! dashmap's own `RawRwLock`, whose waits park through parking_lot_core on the parking
//! thread's own futex word: the word names no shard. dashmap compiles the raw lock's slow
//! paths `#[cold]` and out of line (`dashmap::lock::RawRwLock::lock_exclusive_slow` and
//! `lock_shared_slow`, both `(&self)`), so an entry uprobe on each sees the shard's lock
//! address in RDI before the thread parks (see the kernel's `lockhint`), and a probe on each of
//! its `ret` instructions (never a uretprobe) drops the hint as the call ends, so a later park
//! elsewhere (a parking_lot `Mutex`) is not taken for the shard. Each entry and return is
//! checked against the bytes on disk before a probe goes there; a function that can leave by
//! a jump (passing no `ret`) is not probed, and none is when the symbols are absent (no
//! DashMap, or a stripped executable).
use std::fs;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol};

use super::tokioprobes::entry_point;
use crate::sys::{jumps_out, return_offsets};

/// The functions probed, by demangled name without the hash.
const SLOW_PATHS: [&str; 2] = [
    "dashmap::lock::RawRwLock::lock_exclusive_slow",
    "dashmap::lock::RawRwLock::lock_shared_slow",
];

/// The lock-hint probe points found in an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintPoints {
    pub exe: PathBuf,
    pub points: Vec<HintPoint>,
}

/// One probed slow path: file offsets of its entry and of each of its `ret`s, each checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintPoint {
    /// The demangled function.
    pub name: &'static str,
    pub entry: u64,
    pub returns: Vec<u64>,
}

impl HintPoints {
    /// How many uprobes these are.
    pub fn count(&self) -> usize {
        self.points.iter().map(|p| 1 + p.returns.len()).sum()
    }

    /// The probed functions' short names, for the setup line: `lock_exclusive_slow, …`.
    pub fn names(&self) -> String {
        self.points
            .iter()
            .map(|p| p.name.rsplit("::").next().unwrap_or(p.name))
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
    let points: Vec<HintPoint> = SLOW_PATHS
        .iter()
        .filter_map(|&name| {
            let (entry, code) = entry_point(&obj, &file, name).ok()?;
            let returns = return_offsets(code, 0);
            if returns.is_empty() || !jumps_out(code, 0).is_empty() {
                return None;
            }
            Some(HintPoint {
                name,
                entry,
                returns: returns.iter().map(|r| entry + r).collect(),
            })
        })
        .collect();
    (!points.is_empty()).then(|| HintPoints {
        exe: exe.to_path_buf(),
        points,
    })
}
