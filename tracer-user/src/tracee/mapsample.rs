//! mapsample: where in Go's `sync.Map` an on-CPU sample landed, from its symbolized user
//! stack (inlined frames included, so Go 1.24+'s inlined `sync.(*Map)` wrappers are seen).
//! A sample is in the map when a `sync.(*Map)` method (or, failing its inline name, the
//! hash trie's own method) is on the stack and everything leafward of it is runtime or
//! `sync` code; code of the program leafward of it is a `Range` callback, the caller's time.
//! A lock-free read is a sample in `Load` or `Range` with no mutex, semaphore or the
//! read/dirty design's `missLocked`/`dirtyLocked` leafward: in the read/dirty design that is
//! the read-map path (a missed Load's dirty lookup between Lock and Unlock cannot be told
//! apart from it by the stack, so it counts as a read); the trie's Load and Range never lock.
use super::stdmap::{STD_METHODS, TRIE_PREFIX};

/// Where one sample landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InMap {
    /// Not in a `sync.Map` method (or in a `Range` callback).
    No,
    /// `Load`/`Range` on their lock-free path.
    LockFreeRead,
    /// Any other time in the map: writes, deletes, and reads that locked.
    Other,
}

const STD_PREFIX: &str = "sync.(*Map).";

/// The `sync.Map` method a function name is: `sync.(*Map).Load`, or the trie's
/// `internal/sync.(*HashTrieMap[…]).Load` (its `All` is what `Range` runs).
fn method(name: &str) -> Option<&str> {
    if let Some(m) = name.strip_prefix(STD_PREFIX) {
        return STD_METHODS.contains(&m).then_some(m);
    }
    let rest = name.strip_prefix(TRIE_PREFIX)?;
    let m = &rest[rest.rfind("]).")? + 3..];
    match m {
        "All" => Some("Range"),
        m if STD_METHODS.contains(&m) => Some(m),
        _ => None,
    }
}

/// Runtime, `sync` and compiler-made code: anything else leafward of the map method is the
/// program's own (a `Range` callback).
fn is_runtime(name: &str) -> bool {
    const OURS: [&str; 7] = [
        "runtime.",
        "sync.",
        "sync/atomic.",
        "internal/",
        "type:",
        "go:",
        "iter.",
    ];
    // Assembly helpers such as `aeshashbody` carry no package.
    OURS.iter().any(|p| name.starts_with(p)) || !name.contains('.')
}

/// A lock taken, waited on or released, or the read/dirty design's work under its lock.
fn is_locking(name: &str) -> bool {
    name.contains("(*Mutex).")
        || name.contains("(*RWMutex).")
        || name.contains("runtime_Semacquire")
        || name.contains("runtime_Semrelease")
        || name.starts_with("runtime.semacquire")
        || name.starts_with("runtime.semrelease")
        || name.ends_with(").missLocked")
        || name.ends_with(").dirtyLocked")
}

/// Classifies one sample by its function names, innermost first (inlined frames before the
/// function they are inlined in).
pub fn classify<'a>(names: impl IntoIterator<Item = &'a str>) -> InMap {
    let names: Vec<&str> = names.into_iter().collect();
    // The outermost map method: a Store that calls Swap is a Store.
    let Some((at, m)) = names
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, n)| method(n).map(|m| (i, m)))
    else {
        return InMap::No;
    };
    let leafward = &names[..at];
    if !leafward.iter().all(|n| is_runtime(n)) {
        return InMap::No;
    }
    if matches!(m, "Load" | "Range") && !leafward.iter().any(|n| is_locking(n)) {
        InMap::LockFreeRead
    } else {
        InMap::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(names: &[&str]) -> InMap {
        classify(names.iter().copied())
    }

    #[test]
    fn read_dirty_load_on_the_read_map_is_lock_free() {
        assert_eq!(
            c(&[
                "runtime.mapaccess2",
                "sync.(*Map).Load",
                "main.reader",
                "runtime.goexit"
            ]),
            InMap::LockFreeRead
        );
        assert_eq!(
            c(&["aeshashbody", "sync.(*Map).Load", "main.reader"]),
            InMap::LockFreeRead
        );
    }

    #[test]
    fn a_load_that_locks_or_misses_is_not() {
        assert_eq!(
            c(&[
                "sync.(*Mutex).lockSlow",
                "sync.(*Mutex).Lock",
                "sync.(*Map).Load",
                "main.r"
            ]),
            InMap::Other
        );
        assert_eq!(
            c(&["sync.(*Map).missLocked", "sync.(*Map).Load", "main.r"]),
            InMap::Other
        );
    }

    #[test]
    fn writes_are_other_and_the_outermost_method_decides() {
        assert_eq!(
            c(&["runtime.mapassign", "sync.(*Map).Store", "main.w"]),
            InMap::Other
        );
        assert_eq!(
            c(&[
                "sync.(*Map).Load",
                "sync.(*Map).Swap",
                "sync.(*Map).Store",
                "main.w"
            ]),
            InMap::Other
        );
    }

    #[test]
    fn trie_wrappers_inlined_or_not() {
        let load = "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).Load";
        let swap = "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).Swap";
        // With the inlined wrapper's name.
        assert_eq!(
            c(&[load, "sync.(*Map).Load", "main.reader"]),
            InMap::LockFreeRead
        );
        // Without it: the trie's own method names the operation.
        assert_eq!(c(&[load, "main.reader"]), InMap::LockFreeRead);
        assert_eq!(
            c(&[
                "internal/sync.(*Mutex).Lock",
                swap,
                "sync.(*Map).Store",
                "main.w"
            ]),
            InMap::Other
        );
    }

    #[test]
    fn range_callbacks_and_other_code_are_not_the_map() {
        assert_eq!(
            c(&["main.work.func1", "sync.(*Map).Range", "main.work"]),
            InMap::No
        );
        assert_eq!(c(&["sync.(*Map).Range", "main.work"]), InMap::LockFreeRead);
        assert_eq!(c(&["runtime.mallocgc", "main.work"]), InMap::No);
        assert_eq!(c(&[]), InMap::No);
    }
}
