//! Root integration tests of the scheduler hooks (`--hooks sched`: `sched_switch` and
//! `sched_waking`, no syscall tracepoint): their sleeping-wait counts against bpftrace's on
//! the same run, the header naming the path, what only `--hooks syscalls` counts, futex_waitv,
//! a wait resumed by restart_syscall after a stop, 32-bit (compat) tasks, and the host-wide
//! tax on another process's syscalls. The program is `workloads/c/futex_loop.c`.
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::*;

fn futex_loop() -> PathBuf {
    build_c("futex_loop", "futex_loop", &["-O2", "-g"])
}

fn counter(p: &Value, name: &str) -> u64 {
    p["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {}", p["counters"]))
}

/// Waits recorded in all rows, however they ended.
fn recorded(p: &Value) -> u64 {
    let n = |r: &Value, k: &str| r[k].as_u64().unwrap_or(0);
    p["waits"]
        .as_array()
        .expect("waits")
        .iter()
        .map(|r| n(r, "count") + n(r, "timeouts") + n(r, "errors"))
        .sum()
}

/// bpftrace counting the switch-outs of `pid`'s threads asleep (S or D) inside a futex wait:
/// the same event the scheduler hooks begin a wait at, seen through other hooks.
fn bpftrace_sleeps(pid: u32) -> Child {
    let script = format!(
        "tracepoint:syscalls:sys_enter_futex /pid == {pid} && ((args->op & 127) == 0 || \
         (args->op & 127) == 9)/ {{ @w[tid] = 1; }}
         tracepoint:syscalls:sys_enter_futex_waitv /pid == {pid}/ {{ @w[tid] = 1; }}
         tracepoint:syscalls:sys_exit_futex, tracepoint:syscalls:sys_exit_futex_waitv \
         /pid == {pid}/ {{ delete(@w[tid]); }}
         tracepoint:sched:sched_switch /pid == {pid} && @w[tid] && (args->prev_state == 1 || \
         args->prev_state == 2)/ {{ @sleeps = count(); }}
         END {{ clear(@w); }}"
    );
    let mut bt = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace is needed (apt-get install bpftrace)");
    // It prints "Attaching N probes..." just before attaching.
    let mut line = String::new();
    BufReader::new(bt.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("Attaching"), "bpftrace: {line}");
    std::thread::sleep(Duration::from_millis(500));
    bt
}

