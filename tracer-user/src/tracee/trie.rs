//! trie: Go 1.24+'s `sync.Map`, `internal/sync.HashTrieMap[any, any]`, as lockscope sees it.
//! Every mutation locks one indirect node's mutex; a goroutine waiting on it parks on that
//! mutex's semaphore, which is the address a `go semacquire` row keeps. The node is
//! `indirect{node{isEntry bool}, dead atomic.Bool @4, mu Mutex @8 (sema @12), parent @16,
//! children [16] @24}` in every release from 1.24 to 1.27, so the node is the semaphore
//! less 12, and its depth is the length of its `parent` chain (the root's parent is nil).
//! Depths are read from the live target's memory when the profile is built.
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use lockscope_profile::knowledge::TRIE_SEMA_OFFSET;
const PARENT_OFFSET: u64 = 16;
/// 64 hash bits, 4 per level: no trie is deeper.
const MAX_DEPTH: u32 = 16;
/// Nodes read per profile: the hottest semaphores only.
pub const MAX_NODES: usize = 64;

/// The depth of each trie node (by the semaphore address a row keeps) that the live process
/// `pid` still has: 0 for the root. A semaphore whose chain does not read as trie nodes (an
/// `isEntry` byte that is not 0, a chain longer than the hash allows) is left out.
pub fn node_depths(pid: u32, semas: impl IntoIterator<Item = u64>) -> BTreeMap<u64, u32> {
    let Ok(mem) = File::open(format!("/proc/{pid}/mem")) else {
        return BTreeMap::new();
    };
    let word = |at: u64| -> Option<u64> {
        let mut b = [0u8; 8];
        mem.read_exact_at(&mut b, at).ok()?;
        Some(u64::from_le_bytes(b))
    };
    let is_indirect = |node: u64| -> bool {
        let mut b = [0u8; 1];
        mem.read_exact_at(&mut b, node).is_ok() && b[0] == 0
    };
    let mut out = BTreeMap::new();
    for sema in semas.into_iter().take(MAX_NODES) {
        let Some(mut node) = sema.checked_sub(TRIE_SEMA_OFFSET) else {
            continue;
        };
        let mut depth = 0;
        let found = loop {
            if !is_indirect(node) || depth > MAX_DEPTH {
                break None;
            }
            match word(node + PARENT_OFFSET) {
                Some(0) => break Some(depth),
                Some(parent) => {
                    node = parent;
                    depth += 1;
                }
                None => break None,
            }
        };
        if let Some(d) = found {
            out.insert(sema, d);
        }
    }
    out
}
