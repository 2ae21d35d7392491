//! Unit tests of the wait classifier on synthetic stacks of each kind.
use super::*;
use crate::analyze::shown_rows;
use crate::profile::tests::{row, sample, stack};
use crate::profile::WaitRow;
use std::collections::BTreeSet;

const WAIT: FutexOp = FutexOp::Wait;
const IDLE_COND: WaitClass = WaitClass::Idle(IdleKind::Condvar);

fn class_of(names: &[&str]) -> WaitClass {
    classify(Some(&stack(names)), WAIT)
}

#[test]
fn mutexes_rwlocks_and_once_races_are_contention() {
    for s in [
        &[
            "syscall",
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
            "app::f",
        ][..],
        &[
            "std::sys::sync::rwlock::futex::RwLock::write_contended",
            "app::f",
        ],
        &["std::sys::sync::once::futex::Once::call", "app::init"],
        &[
            "futex_wait",
            "__GI___lll_lock_wait",
            "___pthread_mutex_lock",
            "contended_site",
        ],
        &["__GI___lll_lock_wait_private", "__GI___libc_malloc"],
        &["futex_wait", "__pthread_rwlock_wrlock_full64", "writer"],
        &["__pthread_once_slow", "init"],
        &[
            "parking_lot_core::thread_parker::imp::ThreadParker::futex_wait",
            "parking_lot_core::parking_lot::park",
            "parking_lot::raw_mutex::RawMutex::lock_slow",
            "lock_api::mutex::Mutex<R,T>::lock",
            "app::site",
        ],
        // parking_lot's core with its callers not symbolized.
        &["parking_lot_core::parking_lot::park", "0x1234"],
        &["runtime.futex", "runtime.futexsleep", "runtime.lock2"],
        &["sync.(*Mutex).lockSlow", "main.site"],
    ] {
        assert_eq!(class_of(s), WaitClass::Contention, "{s:?}");
    }
}

#[test]
fn a_condvar_waiter_retaking_its_mutex_is_contention() {
    // glibc: woken from the condvar, blocked in __pthread_mutex_cond_lock.
    let s = [
        "futex_wait",
        "__GI___lll_lock_wait",
        "__pthread_mutex_cond_lock",
        "__pthread_cond_wait_common",
        "___pthread_cond_wait",
        "worker",
    ];
    assert_eq!(class_of(&s), WaitClass::Contention);
    // std: Condvar::wait re-locks through the Mutex.
    let s = [
        "std::sys::sync::mutex::futex::Mutex::lock_contended",
        "std::sys::sync::condvar::futex::Condvar::wait_optional_timeout",
        "app::worker",
    ];
    assert_eq!(class_of(&s), WaitClass::Contention);
}

