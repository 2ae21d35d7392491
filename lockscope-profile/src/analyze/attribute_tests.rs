//! Unit tests of attribute.
use super::*;
use crate::profile::tests::stack;
use crate::profile::Blamed;

#[test]
fn waiters_are_classified_by_their_innermost_map_operation() {
    let s = stack(&[
        "syscall",
        "syncmap::SyncMap<K,V>::lock",
        "syncmap::SyncMap<K,V>::slow_store",
        "syncmap::SyncMap<K,V>::swap",
        "app::main",
    ]);
    assert_eq!(waiter_category(Some(&s)), Category::SlowStore);
    let s = stack(&[
        "syncmap::SyncMap<K,V>::lock",
        "syncmap::SyncMap<K,V>::load_miss",
    ]);
    assert_eq!(waiter_category(Some(&s)), Category::ReadMiss);
    let s = stack(&["syncmap::SyncMap<K,V>::lock", "syncmap::SyncMap<K,V>::len"]);
    assert_eq!(waiter_category(Some(&s)), Category::OtherMapOp);
    assert_eq!(
        waiter_category(Some(&stack(&["app::f"]))),
        Category::OtherLock
    );
    assert_eq!(waiter_category(None), Category::OtherLock);
    // The Go port's method names.
    let go = stack(&[
        "sync.(*Mutex).Lock",
        "lockscope.dev/go/syncmap.(*Map).slowStore",
        "lockscope.dev/go/syncmap.(*Map).Swap",
    ]);
    assert_eq!(waiter_category(Some(&go)), Category::SlowStore);
    let go = stack(&["lockscope.dev/go/syncmap.(*Map).loadMiss"]);
    assert_eq!(waiter_category(Some(&go)), Category::ReadMiss);
}

#[test]
fn go_std_sync_map_waiters_are_classified_by_the_method_they_called() {
    for (method, want) in [
        ("Load", Category::ReadMiss),
        ("Store", Category::SlowStore),
        ("LoadOrStore", Category::SlowStore),
        ("Swap", Category::SlowStore),
        ("LoadAndDelete", Category::Delete),
        ("Range", Category::Range),
        ("CompareAndSwap", Category::Compare),
        ("CompareAndDelete", Category::Compare),
    ] {
        let s = stack(&[
            "runtime.semacquire1",
            "sync.runtime_SemacquireMutex",
            "sync.(*Mutex).lockSlow",
            "sync.(*Mutex).Lock",
            &format!("sync.(*Map).{method}"),
            "main.worker",
        ]);
        assert_eq!(waiter_category(Some(&s)), want, "{method}");
    }
    // Delete calls LoadAndDelete: the innermost method decides.
    let s = stack(&[
        "sync.(*Mutex).Lock",
        "sync.(*Map).LoadAndDelete",
        "sync.(*Map).Delete",
    ]);
    assert_eq!(waiter_category(Some(&s)), Category::Delete);
    // The phase functions run under the lock; a wait never starts inside them.
    let s = stack(&["sync.(*Map).missLocked"]);
    assert_eq!(waiter_category(Some(&s)), Category::OtherMapOp);
    // Another package's Map is not sync.Map.
    let s = stack(&["sync.(*Mutex).Lock", "mypkg.(*Map).Load"]);
    assert_eq!(waiter_category(Some(&s)), Category::OtherLock);
}

#[test]
fn lock_primitives_are_named_from_the_innermost_lock_frame() {
    let m = stack(&[
        "syscall",
        "std::sys::sync::mutex::futex::Mutex::lock_contended",
        "app::f",
    ]);
    assert_eq!(lock_primitive(Some(&m)), "std::sync::Mutex");
    let c = stack(&[
        "syscall",
        "std::sys::sync::condvar::futex::Condvar::wait",
        "std::sys::sync::mutex::futex::Mutex::lock",
    ]);
    assert_eq!(lock_primitive(Some(&c)), "std::sync::Condvar");
    let p = stack(&["__lll_lock_wait", "___pthread_mutex_lock", "main"]);
    assert_eq!(lock_primitive(Some(&p)), "pthread mutex");
    let m = stack(&[
        "futex_wait",
        "__GI___lll_lock_wait_private",
        "__GI___libc_malloc",
    ]);
    assert_eq!(
        lock_primitive(Some(&m)),
        "glibc internal lock (malloc, stdio, …)"
    );
    assert_eq!(lock_primitive(Some(&stack(&["app::g"]))), "other futex");
    assert_eq!(lock_primitive(None), "unknown (stack lost)");
}

