//! Root integration tests of what counts as contention: condition waits, parking and joins
//! are set apart from lock waits (C pool, Rust std, parking_lot), and threads blocked since
//! before attach are reported (a real deadlock, and a wait that ends during the recording).
//! The C programs are built here with gcc; stacks are unwound with `--unwind dwarf` (glibc
//! has no frame pointers, and the classification reads glibc's frames).
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lockscope_profile::profile::Blocked;
use serde_json::Value;

use common::*;

/// `lockscope record --unwind dwarf -o PROFILE -- BIN ARGS`; returns (profile path, stdout).
fn launch(name: &str, bin: &Path, args: &[&str]) -> (PathBuf, String) {
    let (_, stdout) = common::launch(name, bin, args, &["--unwind", "dwarf"]);
    (launched_path(name), stdout)
}

/// `lockscope report PROFILE --format json --by function --waits WAITS`: the rows.
fn rows(profile: &Path, waits: &str) -> Vec<Value> {
    let out = lockscope()
        .arg("report")
        .arg(profile)
        .args(["--format", "json", "--by", "function", "--top", "1000"])
        .args(["--waits", waits])
        .output()
        .expect("run lockscope report");
    assert!(out.status.success(), "report: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(v["waits"], waits);
    v["rows"].as_array().expect("rows").clone()
}

fn key(row: &Value) -> &str {
    row["key"].as_str().unwrap_or("")
}

fn functions(row: &Value) -> Vec<String> {
    row["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["function"].as_str().map(String::from))
        .collect()
}

/// The header line that sums up the idle waits.
fn idle_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("idle waits, not lock contention"))
        .unwrap_or_else(|| panic!("no idle-waits header line in:\n{stdout}"))
}

/// Checks one idle-vs-contention run: the first contention row is `lock_site`; `pool` idles
/// only as `idle_class`, in the header line and with `--waits idle`.
fn check_split(profile: &Path, stdout: &str, lock_site: &str, pool: &str, idle_class: &str) {
    let contention = rows(profile, "contention");
    assert!(!contention.is_empty(), "no contention rows:\n{stdout}");
    assert_eq!(key(&contention[0]), lock_site, "{contention:#?}");
    for r in &contention {
        assert_eq!(r["class"], "contention", "{r:#?}");
        let f = functions(r);
        // A pool thread in a contention row can only be re-taking the queue's mutex.
        let in_condvar = f
            .iter()
            .any(|n| n.contains("ond_wait") || n.contains("Condvar"));
        let relocking = f
            .iter()
            .any(|n| n.contains("mutex_cond_lock") || n.contains("Mutex") || n.contains("mutex"));
        assert!(
            !in_condvar || relocking,
            "a condition wait counted as contention: {f:#?}"
        );
    }
    let idle = rows(profile, "idle");
    let pool_row = idle
        .iter()
        .find(|r| key(r) == pool)
        .unwrap_or_else(|| panic!("{pool} not among the idle rows: {idle:#?}"));
    assert_eq!(pool_row["class"], idle_class, "{pool_row:#?}");
    assert!(idle_line(stdout).contains(pool), "{stdout}");
    // The default table: the lock site is row 1, and the pool's idling is not a row.
    let table_rows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("innermost first"))
        .skip(1)
        .collect();
    let first = table_rows
        .iter()
        .find_map(|l| l.split_once("▶ "))
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or(""));
    assert_eq!(first, Some(lock_site), "{stdout}");
}

