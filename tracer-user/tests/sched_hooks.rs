//! Root integration tests of the scheduler hooks (`--hooks sched`: `sched_switch` and
//! `sched_waking`, no syscall tracepoint): their sleeping-wait counts against bpftrace's on
//! the same run, the header naming the path, what only `--hooks syscalls` counts, futex_waitv,
//! a wait resumed by restart_syscall after a stop, 32-bit (compat) tasks, and the host-wide
//! tax on another process's syscalls. The program is `workloads/c/futex_loop.c`.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockscope_profile::profile::{FutexOp, Profile, WaitRow};
use serde_json::Value;

use common::recording::Recording;
use common::*;

fn futex_loop() -> PathBuf {
    build_c("futex_loop", "futex_loop", &["-O2", "-g"])
}

/// `futex_loop ARGS… --start-on-stdin`: it begins its loop when [`go`] is called.
fn futex_loop_held(bin: &Path, args: &[&str]) -> Workload {
    Workload(
        Command::new(bin)
            .args(args)
            .arg("--start-on-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Lets a [`futex_loop_held`] run begin.
fn go(w: &mut Workload) {
    w.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
}

/// `lockscope record --quiet --pid PID EXTRA… -o PATH`, returned once its probes are attached.
fn record_attached(pid: &str, path: &Path, extra: &[&str]) -> Recording {
    let mut cmd = lockscope();
    cmd.args(["record", "--quiet", "--pid", pid])
        .args(extra)
        .arg("-o")
        .arg(path);
    let mut rec = Recording::spawn(cmd);
    rec.wait_tracing();
    rec
}

/// Waits recorded in all rows, however they ended.
fn recorded(p: &Profile) -> u64 {
    p.waits
        .iter()
        .map(|r| r.count + r.timeouts + r.errors)
        .sum()
}

/// bpftrace counting the switch-outs of `pid`'s threads asleep (S or D) inside a futex wait:
/// the same event the scheduler hooks begin a wait at, seen through other hooks.
fn bpftrace_sleeps(pid: u32) -> (Child, BufReader<std::process::ChildStdout>) {
    let script = format!(
        "tracepoint:syscalls:sys_enter_futex /pid == {pid} && ((args->op & 127) == 0 || \
         (args->op & 127) == 9)/ {{ @w[tid] = 1; }}
         tracepoint:syscalls:sys_enter_futex_waitv /pid == {pid}/ {{ @w[tid] = 1; }}
         tracepoint:syscalls:sys_exit_futex, tracepoint:syscalls:sys_exit_futex_waitv \
         /pid == {pid}/ {{ delete(@w[tid]); }}
         tracepoint:sched:sched_switch /pid == {pid} && @w[tid] && (args->prev_state == 1 || \
         args->prev_state == 2)/ {{ @sleeps = count(); }}
         END {{ clear(@w); }}
         tracepoint:syscalls:sys_enter_getppid /pid == {me}/ {{ printf(\"armed\\n\"); }}",
        me = std::process::id()
    );
    let mut bt = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace is needed (apt-get install bpftrace)");
    // It prints "Attaching N probes..." before attaching them in the script's order; the last
    // probe prints "armed" on this process's getppid(), called until it does.
    let mut out = BufReader::new(bt.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("Attaching"), "bpftrace: {line}");
    let armed = Arc::new(AtomicBool::new(false));
    let poke = {
        let armed = Arc::clone(&armed);
        let t0 = Instant::now();
        std::thread::spawn(move || {
            while !armed.load(Ordering::Relaxed) {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "bpftrace never armed"
                );
                // SAFETY: getppid(2) has no preconditions.
                unsafe { libc::getppid() };
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    line.clear();
    out.read_line(&mut line).unwrap();
    armed.store(true, Ordering::Relaxed);
    poke.join().unwrap();
    assert_eq!(line.trim(), "armed", "bpftrace");
    (bt, out)
}

/// Interrupts bpftrace and returns its `@sleeps` count (0 when it never fired). bpftrace
/// 0.x once took a SIGINT and went on waiting in epoll (CI, 2026-12-06); a second one ended it,
/// so the signal is repeated every 2 s until its output ends.
fn bpftrace_count((mut bt, mut stdout): (Child, BufReader<std::process::ChildStdout>)) -> u64 {
    let pid = bt.id() as i32;
    let done = Arc::new(AtomicBool::new(false));
    let nudge = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for _ in 0..15 {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                // SAFETY: signalling our own child (not yet reaped: `done` is set first),
                // which prints its maps on SIGINT.
                unsafe { libc::kill(pid, libc::SIGINT) };
                std::thread::sleep(Duration::from_secs(2));
            }
        })
    };
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    done.store(true, Ordering::Relaxed);
    nudge.join().unwrap();
    let _ = bt.wait();
    out.lines()
        .find_map(|l| l.strip_prefix("@sleeps: "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Runs `futex_loop MODE CALLS` under bpftrace and `lockscope --hooks sched`, begun once both
/// are attached; returns the profile, lockscope's stderr, and bpftrace's count.
fn against_bpftrace(name: &str, mode: &str, calls: &str) -> (Profile, String, u64) {
    let bin = futex_loop();
    let mut w = futex_loop_held(&bin, &[mode, calls, "--linger", "1"]);
    let bt = bpftrace_sleeps(w.0.id());
    let path = tmp(&format!("{name}.json"));
    let rec = record_attached(&w.pid(), &path, &["--duration", "30s", "--hooks", "sched"]);
    go(&mut w);
    let out = rec.finish();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let count = bpftrace_count(bt);
    (profile_at(&path), err, count)
}

#[test]
fn sleeping_waits_equal_bpftraces_count_on_the_same_run() {
    if !can_trace() {
        return;
    }
    for (mode, op) in [("block", FutexOp::Wait), ("waitv", FutexOp::Waitv)] {
        let (p, err, reference) = against_bpftrace(&format!("bt-{mode}"), mode, "20000");
        assert!(err.contains("scheduler tracepoints"), "{err}");
        let began = p.counters.wait_calls;
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
        let rows = &p.waits;
        assert!(rows.iter().any(|r| r.op == op), "{mode}: no {op:?} row");
        // The wakers are known: each wake is seen in its waker's own futex call.
        let paired: u64 = rows
            .iter()
            .filter(|r| r.waker_stack.is_some())
            .map(|r| r.count)
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
    launch(
        "hooks-sched",
        &bin,
        &["block", "2000"],
        &["--hooks", "sched"],
    );
    let p = launched("hooks-sched");
    let hooks = p.meta.hooks.as_deref().expect("meta.hooks");
    assert!(hooks.contains("scheduler tracepoints"), "{hooks}");
    assert!(
        hooks.contains("not counted on this path: EAGAIN"),
        "{hooks}"
    );
    assert!(recorded(&p) > 1000, "{:?}", p.counters);
    assert_eq!(p.counters.eagain, 0);
    let path = launched_path("hooks-sched");
    let report = lockscope().arg("report").arg(&path).output().unwrap();
    assert!(
        text(&report.stdout).contains("kernel hooks: scheduler tracepoints"),
        "{}",
        text(&report.stdout)
    );

    launch(
        "hooks-sys",
        &bin,
        &["eagain", "100000"],
        &["--hooks", "syscalls"],
    );
    let p = launched("hooks-sys");
    let hooks = p.meta.hooks.as_deref().expect("meta.hooks");
    assert!(
        hooks.contains("syscall tracepoints (--hooks syscalls)"),
        "{hooks}"
    );
    assert!(p.counters.eagain >= 100_000, "{:?}", p.counters);
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
    // The waiter begins at `go`; main wakes it 1.5 s later.
    let mut w = futex_loop_held(&bin, &["restart", "1500"]);
    let path = tmp("restart.json");
    let rec = record_attached(
        &w.pid(),
        &path,
        &["--hooks", "sched", "--unwind", "fp", "--duration", "20s"],
    );
    go(&mut w);
    // Stopped once the waiter is asleep in its futex call (syscall 202), for 0.3 s: the
    // length of the stop is part of the test.
    let pid = w.0.id();
    poll_until("the waiter asleep", Duration::from_secs(10), || {
        threads_in_futex(pid).iter().any(|&t| t != pid)
    });
    let pid = pid as i32;
    // SAFETY: signals to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = rec.finish();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let p = profile_at(&path);
    let rows: Vec<&WaitRow> = p.waits.iter().filter(|r| r.op == FutexOp::Wait).collect();
    let interrupted: Vec<&&WaitRow> = rows.iter().filter(|r| r.interrupted == 1).collect();
    assert_eq!(interrupted.len(), 1, "{rows:#?}");
    let (tid, uaddr) = (interrupted[0].tid, interrupted[0].uaddr);
    // The resumed wait: same thread, same word, ended by main's wake ~1.2 s later.
    let resumed = rows
        .iter()
        .find(|r| r.tid == tid && r.uaddr == uaddr && r.interrupted == 0)
        .unwrap_or_else(|| panic!("no resumed wait on the same word: {rows:#?}"));
    assert_eq!(resumed.count, 1, "{resumed:#?}");
    assert!(resumed.waker_stack.is_some(), "{resumed:#?}");
    assert!(resumed.max_ns > 500_000_000, "{resumed:#?}");
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
    launch(
        "compat",
        &bin,
        &["block", "5000"],
        &["--hooks", "sched", "--unwind", "fp"],
    );
    let p = launched("compat");
    let rows = &p.waits;
    let waits: u64 = rows
        .iter()
        .filter(|r| r.op == FutexOp::Wait)
        .map(|r| r.count)
        .sum();
    assert!(waits > 1000, "{:?}", p.counters);
    assert!(rows.iter().all(|r| r.uaddr < 1 << 32));
    let wakes: u64 = p.wakes.iter().map(|r| r.woken).sum();
    assert!(wakes * 100 >= waits * 95, "{wakes} wakes for {waits} waits");
    launch(
        "compat-sys",
        &bin,
        &["block", "5000"],
        &["--hooks", "syscalls", "--unwind", "fp"],
    );
    assert_eq!(
        recorded(&launched("compat-sys")),
        0,
        "syscall tracepoints saw a compat wait"
    );
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
    // Attached (the tax is set) when lockscope says it is tracing.
    let rec = record_attached(
        &idle.pid(),
        &tmp(&format!("tax-{hooks}.json")),
        &["--hooks", hooks, "--unwind", "fp", "--duration", "60s"],
    );
    let ns = getppid_ns(bin);
    // lockscope saves its profile on SIGINT.
    rec.signal(libc::SIGINT);
    let said = rec.said.join("\n");
    let _ = rec.finish();
    (ns, said)
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
