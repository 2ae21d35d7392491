//! waitclass: what a waiting thread was waiting *for*. Lock contention (mutexes, rwlocks,
//! `Once` races, a condvar waiter re-taking its mutex) is what the report is about; condition
//! waits, parking, joins, barriers and semaphores are threads idle until told, and are set
//! apart (`--waits contention|idle|all`). Decided from the symbolized stack, innermost lock
//! frame first; the futex op decides only where the stack says nothing. A raw futex word used
//! as one thread's event (one waiter, woken by several others, never by itself: no owner, so
//! no lock) is an event wait, set apart like the idle waits (`event_words`).

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::knowledge::GoWait;
use crate::profile::{FutexOp, Profile, Stack};

/// Why a thread that was not contending for a lock slept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdleKind {
    Condvar,
    Park,
    Join,
    Barrier,
    Semaphore,
    /// A raw futex word one thread waits on and others wake: an event, not a lock.
    Event,
    /// A Go M with no goroutine to run (these rows are already left out at assembly).
    GoIdle,
    /// A Go M waiting for the others to stop for the garbage collector (stop-the-world,
    /// forEachP): the GC's pause, not a lock; the user function under it only allocated.
    GoStopTheWorld,
}

/// What a wait was: lock contention, or a thread idle until something happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitClass {
    Contention,
    Idle(IdleKind),
}

impl WaitClass {
    /// Machine name (JSON, CSV).
    pub fn name(self) -> &'static str {
        match self {
            WaitClass::Contention => "contention",
            WaitClass::Idle(IdleKind::Condvar) => "idle-condvar",
            WaitClass::Idle(IdleKind::Park) => "idle-park",
            WaitClass::Idle(IdleKind::Join) => "idle-join",
            WaitClass::Idle(IdleKind::Barrier) => "idle-barrier",
            WaitClass::Idle(IdleKind::Semaphore) => "idle-semaphore",
            WaitClass::Idle(IdleKind::Event) => "idle-event",
            WaitClass::Idle(IdleKind::GoIdle) => "idle-go-thread",
            WaitClass::Idle(IdleKind::GoStopTheWorld) => "idle-go-gc",
        }
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            WaitClass::Contention => "lock contention",
            WaitClass::Idle(IdleKind::Condvar) => "condition wait",
            WaitClass::Idle(IdleKind::Park) => "thread park",
            WaitClass::Idle(IdleKind::Join) => "thread join",
            WaitClass::Idle(IdleKind::Barrier) => "barrier",
            WaitClass::Idle(IdleKind::Semaphore) => "semaphore",
            WaitClass::Idle(IdleKind::Event) => "event wait",
            WaitClass::Idle(IdleKind::GoIdle) => "Go idle thread",
            WaitClass::Idle(IdleKind::GoStopTheWorld) => "Go GC stop-the-world",
        }
    }
}

/// Which classes a view shows (`--waits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Waits {
    #[default]
    Contention,
    Idle,
    All,
}

impl Waits {
    pub fn name(self) -> &'static str {
        match self {
            Waits::Contention => "contention",
            Waits::Idle => "idle",
            Waits::All => "all",
        }
    }

    pub fn includes(self, class: WaitClass) -> bool {
        match self {
            Waits::All => true,
            Waits::Contention => class == WaitClass::Contention,
            Waits::Idle => class != WaitClass::Contention,
        }
    }
}

/// The synchronisation primitive a waiter sat in, from the first recognised frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    StdMutex,
    StdRwLock,
    StdCondvar,
    StdOnce,
    ThreadPark,
    ParkingLotLock,
    ParkingLotCondvar,
    /// DashMap's per-shard `RawRwLock` (lock_api over parking_lot_core), taken to write.
    DashMapWrite,
    DashMapRead,
    /// CPython's GIL: a condvar and mutex, waited on in `take_gil`/`drop_gil`.
    PythonGil,
    /// A lock built from a mutex and a condition variable (boost's `shared_mutex` and
    /// `upgrade_mutex`, libstdc++'s `__shared_mutex_cv`): its acquire sleeps on the condvar.
    CondvarLock,
    GlibcInternal,
    PthreadMutex,
    PthreadCondvar,
    PthreadRwLock,
    PthreadOnce,
    PthreadBarrier,
    Semaphore,
    Join,
    GoMutex,
    GoRwMutex,
    Go(GoWait),
}