#[test]
fn condition_waits_parks_joins_barriers_and_semaphores_are_idle() {
    let cases: &[(&[&str], IdleKind)] = &[
        (
            &[
                "__futex_abstimed_wait_common64",
                "__futex_abstimed_wait_common",
                "__pthread_cond_wait_common",
                "___pthread_cond_wait",
                "pool_worker",
            ],
            IdleKind::Condvar,
        ),
        (
            &[
                "std::sys::pal::unix::futex::futex_wait",
                "std::sys::sync::condvar::futex::Condvar::wait_optional_timeout",
                "std::sync::poison::condvar::Condvar::wait",
            ],
            IdleKind::Condvar,
        ),
        (
            &[
                "parking_lot_core::parking_lot::park",
                "parking_lot::condvar::Condvar::wait_until_internal",
            ],
            IdleKind::Condvar,
        ),
        (
            &[
                "std::sys::pal::unix::futex::futex_wait",
                "std::sys::sync::thread_parking::futex::Parker::park",
                "std::thread::park",
            ],
            IdleKind::Park,
        ),
        (
            &["crossbeam_utils::sync::parker::Inner::park", "x"],
            IdleKind::Park,
        ),
        (&["rayon_core::sleep::Sleep::sleep", "x"], IdleKind::Park),
        (
            &[
                "__futex_abstimed_wait_common64",
                "__pthread_clockjoin_ex",
                "main",
            ],
            IdleKind::Join,
        ),
        (
            &[
                "std::sys::pal::unix::thread::Thread::join",
                "std::thread::JoinInner<T>::join",
            ],
            IdleKind::Join,
        ),
        (
            &["futex_wait", "pthread_barrier_wait", "phase"],
            IdleKind::Barrier,
        ),
        (
            &["do_futex_wait", "__new_sem_wait_slow64", "consumer"],
            IdleKind::Semaphore,
        ),
        (
            &["runtime.futex", "runtime.notesleep", "runtime.mPark"],
            IdleKind::GoIdle,
        ),
        // The GC's stop-the-world, reached from an allocation in user code: not a lock.
        (
            &[
                "runtime.futex",
                "runtime.notetsleep",
                "runtime.forEachPInternal",
                "runtime.forEachP",
                "runtime.gcMarkDone",
                "runtime.mallocgc",
                "net.(*conn).Read",
            ],
            IdleKind::GoStopTheWorld,
        ),
    ];
    for (s, kind) in cases {
        assert_eq!(class_of(s), WaitClass::Idle(*kind), "{s:?}");
    }
}

#[test]
fn the_futex_op_decides_only_where_the_stack_says_nothing() {
    // No stack.
    assert_eq!(classify(None, WAIT), WaitClass::Contention);
    assert_eq!(classify(None, FutexOp::LockPi), WaitClass::Contention);
    assert_eq!(classify(None, FutexOp::WaitRequeuePi), IDLE_COND);
    assert_eq!(classify(None, FutexOp::GoSemacquire), WaitClass::Contention);
    // A stack of unknown frames.
    let unknown = stack(&["0x7f00", "app::main"]);
    assert_eq!(classify(Some(&unknown), FutexOp::WaitRequeuePi), IDLE_COND);
    assert_eq!(
        classify(Some(&unknown), FutexOp::WaitBitset),
        WaitClass::Contention
    );
    // A recognised frame beats the op.
    let cond = stack(&["___pthread_cond_wait"]);
    assert_eq!(classify(Some(&cond), WAIT), IDLE_COND);
    // LOCK_PI is a lock whatever the stack shows.
    assert_eq!(
        classify(Some(&cond), FutexOp::LockPi),
        WaitClass::Contention
    );
}

#[test]
fn views_select_rows_by_class() {
    let mut p = sample();
    p.stacks
        .push(stack(&["___pthread_cond_wait", "pool_worker"]));
    let cond = p.stacks.len() - 1;
    p.waits.push(row(Some(cond), 7, 4, 9_000_000, 3_000_000));
    let count = |w: Waits| shown_rows(&p, w).iter().map(|(r, _)| r.count).sum::<u64>();
    assert_eq!(count(Waits::Contention), 6);
    assert_eq!(count(Waits::Idle), 4);
    assert_eq!(count(Waits::All), 10);
    assert!(shown_rows(&p, Waits::Idle)
        .iter()
        .all(|(r, c)| r.tid == 7 && *c == IDLE_COND));
    assert_eq!(IDLE_COND.name(), "idle-condvar");
    assert!(
        Waits::All.includes(WaitClass::Contention) && !Waits::Idle.includes(WaitClass::Contention)
    );
}

