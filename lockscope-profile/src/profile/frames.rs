//! frames: reading a symbolized stack — which functions implement locking (so the first
//! frame outside them is where the program took the lock), a stack's function names, and the
//! lock site a report names. Every view asks these the same way.
use crate::profile::{Profile, Stack};

/// Functions that implement locking and waiting rather than decide to take a lock: the first
/// frame outside them is where the program asked for the lock. This is the built-in list (C
/// runtimes, Rust, Go, and the lock wrappers of common C++ and Rust libraries); a profile adds
/// the wrappers found on disk and those the user named (see [`is_lock_code`]).
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
        "__condvar_",
        "core::",
        "parking_lot",
        "lock_api::",
        "std::thread::park",
        "runtime.",
        // Go's sync package: Mutex/RWMutex methods and their semaphore acquires (from Go
        // 1.24 the Mutex is internal/sync's).
        "sync.",
        "internal/sync.",
        // Rust lock implementations built on lock_api, and tokio's internal std mutex.
        "dashmap::",
        "spin::",
        "tokio::loom::",
        // tokio's async locks (`tokio acquire` rows): the user's async fn is the site.
        "tokio::sync::",
    ];
    const CONTAINS: &[&str] = &["std::sys::", "std::sync::", "std::thread::Thread::park"];
    let n = name.trim_start_matches('<');
    // The bundled map's own lock helper: the operation calling it is where the lock was taken.
    let map_lock_helper = n.starts_with("syncmap::SyncMap<") && n.ends_with(">::lock");
    map_lock_helper
        || PREFIXES.iter().any(|p| n.starts_with(p))
        || CONTAINS.iter().any(|c| n.contains(c))
        || is_cpp_lock_wrapper(qualified(n))
}

/// C and C++ lock wrappers users meet in real servers: the standard library's, abseil's,
/// folly's, boost's, RocksDB's `port::` and MariaDB's performance-schema ones. Matched on the
/// function's qualified name (no return type); abseil's inline namespace is skipped.
fn is_cpp_lock_wrapper(n: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "std::mutex::lock",
        "std::recursive_mutex::lock",
        "std::timed_mutex::",
        "std::recursive_timed_mutex::",
        "std::shared_mutex::lock",
        "std::shared_timed_mutex::",
        "std::__shared_mutex_",
        "std::unique_lock<",
        "std::lock_guard<",
        "std::scoped_lock<",
        "std::shared_lock<",
        "std::condition_variable::wait",
        "std::condition_variable_any::wait",
        "std::_V2::condition_variable_any::wait",
        "std::__condvar::wait",
        "std::__1::mutex::lock",
        "std::__1::shared_mutex",
        "std::__1::unique_lock<",
        "std::__1::lock_guard<",
        "std::__1::condition_variable::wait",
        "__gthread_mutex_lock",
        "__gthread_cond_wait",
        "__gthread_recursive_mutex_lock",
        "folly::SharedMutex",
        "folly::DistributedMutex",
        "folly::MicroSpinLock::",
        "boost::mutex::lock",
        "boost::shared_mutex::",
        "boost::recursive_mutex::lock",
        "boost::unique_lock<",
        "boost::lock_guard<",
        "boost::condition_variable::wait",
        "boost::condition_variable_any::wait",
        // boost.thread's thin pthread shims (boost/thread/pthread/pthread_helpers.hpp).
        "boost::posix::pthread_",
        "boost::shared_lock<",
        "boost::upgrade_lock<",
        "boost::thread_cv_detail::",
        "rocksdb::port::Mutex::Lock",
        "rocksdb::port::RWMutex::",
        "rocksdb::port::CondVar::Wait",
        "rocksdb::port::CondVar::TimedWait",
        "rocksdb::MutexLock::MutexLock",
        "rocksdb::ReadLock::ReadLock",
        "rocksdb::WriteLock::WriteLock",
        "rocksdb::InstrumentedMutex::Lock",
        "rocksdb::InstrumentedMutexLock::",
        "rocksdb::InstrumentedCondVar::",
        "rocksdb::SpinMutex::lock",
        "psi_mutex_lock",
        "psi_rwlock_",
        "psi_prlock_",
        "psi_cond_wait",
        "psi_cond_timedwait",
        "inline_mysql_mutex_lock",
        "inline_mysql_rwlock_",
        "inline_mysql_prlock_",
        "inline_mysql_cond_wait",
        "inline_mysql_cond_timedwait",
        "safe_mutex_lock",
        // InnoDB's own locks (storage/innobase/include/srw_lock.h, sux_lock.h): the futex
        // mutex and rw-locks, their performance-schema wrappers, the recursive page latch.
        "srw_mutex_impl<",
        "ssux_lock_impl<",
        "srw_lock_impl<",
        "srw_lock_<",
        "ssux_lock::",
        "sux_lock<",
        // CPython's GIL (ceval_gil.h): the eval loop or PyEval_RestoreThread is the site.
        "take_gil",
        "drop_gil",
        "PyCOND_WAIT",
        "PyCOND_TIMEDWAIT",
        "PyMUTEX_LOCK",
    ];
    if let Some(rest) = n.strip_prefix("absl::") {
        // `absl::lts_20230802::Mutex::Lock()`: the inline namespace varies by release.
        let rest = match rest.split_once("::") {
            Some((ns, tail)) if ns.starts_with("lts_") => tail,
            _ => rest,
        };
        return [
            "Mutex::",
            "MutexLock::",
            "ReaderMutexLock::",
            "WriterMutexLock::",
            "CondVar::",
        ]
        .iter()
        .chain(&["base_internal::SpinLock", "synchronization_internal::"])
        .any(|p| rest.starts_with(p));
    }
    PREFIXES.iter().any(|p| n.starts_with(p))
}

