//! Grouping a profile that holds followed children: `--by process`, and locks kept apart per
//! process although forked children share their parent's addresses.
use super::*;
use crate::profile::testing::{sample, sample_with_child};

fn view(by: GroupBy) -> ViewOptions {
    ViewOptions {
        by,
        ..ViewOptions::default()
    }
}

#[test]
fn rows_group_by_their_process() {
    let p = sample_with_child();
    let g = groups(&p, &view(GroupBy::Process));
    let keys: Vec<_> = g
        .iter()
        .map(|g| (g.key.clone(), g.count, g.total_ns))
        .collect();
    assert_eq!(
        keys,
        vec![
            (Key::Process(43), 5, 9_000_000),
            (Key::Process(42), 6, 4_500_000)
        ]
    );
    assert_eq!(g[0].threads, BTreeSet::from([10]));
    assert_eq!(g[1].threads, BTreeSet::from([1, 2]));
}

#[test]
fn the_same_address_in_two_processes_is_two_locks() {
    let p = sample_with_child();
    let g = groups(&p, &view(GroupBy::Lock));
    let keys: Vec<_> = g.iter().map(|g| (g.key.clone(), g.count)).collect();
    assert_eq!(
        keys,
        vec![
            (Key::Lock(Some(43), 0x5000), 5),
            (Key::Lock(None, 0x5000), 6)
        ]
    );
    // The parent's lock is the static the profile names; the child's is not described by it.
    assert!(p.lock_info(None, 0x5000).is_some());
    assert!(p.lock_info(Some(43), 0x5000).is_none());
    // A stack both processes waited on counts both locks.
    let s = groups(&p, &view(GroupBy::Stack));
    assert_eq!(s[0].key, Key::Stack(Some(0)));
    assert_eq!(s[0].locks.len(), 2);
}

#[test]
fn a_profile_without_children_is_one_process() {
    let p = sample();
    let g = groups(&p, &view(GroupBy::Lock));
    assert_eq!(g[0].key, Key::Lock(None, 0x5000));
    let procs = groups(&p, &view(GroupBy::Process));
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0].key, Key::Process(42));
}
