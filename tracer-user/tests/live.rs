//! Root integration tests of the launch and live modes: `record -- CMD` traces a command from
//! exec and exits with its status; `top` runs in a real pseudo-terminal (util-linux `script`),
//! shows the hot frame, regroups on `b`, quits on Ctrl-C (a key in raw mode) and restores the
//! terminal.
mod common;

use std::path::Path;
use std::time::Duration;

use lockscope_profile::profile::{Region, StopReason};
use serde_json::Value;

use common::top::TopScreen;
use common::typed::{names as frame_list, totals};
use common::*;

#[test]
fn record_launches_a_command_traces_it_and_returns_its_status() {
    if !can_trace() {
        return;
    }
    let out_path = tmp("launched.json");
    let lockdemo = workload_bin("lockdemo");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(&lockdemo)
        .args([
            "contended",
            "--threads",
            "4",
            "--seconds",
            "1",
            "--exit-code",
            "3",
        ])
        .output()
        .expect("run lockscope");
    assert_eq!(
        out.status.code(),
        Some(3),
        "lockscope should exit with the command's status: {}",
        text(&out.stderr)
    );
    let p = profile_at(&out_path);
    assert_eq!(p.meta.stop, StopReason::TargetExited);
    assert_eq!(p.meta.comm, "lockdemo");
    let tops = totals(&p);
    assert!(!tops.is_empty(), "no waits traced from exec");
    let names = frame_list(&p, tops[0].0);
    assert!(
        names.iter().any(|n| n == "lockdemo::contended_lock_site"),
        "{names:#?}"
    );
    // The one contended lock is the static SHARED_LOCK, named from lockdemo's symbols, and
    // the report's per-lock table says so.
    let locks = &p.locks;
    assert!(
        locks.iter().any(|l| l.region == Region::Static
            && l.symbol.as_ref().is_some_and(|s| s.contains("SHARED_LOCK"))),
        "{locks:#?}"
    );
    let report = lockscope()
        .args(["report", "--by", "lock"])
        .arg(&out_path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let table = text(&report.stdout);
    assert!(
        table.contains("static lockdemo::SHARED_LOCK (lockdemo)"),
        "{table}"
    );
    // The status line printed to stdout is the command's, and lockscope's own report follows.
    assert!(text(&out.stdout).contains("contended_lock_site"));
}

#[test]
fn a_launched_bundled_map_counts_from_exec() {
    if !can_trace() {
        return;
    }
    let out_path = tmp("launched-map.json");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(workload_bin("syncmap-load"))
        .args(RANGE_INSERT_RUN)
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The workload's JSON goes to the same stdout, before lockscope's report.
    let stdout = text(&out.stdout);
    let truth: Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no workload JSON in: {stdout}"));
    let p = profile_at(&out_path);
    let bundled = p.bundled.as_ref().expect("the bundled map found");
    assert!(!bundled.checks.is_empty(), "{bundled:#?}");
    for c in &bundled.checks {
        let (traced, counted) = (c.traced, c.counted);
        let off = (traced as f64 - counted as f64).abs() / (counted.max(1) as f64);
        assert!(
            off <= 0.02,
            "{c:?}: traced vs counted {:.2}% apart",
            off * 100.0
        );
    }
    // From exec, the window is the whole life: the counters equal the workload's totals.
    for key in ["promotions", "rebuilds", "entries_copied"] {
        let ours = bundled.counters.as_ref().and_then(|c| c.get(key).copied());
        let theirs = truth["counters_since_start"][key].as_u64();
        assert_eq!(
            ours, theirs,
            "{key}: lockscope read {ours:?}, workload printed {theirs:?}"
        );
    }
}

/// `--follow-forks`: a shell that starts two contending programs is traced in both, each
/// symbolized with its own memory maps; without it, only the shell is.
#[test]
fn follow_forks_traces_the_children_a_script_starts() {
    if !can_trace() {
        return;
    }
    let script = format!(
        "'{}' contended --threads 4 --seconds 2 & '{}' --preset range-insert --duration 2 & wait",
        workload_bin("lockdemo").display(),
        workload_bin("syncmap-load").display()
    );
    let sites = |extra: &[&str]| {
        launch("follow", Path::new("sh"), &["-c", &script], extra);
        let p = launched("follow");
        let names: Vec<String> = totals(&p)
            .into_iter()
            .filter(|&(_, n, _)| n > 0)
            .flat_map(|(s, _, _)| frame_list(&p, s))
            .collect();
        (names, p)
    };
    let (names, p) = sites(&["--follow-forks"]);
    assert!(
        names.iter().any(|n| n == "lockdemo::contended_lock_site"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("syncmap::SyncMap<") && n.ends_with(">::slow_store")),
        "{names:?}"
    );
    // Threads of both programs, under their own names.
    let threads: Vec<&str> = p.threads.values().map(String::as_str).collect();
    assert!(threads.contains(&"lockdemo"), "{threads:?}");
    assert!(
        threads.iter().any(|t| t.starts_with("syncmap")),
        "{threads:?}"
    );
    let (names, _) = sites(&[]);
    assert!(
        !names.iter().any(|n| n == "lockdemo::contended_lock_site"),
        "children are not traced without --follow-forks: {names:?}"
    );
}

/// `--follow-forks` rows say which process they are. A shell (address randomization off, so
/// both images have the same layout) backgrounds lockdemo and execs a second lockdemo: the
/// exec'd one is the recorded process, the background one a followed child. Each prints its
/// own pid. Rows of the child carry its pid and rows of the recorded process none, each has
/// its own threads, and `--by lock` keeps the two SHARED_LOCKs (one address) apart.
#[test]
fn follow_forks_rows_say_which_process_they_are() {
    use lockscope_profile::analyze::{groups, GroupBy, Key, ViewOptions};
    use std::collections::BTreeSet;
    if !can_trace() {
        return;
    }
    let lockdemo = workload_bin("lockdemo");
    let run = format!("'{}' contended --threads 4 --seconds 2", lockdemo.display());
    let script = format!("{run} & exec {run}");
    let (_, stdout) = launch(
        "follow-pid",
        Path::new("setarch"),
        &["-R", "sh", "-c", &script],
        &["--follow-forks"],
    );
    let p = launched("follow-pid");
    // The programs' own word on their pids.
    let printed: BTreeSet<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("lockdemo pid "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(printed.len(), 2, "{stdout}");
    assert!(printed.contains(&p.meta.pid), "{printed:?} {:?}", p.meta);
    let child = *printed.iter().find(|&&x| x != p.meta.pid).unwrap();
    assert_eq!(p.processes.len(), 1, "{:?}", p.processes);
    assert_eq!(p.processes[0].pid, child);
    assert_eq!(p.processes[0].comm, "lockdemo");
    // Both processes' rows, each at the lock site; no row names any other process.
    let at_site = |pid: Option<u32>| -> (u64, BTreeSet<u32>) {
        let rows: Vec<_> = p
            .waits
            .iter()
            .filter(|w| w.pid == pid && w.count > 0)
            .filter(|w| {
                w.stack.is_some_and(|s| {
                    frame_list(&p, s)
                        .iter()
                        .any(|n| n == "lockdemo::contended_lock_site")
                })
            })
            .collect();
        (
            rows.iter().map(|w| w.count).sum(),
            rows.iter().map(|w| w.tid).collect(),
        )
    };
    let (parent_waits, parent_tids) = at_site(None);
    let (child_waits, child_tids) = at_site(Some(child));
    assert!(
        parent_waits > 0 && child_waits > 0,
        "{parent_waits} {child_waits}"
    );
    assert!(
        parent_tids.is_disjoint(&child_tids),
        "{parent_tids:?} {child_tids:?}"
    );
    for w in &p.waits {
        assert!(w.pid.is_none() || w.pid == Some(child), "{w:?}");
        // A process's main thread has its pid as tid.
        if w.tid == child {
            assert_eq!(w.pid, Some(child), "{w:?}");
        }
        if w.tid == p.meta.pid {
            assert_eq!(w.pid, None, "{w:?}");
        }
    }
    assert!(p
        .wakes
        .iter()
        .all(|w| w.pid.is_none() || w.pid == Some(child)));
    // One SHARED_LOCK per process, at the same address, kept apart.
    let view = ViewOptions {
        by: GroupBy::Lock,
        ..ViewOptions::default()
    };
    let shared: Vec<(Option<u32>, u64)> = groups(&p, &view)
        .into_iter()
        .filter_map(|g| match g.key {
            Key::Lock(pid, a) => p
                .lock_info(pid, a)
                .filter(|l| l.symbol.as_deref() == Some("lockdemo::SHARED_LOCK"))
                .map(|_| (pid, a)),
            _ => None,
        })
        .collect();
    assert_eq!(shared.len(), 2, "{shared:?}");
    assert_eq!(shared[0].1, shared[1].1, "setarch -R: one layout");
    let owners: BTreeSet<_> = shared.iter().map(|&(pid, _)| pid).collect();
    assert_eq!(owners, BTreeSet::from([None, Some(child)]));
    assert!(
        stdout.contains(&format!(
            "followed 1 forked process: pid {child} (lockdemo, unwind"
        )),
        "{stdout}"
    );
}

#[test]
fn record_output_extension_picks_the_format() {
    if !can_trace() {
        return;
    }
    let svg = tmp("recorded.svg");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&svg)
        .arg("--")
        .arg(workload_bin("lockdemo"))
        .args(["contended", "--threads", "4", "--seconds", "1"])
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = std::fs::read_to_string(&svg).unwrap();
    assert!(body.contains("<svg"), "not an SVG");
    assert!(body.contains("contended_lock_site"));
    assert!(text(&out.stderr).contains("report saved to"));
}

#[test]
fn launching_a_missing_program_fails_in_one_line() {
    if !can_trace() {
        return;
    }
    let out = lockscope()
        .args(["record", "--", "/nonexistent/prog"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "cannot run /nonexistent/prog: no such file");
}

#[test]
fn top_in_a_terminal_shows_the_hot_frame_and_restores_it() {
    if !can_trace() {
        return;
    }
    let w = Workload::start(&["contended", "--threads", "8"]);
    let mut top = TopScreen::start(w.pid().parse().unwrap(), &[]);
    // Each key is pressed once its effect can be seen.
    let limit = Duration::from_secs(20);
    let seen = top.wait_for_after(&["lockdemo::contended_lock_site"], 0, limit);
    top.press(b"b");
    top.wait_for_after(&["tion (b)"], seen, limit);
    top.press(b"\x03");
    let (status, err, screen) = top.exit();
    assert!(status.success(), "top failed: {screen}{err}");
    assert!(
        screen.contains("lockdemo::contended_lock_site"),
        "hot frame not shown: {screen}"
    );
    // ratatui redraws only changed cells: "stack" → "function" rewrites from "tion" on
    // ("fun" and "c" land where "sta" and "c" were).
    assert!(
        screen.contains("tion (b)"),
        "the b key did not switch the grouping"
    );
    // Entered and left the alternate screen; raw mode is restored by the same call.
    assert_alt_screen_left(&screen);
}
