//! Root integration tests of what each futex call costs in data: a wake that woke nobody and
//! a wait that returned EAGAIN take no stack (they are only counted), while waits that slept
//! are still paired with the wake that ended them, whichever thread's syscall exit ran first.
//! The program is `workloads/c/futex_loop.c`, built here with gcc, traced from its start.
mod common;

use std::collections::BTreeSet;

use lockscope_profile::profile::{Counters, Profile};

use common::typed::names as frame_list;
use common::*;

fn futex_loop() -> std::path::PathBuf {
    build_c("futex_loop", "futex_loop", &["-O2", "-g"])
}

#[test]
fn wakes_that_wake_nobody_and_eagain_waits_take_no_stack() {
    if !can_trace() {
        return;
    }
    let bin = futex_loop();
    let empty_wakes: fn(&Counters) -> u64 = |c| c.empty_wakes;
    let eagain: fn(&Counters) -> u64 = |c| c.eagain;
    for (mode, counted) in [("wake", empty_wakes), ("eagain", eagain)] {
        // Only the syscall hooks see calls that did not sleep.
        let name = format!("cost-{mode}");
        launch(&name, &bin, &[mode, "100000"], &["--hooks", "syscalls"]);
        let p = launched(&name);
        // Every call was seen and counted as what it was...
        assert!(p.counters.calls >= 100_000, "{mode}: {:?}", p.counters);
        assert!(counted(&p.counters) >= 100_000, "{mode}: {:?}", p.counters);
        // ...and none of them took a stack, made a row, or was handed to a waker.
        assert!(
            p.stacks.is_empty(),
            "{mode}: {} stacks taken",
            p.stacks.len()
        );
        assert_eq!(p.waits.len(), 0, "{mode}");
        assert_eq!(p.wakes.len(), 0, "{mode}");
        assert_eq!(p.counters.handed_off, 0, "{mode}");
    }
}

/// Waits counted in all of the profile's wait rows.
fn waits_counted(p: &Profile) -> u64 {
    p.waits.iter().map(|r| r.count).sum()
}

/// Threads woken by all of the profile's wake rows.
fn woken(p: &Profile) -> u64 {
    p.wakes.iter().map(|r| r.woken).sum()
}

/// Function names of stack `i` in the profile (none when the stack was lost).
fn names(p: &Profile, i: Option<usize>) -> BTreeSet<String> {
    i.map(|i| frame_list(p, i).into_iter().collect())
        .unwrap_or_default()
}

#[test]
fn every_wait_that_slept_is_paired_with_the_wake_that_ended_it() {
    if !can_trace() {
        return;
    }
    let bin = futex_loop();
    // Two threads hand one word back and forth: main waits for `partner`'s wake and
    // `partner` for main's, so each wait's waker is the other thread's function.
    launch(
        "cost-block",
        &bin,
        &["block", "20000"],
        &["--unwind", "dwarf"],
    );
    let p = launched("cost-block");
    let (mut total, mut right) = (0, 0);
    for w in &p.waits {
        let n = w.count;
        let waiter = names(&p, w.stack);
        // main's pthread_join at the end: the kernel wakes it when the thread exits, no
        // syscall does.
        if waiter.iter().any(|f| f.contains("join")) {
            continue;
        }
        total += n;
        let waker = names(&p, w.waker_stack);
        let (me, other) = if waiter.contains("partner") {
            ("partner", "main")
        } else {
            ("main", "partner")
        };
        assert!(waiter.contains(me), "waiter {waiter:?}");
        if waker.contains(other) && !waker.contains(me) {
            right += n;
        } else {
            eprintln!("{n} waits of {me} paired with {waker:?}");
        }
    }
    assert!(
        total >= 10_000,
        "only {total} waits slept: {:?}",
        p.counters
    );
    let unknown = p.counters.waker_unknown;
    // The last wake of the run can be the only one no waiter pairs with.
    assert!(
        right + unknown + 2 >= total,
        "{right} of {total} waits paired with the other thread's wake ({unknown} unknown); \
         counters {:?}",
        p.counters
    );
    // Every wake that woke someone has a row; those that woke nobody are only counted.
    let woken = woken(&p);
    // On the scheduler hooks (the default where trampolines do not load) a wake can still
    // race the waiter's sleep unseen (a `futex_waitv` waiter, or a wake past the map's
    // room): under 0.1% of waits (24,080 woken of 24,085 in one CI run before early wakes
    // were kept); the syscall path counts every one.
    let raced = if p
        .meta
        .hooks
        .as_deref()
        .is_some_and(|h| h.contains("sched_switch"))
    {
        total / 1000
    } else {
        0
    };
    assert!(woken + raced >= total, "{woken} woken, {total} waits");
    eprintln!(
        "{total} waits, {right} paired right, {} handed off to their waker, {unknown} unknown",
        p.counters.handed_off
    );
}