impl Primitive {
    pub fn label(self) -> &'static str {
        match self {
            Primitive::StdMutex => "std::sync::Mutex",
            Primitive::StdRwLock => "std::sync::RwLock",
            Primitive::StdCondvar => "std::sync::Condvar",
            Primitive::StdOnce => "std::sync::Once",
            Primitive::ThreadPark => "thread park",
            Primitive::ParkingLotLock => "parking_lot",
            Primitive::ParkingLotCondvar => "parking_lot Condvar",
            Primitive::DashMapWrite => "DashMap shard write lock",
            Primitive::DashMapRead => "DashMap shard read lock",
            Primitive::PythonGil => "Python GIL",
            Primitive::CondvarLock => "lock built on a condvar (boost shared_mutex, …)",
            Primitive::GlibcInternal => "glibc internal lock (malloc, stdio, …)",
            Primitive::PthreadMutex => "pthread mutex",
            Primitive::PthreadCondvar => "pthread condvar",
            Primitive::PthreadRwLock => "pthread rwlock",
            Primitive::PthreadOnce => "pthread_once",
            Primitive::PthreadBarrier => "pthread barrier",
            Primitive::Semaphore => "semaphore",
            Primitive::Join => "thread join",
            Primitive::GoMutex => "Go sync.Mutex (goroutine)",
            Primitive::GoRwMutex => "Go sync.RWMutex (goroutine)",
            Primitive::Go(g) => g.label(),
        }
    }

    pub fn class(self) -> WaitClass {
        match self {
            Primitive::StdCondvar | Primitive::ParkingLotCondvar | Primitive::PthreadCondvar => {
                WaitClass::Idle(IdleKind::Condvar)
            }
            Primitive::ThreadPark => WaitClass::Idle(IdleKind::Park),
            Primitive::Join => WaitClass::Idle(IdleKind::Join),
            Primitive::PthreadBarrier => WaitClass::Idle(IdleKind::Barrier),
            Primitive::Semaphore => WaitClass::Idle(IdleKind::Semaphore),
            Primitive::Go(GoWait::IdleThread) => WaitClass::Idle(IdleKind::GoIdle),
            Primitive::Go(GoWait::StopTheWorld) => WaitClass::Idle(IdleKind::GoStopTheWorld),
            _ => WaitClass::Contention,
        }
    }
}

/// One function name → the primitive it implements, if it says. Order matters within a name
/// (`parking_lot::condvar::Condvar` before any `Condvar`); across names, innermost wins.
fn primitive_of_name(name: &str) -> Option<Primitive> {
    let n = name.trim_start_matches('<');
    let has = |s: &str| n.contains(s);
    Some(if n.starts_with("parking_lot_core") {
        // Shared by parking_lot's locks and its condvar: the caller decides.
        return None;
    } else if n.starts_with("dashmap::lock::RawRwLock") {
        if has("shared") {
            Primitive::DashMapRead
        } else {
            Primitive::DashMapWrite
        }
    } else if n.starts_with("parking_lot::condvar") {
        Primitive::ParkingLotCondvar
    } else if n.starts_with("parking_lot") || n.starts_with("lock_api") {
        Primitive::ParkingLotLock
    } else if has("std::sys::sync::mutex")
        || has("std::sync::poison::mutex")
        || n.starts_with("std::sync::Mutex")
    {
        Primitive::StdMutex
    } else if has("std::sys::sync::rwlock") || has("rwlock::RwLock") {
        Primitive::StdRwLock
    } else if has("std::sys::sync::condvar") || has("Condvar") {
        Primitive::StdCondvar
    } else if has("std::sys::sync::once") || has("OnceLock") || has("std::sync::Once") {
        Primitive::StdOnce
    } else if has("thread::park")
        || has("Parker")
        || has("thread_parking")
        || has("sync::parker")
        || n.starts_with("rayon_core::sleep")
        || n.starts_with("tokio::runtime::park")
    {
        Primitive::ThreadPark
    } else if has("lll_lock_wait_private") {
        // glibc's own locks: malloc arenas, stdio, the dynamic loader.
        Primitive::GlibcInternal
    } else if has("pthread_mutex") || has("lll_lock") {
        // Includes `__pthread_mutex_cond_lock`: a condvar waiter re-taking its mutex.
        Primitive::PthreadMutex
    } else if has("pthread_cond") {
        Primitive::PthreadCondvar
    } else if has("pthread_rwlock") {
        Primitive::PthreadRwLock
    } else if has("pthread_once") {
        Primitive::PthreadOnce
    } else if has("pthread_barrier") {
        Primitive::PthreadBarrier
    } else if has("sem_wait")
        || has("sem_timedwait")
        || has("sem_clockwait")
        || n == "do_futex_wait"
    {
        Primitive::Semaphore
    } else if has("pthread_join")
        || has("pthread_clockjoin")
        || has("pthread_timedjoin")
        || has("JoinInner")
        || has("JoinHandle")
        || has("clone_internal")
    {
        Primitive::Join
    } else {
        return None;
    })
}

