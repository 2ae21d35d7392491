//! Root integration tests of lock wrappers as lock code: a C++ cache whose mutex is wrapped
//! like RocksDB's `port::Mutex::Lock()` (built here with g++ -O2, with and without frame
//! pointers; the wrapper checks the result, so it keeps its frame), and a DashMap +
//! parking_lot program. The lock sites must be the callers, with the program's own split.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use common::*;

/// Builds `workloads/c/wrapped_mutex.cpp` with g++ and `flags`.
fn build_cpp(out: &str, flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/c/wrapped_mutex.cpp");
    let bin = tmp(out);
    let cc = Command::new("g++")
        .args(flags)
        .args(["-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("g++ is needed to build the C++ workload");
    assert!(cc.status.success(), "g++: {}", text(&cc.stderr));
    bin
}

/// `lockscope report PROFILE --format json --by BY EXTRA…`: the rows, or the failed run.
fn report(profile: &Path, by: &str, extra: &[&str]) -> Vec<Value> {
    let out = lockscope()
        .arg("report")
        .arg(profile)
        .args(["--format", "json", "--by", by, "--top", "1000"])
        .args(extra)
        .output()
        .expect("run lockscope report");
    assert!(out.status.success(), "report: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    v["rows"].as_array().expect("rows").clone()
}

fn key(row: &Value) -> &str {
    row["key"].as_str().unwrap_or("")
}

fn wait_ns(row: &Value) -> u64 {
    row["total_ns"].as_u64().unwrap_or(0)
}

/// The program's own `lookup_wait_ns=N insert_wait_ns=M ...` line, as numbers.
fn own_counts(path: &Path) -> (f64, f64) {
    let line = std::fs::read_to_string(path).expect("the program's own counts");
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("lookup_wait_ns="), field("insert_wait_ns="))
}

/// Records the wrapped-mutex program built with `flags` (mutex `kind`), and checks that
/// `--by function` names Lookup and Insert with the program's own split of the wait.
fn check_wrapped(name: &str, flags: &[&str], kind: &str) -> PathBuf {
    let bin = build_cpp(name, flags);
    let own = tmp(&format!("{name}.counts"));
    let out_path = tmp(&format!("{name}.json"));
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(&bin)
        .arg("3")
        .arg(&own)
        .arg(kind)
        .env("NO_COLOR", "1")
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    let rows = report(&out_path, "function", &[]);
    let table: Vec<(String, u64)> = rows.iter().map(|r| (key(r).into(), wait_ns(r))).collect();
    eprintln!("{name} --by function: {table:?}");
    assert!(
        rows.iter().all(|r| !key(r).contains("Mutex::Lock")),
        "a wrapper is named as the site: {table:?}"
    );
    let site = |what: &str| -> u64 {
        rows.iter()
            .filter(|r| key(r).contains(what))
            .map(wait_ns)
            .sum()
    };
    let (lookup, insert) = (site("::Lookup("), site("::Insert("));
    let total: u64 = rows.iter().map(wait_ns).sum();
    assert!(lookup > 0 && insert > 0, "{table:?}");
    // The two callers are (nearly) all the contention.
    assert!((lookup + insert) as f64 >= 0.9 * total as f64, "{table:?}");
    let (own_lookup, own_insert) = own_counts(&own);
    let ours = lookup as f64 / (lookup + insert) as f64;
    let theirs = own_lookup / (own_lookup + own_insert);
    eprintln!("{name}: Lookup's share {ours:.3} traced, {theirs:.3} by the program's own clock");
    assert!(
        (ours - theirs).abs() <= 0.1,
        "Lookup's share {ours:.3}, the program measured {theirs:.3}: {table:?}"
    );
    out_path
}

#[test]
fn a_checked_pthread_wrapper_is_lock_code_and_its_callers_are_the_sites() {
    if !can_trace() {
        return;
    }
    let profile = check_wrapped("wrapped-nofp", &["-O2"], "pthread");
    // The user can push the site further out: Lookup named a wrapper goes to its caller.
    let rows = report(&profile, "function", &["--lock-wrapper", r"::Lookup\("]);
    assert!(
        rows.iter().all(|r| !key(r).contains("::Lookup(")),
        "{rows:#?}"
    );
    assert!(rows.iter().any(|r| key(r).contains("worker")), "{rows:#?}");
    // A bad pattern: one line, non-zero exit.
    let out = lockscope()
        .arg("report")
        .arg(&profile)
        .args(["--lock-wrapper", "Lookup("])
        .output()
        .unwrap();
    assert_one_line_error(&out, "--lock-wrapper");
}

#[test]
fn a_wrapper_in_a_frame_pointer_build_is_lock_code_too() {
    if !can_trace() {
        return;
    }
    check_wrapped("wrapped-fp", &["-O2", "-fno-omit-frame-pointer"], "pthread");
}

#[test]
fn a_std_mutex_wrapper_is_lock_code() {
    if !can_trace() {
        return;
    }
    check_wrapped("wrapped-std", &["-O2"], "std");
}

#[test]
fn dashmap_and_parking_lot_waits_are_at_their_callers() {
    if !can_trace() {
        return;
    }
    let bin = workload_bin("dashlog");
    launch("dashlog", &bin, &["3"], &[]);
    let path = launched_path("dashlog");
    let rows = report(&path, "function", &[]);
    let table: Vec<(String, u64)> = rows.iter().map(|r| (key(r).into(), wait_ns(r))).collect();
    eprintln!("dashlog --by function: {table:?}");
    let total: u64 = rows.iter().map(wait_ns).sum();
    let share = |name: &str| -> f64 {
        rows.iter()
            .filter(|r| key(r) == name)
            .map(wait_ns)
            .sum::<u64>() as f64
            / total.max(1) as f64
    };
    let (bump, log) = (share("dashlog::bump_counter"), share("dashlog::log_line"));
    assert!(bump > 0.0 && log > 0.0, "{table:?}");
    assert!(bump + log >= 0.95, "other sites: {table:?}");
    assert!(
        rows.iter()
            .all(|r| !key(r).starts_with("dashmap::") && !key(r).contains("parking_lot")),
        "{table:?}"
    );
    // The map's shard locks have a category of their own.
    let cats = report(&path, "category", &[]);
    let cat = |name: &str| cats.iter().find(|r| key(r) == name).map_or(0, wait_ns);
    let names: Vec<&str> = cats.iter().map(key).collect();
    eprintln!("dashlog --by category: {names:?}");
    let dash = cat("DashMap shard write lock") as f64 / total.max(1) as f64;
    assert!(
        (dash - bump).abs() < 0.05,
        "DashMap shard write lock {dash:.3} against bump_counter {bump:.3}: {names:?}"
    );
}

/// dashlog's own `dashmap shards=N block=0x… key0_shard=I key1_shard=J` line.
fn dash_layout(stdout: &str) -> (u64, u64, [u64; 2]) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("dashmap "))
        .unwrap_or_else(|| panic!("no layout line from dashlog in {stdout:?}"));
    let field = |name: &str| -> u64 {
        let v = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => v.parse(),
        }
        .unwrap_or_else(|_| panic!("bad {name} in {line}"))
    };
    (
        field("shards="),
        field("block="),
        [field("key0_shard="), field("key1_shard=")],
    )
}

