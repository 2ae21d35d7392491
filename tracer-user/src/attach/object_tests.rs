//! The embedded eBPF object holds every map, program and global the user side opens by
//! name (`tracer_common::{map, prog, global}`): a renamed or dropped kernel item fails here,
//! on the host and without root, instead of at load time on a traced machine.
use aya_obj::Object;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use tracer_common::{global, map, prog};

use super::load::OBJECT;

fn parsed() -> Object {
    Object::parse(OBJECT).expect("the embedded eBPF object parses")
}

#[test]
fn every_map_the_user_side_opens_is_in_the_object() {
    let obj = parsed();
    let names = [
        map::INFLIGHT,
        map::WAITS,
        map::WAKES,
        map::STACKS,
        map::LAST_WAKER,
        map::COUNTERS,
        map::SCRATCH,
        map::PHASE_STATS,
        map::PHASE_START,
        map::MAP_CLOCKS,
        map::GO_INFLIGHT,
        map::SNAPSHOTS,
        map::NEW_STACKS,
        map::HANDOFFS,
        map::PHASES_ON,
        map::GO_CALLERS,
        map::GO_SAMPLE,
        map::TOKIO_INFLIGHT,
        map::TOKIO_RELEASES,
        map::TARGETS,
        map::ONCPU,
        map::ONCPU_STACKS,
        map::SCHED_TASKS,
        map::SEEDED,
        map::LOCK_HINTS_ON,
        map::LOCK_HINT_ADDRS,
    ];
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !obj.maps.contains_key(**n))
        .collect();
    assert!(missing.is_empty(), "maps not in the object: {missing:?}");
    // The counters array is sized from the same enum user space indexes it by.
    let counters = &obj.maps[map::COUNTERS];
    assert_eq!(counters.max_entries(), tracer_common::NUM_COUNTERS);
}

#[test]
fn every_program_the_user_side_attaches_is_in_the_object() {
    let obj = parsed();
    let mut names = vec![
        prog::PHASE_ENTER,
        prog::PHASE_EXIT,
        prog::GO_PHASE_ENTER,
        prog::GO_PHASE_EXIT,
        prog::GO_SEMA_ENTER,
        prog::GO_SEMA_EXIT,
        prog::GO_READY,
        prog::GO_PARK,
        prog::GO_SEMA_PARK,
        prog::TOKIO_POLL,
        prog::TOKIO_POLL_AT,
        prog::TOKIO_DROP,
        prog::TOKIO_RELEASE,
        prog::TOKIO_RELEASE_AT,
        prog::LOCK_HINT,
        prog::LOCK_HINT_EXIT,
        prog::FOLLOW_FORK,
        prog::ONCPU_SAMPLE,
    ];
    names.extend(prog::ATTACH_ORDER.iter().map(|(p, _)| *p));
    names.extend(prog::SCHED.iter().map(|(p, _)| *p));
    names.extend(prog::TRAMPOLINES.iter().flat_map(|(e, x, _)| [*e, *x]));
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !obj.programs.contains_key(**n))
        .collect();
    assert!(
        missing.is_empty(),
        "programs not in the object: {missing:?}"
    );
    // Every program in the object is one the user side knows (none left unattached).
    let unknown: Vec<_> = obj
        .programs
        .keys()
        .filter(|k| !names.contains(&k.as_str()))
        .collect();
    assert!(unknown.is_empty(), "programs nothing attaches: {unknown:?}");
}

#[test]
fn every_global_the_user_side_sets_is_a_u32_in_the_object() {
    let elf = object::File::parse(OBJECT).expect("the embedded eBPF object is ELF");
    for name in [global::TARGET_TGID, global::SNAPSHOT_BYTES] {
        let sym = elf
            .symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("global {name} not in the object"));
        let section = sym
            .section_index()
            .and_then(|i| elf.section_by_index(i).ok())
            .and_then(|s| s.name().ok().map(str::to_owned));
        assert!(
            matches!(section.as_deref(), Some(s) if s.starts_with(".rodata") || s.starts_with(".data") || s.starts_with(".bss")),
            "global {name} is in section {section:?}, which override_global cannot set"
        );
        assert_eq!(sym.size(), 4, "global {name} is set as a u32");
    }
}