/// True for a curated C/C++ lock wrapper (`rocksdb::port::Mutex::Lock()`, `psi_mutex_lock`...).
pub fn is_known_wrapper(name: &str) -> bool {
    is_cpp_lock_wrapper(qualified(name.trim_start_matches('<')))
}

/// A demangled C++ name without its return type: `std::unique_lock<std::mutex>::lock()` from
/// `void std::unique_lock<std::mutex>::lock()` (template functions carry one).
fn qualified(n: &str) -> &str {
    let mut depth = 0i32;
    let mut last_space = None;
    for (i, c) in n.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            '(' if depth == 0 => break,
            ' ' if depth == 0 => last_space = Some(i),
            _ => {}
        }
    }
    match last_space {
        // `operator<<` and `(anonymous namespace)` hold spaces that are no return type.
        Some(i) if !n[..i].ends_with("operator") => &n[i + 1..],
        _ => n,
    }
}

/// [`is_lock_internal`], or a function this profile counts as lock code: a wrapper found on
/// disk to only forward to a lock primitive, or one the user named with `--lock-wrapper`.
pub fn is_lock_code(profile: &Profile, name: &str) -> bool {
    is_lock_internal(name) || profile.lock_wrappers.contains(name)
}

/// `--lock-wrapper REGEX` patterns: functions the user says are lock code.
#[derive(Debug, Clone, Default)]
pub struct LockWrappers {
    set: Option<regex::RegexSet>,
}

impl LockWrappers {
    /// One clear error for a bad pattern.
    pub fn new(patterns: &[String]) -> anyhow::Result<LockWrappers> {
        for p in patterns {
            if let Err(e) = regex::Regex::new(p) {
                let why = e.to_string();
                let why = why.lines().last().unwrap_or("").trim();
                anyhow::bail!(
                    "--lock-wrapper {p:?} is not a regular expression ({why}); give a pattern such as 'MyMutex::Lock'"
                );
            }
        }
        let set = (!patterns.is_empty())
            .then(|| regex::RegexSet::new(patterns))
            .transpose()?;
        Ok(LockWrappers { set })
    }

    /// Adds every function of the profile's stacks the patterns match to its lock code.
    pub fn mark(&self, profile: &mut Profile) {
        let Some(set) = &self.set else { return };
        let hits: Vec<String> = profile
            .stacks
            .iter()
            .flat_map(function_names)
            .filter(|n| !profile.lock_wrappers.contains(*n) && set.is_match(n))
            .map(str::to_string)
            .collect();
        profile.lock_wrappers.extend(hits);
    }
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
        if let Some(s) = f.syms.iter().find(|s| !is_lock_code(profile, &s.name)) {
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
            "rocksdb::port::Mutex::Lock()",
            "std::mutex::lock()",
            "void std::unique_lock<std::mutex>::lock()",
            "std::lock_guard<std::mutex>::lock_guard(std::mutex&)",
            "absl::lts_20230802::Mutex::Lock()",
            "psi_mutex_lock",
            "pthread_mutex_lock@plt",
            "<dashmap::lock::RawRwLock as lock_api::rwlock::RawRwLock>::lock_exclusive",
            "dashmap::lock::RawRwLock::lock_exclusive_slow",
            "parking_lot_core::parking_lot::park",
            "tokio::loom::std::mutex::Mutex<T>::lock",
            "srw_mutex_impl<true>::wait_and_lock()",
            "ssux_lock_impl<false>::rd_wait()",
            "srw_lock_impl<false>::psi_rd_lock(char const*, unsigned int)",
            "ssux_lock::psi_wr_lock(char const*, unsigned int)",
            "sux_lock<ssux_lock_impl<true> >::s_lock()",
            "<tokio::sync::batch_semaphore::Acquire as core::future::future::Future>::poll",
            "tokio::sync::mutex::Mutex<T>::lock::{{closure}}",
            "boost::posix::pthread_cond_wait(pthread_cond_t*, pthread_mutex_t*)",
            "boost::shared_lock<boost::shared_mutex>::lock()",
            "boost::thread_cv_detail::lock_on_exit<boost::unique_lock<boost::mutex> >::~lock_on_exit()",
        ] {
            assert!(is_lock_internal(n), "{n}");
        }
        for n in [
            "contended::hot_site",
            "main",
            "syncmap::Map<K,V>::load",
            "rocksdb::lru_cache::LRUCacheShard::Lookup(rocksdb::Slice const&, unsigned int)",
            "absl::StrCat(absl::AlphaNum const&)",
            "std::mutex_user()",
            "bool operator<<(int)",
            "lock_rec_lock(bool, unsigned int, buf_block_t const*, unsigned long, dict_index_t*, que_thr_t*)",
            "ssux_lock_user()",
        ] {
            assert!(!is_lock_internal(n), "{n}");
        }
    }
}
