//! Root integration tests of stacks on binaries built the ways distributions build them:
//! frame pointers in the program but none in glibc (Debian's default), stripped binaries
//! with only `.eh_frame`, and programs too short-lived for a periodic read of their maps.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::typed::hottest_names;
use common::*;
use lockscope_profile::profile::Unwinder;

/// Builds workloads/c/pthread_contend.c with `flags` (and strips it when asked).
fn build_pc(name: &str, flags: &[&str], strip: Strip) -> PathBuf {
    let bin = build_c("pthread_contend", name, flags);
    if strip == Strip::Yes {
        let s = Command::new("strip").arg("-s").arg(&bin).output().unwrap();
        assert!(s.status.success(), "strip: {}", text(&s.stderr));
    }
    bin
}

#[derive(PartialEq)]
enum Strip {
    Yes,
    No,
}

/// The first data row of `--by function`: where the program took the hottest lock.
fn first_function(stdout: &str) -> String {
    stdout
        .lines()
        .skip_while(|l| !l.contains("function"))
        .nth(1)
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no function row in: {stdout}"))
        .to_string()
}

/// Frame pointers in the program, none in Debian's glibc: a frame walk from `rbp` in
/// `pthread_mutex_lock` skips `contended_site` and blames `worker`. The default finds it.
#[test]
fn frames_in_the_program_and_none_in_glibc_keep_the_lock_site() {
    if !can_trace() {
        return;
    }
    let bin = build_pc("pthread_fp", &["-O2", "-fno-omit-frame-pointer"], Strip::No);
    let (_, out) = launch("c-fp-auto", &bin, &["4", "1"], &["--by", "function"]);
    let p = launched("c-fp-auto");
    assert_eq!(p.meta.unwind, Unwinder::FpCfi, "{:?}", p.meta.unwind_note);
    let note = p.meta.unwind_note.as_deref().unwrap();
    assert!(note.contains("pthread_mutex_lock"), "{note}");
    assert!(out.contains("unwind fp+cfi (auto:"), "{out}");
    assert_eq!(first_function(&out), "contended_site", "{out}");
    let names = hottest_names(&p);
    for want in [
        "___pthread_mutex_lock",
        "contended_site",
        "worker",
        "start_thread",
    ] {
        assert!(names.iter().any(|n| n == want), "{want}: {names:#?}");
    }
    // The frame walk alone, on the same program, blames the caller: what the default fixes.
    let (_, fp_out) = launch(
        "c-fp-forced",
        &bin,
        &["4", "1"],
        &["--by", "function", "--unwind", "fp"],
    );
    assert_eq!(first_function(&fp_out), "worker", "{fp_out}");
}

/// A stripped program without frame pointers has no `.symtab` to read prologues from; the
/// decision comes from `.eh_frame_hdr`'s function starts, and the stack still reaches
/// `start_thread`.
#[test]
fn stripped_programs_without_frame_pointers_get_dwarf() {
    if !can_trace() {
        return;
    }
    let bin = build_pc(
        "pthread_stripped",
        &["-O2", "-fomit-frame-pointer"],
        Strip::Yes,
    );
    let (_, out) = launch("c-stripped", &bin, &["4", "1"], &[]);
    let p = launched("c-stripped");
    assert_eq!(p.meta.unwind, Unwinder::Dwarf);
    let note = p.meta.unwind_note.as_deref().unwrap();
    assert!(note.contains(".eh_frame"), "{note}");
    assert!(out.contains("is stripped and not nine in ten"), "{out}");
    let names = hottest_names(&p);
    assert!(names.iter().any(|n| n == "start_thread"), "{names:#?}");
}

/// A stripped Rust build without frame pointers: its prebuilt std keeps them, so most of its
/// functions set up a frame; the crate's own do not, and only DWARF walks through them.
#[test]
fn stripped_rust_without_frame_pointers_gets_dwarf() {
    if !can_trace() {
        return;
    }
    let bin = tmp("lockdemo-stripped");
    std::fs::copy(nofp_bin("lockdemo"), &bin).unwrap();
    let s = Command::new("strip").arg("-s").arg(&bin).output().unwrap();
    assert!(s.status.success(), "strip: {}", text(&s.stderr));
    let args = ["contended", "--threads", "4", "--seconds", "1"];
    launch("rust-stripped", &bin, &args, &[]);
    let p = launched("rust-stripped");
    assert_eq!(p.meta.unwind, Unwinder::Dwarf, "{:?}", p.meta.unwind_note);
    let names = hottest_names(&p);
    assert!(names.iter().any(|n| n == "start_thread"), "{names:#?}");
}

/// Every frame of every stack lies in an executable mapping of the target, whatever the
/// unwinder: a frame walk through a program without frame pointers is cut, not shown.
#[test]
fn every_frame_is_code_of_the_target() {
    if !can_trace() {
        return;
    }
    let bin = build_pc("pthread_nofp", &["-O2", "-fomit-frame-pointer"], Strip::No);
    let (_, out) = launch("c-nofp-fp", &bin, &["4", "1"], &["--unwind", "fp"]);
    let p = launched("c-nofp-fp");
    // Whether the walk reads garbage (cut) or stops by itself depends on what the frameless
    // code left in rbp; either way no frame outside the target's code is shown, and a cut is
    // always reported (the cut itself is unit-tested on synthetic garbage).
    let cut = p.losses.stacks_cut;
    assert_eq!(
        cut > 0,
        out.contains("stacks cut at an impossible frame"),
        "{out}"
    );
    for s in &p.stacks {
        for f in &s.frames {
            assert!(
                f.module.is_some(),
                "a frame outside every module: {f:?} in {s:?}"
            );
        }
    }
}

/// A program that lives a fraction of a second, launched with `record --`: glibc is mapped
/// by the dynamic loader after exec, long before a periodic read. Its frames still resolve.
#[test]
fn short_lived_programs_keep_their_library_frames() {
    if !can_trace() {
        return;
    }
    let bin = build_pc(
        "pthread_short",
        &["-O2", "-fno-omit-frame-pointer"],
        Strip::No,
    );
    let (_, out) = launch("c-short", &bin, &["4", "0.3"], &["--unwind", "fp"]);
    let p = launched("c-short");
    let modules: Vec<&str> = p.modules.iter().map(|m| m.path.as_str()).collect();
    assert!(
        modules.iter().any(|m| m.contains("libc.so")),
        "{modules:?}\n{out}"
    );
    let names = hottest_names(&p);
    assert!(
        names.iter().any(|n| n.contains("pthread_mutex_lock")),
        "{names:#?}"
    );
}