#[test]
fn a_raw_word_one_thread_waits_on_and_others_wake_is_an_event() {
    use crate::profile::WakeRow;
    let mut p = sample();
    p.waits.clear();
    p.wakes.clear();
    p.stacks.push(stack(&["syscall", "wait_for_commit"]));
    let raw = p.stacks.len() - 1;
    p.stacks.push(stack(&[
        "__GI___lll_lock_wait",
        "___pthread_mutex_lock",
        "site",
    ]));
    let mutex = p.stacks.len() - 1;
    let wake = |uaddr: u64, tid: u32| WakeRow {
        stack: None,
        uaddr,
        tid,
        pid: None,
        op: FutexOp::Wake,
        calls: 1,
        woken: 1,
        empty: 0,
    };
    // 0x5000: thread 7 waits, threads 8 and 9 wake it. 0x6000: the same shape on a mutex.
    // 0x7000: two waiters. 0x8000: one waker only.
    let at = |mut r: WaitRow, uaddr| {
        r.uaddr = uaddr;
        r
    };
    p.waits.push(at(row(Some(raw), 7, 3, 3_000, 1_000), 0x5000));
    p.waits
        .push(at(row(Some(mutex), 7, 3, 3_000, 1_000), 0x6000));
    p.waits.push(at(row(Some(raw), 7, 1, 1_000, 1_000), 0x7000));
    p.waits.push(at(row(Some(raw), 8, 1, 1_000, 1_000), 0x7000));
    p.waits.push(at(row(Some(raw), 7, 1, 1_000, 1_000), 0x8000));
    for uaddr in [0x5000, 0x6000, 0x7000] {
        p.wakes.extend([wake(uaddr, 8), wake(uaddr, 9)]);
    }
    p.wakes.push(wake(0x8000, 8));
    let events = event_words(&p);
    assert_eq!(
        events.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([(None, 0x5000), (None, 0x6000)])
    );
    let class = |uaddr: u64| {
        shown_rows(&p, Waits::All)
            .into_iter()
            .find(|(r, _)| r.uaddr == uaddr)
            .map(|(_, c)| c)
    };
    assert_eq!(class(0x5000), Some(WaitClass::Idle(IdleKind::Event)));
    // A pthread mutex stays a lock, and a word two threads wait on is no event.
    assert_eq!(class(0x6000), Some(WaitClass::Contention));
    assert_eq!(class(0x7000), Some(WaitClass::Contention));
    assert_eq!(class(0x8000), Some(WaitClass::Contention));
}

#[test]
fn the_gil_and_dashmap_shards_are_their_own_primitives() {
    let gil = stack(&[
        "___pthread_cond_timedwait64",
        "PyCOND_TIMEDWAIT",
        "take_gil",
        "eval_frame_handle_pending",
    ]);
    assert_eq!(primitive(Some(&gil)), Some(Primitive::PythonGil));
    assert_eq!(classify(Some(&gil), WAIT), WaitClass::Contention);
    let shard = stack(&[
        "parking_lot_core::parking_lot::park",
        "dashmap::lock::RawRwLock::lock_exclusive_slow",
        "bump_counter",
    ]);
    assert_eq!(primitive(Some(&shard)), Some(Primitive::DashMapWrite));
    assert_eq!(Primitive::DashMapWrite.label(), "DashMap shard write lock");
}

#[test]
fn a_condvar_wait_inside_a_locks_acquire_is_contention() {
    let boost = [
        "__futex_abstimed_wait_common",
        "___pthread_cond_wait",
        "boost::condition_variable::wait(boost::unique_lock<boost::mutex>&)",
        "boost::shared_mutex::lock()",
        "Table::update(int)",
    ];
    assert_eq!(class_of(&boost), WaitClass::Contention);
    assert_eq!(
        primitive(Some(&stack(&boost))),
        Some(Primitive::CondvarLock)
    );
    let libstdcxx = [
        "___pthread_cond_wait",
        "std::__condvar::wait(std::mutex&)",
        "std::__shared_mutex_cv::lock_shared()",
        "Table::read(int)",
    ];
    assert_eq!(class_of(&libstdcxx), WaitClass::Contention);
    // A condvar wait of the program's own, or through a condvar wrapper, stays idle.
    let plain = [
        "___pthread_cond_wait",
        "rocksdb::port::CondVar::Wait()",
        "rocksdb::DBImpl::BGWorkFlush(void*)",
    ];
    assert_eq!(class_of(&plain), IDLE_COND);
}
