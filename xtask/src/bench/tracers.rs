//! The tracers `cargo xtask bench` compares: lockscope in its modes (scheduler hooks, syscall
//! tracepoints, DWARF) and three bpftrace scripts (futexctn-like, count-only, a
//! sched_switch-only off-CPU profiler). Each is started against one pid (bpftrace: or a task
//! name), waited for until attached, and stopped with its output and resource usage.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run::{apt_install, output, step};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tracer {
    None,
    /// lockscope on the scheduler hooks (`--hooks sched`: `sched_switch` + `sched_waking`), fp.
    Lockscope,
    /// lockscope on the syscall tracepoints (`--hooks syscalls`), fp: the host-wide tax path.
    LockscopeSyscalls,
    /// lockscope with `--unwind dwarf` (scheduler hooks): a stack snapshot per wait that
    /// slept, unwound in user space.
    LockscopeDwarf,
    /// lockscope as a user runs it: `--unwind auto` picks the mode from the binaries.
    LockscopeAuto,
    /// futexctn-like: enter/exit, user stack, sum and count.
    BpftraceStacks,
    /// Count-only tracepoint: the floor any futex tracer on the syscall tracepoints pays.
    BpftraceCount,
    /// An off-CPU profiler on `sched:sched_switch` only: the time stamp at a target thread's
    /// switch-out, its user stack, and at its switch-in the off-CPU time summed by that stack.
    BpftraceOffCpu,
    /// The reference count for the scheduler hooks (not a column): switch-outs of a target
    /// thread asleep inside a futex wait, seen through the syscall tracepoints and
    /// `sched_switch` (as tracer-user/tests/sched_hooks.rs counts them).
    BpftraceSleeps,
}

/// Which tasks a bpftrace script follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Scope {
    /// One process (its tgid).
    Pid(u32),
    /// Every task of this name (stress-ng's workers, forked two levels below the command).
    Comm(&'static str),
}

impl Scope {
    fn predicate(self) -> String {
        match self {
            Scope::Pid(pid) => format!("pid == {pid}"),
            Scope::Comm(name) => format!("comm == \"{name}\""),
        }
    }
}

impl Tracer {
    pub(crate) fn is_bpftrace(self) -> bool {
        matches!(
            self,
            Tracer::BpftraceStacks
                | Tracer::BpftraceCount
                | Tracer::BpftraceOffCpu
                | Tracer::BpftraceSleeps
        )
    }

    pub(crate) fn is_lockscope(self) -> bool {
        !self.is_bpftrace() && self != Tracer::None
    }

    /// Tracers that run until interrupted (and print their results then).
    pub(crate) fn stops_on_sigint(self) -> bool {
        self.is_bpftrace()
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Tracer::None => "untraced",
            Tracer::Lockscope => "lockscope (sched, fp)",
            Tracer::LockscopeSyscalls => "lockscope --hooks syscalls (fp)",
            Tracer::LockscopeDwarf => "lockscope (sched, dwarf)",
            Tracer::LockscopeAuto => "lockscope (auto)",
            Tracer::BpftraceStacks => "bpftrace futexctn-like",
            Tracer::BpftraceCount => "bpftrace count-only (enter+exit)",
            Tracer::BpftraceOffCpu => "bpftrace sched_switch-only off-CPU",
            Tracer::BpftraceSleeps => "bpftrace sleeping-wait count",
        }
    }

    /// `lockscope record`'s flags for this mode (none for the other tracers).
    pub(crate) fn lockscope_flags(self) -> &'static [&'static str] {
        match self {
            Tracer::Lockscope => &["--hooks", "sched", "--unwind", "fp"],
            Tracer::LockscopeSyscalls => &["--hooks", "syscalls", "--unwind", "fp"],
            Tracer::LockscopeDwarf => &["--hooks", "sched", "--unwind", "dwarf"],
            _ => &[],
        }
    }
}