#[test]
fn blame_is_kept_per_lock_busiest_first() {
    use crate::profile::tests::{row, sample};
    use crate::profile::Bundled;
    let mut p = sample();
    p.stacks[0] = stack(&[
        "syncmap::SyncMap<K,V>::lock",
        "syncmap::SyncMap<K,V>::slow_store",
    ]);
    let mut a = row(Some(0), 1, 2, 5_000, 3_000);
    a.uaddr = 0xa;
    a.behind = vec![Blamed {
        phase: HolderPhase::Rebuild,
        waits: 2,
        ns: 4_000,
    }];
    let mut b = row(Some(0), 2, 1, 9_000, 9_000);
    b.uaddr = 0xb;
    b.behind = vec![Blamed {
        phase: HolderPhase::Miss,
        waits: 1,
        ns: 9_000,
    }];
    b.covered_waits = 1;
    let other = row(Some(1), 3, 1, 100, 100); // stack 1 is not the map: not blamed
    p.waits = vec![a, b, other];
    p.bundled = Some(Bundled {
        kind: Default::default(),
        exe: "/bin/x".into(),
        probes: 3,
        probed: vec![],
        phases: vec![],
        counters: None,
        counters_exact: true,
        checks: vec![],
        trie_nodes: Vec::new(),
        fast_path: None,
        go_version: None,
    });
    let at = attribute(&p).expect("bundled map present");
    assert_eq!(at.behind_by_lock.len(), 2);
    assert_eq!(at.behind_by_lock[0].0, 0xb, "busiest lock first");
    assert_eq!(
        at.behind_by_lock[0].1,
        [(
            Behind::Phase(HolderPhase::Miss),
            Share {
                waits: 1,
                wait_ns: 9_000
            }
        )]
    );
    // Lock 0xa: 4 µs of its 5 µs behind the rebuild, the rest other work.
    assert_eq!(
        at.behind_by_lock[1].1,
        [
            (
                Behind::Phase(HolderPhase::Rebuild),
                Share {
                    waits: 2,
                    wait_ns: 4_000
                }
            ),
            (
                Behind::OtherWork,
                Share {
                    waits: 2,
                    wait_ns: 1_000
                }
            ),
        ]
    );
    assert_eq!(at.map_wait_ns, 14_000);
    assert_eq!(at.behind[0].0, Behind::Phase(HolderPhase::Miss));
    assert_eq!(at.total_ns, 14_100);
}

#[test]
fn verdicts_name_the_dominant_cause() {
    let sec = 1_000_000_000;
    let quiet = verdict(sec, 1_000, &[], Some(&[]), Some(99.95), None);
    assert!(quiet.starts_with("no meaningful lock wait"), "{quiet}");
    assert!(
        quiet.contains("reads 100.0% fast path") || quiet.contains("reads 99.9"),
        "{quiet}"
    );
    let share = |ns| Share {
        waits: 10,
        wait_ns: ns,
    };
    let v = verdict(
        sec,
        800_000_000,
        &[
            (Category::SlowStore, share(700_000_000)),
            (Category::ReadMiss, share(100_000_000)),
        ],
        Some(&[
            (Behind::Phase(HolderPhase::Rebuild), share(648_000_000)),
            (Behind::Phase(HolderPhase::Miss), share(152_000_000)),
        ]),
        Some(99.9),
        Some(Rebuilds {
            count: 4,
            entries: 400_000,
            longest_ns: 40_000_000,
        }),
    );
    assert!(v.starts_with("81% of map lock wait is behind dirty rebuild (O(n) copy) copying ~100,000 entries each (4 rebuilds, longest 40.0 ms)"), "{v}");
    assert!(v.contains("88% of it was slow store"), "{v}");
    assert!(v.ends_with("a sharded map fits this workload"), "{v}");
    // A rebuild behind 40% of the wait is named, though other work adds up to 60%...
    let split = |rebuild: u64| {
        verdict(
            sec,
            1_000_000_000,
            &[(Category::SlowStore, share(1_000_000_000))],
            Some(&[
                (Behind::OtherWork, share(1_000_000_000 - rebuild)),
                (Behind::Phase(HolderPhase::Rebuild), share(rebuild)),
            ]),
            None,
            None,
        )
    };
    let v = split(400_000_000);
    assert!(
        v.starts_with("40% of map lock wait is behind dirty rebuild"),
        "{v}"
    );
    // ...but one behind 5% is not.
    let v = split(50_000_000);
    assert!(
        v.starts_with("95% of map lock wait is behind other work"),
        "{v}"
    );
}

#[test]
fn tokio_async_waits_are_named_by_the_tokio_sync_type_they_acquire() {
    let p = crate::profile::testing::sample();
    let under = |api: &str| {
        stack(&[
            "<tokio::sync::batch_semaphore::Acquire as core::future::future::Future>::poll",
            api,
            "app::update_session::{{closure}}",
        ])
    };
    let cat = |s: &Stack, op| category_of(&p, Some(s), op);
    let mutex = under("tokio::sync::mutex::Mutex<T>::lock::{{closure}}");
    assert_eq!(cat(&mutex, FutexOp::TokioAcquire), "tokio Mutex (async)");
    let rw = under("tokio::sync::rwlock::RwLock<T>::write::{{closure}}");
    assert_eq!(cat(&rw, FutexOp::TokioAcquire), "tokio RwLock (async)");
    let sem = under("tokio::sync::semaphore::Semaphore::acquire::{{closure}}");
    assert_eq!(cat(&sem, FutexOp::TokioAcquire), "tokio Semaphore (async)");
    // A thread's futex wait under the same frames is not an async wait.
    assert_ne!(cat(&mutex, FutexOp::Wait), "tokio Mutex (async)");
}