/// The primitive a stack waited in; `None` when no frame says (or no stack).
pub fn primitive(stack: Option<&Stack>) -> Option<Primitive> {
    let stack = stack?;
    let names = || crate::profile::function_names(stack);
    for name in names() {
        if name.starts_with("sync.(*RWMutex)") {
            return Some(Primitive::GoRwMutex);
        }
        if name.starts_with("sync.(*Mutex)") || name.starts_with("internal/sync.(*Mutex)") {
            return Some(Primitive::GoMutex);
        }
    }
    if names().any(|n| n.starts_with("runtime.")) {
        return Some(Primitive::Go(crate::knowledge::classify_go_wait(Some(
            stack,
        ))));
    }
    // The GIL sleeps on a condvar and a mutex; waiting in its take or drop is contention.
    if crate::knowledge::waits_for_gil(stack) {
        return Some(Primitive::PythonGil);
    }
    // Likewise any lock whose acquire sleeps on a condition variable: that sleep is the wait
    // for the lock, not for an event.
    if names().any(is_condvar_lock) {
        return Some(Primitive::CondvarLock);
    }
    let found = names().find_map(primitive_of_name);
    // parking_lot's core alone (its callers inlined away or not symbolized): its locks.
    found.or_else(|| {
        names()
            .any(|n| n.starts_with("parking_lot_core"))
            .then_some(Primitive::ParkingLotLock)
    })
}

/// Functions of locks built from a mutex and a condvar, by qualified-name prefix. A wait under
/// them is waiting for the lock, wherever it sleeps.
fn is_condvar_lock(name: &str) -> bool {
    const LOCKS: &[&str] = &[
        "boost::shared_mutex::",
        "boost::upgrade_mutex::",
        "boost::v2::shared_mutex::",
        "std::__shared_mutex_cv::",
    ];
    LOCKS
        .iter()
        .any(|l| name.starts_with(l) || name.contains(&format!(" {l}")))
}

/// How a futex word was used over the recording, as far as it tells a lock from an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WordUse {
    /// One thread waited on it, and at least two others (never that one) woke it.
    Event,
    Other,
}

/// The futex words used as one thread's event: exactly one waiting thread, woken by two or
/// more other threads, and never woken by its waiter. A lock's waiters release it too, and a
/// lock nobody else wanted has no waiter at all; group commit's per-thread words (MariaDB)
/// and hand-rolled thread events look like this. Words are per process (`None`: the recorded
/// one), as rows carry them: followed children share their parent's addresses.
pub fn event_words(profile: &Profile) -> HashSet<(Option<u32>, u64)> {
    let mut waiters: HashMap<(Option<u32>, u64), BTreeSet<u32>> = HashMap::new();
    for r in profile.waits.iter().filter(|r| r.count > 0) {
        waiters.entry((r.pid, r.uaddr)).or_default().insert(r.tid);
    }
    let mut wakers: HashMap<(Option<u32>, u64), BTreeSet<u32>> = HashMap::new();
    for w in profile.wakes.iter().filter(|w| w.woken > 0) {
        wakers.entry((w.pid, w.uaddr)).or_default().insert(w.tid);
    }
    waiters
        .into_iter()
        .filter(|(word, who)| {
            let Some(&waiter) = who.iter().next().filter(|_| who.len() == 1) else {
                return false;
            };
            wakers
                .get(word)
                .is_some_and(|w| w.len() >= 2 && !w.contains(&waiter))
        })
        .map(|(word, _)| word)
        .collect()
}

/// [`classify`] knowing how the row's word was used: a wait whose known stack shows no
/// primitive (a raw futex call) on an event word is an event wait.
pub fn classify_on(stack: Option<&Stack>, op: FutexOp, word: WordUse) -> WaitClass {
    // A lost stack says nothing: parking_lot's and Go's per-thread words look like events.
    let raw = word == WordUse::Event
        && op != FutexOp::GoSemacquire
        && op != FutexOp::TokioAcquire
        && op != FutexOp::LockPi
        && stack.is_some()
        && primitive(stack).is_none();
    if raw {
        return WaitClass::Idle(IdleKind::Event);
    }
    classify(stack, op)
}

/// Classifies one wait: from its stack, else from its futex op. A wait nothing explains stays
/// contention, as every wait was before this classification existed.
pub fn classify(stack: Option<&Stack>, op: FutexOp) -> WaitClass {
    if matches!(
        op,
        FutexOp::GoSemacquire | FutexOp::TokioAcquire | FutexOp::LockPi
    ) {
        return WaitClass::Contention;
    }
    if let Some(p) = primitive(stack) {
        return p.class();
    }
    if op == FutexOp::WaitRequeuePi {
        // glibc's PI condvars wait with WAIT_REQUEUE_PI; PI mutexes lock with LOCK_PI.
        return WaitClass::Idle(IdleKind::Condvar);
    }
    WaitClass::Contention
}

#[cfg(test)]
#[path = "waitclass_tests.rs"]
mod tests;
