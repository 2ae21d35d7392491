//! Model checking with shuttle (`cargo test -p syncmap --features shuttle`): the promotion,
//! rebuild and expunge transitions raced against each other under many schedules. shuttle
//! explores interleavings at every lock and snapshot-cell operation.
use std::collections::BTreeMap;
use std::sync::Arc;

use shuttle::{check_pct, check_random, thread};

use super::SyncMap;

/// Schedules explored per scheduler and scenario.
const ITERATIONS: usize = 3000;
/// PCT's bug depth: races needing up to this many ordered preemptions are found with a
/// known probability.
const PCT_DEPTH: usize = 3;

fn contents(m: &SyncMap<u64, u64>) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    m.range(|k, v| {
        out.insert(*k, v);
        true
    });
    out
}

/// A snapshot key deleted and re-stored while another thread's new-key store rebuilds dirty
/// (expunging the deleted entry) and a third promotes through `range`: no key may be lost or
/// resurrected with a stale value, and every thread reads its own writes.
fn delete_revive_during_rebuild_and_promotion() {
    let m = Arc::new(SyncMap::<u64, u64>::new());
    m.store(1, 10);
    m.store(2, 20);
    m.range(|_, _| true); // promote: {1, 2} in the snapshot, no dirty map
    let reviver = {
        let m = m.clone();
        thread::spawn(move || {
            m.delete(&1);
            m.store(1, 11);
            assert_eq!(m.load(&1), Some(11));
        })
    };
    let writer = {
        let m = m.clone();
        thread::spawn(move || {
            m.store(3, 30); // first new key: rebuilds dirty from the snapshot
            assert_eq!(m.load(&3), Some(30));
            assert_eq!(m.load(&2), Some(20));
        })
    };
    let ranger = {
        let m = m.clone();
        thread::spawn(move || {
            m.range(|_, _| true);
            assert_eq!(m.load_or_store(4, 40), (40, false));
        })
    };
    for t in [reviver, writer, ranger] {
        t.join().expect("thread");
    }
    let want = BTreeMap::from([(1, 11), (2, 20), (3, 30), (4, 40)]);
    assert_eq!(contents(&m), want);
    for (k, v) in want {
        assert_eq!(m.load(&k), Some(v));
    }
}

/// Keys only in dirty, loaded by two threads until misses promote dirty, while a third stores
/// new keys (each the first after some promotion, so each may rebuild).
fn misses_promote_while_new_keys_arrive() {
    let m = Arc::new(SyncMap::<u64, u64>::new());
    m.store(1, 1);
    m.store(2, 2);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            thread::spawn(move || {
                for _ in 0..3 {
                    assert_eq!(m.load(&1), Some(1));
                    assert_eq!(m.load(&2), Some(2));
                }
            })
        })
        .collect();
    let writer = {
        let m = m.clone();
        thread::spawn(move || {
            m.store(5, 5);
            m.store(6, 6);
            assert!(m.compare_and_swap(&5, &5, 55));
        })
    };
    for t in readers.into_iter().chain([writer]) {
        t.join().expect("thread");
    }
    assert_eq!(
        contents(&m),
        BTreeMap::from([(1, 1), (2, 2), (5, 55), (6, 6)])
    );
}

/// Racing load_or_store of one fresh key: exactly one thread stores, all see its value.
fn load_or_store_has_one_winner() {
    let m = Arc::new(SyncMap::<u64, u64>::new());
    m.store(0, 0);
    m.range(|_, _| true);
    let racers: Vec<_> = (1..=3)
        .map(|t| {
            let m = m.clone();
            thread::spawn(move || m.load_or_store(9, t))
        })
        .collect();
    let results: Vec<(u64, bool)> = racers
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let winners: Vec<_> = results.iter().filter(|(_, loaded)| !loaded).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|(v, _)| *v == winners[0].0),
        "{results:?}"
    );
    assert_eq!(m.load(&9), Some(winners[0].0));
}

#[test]
fn delete_revive_during_rebuild_and_promotion_random() {
    check_random(delete_revive_during_rebuild_and_promotion, ITERATIONS);
}

#[test]
fn delete_revive_during_rebuild_and_promotion_pct() {
    check_pct(
        delete_revive_during_rebuild_and_promotion,
        ITERATIONS,
        PCT_DEPTH,
    );
}

#[test]
fn misses_promote_while_new_keys_arrive_random() {
    check_random(misses_promote_while_new_keys_arrive, ITERATIONS);
}

#[test]
fn misses_promote_while_new_keys_arrive_pct() {
    check_pct(misses_promote_while_new_keys_arrive, ITERATIONS, PCT_DEPTH);
}

#[test]
fn load_or_store_has_one_winner_random() {
    check_random(load_or_store_has_one_winner, ITERATIONS);
}

#[test]
fn load_or_store_has_one_winner_pct() {
    check_pct(load_or_store_has_one_winner, ITERATIONS, PCT_DEPTH);
}