#[test]
fn a_condvar_pool_beside_a_contended_mutex_is_not_contention() {
    if !can_trace() {
        return;
    }
    let bin = build_c("cond_pool", "cond_pool", &["-O2", "-g"]);
    let (profile, stdout) = launch("cond-pool", &bin, &["6", "4", "2"]);
    check_split(
        &profile,
        &stdout,
        "contended_site",
        "pool_worker",
        "idle-condvar",
    );
    // main's pthread_join is idle too.
    let idle = rows(&profile, "idle");
    assert!(
        idle.iter()
            .any(|r| r["class"] == "idle-join" && functions(r).iter().any(|f| f == "main")),
        "{idle:#?}"
    );
    // All waits: both classes, and the totals add up.
    let all = rows(&profile, "all");
    let sum = |rs: &[Value]| {
        rs.iter()
            .map(|r| r["total_ns"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        sum(&all),
        sum(&rows(&profile, "contention")) + sum(&idle),
        "--waits all is contention + idle"
    );
}

#[test]
fn rust_condvar_park_and_join_beside_a_contended_std_mutex() {
    if !can_trace() {
        return;
    }
    let bin = workload_bin("idlemix");
    let (profile, stdout) = launch("idlemix-std", &bin, &["std", "--seconds", "2"]);
    check_split(
        &profile,
        &stdout,
        "idlemix::std_lock_site",
        "idlemix::std_pool_worker",
        "idle-condvar",
    );
    let idle = rows(&profile, "idle");
    for class in ["idle-park", "idle-join"] {
        assert!(
            idle.iter().any(|r| r["class"] == class),
            "no {class}: {idle:#?}"
        );
    }
}

#[test]
fn parking_lot_mutex_is_contention_and_its_condvar_is_not() {
    if !can_trace() {
        return;
    }
    let bin = workload_bin("idlemix");
    let (profile, stdout) = launch("idlemix-pl", &bin, &["parking-lot", "--seconds", "2"]);
    check_split(
        &profile,
        &stdout,
        "idlemix::parking_lot_lock_site",
        "idlemix::parking_lot_pool_worker",
        "idle-condvar",
    );
}

/// Starts BIN ARGS and waits for its `ready` line on stdout.
fn start_until(bin: &Path, args: &[&str], ready: &str) -> Workload {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the C workload");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), ready);
    Workload(child)
}

#[test]
fn a_deadlock_from_before_attach_is_reported_with_both_lock_sites() {
    if !can_trace() {
        return;
    }
    let bin = build_c("deadlock", "deadlock", &["-O2", "-g"]);
    let w = start_until(&bin, &[], "deadlocked");
    let path = tmp("deadlock.json");
    let out = record_with(&w.pid(), "1s", &path, &["--unwind", "dwarf"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for want in [
        "blocked for the whole recording",
        "lock_a_then_b",
        "lock_b_then_a",
        "possible deadlock",
    ] {
        assert!(stdout.contains(want), "{want} missing:\n{stdout}");
    }
    // The profile: both lockers blocked, each on the mutex the other owns.
    let p = profile_at(&path);
    let blocked = &p.blocked;
    let lockers: Vec<&Blocked> = blocked.iter().filter(|b| b.owner.is_some()).collect();
    assert_eq!(lockers.len(), 2, "{blocked:#?}");
    assert_eq!(lockers[0].owner, Some(lockers[1].tid));
    assert_eq!(lockers[1].owner, Some(lockers[0].tid));
    assert!(lockers.iter().all(|b| b.seen_ns >= 1_000_000_000));
    // The deadlock line names both threads.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("possible deadlock"))
        .unwrap();
    for b in &lockers {
        assert!(line.contains(&b.tid.to_string()), "{line}");
    }
}

#[test]
fn a_wait_begun_before_attach_counts_its_visible_part_when_it_ends() {
    if !can_trace() {
        return;
    }
    let bin = build_c("deadlock", "deadlock", &["-O2", "-g"]);
    let w = start_until(&bin, &["release", "1.2"], "blocked");
    let path = tmp("released.json");
    let started = std::time::Instant::now();
    let out = record_with(&w.pid(), "2s", &path, &["--unwind", "dwarf"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("blocked for the whole recording"),
        "{stdout}"
    );
    let contention = rows(&path, "contention");
    let row = contention
        .iter()
        .find(|r| key(r) == "blocked_site")
        .unwrap_or_else(|| panic!("the released wait is not a row: {contention:#?}\n{stdout}"));
    assert_eq!(row["waits"], 1, "{row:#?}");
    // Counted from lockscope's second look at the thread (once the probes are live, still in
    // the same call) to its wake: most of the 1.2 s hold, never more than lockscope ran.
    let waited = row["max_ns"].as_u64().unwrap();
    assert!(waited >= 300_000_000, "{waited} ns");
    assert!(waited <= started.elapsed().as_nanos() as u64, "{waited} ns");
}