#[test]
fn dashmap_waits_name_their_shards() {
    if !can_trace() {
        return;
    }
    let bin = workload_bin("dashlog");
    let (profile, stdout) = launch("dashlog-shards", &bin, &["3"], &[]);
    let (shards, block, keys) = dash_layout(&stdout);
    // The stride lockscope assumes (`CachePadded` on x86-64), as the program measures it.
    assert!(stdout.contains(" stride=128 "), "{stdout}");
    let path = launched_path("dashlog-shards");
    // `--by lock`: the DashMap rows are exactly the shards of the two hot keys, of that map.
    let rows = report(&path, "lock", &[]);
    let what = |r: &Value| r["lock"]["what"].as_str().unwrap_or("").to_string();
    let table: Vec<(String, String, u64)> = rows
        .iter()
        .map(|r| (key(r).into(), what(r), wait_ns(r)))
        .collect();
    eprintln!("dashlog: shards={shards} block={block:#x} keys' shards={keys:?}");
    eprintln!("dashlog --by lock: {table:#?}");
    let named: std::collections::BTreeSet<String> = rows
        .iter()
        .map(what)
        .filter(|w| w.contains("DashMap"))
        .collect();
    let want: std::collections::BTreeSet<String> = keys
        .iter()
        .map(|k| format!("shard {k} of {shards} of the DashMap at {block:#x}"))
        .collect();
    assert_eq!(named, want, "{table:#?}");
    // Each shard's releases are found by its address (the wakes of its parked waiters are keyed
    // by the lock their hint names), and made in dashlog's code: bump_counter's guard drop,
    // which may leave by a tail call into the unlock (its caller is then the site).
    for r in rows.iter().filter(|r| what(r).contains("DashMap")) {
        let lock = &r["lock"];
        let at = lock["released_at"].as_str().unwrap_or("");
        assert!(
            lock["releasing_threads"].as_u64() > Some(0) && at.starts_with("dashlog::"),
            "{lock}"
        );
    }
    // Their wait is bump_counter's.
    let total: u64 = rows.iter().map(wait_ns).sum();
    let dash: u64 = rows
        .iter()
        .filter(|r| what(r).contains("DashMap"))
        .map(wait_ns)
        .sum();
    let by_fn = report(&path, "function", &[]);
    let bump: u64 = by_fn
        .iter()
        .filter(|r| key(r) == "dashlog::bump_counter")
        .map(wait_ns)
        .sum();
    let (dash, bump) = (
        dash as f64 / total.max(1) as f64,
        bump as f64 / total.max(1) as f64,
    );
    assert!(
        bump > 0.0 && (dash - bump).abs() < 0.05,
        "DashMap shards {dash:.3} against bump_counter {bump:.3}: {table:#?}"
    );
    // No wait in log_line (parking_lot's Mutex, after the thread's last DashMap slow path
    // returned) is taken for a shard: the stale hint is refused.
    let sharded: Vec<u64> = profile["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .filter(|l| !l["shard"].is_null())
        .filter_map(|l| l["uaddr"].as_u64())
        .collect();
    let mut log_waits = 0;
    for w in profile["waits"].as_array().expect("waits") {
        let Some(s) = w["stack"].as_u64() else {
            continue;
        };
        if frame_names(&profile, s as usize)
            .iter()
            .any(|n| n == "dashlog::log_line")
        {
            log_waits += w["count"].as_u64().unwrap_or(0);
            assert!(
                !sharded.contains(&w["uaddr"].as_u64().unwrap_or(0)),
                "a log_line wait named a shard: {w}"
            );
        }
    }
    assert!(log_waits > 0, "no log_line waits seen: {table:#?}");
}
