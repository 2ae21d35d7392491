//! stdmap: Go's standard library `sync.Map` in a target, as one more kind of map lockscope
//! explains with the bundled map's phases, sections and verdict.
//!
//! Up to Go 1.23 `sync.Map` is the read/dirty design the bundled map copies:
//! `sync.(*Map).dirtyLocked` is the O(n) dirty rebuild and `sync.(*Map).missLocked` counts a
//! miss and, when misses reach len(dirty), promotes (an O(1) swap; `Range` promotes inline).
//! Both stay out of line in Go 1.19 (`go tool nm` lists them; Load, Store, LoadOrStore and
//! LoadAndDelete CALL them), so they are probed like the bundled Go map's phases: an entry
//! uprobe and one on each return instruction. `dirtyLocked` returns nothing: the entries it
//! copied are `len(m.dirty)` at its return, read from the map in the kernel (see
//! [`dirty_offset`]). The map keeps no counters, so nothing is checked against it; the
//! fast-path share is estimated from on-CPU samples instead (`mapsample`). Go 1.24 replaced
//! it with a hash trie: no promotion, no rebuild.
use tracer_common::Phase;

use crate::profile::MapKind;

/// The exported methods every `sync.Map` has (Go 1.20 added Swap, CompareAndSwap and
/// CompareAndDelete).
pub const STD_METHODS: [&str; 9] = [
    "Load",
    "Store",
    "LoadOrStore",
    "LoadAndDelete",
    "Delete",
    "Range",
    "Swap",
    "CompareAndSwap",
    "CompareAndDelete",
];

const STD_PREFIX: &str = "sync.(*Map).";
/// Go 1.24+'s `sync.Map` is this generic type's `[any, any]` instance (its `sync.(*Map)`
/// wrappers are all inlined: the PC table's inline names say a program calls them).
pub const TRIE_PREFIX: &str = "internal/sync.(*HashTrieMap[";

/// `sync.(*Map).dirtyLocked` → the rebuild; `missLocked` → a miss (and, sometimes, the
/// promotion it does).
pub fn phase_of_symbol(name: &str) -> Option<Phase> {
    match name.strip_prefix(STD_PREFIX)? {
        "dirtyLocked" => Some(Phase::Rebuild),
        "missLocked" => Some(Phase::Miss),
        _ => None,
    }
}

/// The `sync.Map` method a symbol is, if any.
pub fn method_of_symbol(name: &str) -> Option<&str> {
    name.strip_prefix(STD_PREFIX)
        .filter(|m| STD_METHODS.contains(m))
}

/// Go's minor version from a build's version string (`go1.19.8` → 19).
fn go_minor(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("go1.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Which `sync.Map` a Go target has, from its version and the `sync.(*Map)` symbols it
/// links (`None`: the program does not use it). Go ≥ 1.24 is the hash trie, whatever
/// symbols remain; before, the read/dirty design needs its phase functions, so a stripped
/// or unknown build is not guessed at.
pub fn recognise<'a>(
    version: Option<&str>,
    symbols: impl IntoIterator<Item = &'a str>,
) -> Option<MapKind> {
    let (mut methods, mut phases) = (false, false);
    for s in symbols {
        methods |= method_of_symbol(s).is_some();
        phases |= phase_of_symbol(s).is_some();
    }
    let minor = version.and_then(go_minor)?;
    match (minor >= 24, methods, phases) {
        (true, true, _) => Some(MapKind::StdHashTrie),
        (false, _, true) => Some(MapKind::StdReadDirty),
        _ => None,
    }
}

/// Offset of `dirty` (a pointer to a Go map header) in `sync.Map` for Go ≤ 1.23: after `mu`
/// (8 bytes) and `read`, an `atomic.Value` (16 bytes, an interface) up to Go 1.19 and an
/// `atomic.Pointer[readOnly]` (8 bytes) from Go 1.20. Checked against Go 1.19's code:
/// `missLocked` reads len(m.dirty) through `MOVQ 0x18(AX), DX`. `None` for other versions.
pub fn dirty_offset(version: &str) -> Option<u32> {
    match go_minor(version)? {
        0..=19 => Some(24),
        20..=23 => Some(16),
        _ => None,
    }
}

/// Where a goroutine blocked on `sync.Map`'s mutex waits: `mu` is its first field and the
/// semaphore is the Mutex's second word (`state int32; sema uint32`), in every Go release.
pub const SEMA_OFFSET: u32 = 4;

/// Go's `sync.Map` as found in an executable: its kind, its phase functions by file offset,
/// and where `len(dirty)` is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdSync {
    pub kind: MapKind,
    pub version: String,
    pub phases: Vec<(Phase, u64)>,
    /// [`dirty_offset`]; 0: entries copied are not read.
    pub dirty_at: u32,
}

#[cfg(test)]
#[path = "stdmap_tests.rs"]
mod tests;