#[test]
fn in_a_lock_storm_every_wait_has_its_waker_on_the_scheduler_hooks() {
    if !can_trace() {
        return;
    }
    // Six threads on one mutex, two CPUs: most waits are woken while their thread is still
    // switching out (off its run queue, before `sched_switch`), so the wake finds no wait
    // yet. Those were left with no waker (55-60% of this storm's waits before the scheduler
    // hooks kept such wakes for the switch-out).
    launch(
        "storm-wakers",
        &workload_bin("lockdemo"),
        &["contended", "--threads", "6", "--seconds", "2"],
        &["--hooks", "sched"],
    );
    let p = launched("storm-wakers");
    let total = waits_counted(&p);
    let woken = woken(&p);
    let unknown = p.counters.waker_unknown;
    eprintln!("{total} waits, {woken} woken by a seen wake, {unknown} with no waker");
    assert!(total >= 1_000, "not a storm: {:?}", p.counters);
    // Quiet, 2-5 of ~50,000 (0.01%); with other builds loading the machine, 3 of 1,088.
    assert!(
        unknown * 100 <= total,
        "{unknown} of {total} waits have no waker; counters {:?}",
        p.counters
    );
    // Each wait with a waker counted one wake row's wake. A wake (or an unseen one) of the
    // last moments counts before its wait has a row: the wait ends when its thread runs
    // again, and the recording can stop first; seven threads (six workers and main's join)
    // can each be there. A few wakes in 100,000 still count beyond the waits begun (CI:
    // 101,967 + 143 against 102,102 recorded and 102,108 begun): not pinned down yet.
    let begun = p.counters.wait_calls;
    assert!(
        (total..=begun + 7).contains(&(woken + unknown)),
        "{woken} woken + {unknown} unknown against {total} waits; counters {:?}",
        p.counters
    );
}

#[test]
fn the_kernel_hooks_are_chosen_by_probing_and_named_in_the_header() {
    if !can_trace() {
        return;
    }
    let bin = futex_loop();
    let path = tmp("cost-hooks.json");
    let out = lockscope()
        .args(["record", "-o"])
        .arg(&path)
        .arg("--")
        .arg(&bin)
        .args(["block", "2000"])
        // The default's choice is under test.
        .env_remove("LOCKSCOPE_HOOKS")
        .output()
        .expect("run lockscope");
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("lockscope: kernel hooks: "))
        .unwrap_or_else(|| panic!("no hooks line in:\n{err}"));
    // Where trampolines load they are used; where the kernel refuses them (this machine:
    // EPERM under lockdown) the scheduler hooks are, with the kernel's reason in one line.
    let trampolines = line.contains("BPF trampolines on the futex functions");
    let fallback = line.contains("scheduler tracepoints")
        && line.contains("(BPF trampolines unavailable: ")
        && line.contains("not counted on this path: EAGAIN");
    assert!(trampolines ^ fallback, "{line}");
    // Either way the events arrive: the round trips were traced (every call on trampolines,
    // the waits that slept on the scheduler hooks).
    let p = profile_at(&path);
    let slept = waits_counted(&p);
    assert!(
        p.counters.calls >= 4000 || (fallback && slept >= 500),
        "{:?}",
        p.counters
    );
}

#[test]
fn kernel_diagnostics_appear_only_when_rust_log_asks() {
    if !can_trace() {
        return;
    }
    let bin = futex_loop();
    let run = |rust_log: Option<&str>| {
        let path = tmp("cost-ignored.json");
        let mut cmd = lockscope();
        // An ignored op is seen only by the syscall hooks.
        cmd.args(["record", "--quiet", "--hooks", "syscalls", "-o"])
            .arg(&path)
            .arg("--")
            .arg(&bin)
            .args(["ignored", "5", "--linger", "0.3"]);
        match rust_log {
            Some(v) => cmd.env("RUST_LOG", v),
            None => cmd.env_remove("RUST_LOG"),
        };
        let out = cmd.output().expect("run lockscope");
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stderr), profile_at(&path))
    };
    // An op that neither waits nor wakes is counted, and its exit is not taken for a call
    // from before attach.
    let (quiet, p) = run(None);
    assert!(!quiet.contains("not traced"), "{quiet}");
    assert!(p.counters.calls >= 5, "{:?}", p.counters);
    assert_eq!(p.counters.in_flight_at_start, 0, "{:?}", p.counters);
    // With RUST_LOG, the kernel programs say why through aya-log, once per call.
    let (said, _) = run(Some("lockscope=debug"));
    let lines = said
        .lines()
        .filter(|l| l.contains("futex op 136 neither waits nor wakes: not traced"))
        .count();
    assert_eq!(lines, 5, "{said}");
}
