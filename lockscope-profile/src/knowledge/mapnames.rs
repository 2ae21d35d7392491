//! mapnames: how the report names a map's phases and sections for each `MapKind` (the
//! bundled map, Go's read/dirty `sync.Map`, Go 1.24+'s hash trie), what it says it cannot
//! know about each, and where the hash trie's node lies from the semaphore a row keeps.
use tracer_common::Phase;

use crate::profile::MapKind;

/// The semaphore's offset in a Go 1.24+ hash-trie indirect node: `mu` at 8, then
/// `state int32` (`indirect{node, dead@+4, mu@+8, parent@+16, children[16]@+24}`, 1.24–1.27).
pub const TRIE_SEMA_OFFSET: u64 = 12;

/// A probed phase's stored name (`rebuild_dirty`) as the report names it for `kind`.
pub fn function_name(kind: MapKind, stored: &str) -> &str {
    Phase::ALL
        .into_iter()
        .find(|p| p.function() == stored)
        .map_or(stored, |p| kind.function(p))
}

/// The map section's title.
pub fn heading(kind: MapKind, go_version: Option<&str>) -> String {
    match go_version {
        Some(v) if !kind.is_bundled() => format!("{} ({v})", kind.label()),
        _ => kind.label().to_string(),
    }
}

/// What the title says when no phase is probed.
pub fn none_probed(kind: MapKind) -> &'static str {
    match kind {
        MapKind::StdHashTrie => "nothing (no promotion or dirty rebuild exists in this design)",
        _ => "no phases (--phase-probes off)",
    }
}

/// Lines saying what the report cannot know about Go's `sync.Map` (it counts nothing itself),
/// given the phase functions probed (by stored name).
pub fn not_traced(kind: MapKind, probed: &[String]) -> Vec<String> {
    match kind {
        MapKind::Bundled => vec![],
        MapKind::StdReadDirty => {
            let mut v = vec![
                "not available: sync.Map keeps no counters, so there is no exact count of lock-free \
                 loads or stores and nothing to check traced counts against (the read share above \
                 is sampled)"
                    .to_string(),
                "promotions run inside missLocked (and inline in Range): an O(1) swap, counted with \
                 the misses, not timed apart"
                    .to_string(),
            ];
            if !probed.iter().any(|p| p == Phase::Miss.function()) {
                v.push(
                    "read misses: not traced (`--phase-probes all` probes missLocked, at a cost)"
                        .to_string(),
                );
            }
            v
        }
        MapKind::StdHashTrie => vec![
            "hash-trie sync.Map: it has no read snapshot, no promotion and no dirty rebuild, so \
             none is traced or claimed; waiters are classified from their stacks only"
                .to_string(),
        ],
    }
}
