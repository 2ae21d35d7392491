//! attribute: explains lock waits in the bundled map's own terms (and Go `sync.Map`'s, which
//! has the same design up to Go 1.23): what each waiter was doing
//! (from its symbolized stack), what it waited behind (the holder's phase, traced in the
//! kernel), the fast-path share of reads (the map's counters), and one verdict line.
use std::collections::BTreeMap;

use super::behind::{locked_miss_fraction, split_row, weigh_misses};
pub use super::behind::{Behind, Share};
use super::waitclass::Primitive;
use crate::profile::{fmt_count, fmt_ns, percent, FutexOp, HolderPhase, MapKind, Profile, Stack};

/// What a waiting thread was trying to do, from the innermost bundled-map frame of its stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    ReadMiss,
    SlowStore,
    Delete,
    Range,
    Compare,
    OtherMapOp,
    /// Not the bundled map's lock at all.
    OtherLock,
}

impl Category {
    pub fn label(self) -> &'static str {
        match self {
            Category::ReadMiss => "read miss (load not in snapshot)",
            Category::SlowStore => "slow store (new or expunged key)",
            Category::Delete => "delete (key not in snapshot)",
            Category::Range => "range (promoting first)",
            Category::Compare => "compare-and-swap/delete miss",
            Category::OtherMapOp => "other map operation",
            Category::OtherLock => "other lock (not the map)",
        }
    }
}

/// `syncmap::SyncMap<K,V>::slow_store` (Rust) or `…/syncmap.(*Map).slowStore` (Go) → the
/// category of a waiter inside it.
fn category_of_method(method: &str) -> Option<Category> {
    Some(match method {
        "load_miss" | "loadMiss" => Category::ReadMiss,
        "slow_store" | "load_or_store" | "slowStore" | "LoadOrStore" => Category::SlowStore,
        "slow_delete" | "slowDelete" => Category::Delete,
        "range_promote" | "rangePromote" => Category::Range,
        "entry_for_compare" => Category::Compare,
        _ => return None,
    })
}

/// A waiter inside Go's own `sync.Map` method (`sync.(*Map).Load`, …): the method it called
/// is the operation, since the slow paths are inline in it. Load, LoadAndDelete and Range
/// lock only on a miss, a delete of a key not in the snapshot, or to promote.
fn category_of_std_method(method: &str) -> Option<Category> {
    Some(match method {
        "Load" => Category::ReadMiss,
        "Store" | "LoadOrStore" | "Swap" => Category::SlowStore,
        "LoadAndDelete" | "Delete" => Category::Delete,
        "Range" => Category::Range,
        "CompareAndSwap" | "CompareAndDelete" => Category::Compare,
        _ => return None,
    })
}

/// Classifies a waiter's stack by its innermost bundled-map (or Go `sync.Map`) operation frame.
pub fn waiter_category(stack: Option<&Stack>) -> Category {
    let Some(stack) = stack else {
        return Category::OtherLock;
    };
    let mut in_map = false;
    for sym in stack.frames.iter().flat_map(|f| &f.syms) {
        if let Some(m) = sym.name.strip_prefix("sync.(*Map).") {
            in_map = true;
            match category_of_std_method(m) {
                Some(c) => return c,
                None => continue,
            }
        }
        let method = if let Some(rest) = sym.name.strip_prefix("syncmap::SyncMap<") {
            rest.rsplit("::").next()
        } else if let Some((_, m)) = sym.name.split_once("syncmap.(*Map).") {
            // Go: `lockscope.dev/go/syncmap.(*Map).slowStore`.
            Some(m)
        } else {
            continue;
        };
        in_map = true;
        if let Some(c) = method.and_then(category_of_method) {
            return c;
        }
    }
    if in_map {
        Category::OtherMapOp
    } else {
        Category::OtherLock
    }
}

/// The lock primitive a waiter sat in, from the lock-implementation frames of its stack
/// (innermost first: a Condvar wait re-takes its Mutex, but sleeps in the condvar first).
pub fn lock_primitive(stack: Option<&Stack>) -> &'static str {
    match (stack, super::waitclass::primitive(stack)) {
        (None, _) => "unknown (stack lost)",
        (_, Some(p)) => p.label(),
        (_, None) => "other futex",
    }
}

/// `--by category`: the bundled-map operation a waiter was in, or the lock primitive.
/// In a Go process only goroutine waits (`op` [`FutexOp::GoSemacquire`]) can be on a map's
/// mutex: its futex waits are OS threads of the runtime, even when their stacks pass through
/// map code (they go by their primitive, as `attribute` counts them).
pub fn category_of(profile: &Profile, stack: Option<&Stack>, op: FutexOp) -> String {
    if op == FutexOp::TokioAcquire {
        return tokio_category(stack).to_string();
    }
    let map_waiter = profile.go.is_none() || op == FutexOp::GoSemacquire;
    let trie = profile
        .bundled
        .as_ref()
        .is_some_and(|b| b.kind == MapKind::StdHashTrie);
    if map_waiter && trie {
        if let Some(op) = super::trie::op_of(stack) {
            return format!("sync.Map {}", op.label());
        }
    } else if map_waiter && profile.bundled.is_some() {
        let c = waiter_category(stack);
        if c != Category::OtherLock {
            return c.label().to_string();
        }
    }
    if let (Some(s), Some(Primitive::PythonGil)) = (stack, super::waitclass::primitive(stack)) {
        if let Some(v) = crate::knowledge::python_version(profile, s) {
            return format!("{} (CPython {v})", Primitive::PythonGil.label());
        }
    }
    lock_primitive(stack).to_string()
}