pub(crate) fn bpftrace_script(tracer: Tracer, scope: Scope) -> String {
    let only = scope.predicate();
    match tracer {
        // The floor for any tracer on these tracepoints: both ends counted, nothing kept.
        Tracer::BpftraceCount => format!(
            "tracepoint:syscalls:sys_enter_futex /{only}/ {{ @calls = count(); }} \
             tracepoint:syscalls:sys_exit_futex /{only}/ {{ @exits = count(); }}"
        ),
        // The off-CPU profiler's design on the one scheduler tracepoint: `current` is the
        // thread leaving, so its stack is taken at switch-out and charged at its switch-in.
        // The sums stay in the kernel: END clears them unprinted, since bpftrace symbolizing
        // mariadbd's thousands of stacks at exit took minutes (after the measured run).
        Tracer::BpftraceOffCpu => format!(
            "tracepoint:sched:sched_switch /{only}/ {{ @ts[tid] = nsecs; @st[tid] = ustack; }} \
             tracepoint:sched:sched_switch /@ts[args->next_pid]/ {{ \
             @off_ns[@st[args->next_pid]] = sum(nsecs - @ts[args->next_pid]); \
             @switches = count(); \
             delete(@ts[args->next_pid]); delete(@st[args->next_pid]); }} \
             END {{ clear(@ts); clear(@st); clear(@off_ns); }}"
        ),
        // FUTEX_WAIT (0) or FUTEX_WAIT_BITSET (9), or futex_waitv, then a switch-out asleep
        // (S or D) before the call returns.
        Tracer::BpftraceSleeps => format!(
            "tracepoint:syscalls:sys_enter_futex /{only} && ((args->op & 127) == 0 || \
             (args->op & 127) == 9)/ {{ @w[tid] = 1; }} \
             tracepoint:syscalls:sys_enter_futex_waitv /{only}/ {{ @w[tid] = 1; }} \
             tracepoint:syscalls:sys_exit_futex, tracepoint:syscalls:sys_exit_futex_waitv \
             /{only}/ {{ delete(@w[tid]); }} \
             tracepoint:sched:sched_switch /{only} && @w[tid] && (args->prev_state == 1 || \
             args->prev_state == 2)/ {{ @sleeps = count(); }} \
             END {{ clear(@w); }}"
        ),
        _ => format!(
            "tracepoint:syscalls:sys_enter_futex /{only}/ {{ @start[tid] = nsecs; }} \
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
    start_tracer_on(tracer, Scope::Pid(pid), lockscope, profile)
}

/// Starts a tracer on the tasks `scope` names (lockscope: one pid only) and returns once it
/// reports being attached.
pub(crate) fn start_tracer_on(
    tracer: Tracer,
    scope: Scope,
    lockscope: &Path,
    profile: &Path,
) -> Result<Running> {
    let (mut child, ready_on_stderr, marker) = match (tracer, scope) {
        (Tracer::None, _) => bail!("no tracer to start"),
        (t, Scope::Pid(pid)) if t.is_lockscope() => (
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
                .args(tracer.lockscope_flags())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?,
            true,
            "lockscope: tracing pid",
        ),
        (t, _) if t.is_lockscope() => bail!("lockscope attaches to one pid here"),
        _ => (
            Command::new("bpftrace")
                .args(["-e", &bpftrace_script(tracer, scope)])
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
            if !signalled && line.contains(marker) {
                signalled = true;
                let _ = tx.send(None);
            }
            kept.push_str(&line);
            kept.push('\n');
        }
        let _ = tx.send(Some(kept));
    });
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

/// The child's exit status and resource usage if it has exited (reaping it), else None.
fn try_wait_rusage(child: &Child) -> Result<Option<(i32, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in; zero is a valid initial value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid, with pointers to locals that outlive the call.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, libc::WNOHANG, &mut usage) };
    match rc {
        0 => Ok(None),
        rc if rc < 0 => bail!("wait4: {}", std::io::Error::last_os_error()),
        _ => Ok(Some((status, usage))),
    }
}

/// Waits for a tracer to finish (interrupting bpftrace, which runs until told), and returns
/// its resource usage, wall time since `started`, and output.
pub(crate) fn stop(
    r: Running,
    started: Instant,
    interrupt: bool,
) -> Result<(libc::rusage, f64, String)> {
    let usage = if interrupt {
        // bpftrace has been seen to miss a SIGINT here (still running 15 minutes later; a second
        // one stopped it): send it again every 2 s, and give up after a minute.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut sent = Instant::now() - Duration::from_secs(3);
        loop {
            if sent.elapsed() >= Duration::from_secs(2) {
                // SAFETY: signalling our own child; bpftrace prints its maps on SIGINT.
                unsafe { libc::kill(r.child.id() as i32, libc::SIGINT) };
                sent = Instant::now();
            }
            if let Some((_, usage)) = try_wait_rusage(&r.child)? {
                break usage;
            }
            if Instant::now() > deadline {
                // SAFETY: killing our own child, which ignored a minute of SIGINTs.
                unsafe { libc::kill(r.child.id() as i32, libc::SIGKILL) };
                let _ = wait_rusage(&r.child);
                bail!("a tracer did not stop within 60 s of SIGINT (killed)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        wait_rusage(&r.child)?.1
    };
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
    Ok(())
}
