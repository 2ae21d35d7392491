//! trie: explains goroutine waits on Go 1.24+'s hash-trie `sync.Map`. There is no read
//! snapshot, promotion or rebuild to blame: every mutation (`Store`/`Swap`, `LoadOrStore` of
//! a new key, `Delete`, the CompareAnd* methods, `Clear`) locks the one indirect node that
//! holds the key's slot, and `Load` and `Range` never lock. So a wait is explained by the
//! operation (the inlined `sync.(*Map).Method` frame of its stack) and the node (its row's
//! semaphore, with the depth read from the target): one hot node deep in the trie means a few
//! hot keys; the root means a map small enough that every key hangs off it.
use std::collections::BTreeMap;

use super::behind::Share;
use crate::profile::{fmt_ns, percent, FutexOp, Profile, Stack};

/// What a waiting goroutine was doing in the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrieOp {
    Store,
    LoadOrStore,
    Delete,
    Compare,
    Clear,
    Other,
}

impl TrieOp {
    pub fn label(self) -> &'static str {
        match self {
            TrieOp::Store => "Store/Swap (locks the key's node)",
            TrieOp::LoadOrStore => "LoadOrStore (inserting a key)",
            TrieOp::Delete => "Delete/LoadAndDelete",
            TrieOp::Compare => "CompareAndSwap/CompareAndDelete",
            TrieOp::Clear => "Clear",
            TrieOp::Other => "other map operation",
        }
    }

    /// The short name the verdict uses.
    fn name(self) -> &'static str {
        match self {
            TrieOp::Store => "Store",
            TrieOp::LoadOrStore => "LoadOrStore",
            TrieOp::Delete => "Delete",
            TrieOp::Compare => "CompareAndSwap",
            TrieOp::Clear => "Clear",
            TrieOp::Other => "map operation",
        }
    }
}

/// The operation of a stack that passes through `sync.(*Map).Method` (innermost such frame);
/// `None`: not the map.
pub fn op_of(stack: Option<&Stack>) -> Option<TrieOp> {
    let names = crate::profile::function_names(stack?);
    let mut in_map = false;
    for n in names {
        let Some(m) = n.strip_prefix("sync.(*Map).") else {
            continue;
        };
        in_map = true;
        let op = match m {
            "Store" | "Swap" => TrieOp::Store,
            "LoadOrStore" => TrieOp::LoadOrStore,
            "Delete" | "LoadAndDelete" => TrieOp::Delete,
            "CompareAndSwap" | "CompareAndDelete" => TrieOp::Compare,
            "Clear" => TrieOp::Clear,
            _ => continue,
        };
        return Some(op);
    }
    in_map.then_some(TrieOp::Other)
}

/// A node goroutines waited on.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeShare {
    /// The node's address (its semaphore less the offset).
    pub node: u64,
    /// 0: the root; `None`: not read (the target had exited).
    pub depth: Option<u32>,
    pub share: Share,
}

