//! budget: where a traced storm's CPU goes. With the kernel's `bpf_stats` on, each tracer's
//! BPF programs' run count and run time are read from its own program fds
//! (`/proc/PID/fdinfo`), over a window in the middle of a stress-ng and a pthread-storm run.
//! Three ways of running: lockscope tracing the program, lockscope tracing an idle process
//! while the program runs untraced (the filter every untraced task pays at a context switch),
//! and the sched_switch-only bpftrace script.
//!
//! Both programs keep every core busy, so the BPF time's share of the cores bounds the
//! throughput a tracer can leave them: a retained 0.95 leaves 5% of the cores for everything a
//! tracer adds. `bpf_stats` itself adds two clock reads per run, counted in these figures.
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::super::median;
use super::super::tracers::{start_tracer, start_tracer_on, stop, Running, Scope, Tracer};

const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// The run's length, and the window read inside it (after the tracer attached and the
/// program warmed up, before it winds down).
const RUN_S: u64 = 7;
const WINDOW_START: Duration = Duration::from_millis(2500);
const WINDOW: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

/// How the program is run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// lockscope on the scheduler hooks (fp), tracing the program.
    Lockscope,
    /// lockscope tracing an idle `sleep`; the program runs untraced beside it.
    Neighbour,
    /// The sched_switch-only off-CPU script, on the program.
    OffCpuScript,
}

const WAYS: [Way; 3] = [Way::Lockscope, Way::Neighbour, Way::OffCpuScript];

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::Lockscope => "lockscope (sched, fp) tracing it",
            Way::Neighbour => "lockscope tracing an idle process (it runs untraced)",
            Way::OffCpuScript => "bpftrace sched_switch-only off-CPU script",
        }
    }
}

/// The programs measured.
#[derive(Clone, Copy)]
enum Storm {
    StressNg,
    Pthread,
}

impl Storm {
    fn label(self) -> &'static str {
        match self {
            Storm::StressNg => "stress-ng --mutex 4",
            Storm::Pthread => "C pthread mutex storm (8 threads)",
        }
    }
}

/// Turns `bpf_stats` on; the value it found is put back when dropped.
struct StatsOn(String);

impl StatsOn {
    fn new() -> Result<Self> {
        let was = std::fs::read_to_string(STATS).with_context(|| format!("reading {STATS}"))?;
        std::fs::write(STATS, "1").with_context(|| format!("writing {STATS}"))?;
        Ok(StatsOn(was.trim().to_string()))
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write(STATS, &self.0);
    }
}

/// (runs, ns) summed over the BPF programs process `pid` holds a descriptor of, each once.
fn bpf_time(pid: u32) -> Result<(u64, u64)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut seen = std::collections::BTreeSet::new();
    let (mut runs, mut ns) = (0, 0);
    for e in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let Ok(text) = std::fs::read_to_string(e?.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let Some(id) = field("prog_id:") else {
            continue;
        };
        if seen.insert(id) {
            runs += field("run_cnt:").unwrap_or(0);
            ns += field("run_time_ns:").unwrap_or(0);
        }
    }
    Ok((runs, ns))
}

/// One window's figures: BPF runs per second and ns per second.
struct Window {
    runs_per_s: f64,
    ns_per_s: f64,
}

/// The tracer's programs' runs and time over [`WINDOW`], starting [`WINDOW_START`] after `t0`.
fn window(tracer_pid: u32, t0: Instant) -> Result<Window> {
    std::thread::sleep(WINDOW_START.saturating_sub(t0.elapsed()));
    let (r0, n0) = bpf_time(tracer_pid)?;
    let began = Instant::now();
    std::thread::sleep(WINDOW);
    let (r1, n1) = bpf_time(tracer_pid)?;
    let s = began.elapsed().as_secs_f64();
    if r1 <= r0 {
        bail!("no BPF program of pid {tracer_pid} ran in the window (bpf_stats off?)");
    }
    Ok(Window {
        runs_per_s: (r1 - r0) as f64 / s,
        ns_per_s: (n1 - n0) as f64 / s,
    })
}

/// Starts the program untraced; returns it and the bpftrace scope that names it.
fn spawn(storm: Storm, pthread: &Path) -> Result<(Child, Scope)> {
    let secs = RUN_S.to_string();
    Ok(match storm {
        Storm::StressNg => (
            Command::new("stress-ng")
                .args(["--mutex", "4", "--timeout", &secs])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
            Scope::Comm("stress-ng-mutex"),
        ),
        Storm::Pthread => {
            let c = Command::new(pthread)
                .args(["8", &secs])
                .stdout(Stdio::null())
                .spawn()?;
            let pid = c.id();
            (c, Scope::Pid(pid))
        }
    })
}

