//! frames: reading a symbolized stack — which functions implement locking (so the first
//! frame outside them is where the program took the lock), a stack's function names, and the
//! lock site a report names. Every view asks these the same way.
use crate::profile::{Profile, Stack};

/// Functions that implement locking and waiting rather than decide to take a lock: the first
/// frame outside them is where the program asked for the lock.
pub fn is_lock_internal(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "syscall",
        "__syscall",
        "futex",
        "__futex",
        "__GI___futex",
        "__lll_lock",
        "__GI___lll_lock",
        "lll_",
        "__pthread_mutex",
        "___pthread_mutex",
        "pthread_mutex",
        "__pthread_cond",
        "___pthread_cond",
        "pthread_cond",
        "pthread_rwlock",
        "__pthread_rwlock",
        "sem_wait",
        "__new_sem_wait",
        "do_futex_wait",
        "core::",
        "parking_lot",
        "lock_api::",
        "std::thread::park",
        "runtime.",
        // Go's sync package: Mutex/RWMutex methods and their semaphore acquires (from Go
        // 1.24 the Mutex is internal/sync's).
        "sync.",
        "internal/sync.",
    ];
    const CONTAINS: &[&str] = &["std::sys::", "std::sync::", "std::thread::Thread::park"];
    let n = name.trim_start_matches('<');
    // The bundled map's own lock helper: the operation calling it is where the lock was taken.
    let map_lock_helper = n.starts_with("syncmap::SyncMap<") && n.ends_with(">::lock");
    map_lock_helper
        || PREFIXES.iter().any(|p| n.starts_with(p))
        || CONTAINS.iter().any(|c| n.contains(c))
}

/// Function names of a stack, innermost first, inlined functions as their own entries.
pub fn function_names(stack: &Stack) -> impl Iterator<Item = &str> {
    stack
        .frames
        .iter()
        .flat_map(|f| f.syms.iter().map(|s| s.name.as_str()))
}

/// The innermost function outside the lock implementation, or a placeholder saying why not.
/// A frame nothing named stops the search there, as `module+0xoffset`: the lock site is
/// unknown, and a named function further out would be a different one.
pub fn blamed_function(profile: &Profile, stack: Option<&Stack>) -> String {
    let Some(stack) = stack else {
        return "[stack lost]".into();
    };
    for f in &stack.frames {
        if f.syms.is_empty() {
            return profile.unnamed_frame(f);
        }
        if let Some(s) = f.syms.iter().find(|s| !is_lock_internal(&s.name)) {
            return s.name.clone();
        }
    }
    "[only lock internals]".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_internals_are_recognised() {
        for n in [
            "syscall",
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
            "<std::sync::poison::mutex::Mutex<T>>::lock",
            "__lll_lock_wait",
            "___pthread_mutex_lock",
            "runtime.futex",
            "__GI___lll_lock_wait_private",
            "syncmap::SyncMap<K,V>::lock",
        ] {
            assert!(is_lock_internal(n), "{n}");
        }
        for n in ["contended::hot_site", "main", "syncmap::Map<K,V>::load"] {
            assert!(!is_lock_internal(n), "{n}");
        }
    }
}