impl NodeShare {
    pub fn label(&self) -> String {
        match self.depth {
            Some(0) => format!("root node {:#x}", self.node),
            Some(d) => format!("node {:#x} at depth {d}", self.node),
            None => format!("node {:#x} (depth not read)", self.node),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrieAttribution {
    pub by_op: Vec<(TrieOp, Share)>,
    /// Busiest first.
    pub by_node: Vec<NodeShare>,
    pub map_wait_ns: u64,
    pub verdict: String,
}

/// When this few nodes hold nearly all the wait, writers are on a few hot keys.
const HOT_NODES: usize = 8;
/// "Nearly all".
const HOT_NODES_PERCENT: f64 = 90.0;
/// Map lock wait below this share of the recording's wall time counts as negligible.
const NEGLIGIBLE_WAIT_PERCENT: f64 = 1.0;

/// The trie's explanation, from the goroutine rows whose stacks pass through the map; `None`
/// when no wait did (the program links the map but did not wait on it).
pub fn attribute_trie(p: &Profile) -> Option<TrieAttribution> {
    let b = p.bundled.as_ref()?;
    let mut by_op: BTreeMap<TrieOp, Share> = BTreeMap::new();
    let mut by_sema: BTreeMap<u64, Share> = BTreeMap::new();
    for r in p.waits.iter().filter(|r| r.count > 0) {
        if r.op != FutexOp::GoSemacquire {
            continue;
        }
        let Some(op) = op_of(r.stack.and_then(|s| p.stacks.get(s))) else {
            continue;
        };
        for s in [
            by_op.entry(op).or_default(),
            by_sema.entry(r.uaddr).or_default(),
        ] {
            s.waits += r.count;
            s.wait_ns += r.total_ns;
        }
    }
    if by_op.is_empty() {
        return None;
    }
    let mut by_op: Vec<(TrieOp, Share)> = by_op.into_iter().collect();
    by_op.sort_by_key(|(_, s)| std::cmp::Reverse(s.wait_ns));
    let mut by_node: Vec<NodeShare> = by_sema
        .into_iter()
        .map(|(sema, share)| NodeShare {
            node: sema.saturating_sub(crate::knowledge::TRIE_SEMA_OFFSET),
            depth: b
                .trie_nodes
                .iter()
                .find(|n| n.sema == sema)
                .map(|n| n.depth),
            share,
        })
        .collect();
    by_node.sort_by_key(|n| std::cmp::Reverse(n.share.wait_ns));
    let map_wait_ns = by_op.iter().map(|(_, s)| s.wait_ns).sum();
    let verdict = verdict(p.meta.duration_ns, map_wait_ns, &by_op, &by_node);
    Some(TrieAttribution {
        by_op,
        by_node,
        map_wait_ns,
        verdict,
    })
}

fn verdict(
    duration_ns: u64,
    map_ns: u64,
    by_op: &[(TrieOp, Share)],
    nodes: &[NodeShare],
) -> String {
    if percent(map_ns, duration_ns) < NEGLIGIBLE_WAIT_PERCENT {
        return format!(
            "no meaningful lock wait on the map ({} in {}) — the hash trie fits this workload",
            fmt_ns(map_ns),
            fmt_ns(duration_ns)
        );
    }
    let (op, op_share) = by_op.first().map_or((TrieOp::Other, 0.0), |(o, s)| {
        (*o, percent(s.wait_ns, map_ns))
    });
    let Some(top) = nodes.first() else {
        return String::new();
    };
    let top_share = percent(top.share.wait_ns, map_ns);
    // The fewest nodes that hold 90% of the wait: the hot set. With the root in it, the map
    // is small; deeper, a few hot keys; no small hot set, the writes are spread.
    let mut covered = 0;
    let hot = nodes
        .iter()
        .take_while(|n| {
            let before = covered;
            covered += n.share.wait_ns;
            percent(before, map_ns) < HOT_NODES_PERCENT
        })
        .count();
    if hot > HOT_NODES {
        return format!(
            "map lock wait is spread over {} nodes (the busiest has {top_share:.0}%), {op_share:.0}% of it in {} — no hot key or node: the write rate itself contends; skipping writes that change nothing (Load before Store) fits this workload",
            nodes.len(),
            op.name()
        );
    }
    if let Some(root) = nodes[..hot].iter().find(|n| n.depth == Some(0)) {
        return format!(
            "{:.0}% of map lock wait is on the trie's root node ({:#x}){}, {op_share:.0}% of it in {}: the map is small, so its keys hang off the root's 16 slots (or one level below) and its writers lock the same few mutexes — a small write-heavy map fits several maps sharded by key hash, or a plain map behind its own Mutex",
            percent(root.share.wait_ns, map_ns),
            root.node,
            if hot > 1 {
                format!(" and {} more node{} under it", hot - 1, if hot == 2 { "" } else { "s" })
            } else {
                String::new()
            },
            op.name()
        );
    }
    let depths: Vec<u32> = nodes[..hot].iter().filter_map(|n| n.depth).collect();
    let at = match (depths.iter().min(), depths.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!(" at depth {lo}"),
        (Some(lo), Some(hi)) => format!(" at depths {lo}-{hi}"),
        _ => " (depths not read: the process exited first)".to_string(),
    };
    let busiest: Vec<String> = nodes[..hot]
        .iter()
        .map(|n| format!("{:#x}", n.node))
        .collect();
    format!(
        "{:.0}% of map lock wait is on {hot} node{}{at} ({}), {op_share:.0}% of it in {}: many writers on a few hot keys — writes to the same keys serialize in any map: keep each hot key's value in its own atomic (one Load, then update the atomic) or batch its writes",
        percent(nodes[..hot].iter().map(|n| n.share.wait_ns).sum(), map_ns),
        if hot == 1 { "" } else { "s" },
        busiest.join(", "),
        op.name()
    )
}
