//! The tracers `cargo xtask bench` compares: lockscope in its modes, bpftrace and perf. Each is
//! started against one pid, waited for until attached, and stopped with its output and
//! resource usage.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run::{apt_install, output, step};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tracer {
    None,
    Lockscope,
    /// lockscope with `--unwind dwarf`: a stack snapshot per wait that slept, unwound in user
    /// space.
    LockscopeDwarf,
    /// lockscope with `--phase-probes all`: a uprobe on every bundled-map read miss too.
    LockscopeAllPhases,
    /// futexctn-like: enter/exit, user stack, sum and count.
    BpftraceStacks,
    /// Count-only tracepoint: the floor any futex tracer pays.
    BpftraceCount,
    /// `perf stat` counting the same tracepoint: perf's floor.
    PerfCount,
    /// lockscope without its goroutine uprobes (Go workloads only): what those cost.
    LockscopeNoGoUprobes,
    /// lockscope as a user runs it: `--unwind auto` picks the mode from the binaries.
    LockscopeAuto,
    /// lockscope following one goroutine wait in ten (Go workloads only).
    LockscopeGoSample,
}

pub(crate) const TRACERS: [Tracer; 9] = [
    Tracer::None,
    Tracer::Lockscope,
    Tracer::LockscopeDwarf,
    Tracer::LockscopeAllPhases,
    Tracer::BpftraceStacks,
    Tracer::BpftraceCount,
    Tracer::PerfCount,
    Tracer::LockscopeNoGoUprobes,
    Tracer::LockscopeGoSample,
];

impl Tracer {
    /// Tracers that differ from plain lockscope only on Go targets.
    pub(crate) fn go_only(self) -> bool {
        matches!(
            self,
            Tracer::LockscopeNoGoUprobes | Tracer::LockscopeGoSample
        )
    }

    pub(crate) fn is_bpftrace(self) -> bool {
        matches!(self, Tracer::BpftraceStacks | Tracer::BpftraceCount)
    }

    /// Tracers that run until interrupted (and print their results then).
    pub(crate) fn stops_on_sigint(self) -> bool {
        self.is_bpftrace() || self == Tracer::PerfCount
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Tracer::None => "untraced",
            Tracer::Lockscope => "lockscope (fp)",
            Tracer::LockscopeDwarf => "lockscope (dwarf)",
            Tracer::LockscopeAllPhases => "lockscope, all phase probes",
            Tracer::BpftraceStacks => "bpftrace futexctn-like",
            Tracer::BpftraceCount => "bpftrace count-only (enter+exit)",
            Tracer::PerfCount => "perf stat count-only",
            Tracer::LockscopeNoGoUprobes => "lockscope, --go-uprobes off",
            Tracer::LockscopeAuto => "lockscope (auto)",
            Tracer::LockscopeGoSample => "lockscope, --go-sample 10",
        }
    }
}

pub(crate) fn bpftrace_script(tracer: Tracer, pid: u32) -> String {
    match tracer {
        // The floor for any tracer on these tracepoints: both ends counted, nothing kept.
        Tracer::BpftraceCount => format!(
            "tracepoint:syscalls:sys_enter_futex /pid == {pid}/ {{ @calls = count(); }} \
             tracepoint:syscalls:sys_exit_futex /pid == {pid}/ {{ @exits = count(); }}"
        ),
        _ => format!(
            "tracepoint:syscalls:sys_enter_futex /pid == {pid}/ {{ @start[tid] = nsecs; }} \
             tracepoint:syscalls:sys_exit_futex /@start[tid]/ {{ \
             @wait_ns[ustack] = sum(nsecs - @start[tid]); @waits[ustack] = count(); \
             delete(@start[tid]); }}"
        ),
    }
}

/// A tracer process, attached, with its output collected in the background.
pub(crate) struct Running {
    pub(crate) child: Child,
    /// The tracer's whole output once it exits.
    output: std::sync::mpsc::Receiver<Option<String>>,
}