/// A tokio async wait's lock, from the `tokio::sync` type its stack acquired through: all of
/// them wait in `batch_semaphore`, so the type above it says which.
fn tokio_category(stack: Option<&Stack>) -> &'static str {
    let names = || stack.into_iter().flat_map(crate::profile::function_names);
    let under = |m: &str| names().any(|n| n.trim_start_matches('<').starts_with(m));
    if under("tokio::sync::mutex::") {
        "tokio Mutex (async)"
    } else if under("tokio::sync::rwlock::") {
        "tokio RwLock (async)"
    } else {
        "tokio Semaphore (async)"
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub by_category: Vec<(Category, Share)>,
    /// Wait time on the map's locks, split by what the holders did meanwhile (a wait that
    /// overlapped several phases counts in each of their `waits`).
    pub behind: Vec<(Behind, Share)>,
    /// The same, per lock (futex address), busiest lock first.
    pub behind_by_lock: Vec<(u64, Vec<(Behind, Share)>)>,
    pub total_ns: u64,
    pub map_wait_ns: u64,
    pub fast_read_percent: Option<f64>,
    pub verdict: String,
    /// Whether `behind` means anything (phase probes on, and a target whose unlocks wake
    /// waiters through a futex).
    pub blame_known: bool,
}

/// Attribution for a profile of a process that uses the bundled map; `None` otherwise.
pub fn attribute(p: &Profile) -> Option<Attribution> {
    // The hash trie has its own explanation (`trie`).
    let bundled = p
        .bundled
        .as_ref()
        .filter(|b| b.kind != MapKind::StdHashTrie)?;
    let mut by_category: BTreeMap<Category, Share> = BTreeMap::new();
    let mut behind: BTreeMap<Behind, Share> = BTreeMap::new();
    let mut by_lock: BTreeMap<u64, BTreeMap<Behind, Share>> = BTreeMap::new();
    let mut categories: BTreeMap<Option<usize>, Category> = BTreeMap::new();
    // In a Go process only goroutine waits (timed by uprobes) can be on the map's mutex; its
    // futex waits are OS threads of the runtime, even when the stack passes through map code.
    let go = p.go.is_some();
    for r in p.waits.iter().filter(|r| r.count > 0) {
        let c = if go && r.op != FutexOp::GoSemacquire {
            Category::OtherLock
        } else {
            *categories
                .entry(r.stack)
                .or_insert_with(|| waiter_category(r.stack.and_then(|s| p.stacks.get(s))))
        };
        let s = by_category.entry(c).or_default();
        s.waits += r.count;
        s.wait_ns += r.total_ns;
        if c != Category::OtherLock {
            for (what, part) in split_row(r) {
                for b in [
                    behind.entry(what).or_default(),
                    by_lock.entry(r.uaddr).or_default().entry(what).or_default(),
                ] {
                    b.waits += part.waits;
                    b.wait_ns += part.wait_ns;
                }
            }
        }
    }
    if let Some(f) = locked_miss_fraction(bundled) {
        for m in std::iter::once(&mut behind).chain(by_lock.values_mut()) {
            weigh_misses(m, f);
        }
    }
    // Go's sync.Map is explained only for a program whose waits or traced phases show it:
    // linking it (as much of the standard library does) is not using it.
    let std_unused = !bundled.kind.is_bundled()
        && by_category.keys().all(|c| *c == Category::OtherLock)
        && bundled.phases.iter().all(|r| r.calls == 0);
    if std_unused {
        return None;
    }
    let by_category = hottest_first(by_category);
    let behind = hottest_first(behind);
    let mut behind_by_lock: Vec<(u64, Vec<(Behind, Share)>)> = by_lock
        .into_iter()
        .map(|(lock, m)| (lock, hottest_first(m)))
        .collect();
    let lock_total = |v: &[(Behind, Share)]| v.iter().map(|(_, s)| s.wait_ns).sum::<u64>();
    behind_by_lock.sort_by_key(|(_, v)| std::cmp::Reverse(lock_total(v)));
    let total_ns = by_category.iter().map(|(_, s)| s.wait_ns).sum();
    let map_wait_ns = behind.iter().map(|(_, s)| s.wait_ns).sum();
    let fast = bundled.fast_read_percent();
    let rebuild = bundled
        .phases
        .iter()
        .find(|r| r.phase == HolderPhase::Rebuild);
    // Holder blame needs the phase probes (in Go, goroutine waits read the map's clock too).
    let blame_known = !bundled.probed.is_empty();
    let verdict = verdict(
        p.meta.duration_ns,
        map_wait_ns,
        &by_category,
        blame_known.then_some(&behind[..]),
        fast,
        rebuild.map(|r| Rebuilds {
            count: r.returns,
            entries: r.items,
            longest_ns: r.max_ns,
        }),
    );
    Some(Attribution {
        blame_known,
        by_category,
        behind,
        behind_by_lock,
        total_ns,
        map_wait_ns,
        fast_read_percent: fast,
        verdict,
    })
}

