//! Unit tests of stdmap: recognising Go's sync.Map designs and naming their phases.
use super::*;

const GO119: [&str; 10] = [
    "sync.(*Map).Load",
    "sync.(*Map).Store",
    "sync.(*Map).LoadOrStore",
    "sync.(*Map).LoadAndDelete",
    "sync.(*Map).Delete",
    "sync.(*Map).Range",
    "sync.(*Map).missLocked",
    "sync.(*Map).dirtyLocked",
    "sync.(*Mutex).lockSlow",
    "main.main",
];

#[test]
fn go_1_19_read_dirty_map_is_recognised_by_its_phase_functions() {
    assert_eq!(
        recognise(Some("go1.19.8"), GO119),
        Some(MapKind::StdReadDirty)
    );
    assert_eq!(
        phase_of_symbol("sync.(*Map).dirtyLocked"),
        Some(Phase::Rebuild)
    );
    assert_eq!(phase_of_symbol("sync.(*Map).missLocked"), Some(Phase::Miss));
    assert_eq!(phase_of_symbol("sync.(*Map).Load"), None);
    assert_eq!(phase_of_symbol("mypkg.(*Map).dirtyLocked"), None);
    assert_eq!(dirty_offset("go1.19.8"), Some(24));
}

#[test]
fn go_1_20_to_1_23_adds_swap_and_compare_methods() {
    let mut syms = GO119.to_vec();
    syms.extend([
        "sync.(*Map).Swap",
        "sync.(*Map).CompareAndSwap",
        "sync.(*Map).CompareAndDelete",
    ]);
    for v in ["go1.20", "go1.21.5", "go1.23.4"] {
        assert_eq!(
            recognise(Some(v), syms.iter().copied()),
            Some(MapKind::StdReadDirty),
            "{v}"
        );
        assert_eq!(dirty_offset(v), Some(16), "{v}");
    }
    assert_eq!(
        method_of_symbol("sync.(*Map).CompareAndDelete"),
        Some("CompareAndDelete")
    );
}

#[test]
fn go_1_24_hash_trie_claims_no_promotion_or_rebuild() {
    // Go 1.24's sync.Map wraps internal/sync.HashTrieMap: the methods remain, the phase
    // functions are gone.
    let syms = [
        "sync.(*Map).Load",
        "sync.(*Map).Store",
        "sync.(*Map).Swap",
        "sync.(*Map).CompareAndSwap",
        "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).Load",
        "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).expand",
    ];
    assert_eq!(
        recognise(Some("go1.24.1"), syms),
        Some(MapKind::StdHashTrie)
    );
    assert_eq!(
        recognise(Some("go1.25rc1"), syms),
        Some(MapKind::StdHashTrie)
    );
    // Even with a leftover name, no rebuild is read or claimed for the trie.
    assert_eq!(dirty_offset("go1.24.1"), None);
    assert_eq!(
        MapKind::StdHashTrie.function(Phase::Rebuild),
        "rebuild_dirty"
    );
    assert!(MapKind::StdHashTrie.label().contains("hash trie"));
}

#[test]
fn nothing_is_guessed_without_a_version_or_the_functions() {
    assert_eq!(recognise(None, GO119), None);
    assert_eq!(recognise(Some("go1.19.8"), ["main.main"]), None);
    // Methods alone before 1.24 (phase functions inlined or stripped): not claimed.
    assert_eq!(
        recognise(Some("go1.19.8"), ["sync.(*Map).Load", "sync.(*Map).Store"]),
        None
    );
    assert_eq!(recognise(Some("devel +abc"), GO119), None);
}

#[test]
fn kinds_have_their_own_phase_slots() {
    assert_eq!(MapKind::Bundled.slot(), 0);
    assert_eq!(MapKind::StdReadDirty.slot(), 1);
    assert!((MapKind::StdHashTrie.slot() as usize) < tracer_common::MAP_SLOTS);
    assert_eq!(
        MapKind::StdReadDirty.function(Phase::Rebuild),
        "sync.(*Map).dirtyLocked"
    );
}