/// One run of `storm` the `way` says, and its window.
fn run(storm: Storm, way: Way, pthread: &Path, lockscope: &Path, tmp: &Path) -> Result<Window> {
    let profile = tmp.join("lockscope-bench-budget.json");
    let _ = std::fs::remove_file(&profile);
    match (way, storm) {
        // stress-ng's workers are forked below it: lockscope launches it.
        (Way::Lockscope, Storm::StressNg) => {
            let t0 = Instant::now();
            let mut child = Command::new(lockscope)
                .args(["record", "--quiet", "--follow-forks", "-o"])
                .arg(&profile)
                .args(Tracer::Lockscope.lockscope_flags())
                .args(["--", "stress-ng", "--mutex", "4", "--timeout"])
                .arg(RUN_S.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let w = window(child.id(), t0);
            child.wait()?;
            w
        }
        (Way::Neighbour, _) => {
            let mut idle = Command::new("sleep").arg("60").spawn()?;
            let tracer = start_tracer(Tracer::Lockscope, idle.id(), lockscope, &profile);
            let result = tracer.and_then(|tracer| {
                let (mut child, _) = spawn(storm, pthread)?;
                let w = window(tracer.child.id(), Instant::now());
                child.wait()?;
                finish(tracer, Tracer::Lockscope)?;
                w
            });
            let _ = idle.kill();
            let _ = idle.wait();
            result
        }
        (Way::Lockscope, Storm::Pthread) => {
            attached(Tracer::Lockscope, storm, pthread, lockscope, &profile)
        }
        (Way::OffCpuScript, _) => {
            attached(Tracer::BpftraceOffCpu, storm, pthread, lockscope, &profile)
        }
    }
}

/// `storm` started untraced, then `kind` attached to it.
fn attached(
    kind: Tracer,
    storm: Storm,
    pthread: &Path,
    lockscope: &Path,
    profile: &Path,
) -> Result<Window> {
    let t0 = Instant::now();
    let (mut child, scope) = spawn(storm, pthread)?;
    let result = start_tracer_on(kind, scope, lockscope, profile).and_then(|tracer| {
        let w = window(tracer.child.id(), t0);
        child.wait()?;
        finish(tracer, kind)?;
        w
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Stops a tracer (lockscope exits once its target did; bpftrace when interrupted).
fn finish(tracer: Running, kind: Tracer) -> Result<()> {
    if kind.is_lockscope() {
        // SAFETY: signalling our own child; lockscope saves and exits on SIGINT.
        unsafe { libc::kill(tracer.child.id() as i32, libc::SIGINT) };
    }
    stop(tracer, Instant::now(), kind.stops_on_sigint()).map(|_| ())
}

/// Measures each program each way ([`ROUNDS`] rounds, ways rotated per round) and returns the
/// section's table.
pub(super) fn measure(pthread: &Path, lockscope: &Path, tmp: &Path) -> Result<String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let _stats = StatsOn::new()?;
    let mut table = String::new();
    writeln!(
        table,
        "| program | way | BPF runs/s | ns per run | BPF CPU ms/s | share of the {cores:.0} cores |"
    )?;
    writeln!(table, "|---|---|---:|---:|---:|---:|")?;
    for storm in [Storm::StressNg, Storm::Pthread] {
        let mut per: Vec<Vec<Window>> = WAYS.iter().map(|_| Vec::new()).collect();
        for round in 0..ROUNDS {
            for i in 0..WAYS.len() {
                let w = (i + round) % WAYS.len();
                let got = run(storm, WAYS[w], pthread, lockscope, tmp)?;
                eprintln!(
                    "    round {round} {:<22} {:<52} {:>8.1} ms/s",
                    storm.label(),
                    WAYS[w].label(),
                    got.ns_per_s / 1e6
                );
                per[w].push(got);
            }
        }
        for (way, got) in WAYS.iter().zip(&per) {
            let runs = median(&mut got.iter().map(|w| w.runs_per_s).collect::<Vec<_>>());
            let ns = median(&mut got.iter().map(|w| w.ns_per_s).collect::<Vec<_>>());
            writeln!(
                table,
                "| {} | {} | {runs:.0} | {:.0} | {:.1} | {:.1}% |",
                storm.label(),
                way.label(),
                ns / runs.max(1.0),
                ns / 1e6,
                100.0 * ns / (cores * 1e9)
            )?;
        }
    }
    Ok(table)
}