fn hottest_first<K: Ord>(m: BTreeMap<K, Share>) -> Vec<(K, Share)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by_key(|(_, s)| std::cmp::Reverse(s.wait_ns));
    v
}

/// Map lock wait below this share of the recording's wall time counts as negligible.
const NEGLIGIBLE_WAIT_PERCENT: f64 = 1.0;

/// A phase behind at least this share of the map's lock wait is named as its cause, even when
/// the holders' other work adds up to more.
const NAMED_CAUSE_PERCENT: f64 = 10.0;

/// The dirty rebuilds a recording saw: how many, the entries they copied in all, the longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rebuilds {
    count: u64,
    entries: u64,
    longest_ns: u64,
}

fn verdict(
    duration_ns: u64,
    map_wait_ns: u64,
    by_category: &[(Category, Share)],
    behind: Option<&[(Behind, Share)]>,
    fast: Option<f64>,
    rebuilds: Option<Rebuilds>,
) -> String {
    let reads = fast.map_or(String::new(), |f| format!("; reads {f:.1}% fast path"));
    if percent(map_wait_ns, duration_ns) < NEGLIGIBLE_WAIT_PERCENT {
        return format!(
            "no meaningful lock wait on the map ({} in {}){reads} — the map fits this workload",
            fmt_ns(map_wait_ns),
            fmt_ns(duration_ns)
        );
    }
    // The cause named is the heaviest phase when it holds a real share of the wait: "other
    // work under the lock" is what is left over, not a cause, unless nothing else is.
    let top_phase = behind
        .and_then(|b| b.iter().find(|(l, _)| *l != Behind::OtherWork))
        .filter(|(_, s)| percent(s.wait_ns, map_wait_ns) >= NAMED_CAUSE_PERCENT);
    let (top_behind, b) = top_phase
        .or_else(|| behind.and_then(|b| b.first()))
        .map_or((Behind::OtherWork, Share::default()), |(l, s)| {
            (*l, s.clone())
        });
    const REBUILD: Behind = Behind::Phase(HolderPhase::Rebuild);
    let (top_cat, c) = by_category
        .iter()
        .find(|(c, _)| *c != Category::OtherLock)
        .map_or((Category::OtherLock, Share::default()), |(c, s)| {
            (*c, s.clone())
        });
    let detail = match (top_behind, rebuilds) {
        (
            REBUILD,
            Some(Rebuilds {
                count: n,
                entries: items,
                longest_ns: max,
            }),
        ) if n > 0 => format!(
            " copying ~{} entries each ({} rebuilds, longest {})",
            fmt_count(items / n),
            fmt_count(n),
            fmt_ns(max)
        ),
        _ => String::new(),
    };
    let advice = match (top_behind, top_cat) {
        (REBUILD, _) => "each promotion forces an O(n) copy: a sharded map fits this workload",
        (_, Category::ReadMiss) | (Behind::Phase(HolderPhase::Miss), _) => {
            "reads of just-written keys keep missing the snapshot: a sharded map fits this workload"
        }
        (_, Category::SlowStore) => {
            "every new key takes the lock: a sharded map fits this workload"
        }
        (_, Category::Range) => "range forces promotions: avoid range on a hot map",
        _ => "see the tables above",
    };
    if behind.is_none() {
        // No holder blame: what waiters were doing, and what the phases cost.
        let phases = match rebuilds {
            Some(Rebuilds {
                count: n,
                entries: items,
                longest_ns: max,
            }) if n > 0 => format!(
                "; {} rebuilds copied ~{} entries each (longest {})",
                fmt_count(n),
                fmt_count(items / n),
                fmt_ns(max)
            ),
            _ => String::new(),
        };
        return format!(
            "{:.0}% of map lock wait was {}{phases}{reads} — {advice}",
            percent(c.wait_ns, map_wait_ns),
            top_cat.label(),
        );
    }
    format!(
        "{:.0}% of map lock wait is behind {}{detail}; {:.0}% of it was {}{reads} — {advice}",
        percent(b.wait_ns, map_wait_ns),
        top_behind.label(),
        percent(c.wait_ns, map_wait_ns),
        top_cat.label(),
    )
}

#[cfg(test)]
#[path = "attribute_tests.rs"]
mod tests;
