//! callees: what a call made by a candidate lock wrapper reaches, told from the callee's
//! name: a lock primitive (taking a lock or sleeping for one), a release, or a function that
//! never returns (the end of an error path). Names are demangled as blazesym does.
use crate::profile::is_known_wrapper;

pub fn demangle(mangled: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(mangled) {
        return format!("{d:#}");
    }
    cpp_demangle::Symbol::new(mangled)
        .ok()
        .and_then(|s| s.demangle().ok())
        .unwrap_or_else(|| mangled.to_string())
}

/// The calls that take a lock or sleep for one: the C runtime's, Rust's lock crates' and the
/// curated C++ wrappers (not `is_lock_internal`'s general `core::` or `std::sys::`, which
/// hold clocks and panics too).
pub fn is_lock_primitive(name: &str) -> bool {
    const PRIMITIVES: &[&str] = &[
        "pthread_mutex_lock",
        "pthread_mutex_timedlock",
        "pthread_mutex_clocklock",
        "__pthread_mutex_lock",
        "pthread_rwlock_rdlock",
        "pthread_rwlock_wrlock",
        "pthread_rwlock_timed",
        "pthread_rwlock_clock",
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "pthread_cond_clockwait",
        "pthread_spin_lock",
        "sem_wait",
        "sem_timedwait",
        "sem_clockwait",
        "syscall",
        "std::sys::sync::",
        "std::sync::",
        "lock_api::",
        "parking_lot",
        "dashmap::lock::",
        "spin::",
    ];
    let n = name.trim_start_matches('<');
    PRIMITIVES.iter().any(|p| n.starts_with(p)) || is_known_wrapper(n)
}

pub fn releases(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "unlock",
        "wake",
        "release",
        "notify",
        "signal",
        "broadcast",
        "sem_post",
    ]
    .iter()
    .any(|w| n.contains(w))
}

pub fn never_returns(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "abort",
        "__assert_fail",
        "__stack_chk_fail",
        "__cxa_throw",
        "__cxa_rethrow",
        "_Unwind_Resume",
        "exit",
        "_exit",
        "std::terminate()",
        "__fortify_fail",
        "__chk_fail",
    ];
    EXACT.contains(&name)
        || name.starts_with("std::__throw_")
        || name.starts_with("core::panicking::")
        || name.starts_with("core::result::unwrap_failed")
        || name.starts_with("core::option::unwrap_failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_calls_and_dead_ends_are_told_apart() {
        assert!(is_lock_primitive("pthread_mutex_lock"));
        assert!(is_lock_primitive("rocksdb::port::Mutex::Lock()"));
        assert!(is_lock_primitive("std::mutex::lock()"));
        assert!(!is_lock_primitive("core::panicking::panic"));
        assert!(!is_lock_primitive(
            "std::sys::pal::unix::time::Timespec::now"
        ));
        assert!(!is_lock_primitive("printf"));
        assert!(releases("pthread_mutex_unlock"));
        assert!(releases("std::sys::sync::mutex::futex::Mutex::wake"));
        assert!(!releases("pthread_mutex_lock"));
        assert!(never_returns("std::__throw_system_error(int)"));
        assert!(never_returns("abort"));
        assert!(!never_returns("pthread_mutex_unlock"));
        assert_eq!(
            demangle("_ZN7rocksdb4port5Mutex4LockEv"),
            "rocksdb::port::Mutex::Lock()"
        );
        assert_eq!(demangle("pthread_mutex_lock"), "pthread_mutex_lock");
    }
}
