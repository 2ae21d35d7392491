//! Helpers shared by the root integration tests.
#![allow(dead_code)] // each test binary uses a different subset

pub mod agent;
pub mod gobench;
pub mod mariadb;
pub mod recording;
pub mod top;
pub mod typed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lockscope_profile::profile::Profile;
use serde_json::Value;

/// A `syncmap-load` run for launch-mode tests: range-insert for 2 s, lingering 1 s so the
/// last counter read sees the final values.
pub const RANGE_INSERT_RUN: [&str; 6] = [
    "--preset",
    "range-insert",
    "--duration",
    "2",
    "--linger",
    "1",
];

pub fn lockscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lockscope"))
}

/// A binary of the workloads crate, built by `cargo xtask test` before the tests run.
pub fn workload_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = dir.join("release").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test` (it builds the workloads first)",
        bin.display()
    );
    bin
}

/// Set by `cargo xtask test`: a root test that cannot trace fails instead of skipping.
pub const REQUIRE_ROOT: &str = "LOCKSCOPE_REQUIRE_ROOT";

/// True if the tests can load eBPF here; otherwise prints why they skip and returns false.
/// Under `LOCKSCOPE_REQUIRE_ROOT=1` (as `cargo xtask test` runs them) it panics with the
/// reason instead, so a root test that could not trace fails rather than passing unchecked.
pub fn can_trace() -> bool {
    match why_cannot_trace() {
        None => true,
        Some(why) => {
            assert!(
                std::env::var_os(REQUIRE_ROOT).is_none(),
                "cannot trace here ({REQUIRE_ROOT} is set): {why}"
            );
            eprintln!("skipping: {why}");
            false
        }
    }
}

/// Why this process cannot load and attach the eBPF programs, if it cannot.
fn why_cannot_trace() -> Option<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid0 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|v| v.split_whitespace().nth(1) == Some("0"));
    if !uid0 {
        return Some("needs root to load eBPF programs (run `sudo -E cargo xtask test`)");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("kernel has no BTF (/sys/kernel/btf/vmlinux)");
    }
    None
}

pub struct Workload(pub Child);

impl Workload {
    pub fn start(args: &[&str]) -> Workload {
        Self::start_bin("lockdemo", args)
    }

    pub fn start_bin(bin: &str, args: &[&str]) -> Workload {
        Self::start_path(&workload_bin(bin), args)
    }

    /// Starts `bin` and returns once its worker threads exist (`--threads N` of the
    /// workloads: N + 1 tasks), so an attach finds them running.
    pub fn start_path(bin: &Path, args: &[&str]) -> Workload {
        let child = Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let threads: usize = args
            .iter()
            .position(|a| *a == "--threads")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(0);
        let w = Workload(child);
        let tasks = format!("/proc/{}/task", w.pid());
        let t0 = Instant::now();
        while std::fs::read_dir(&tasks).map_or(0, |d| d.count()) < threads + 1 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{} never started {threads} threads",
                bin.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        w
    }
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("lockscope-it-{}", std::process::id()))
}

/// A fresh path in this test run's directory (whatever was there is removed).
pub fn tmp(name: &str) -> PathBuf {
    let dir = tmp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

pub fn record(pid: &str, duration: &str, out: &Path) -> Output {
    record_with(pid, duration, out, &[])
}

pub fn record_with(pid: &str, duration: &str, out: &Path, extra: &[&str]) -> Output {
    lockscope()
        .args([
            "record",
            "--quiet",
            "--pid",
            pid,
            "--duration",
            duration,
            "-o",
        ])
        .arg(out)
        .args(extra)
        .output()
        .expect("run lockscope")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn load(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("profile written")).expect("profile is JSON")
}

/// The profile at `path` through the library's own types, read as `lockscope report` reads it
/// (format and version checked): fields by name, checked by the compiler.
pub fn profile_at(path: &Path) -> Profile {
    lockscope_profile::profile::load(path).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Where [`launch`] wrote the profile of `name` (kept there, unlike [`tmp`]).
pub fn launched_path(name: &str) -> PathBuf {
    tmp_dir().join(format!("{name}.json"))
}

/// The profile [`launch`] wrote for `name`, typed.
pub fn launched(name: &str) -> Profile {
    profile_at(&launched_path(name))
}

/// Total wait ns of each stack index, from the profile's rows.
pub fn stack_totals(p: &Value) -> Vec<(usize, u64, u64)> {
    let mut acc: std::collections::BTreeMap<usize, (u64, u64)> = Default::default();
    for r in p["waits"].as_array().unwrap() {
        if let Some(s) = r["stack"].as_u64() {
            let e = acc.entry(s as usize).or_default();
            e.0 += r["count"].as_u64().unwrap();
            e.1 += r["total_ns"].as_u64().unwrap();
        }
    }
    let mut v: Vec<_> = acc.into_iter().map(|(s, (c, t))| (s, c, t)).collect();
    v.sort_by_key(|&(_, _, t)| std::cmp::Reverse(t));
    v
}

pub fn frame_names(p: &Value, stack: usize) -> Vec<String> {
    p["stacks"][stack]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["syms"].as_array().unwrap().iter())
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn assert_one_line_error(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got {}: {err}",
        out.status
    );
    assert_eq!(err.lines().count(), 1, "want one line, got: {err}");
    assert!(err.contains(needle), "want '{needle}' in: {err}");
}

/// What a terminal UI wrote: it entered the alternate screen and left it (raw mode is
/// restored by the same call).
pub fn assert_alt_screen_left(screen: &str) {
    assert!(
        screen.contains("\x1b[?1049h"),
        "never entered the alternate screen"
    );
    assert!(
        screen.contains("\x1b[?1049l"),
        "did not restore the terminal"
    );
}

/// The workloads built without frame pointers (`cargo xtask test` builds them with an empty
/// RUSTFLAGS into target/nofp).
pub fn nofp_bin(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/nofp/release")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test` (it builds the workloads without frame pointers)",
        bin.display()
    );
    bin
}