/// Interrupts bpftrace and returns its `@sleeps` count (0 when it never fired).
fn bpftrace_count(mut bt: Child) -> u64 {
    // SAFETY: signalling our own child, which prints its maps on SIGINT.
    unsafe { libc::kill(bt.id() as i32, libc::SIGINT) };
    let mut out = String::new();
    bt.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = bt.wait();
    out.lines()
        .find_map(|l| l.strip_prefix("@sleeps: "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Runs `futex_loop MODE CALLS` (after a start delay) under bpftrace and `lockscope --hooks
/// sched`; returns the profile, lockscope's stderr, and bpftrace's count.
fn against_bpftrace(name: &str, mode: &str, calls: &str) -> (Value, String, u64) {
    let bin = futex_loop();
    let w = Workload(
        Command::new(&bin)
            .args([mode, calls, "--start-delay", "3", "--linger", "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bt = bpftrace_sleeps(w.0.id());
    let path = tmp(&format!("{name}.json"));
    let out = record_with(&w.pid(), "30s", &path, &["--hooks", "sched"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let count = bpftrace_count(bt);
    (load(&path), text(&out.stderr), count)
}

#[test]
fn sleeping_waits_equal_bpftraces_count_on_the_same_run() {
    if !can_trace() {
        return;
    }
    for (mode, op) in [("block", "FUTEX_WAIT"), ("waitv", "futex_waitv")] {
        let (p, err, reference) = against_bpftrace(&format!("bt-{mode}"), mode, "20000");
        assert!(err.contains("scheduler tracepoints"), "{err}");
        let began = counter(&p, "wait_calls");
        let ended = recorded(&p);
        eprintln!("{mode}: bpftrace {reference} sleeping waits; lockscope {began} begun, {ended} recorded");
        assert!(reference > 1_000, "{mode}: bpftrace saw {reference}");
        assert_eq!(began, reference, "{mode}: waits begun");
        // Every wait begun is recorded but for a few per ten thousand: under load a few
        // futex_waitv waits in DWARF mode go unrecorded (an open bug, see docs/sched-hooks.md).
        assert!(
            ended <= began && (began - ended) * 500 <= began,
            "{mode}: {ended} of {began}"
        );
        let rows = p["waits"].as_array().unwrap();
        assert!(rows.iter().any(|r| r["op"] == op), "{mode}: no {op} row");
        // The wakers are known: each wake is seen in its waker's own futex call.
        let paired: u64 = rows
            .iter()
            .filter(|r| r["waker_stack"].is_u64())
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        assert!(
            paired * 100 >= began * 95,
            "{mode}: {paired} of {began} paired"
        );
    }
}

#[test]
fn the_header_names_the_path_and_syscalls_still_count_eagain() {
    if !can_trace() {
        return;
    }
    let bin = futex_loop();
    let (p, _) = launch(
        "hooks-sched",
        &bin,
        &["block", "2000"],
        &["--hooks", "sched"],
    );
    let hooks = p["meta"]["hooks"].as_str().expect("meta.hooks");
    assert!(hooks.contains("scheduler tracepoints"), "{hooks}");
    assert!(
        hooks.contains("not counted on this path: EAGAIN"),
        "{hooks}"
    );
    assert!(recorded(&p) > 1000, "{}", p["counters"]);
    assert_eq!(counter(&p, "eagain"), 0);
    // `launch` wrote it there (`tmp` would delete it).
    let path = std::env::temp_dir()
        .join(format!("lockscope-it-{}", std::process::id()))
        .join("hooks-sched.json");
    let report = lockscope().arg("report").arg(&path).output().unwrap();
    assert!(
        text(&report.stdout).contains("kernel hooks: scheduler tracepoints"),
        "{}",
        text(&report.stdout)
    );

    let (p, _) = launch(
        "hooks-sys",
        &bin,
        &["eagain", "100000"],
        &["--hooks", "syscalls"],
    );
    let hooks = p["meta"]["hooks"].as_str().expect("meta.hooks");
    assert!(
        hooks.contains("syscall tracepoints (--hooks syscalls)"),
        "{hooks}"
    );
    assert!(counter(&p, "eagain") >= 100_000, "{}", p["counters"]);
}

/// `futex_loop restart`'s waiter is stopped and continued mid-wait: the stop's wake is a
/// signal (an interrupted wait), and the wait resumes through restart_syscall(2), whose
/// registers no longer hold the futex word.
#[test]
fn a_wait_resumed_by_restart_syscall_keeps_its_futex_word() {
    if !can_trace() {
        return;
    }
    let bin = futex_loop();
    let w = Workload(
        Command::new(&bin)
            .args(["restart", "2500", "--start-delay", "2"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let path = tmp("restart.json");
    let rec = lockscope()
        .args(["record", "--quiet", "--hooks", "sched", "--unwind", "fp"])
        .args(["--pid", &w.pid(), "--duration", "20s", "-o"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Attached well before the waiter starts at 2 s; stopped at 3 s for 0.3 s.
    std::thread::sleep(Duration::from_millis(3000));
    let pid = w.0.id() as i32;
    // SAFETY: signals to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = rec.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p = load(&path);
    let rows: Vec<&Value> = p["waits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["op"] == "FUTEX_WAIT")
        .collect();
    let interrupted: Vec<&&Value> = rows.iter().filter(|r| r["interrupted"] == 1).collect();
    assert_eq!(interrupted.len(), 1, "{rows:#?}");
    let (tid, uaddr) = (&interrupted[0]["tid"], &interrupted[0]["uaddr"]);
    // The resumed wait: same thread, same word, ended by main's wake ~1.2 s later.
    let resumed = rows
        .iter()
        .find(|r| r["tid"] == *tid && r["uaddr"] == *uaddr && r["interrupted"] == 0)
        .unwrap_or_else(|| panic!("no resumed wait on the same word: {rows:#?}"));
    assert_eq!(resumed["count"], 1, "{resumed:#?}");
    assert!(resumed["waker_stack"].is_u64(), "{resumed:#?}");
    assert!(
        resumed["max_ns"].as_u64().unwrap() > 500_000_000,
        "{resumed:#?}"
    );
}

/// A 32-bit program: the scheduler hooks read its ia32 registers. The syscall tracepoints
/// skip compat syscalls altogether (the kernel does not trace them), so they see nothing.
#[test]
fn a_32_bit_program_is_traced_only_by_the_scheduler_hooks() {
    if !can_trace() {
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/c/futex_loop.c");
    let bin = tmp("futex_loop32");
    let cc = Command::new("gcc")
        .args(["-m32", "-O2", "-g", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc");
    if !cc.status.success() {
        eprintln!(
            "SKIPPED (not passed): no 32-bit toolchain (apt-get install gcc-multilib): {}",
            text(&cc.stderr)
        );
        return;
    }
    let (p, _) = launch(
        "compat",
        &bin,
        &["block", "5000"],
        &["--hooks", "sched", "--unwind", "fp"],
    );
    let rows = p["waits"].as_array().unwrap();
    let waits: u64 = rows
        .iter()
        .filter(|r| r["op"] == "FUTEX_WAIT")
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert!(waits > 1000, "{}", p["counters"]);
    assert!(rows.iter().all(|r| r["uaddr"].as_u64().unwrap() < 1 << 32));
    let wakes: u64 = p["wakes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["woken"].as_u64().unwrap())
        .sum();
    assert!(wakes * 100 >= waits * 95, "{wakes} wakes for {waits} waits");
    let (p, _) = launch(
        "compat-sys",
        &bin,
        &["block", "5000"],
        &["--hooks", "syscalls", "--unwind", "fp"],
    );
    assert_eq!(recorded(&p), 0, "syscall tracepoints saw a compat wait");
}

/// ns per getppid() in a process lockscope does not trace.
fn getppid_ns(bin: &Path) -> f64 {
    let out = Command::new(bin)
        .args(["getppid", "3000000"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("futex_loop JSON");
    v["ns_per_call"].as_f64().unwrap()
}

/// While `hooks` record an idle process, another process's syscall cost.
fn tax_while(bin: &Path, hooks: &str) -> (f64, String) {
    let idle = Workload(
        Command::new(bin)
            .args(["restart", "60000"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut rec = lockscope()
        .args(["record", "--quiet", "--hooks", hooks, "--unwind", "fp"])
        .args(["--pid", &idle.pid(), "--duration", "60s", "-o"])
        .arg(tmp(&format!("tax-{hooks}.json")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(rec.stderr.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ns = getppid_ns(bin);
    // SAFETY: our own child; lockscope saves its profile on SIGINT.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    let _ = rec.wait();
    (ns, first)
}

#[test]
fn host_tax_of_the_scheduler_hooks() {
    if !can_trace() {
        return;
    }
    let bin = futex_loop();
    let none = getppid_ns(&bin);
    let (sched, line) = tax_while(&bin, "sched");
    let (sys, _) = tax_while(&bin, "syscalls");
    let again = getppid_ns(&bin);
    eprintln!(
        "getppid ns/call in an untraced process: none {none:.0} / {again:.0}, while \
         lockscope --hooks sched records an idle process {sched:.0} ({:.2}x), --hooks \
         syscalls {sys:.0} ({:.2}x); noisy on a shared machine, see BENCHMARKS.md",
        sched / none.min(again),
        sys / none.min(again)
    );
    // The ratio is for the benchmark; here only that the scheduler path ran.
    assert!(line.contains("scheduler tracepoints"), "{line}");
}