impl Running {
    pub(crate) fn output(self) -> String {
        self.output
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}

/// Starts a tracer on `pid` and returns once it reports being attached.
pub(crate) fn start_tracer(
    tracer: Tracer,
    pid: u32,
    lockscope: &Path,
    profile: &Path,
) -> Result<Running> {
    let (mut child, ready_on_stderr, marker) = match tracer {
        Tracer::None => bail!("no tracer to start"),
        Tracer::Lockscope
        | Tracer::LockscopeDwarf
        | Tracer::LockscopeAllPhases
        | Tracer::LockscopeNoGoUprobes
        | Tracer::LockscopeGoSample
        | Tracer::LockscopeAuto => (
            Command::new(lockscope)
                .args([
                    "record",
                    "--quiet",
                    "--pid",
                    &pid.to_string(),
                    "--duration",
                    "10m",
                    "-o",
                ])
                .arg(profile)
                .args(match tracer {
                    Tracer::LockscopeAllPhases => &["--phase-probes", "all", "--unwind", "fp"][..],
                    Tracer::LockscopeDwarf => &["--unwind", "dwarf"][..],
                    Tracer::LockscopeNoGoUprobes => &["--unwind", "fp", "--go-uprobes", "off"][..],
                    Tracer::LockscopeGoSample => &["--unwind", "fp", "--go-sample", "10"][..],
                    Tracer::LockscopeAuto => &[][..],
                    _ => &["--unwind", "fp"][..],
                })
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?,
            true,
            "lockscope: tracing pid",
        ),
        Tracer::PerfCount => (
            // CSV output (-x,) on stderr at SIGINT; perf prints nothing when it attaches.
            Command::new("perf")
                .args(["stat", "-x,", "-e", "syscalls:sys_enter_futex", "-p"])
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?,
            true,
            "",
        ),
        _ => (
            Command::new("bpftrace")
                .args(["-e", &bpftrace_script(tracer, pid)])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?,
            false,
            "Attaching",
        ),
    };
    // Wait for the tracer's own "attached" line; keep draining its output afterwards.
    let pipe: Box<dyn std::io::Read + Send> = if ready_on_stderr {
        Box::new(child.stderr.take().context("stderr")?)
    } else {
        Box::new(child.stdout.take().context("stdout")?)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(pipe).lines();
        let mut signalled = false;
        let mut kept = String::new();
        for line in lines.by_ref().map_while(Result::ok) {
            if !signalled && !marker.is_empty() && line.contains(marker) {
                signalled = true;
                let _ = tx.send(None);
            }
            kept.push_str(&line);
            kept.push('\n');
        }
        let _ = tx.send(Some(kept));
    });
    if marker.is_empty() {
        // No "attached" line to wait for: perf stat opens its counters within milliseconds.
        std::thread::sleep(Duration::from_millis(500));
        return Ok(Running { child, output: rx });
    }
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(None) => {}
        _ => bail!("{} did not attach within 10 s", tracer.label()),
    }
    if tracer.is_bpftrace() {
        // bpftrace prints "Attaching N probes..." just before attaching them.
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(Running { child, output: rx })
}

/// Waits for a child and returns its exit status and resource usage.
pub(crate) fn wait_rusage(child: &Child) -> Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in; zero is a valid initial value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid, with pointers to locals that outlive the call.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    Ok((status, usage))
}

pub(crate) fn secs_of(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Waits for a tracer to finish (interrupting bpftrace, which runs until told), and returns
/// its resource usage, wall time since `started`, and output.
pub(crate) fn stop(
    r: Running,
    started: Instant,
    interrupt: bool,
) -> Result<(libc::rusage, f64, String)> {
    if interrupt {
        // SAFETY: signalling our own child; bpftrace and perf print their results on SIGINT.
        unsafe { libc::kill(r.child.id() as i32, libc::SIGINT) };
    }
    let (_status, usage) = wait_rusage(&r.child)?;
    let wall_s = started.elapsed().as_secs_f64();
    Ok((usage, wall_s, r.output()))
}

pub(crate) fn ensure_bpftrace() -> Result<()> {
    step("bpftrace (Debian's package) for the comparison");
    if let Some(v) = output("bpftrace", &["--version"]) {
        eprintln!("    ok: {}", v.trim());
    } else {
        apt_install(&["bpftrace"])?;
    }
    step("perf (Debian's linux-perf) for the comparison");
    match output("perf", &["--version"]) {
        Some(v) if v.starts_with("perf version") => {
            eprintln!("    ok: {}", v.trim());
            Ok(())
        }
        _ => apt_install(&["linux-perf"]),
    }
}
