//! Root integration tests of DWARF unwinding: programs built without frame pointers (the
//! workloads built by plain `cargo build --release`, and a C program built with `-O2
//! -fomit-frame-pointer`) get full stacks and the same answers as frame-pointer builds.
mod common;

use common::typed::{hottest_names, names as frame_list, totals};
use common::*;
use lockscope_profile::profile::{Losses, Unwinder};

#[test]
fn a_rust_build_without_frame_pointers_unwinds_to_the_thread_entry() {
    if !can_trace() {
        return;
    }
    let args = ["contended", "--threads", "6", "--seconds", "1"];
    // The reference: the frame-pointer build, frame walk.
    let (_, fp_out) = launch("fp-build", &workload_bin("lockdemo"), &args, &[]);
    assert_eq!(launched("fp-build").meta.unwind, Unwinder::FramePointers);
    // The same program without frame pointers, walked by frame pointers: cut short.
    launch("nofp-fp", &nofp_bin("lockdemo"), &args, &["--unwind", "fp"]);
    let cut_names = hottest_names(&launched("nofp-fp"));
    assert!(
        !cut_names.iter().any(|n| n == "start_thread"),
        "a frame walk should not get through code without frame pointers: {cut_names:#?}"
    );
    // auto sees the missing frame pointers and unwinds with DWARF CFI instead.
    let (_, out) = launch("nofp-auto", &nofp_bin("lockdemo"), &args, &[]);
    let full = launched("nofp-auto");
    assert_eq!(full.meta.unwind, Unwinder::Dwarf);
    let note = full.meta.unwind_note.as_deref().unwrap();
    assert!(
        note.starts_with("auto: lockdemo has no frame pointers — "),
        "{note}"
    );
    assert!(out.contains("unwind dwarf (auto: lockdemo has no frame pointers"));
    let names = hottest_names(&full);
    for want in [
        "lockdemo::contended_lock_site",
        "lockdemo::main::{{closure}}::{{closure}}",
        "start_thread",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing: {names:#?}"
        );
    }
    // Mixed stacks: glibc's syscall(), then std (prebuilt with frame pointers), then the
    // frame-pointer-less crate, then std and glibc again.
    assert_eq!(names.first().map(String::as_str), Some("syscall"));
    assert_eq!(blamed(&out), blamed(&fp_out));
    // Wakers are still walked by frame pointers, and through this program's frameless code
    // that walk reads garbage: those stacks are cut (and counted), not lost.
    let losses = full.losses.clone();
    let lost = Losses {
        stacks_cut: 0,
        ..losses.clone()
    };
    assert_eq!(lost, Losses::default(), "lost: {losses:?}");
    // Every wait that slept has a snapshot stack: no row is left under a cut-short stack.
    let total: u64 = totals(&full).iter().map(|t| t.1).sum();
    let rows_with_thread_entry: u64 = totals(&full)
        .iter()
        .filter(|t| {
            frame_list(&full, t.0)
                .iter()
                .any(|n| n == "start_thread" || n == "__libc_start_call_main")
        })
        .map(|t| t.1)
        .sum();
    assert_eq!(rows_with_thread_entry, total, "some stacks stop short");
}

