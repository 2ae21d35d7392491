//! The kind of map a profile's map section explains: the bundled map or one of Go's
//! `sync.Map` designs. It is profile data (stored in the file); `tracee/stdmap.rs` finds which
//! one a target has.
use serde::{Deserialize, Serialize};
use tracer_common::Phase;

/// Which map implementation lockscope explains. Each has its own phase totals in the kernel
/// ([`MapKind::slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapKind {
    /// The bundled map (`syncmap/`, or its Go port `go/syncmap`), with its own counters.
    #[default]
    Bundled,
    /// Go's `sync.Map` up to Go 1.23: read snapshot, dirty map, promotion, rebuild.
    StdReadDirty,
    /// Go's `sync.Map` from Go 1.24: a concurrent hash trie, no promotion or rebuild.
    StdHashTrie,
}

impl MapKind {
    /// Its index among the kernel's per-kind phase totals.
    pub fn slot(self) -> u32 {
        match self {
            MapKind::Bundled => 0,
            MapKind::StdReadDirty | MapKind::StdHashTrie => 1,
        }
    }

    pub fn is_bundled(&self) -> bool {
        *self == MapKind::Bundled
    }

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            MapKind::Bundled => "bundled map",
            MapKind::StdReadDirty => "Go sync.Map (read/dirty design, Go ≤ 1.23)",
            MapKind::StdHashTrie => "Go sync.Map (hash trie, Go ≥ 1.24)",
        }
    }

    /// The function a phase is probed at, as the report names it.
    pub fn function(self, phase: Phase) -> &'static str {
        match (self, phase) {
            (MapKind::Bundled | MapKind::StdHashTrie, p) => p.function(),
            (MapKind::StdReadDirty, Phase::Miss) => "sync.(*Map).missLocked",
            (MapKind::StdReadDirty, Phase::Promote) => "promotion (inside missLocked and Range)",
            (MapKind::StdReadDirty, Phase::Rebuild) => "sync.(*Map).dirtyLocked",
        }
    }
}