/// `lockscope record -- BIN ARGS` with `extra` options; returns (profile as JSON, stdout).
/// [`launched`] reads the same profile through the library's types.
pub fn launch(name: &str, bin: &Path, args: &[&str], extra: &[&str]) -> (Value, String) {
    launch_with(lockscope(), name, bin, args, extra)
}

/// [`launch`] run by `cmd`: lockscope with its environment set, or a wrapper such as
/// `nsenter … lockscope`.
pub fn launch_with(
    mut cmd: Command,
    name: &str,
    bin: &Path,
    args: &[&str],
    extra: &[&str],
) -> (Value, String) {
    let out_path = tmp(&format!("{name}.json"));
    let out = cmd
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .args(extra)
        .arg("--")
        .arg(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    (load(&out_path), text(&out.stdout))
}

/// Frame names of the hottest stack.
pub fn top_names(p: &Value) -> Vec<String> {
    let tops = stack_totals(p);
    assert!(!tops.is_empty(), "no waits recorded");
    frame_names(p, tops[0].0)
}

/// The first frame outside the lock code, as the table's ▶ marks it.
pub fn blamed(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.contains("innermost first"))
        .find_map(|l| l.split_once("▶ "))
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no ▶ in: {stdout}"))
}

/// Builds `workloads/c/SRC.c` with gcc and `flags` into the test's temp dir as `out`.
pub fn build_c(src: &str, out: &str, flags: &[&str]) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../workloads/c/{src}.c"));
    let bin = tmp(out);
    let cc = Command::new("gcc")
        .args(flags)
        .args(["-pthread", "-o"])
        .arg(&bin)
        .arg(&path)
        .output()
        .expect("gcc is needed to build the C workloads");
    assert!(cc.status.success(), "gcc: {}", text(&cc.stderr));
    bin
}

/// The state letter of a task (`/proc/PID/stat`, or `/proc/PID/task/TID/stat`); None once gone.
pub fn task_state(stat: &Path) -> Option<char> {
    let s = std::fs::read_to_string(stat).ok()?;
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

/// Polls `ready` every 5 ms until it holds, for at most `limit`: a ready handshake.
pub fn poll_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Blocks until `pid` has exited and is not reaped yet (state Z), at most 10 s.
pub fn wait_zombie(pid: u32) {
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    poll_until(&format!("{pid} to exit"), Duration::from_secs(10), || {
        task_state(&stat) == Some('Z')
    });
}

/// The threads of `pid` inside futex(2) now (`/proc/PID/task/TID/syscall` says 202).
pub fn threads_in_futex(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("syscall"))
                .is_ok_and(|s| s.split_whitespace().next() == Some("202"))
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// When [`record_until_signal`] sends its signal.
pub enum SignalAt {
    /// This long after lockscope was started, whether or not it is attached yet.
    Spawned(Duration),
    /// This long after lockscope said its probes are attached: a recording of that length.
    Tracing(Duration),
}

/// `lockscope record --pid PID --duration 60s -o OUT`, sent `signal` at `at`: the run's
/// output once it saved and exited.
pub fn record_until_signal(pid: &str, out: &Path, signal: i32, at: SignalAt) -> Output {
    let mut cmd = lockscope();
    cmd.args(["record", "--quiet", "--pid", pid, "--duration", "60s", "-o"])
        .arg(out);
    let mut rec = recording::Recording::spawn(cmd);
    match at {
        SignalAt::Spawned(after) => std::thread::sleep(after),
        SignalAt::Tracing(after) => {
            rec.wait_tracing();
            std::thread::sleep(after);
        }
    }
    rec.signal(signal);
    rec.finish()
}

/// A binary of the Go side (`go/cmd/NAME`), built by `cargo xtask test` into target/go.
pub fn go_bin(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/go/{name}"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test` or `cargo xtask build-go`",
        bin.display()
    );
    bin
}

/// Go's own block profile as (ns, frames innermost first) per trace, read with
/// `go tool pprof -traces`.
pub fn go_block_traces(block: &Path) -> Vec<(f64, Vec<String>)> {
    let out = Command::new("go")
        .args(["tool", "pprof", "-traces"])
        .arg(block)
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("go tool pprof (cargo xtask setup installs golang-go)");
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ns = |v: &str| -> f64 {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let x: f64 = num.parse().unwrap_or(0.0);
        x * match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "mins" => 60e9,
            _ => 0.0,
        }
    };
    let mut traces = Vec::new();
    for trace in listing.split("-----------+").skip(1) {
        let mut lines = trace
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('-'));
        let Some(first) = lines.next() else { continue };
        let mut parts = first.split_whitespace();
        let value = ns(parts.next().unwrap_or("0"));
        let head = parts.collect::<Vec<_>>().join(" ");
        let frames: Vec<String> = std::iter::once(head)
            .chain(lines.map(|l| l.trim().to_string()))
            .collect();
        traces.push((value, frames));
    }
    traces
}