#[test]
fn the_bundled_map_without_frame_pointers_gets_the_same_attribution() {
    if !can_trace() {
        return;
    }
    let args = RANGE_INSERT_RUN;
    let (_, fp_out) = launch("map-fp", &workload_bin("syncmap-load"), &args, &[]);
    let (_, dw_out) = launch("map-dwarf", &nofp_bin("syncmap-load"), &args, &[]);
    let dw = launched("map-dwarf");
    assert_eq!(dw.meta.unwind, Unwinder::Dwarf, "auto should pick dwarf");
    assert_eq!(blamed(&dw_out), blamed(&fp_out));
    assert_eq!(blamed(&dw_out), "syncmap::SyncMap<K,V>::slow_store");
    assert!(hottest_names(&dw).iter().any(|n| n == "start_thread"));
    // The same tables: what waiters were doing, and what they waited behind.
    let section = |out: &str, title: &str| -> String {
        out.lines()
            .skip_while(|l| !l.contains(title))
            .nth(1)
            .unwrap_or_else(|| panic!("no '{title}' table in: {out}"))
            .split("  ")
            .find(|s| !s.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let title = "waiting threads were doing";
    assert_eq!(section(&dw_out, title), section(&fp_out, title), "{title}");
    assert_eq!(section(&dw_out, title), "slow store (new or expunged key)");
    // And the same cause: range-insert's rebuilds hold about half the wait, other work the
    // rest, so the order of those two table rows varies from run to run; the verdict names
    // the rebuild in both.
    let cause = |out: &str| -> String {
        let v = out
            .lines()
            .find_map(|l| l.strip_prefix("verdict: "))
            .unwrap_or_else(|| panic!("no verdict in: {out}"));
        v.split_once(" is behind ")
            .and_then(|(_, rest)| rest.split(" copying").next())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(cause(&dw_out), cause(&fp_out));
    assert_eq!(cause(&dw_out), "dirty rebuild (O(n) copy)");
    // Phase tracing does not depend on the unwinder: traced and counted still agree.
    let bundled = dw.bundled.as_ref().expect("the bundled map found");
    for c in &bundled.checks {
        let (t, n) = (c.traced, c.counted);
        assert!(
            (t as f64 - n as f64).abs() <= 0.02 * n.max(1) as f64,
            "{c:?}"
        );
    }
}

#[test]
fn a_c_program_built_with_omit_frame_pointer_unwinds_to_main_and_start_thread() {
    if !can_trace() {
        return;
    }
    let bin = build_c(
        "pthread_contend",
        "pthread_contend",
        &["-O2", "-fomit-frame-pointer"],
    );
    let (_, out) = launch("c-dwarf", &bin, &["4", "1"], &[]);
    let p = launched("c-dwarf");
    assert_eq!(p.meta.unwind, Unwinder::Dwarf);
    let names = hottest_names(&p);
    for want in [
        "___pthread_mutex_lock",
        "contended_site",
        "worker",
        "start_thread",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing: {names:#?}"
        );
    }
    assert_eq!(blamed(&out), "contended_site");
    // The main thread's join wait, when it slept (workers that already exited make none),
    // walks back to main and the C runtime.
    let joins: Vec<Vec<String>> = totals(&p)
        .iter()
        .map(|t| frame_list(&p, t.0))
        .filter(|n| n.iter().any(|f| f.contains("pthread_clockjoin")))
        .collect();
    assert!(
        joins.is_empty() || joins.iter().any(|n| n.iter().any(|f| f == "main")),
        "{joins:#?}"
    );
    // A frame walk of the same program stops inside pthread_mutex_lock.
    launch("c-fp", &bin, &["4", "1"], &["--unwind", "fp"]);
    assert!(!hottest_names(&launched("c-fp"))
        .iter()
        .any(|n| n == "contended_site"));
}

#[test]
fn bad_unwind_options_fail_in_one_line() {
    let out = lockscope()
        .args(["record", "--stack-bytes", "99", "--", "true"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "--stack-bytes 99 is out of range: 1024 to 16384");
    let out = lockscope()
        .args(["record", "--unwind", "lbr", "--", "true"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "invalid value 'lbr' for '--unwind");
}

/// `record -- sh -c 'exec PROGRAM'`: the recording follows the exec, the profile carries the
/// program's name, and its unwinding is chosen again for it: a program without frame pointers
/// gets the same DWARF stacks and lock site as when launched directly.
#[test]
fn a_program_started_through_a_shell_exec_is_named_and_unwound_as_itself() {
    if !can_trace() {
        return;
    }
    let out_path = tmp("via-sh.json");
    let prog = nofp_bin("lockdemo");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .args(["--", "sh", "-c"])
        .arg(format!(
            "exec {} contended --threads 4 --seconds 2",
            prog.display()
        ))
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p = profile_at(&out_path);
    assert_eq!(p.meta.comm, "lockdemo", "{:?}", p.meta);
    assert_eq!(p.meta.unwind, Unwinder::Dwarf, "{:?}", p.meta);
    let note = p.meta.unwind_note.as_deref().unwrap_or_default();
    assert!(note.contains("after exec to lockdemo"), "{note}");
    let (top, _, _) = totals(&p)[0];
    let names = frame_list(&p, top);
    assert!(
        names.iter().any(|n| n == "lockdemo::contended_lock_site"),
        "{names:#?}"
    );
}

#[test]
fn attaching_to_a_lock_storm_keeps_every_snapshot() {
    if !can_trace() {
        return;
    }
    // Tens of thousands of sleeping waits a second, already running when lockscope attaches:
    // the snapshot ring (read on a thread of its own from the moment the programs attach)
    // must not fill while the rest of the probes are placed and the modules loaded.
    let storm = Workload::start_path(
        &nofp_bin("lockdemo"),
        &["contended", "--threads", "6", "--seconds", "6"],
    );
    let out = tmp("storm-attach.json");
    let run = record(&storm.pid(), "2s", &out);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let p = profile_at(&out);
    assert_eq!(p.meta.unwind, Unwinder::Dwarf);
    let slept = p.counters.wait_calls;
    assert!(slept > 2_000, "not a storm: {slept} waits");
    assert_eq!(p.losses.snapshots_dropped, 0, "of {slept} waits");
    let names = hottest_names(&p);
    assert!(
        names.iter().any(|n| n == "lockdemo::contended_lock_site"),
        "{names:#?}"
    );
}
