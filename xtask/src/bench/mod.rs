//! The benchmarks (`cargo xtask bench`, `bench-events`, `bench-unwind`, `bench-agent`,
//! `bench-map`, `bench-tokio`): one file each, none importing another, and here what they share — a workload
//! run under one tracer (`run_once`), medians and spread, the machine line, and writing one
//! section of BENCHMARKS.md. `tracers` starts and stops each tracer compared.
//!
//! Benchmarks, not tests: they assert nothing, print ratios and write BENCHMARKS.md.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::run::{cmd, root};
use tracers::{secs_of, start_tracer, stop, Running, Tracer};

pub mod agent;
pub mod asynclock;
pub mod events;
pub mod map;
pub mod overhead;
mod programs;
mod tax;
mod tracers;
pub mod unwind;

/// The workload waits this long before working: the tracer attaches meanwhile.
const START_DELAY_S: f64 = 3.0;
/// And stays this long after printing, so the tracer sees it to the end.
const LINGER_S: f64 = 0.5;

/// A program a benchmark runs, traced or not.
pub(crate) struct Workload {
    pub(crate) name: String,
    /// Binary and arguments; `--start-delay`, `--linger` and the run length are added.
    pub(crate) argv: Vec<String>,
}

/// lockscope's own cost and view of one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct LockscopeRun {
    pub(crate) cpu_s: f64,
    pub(crate) wall_s: f64,
    max_rss_kib: u64,
    attach_ms: f64,
    events: u64,
    /// Futex waits begun (scheduler hooks: waits that slept).
    pub(crate) wait_calls: u64,
    /// Events not counted at all (full maps).
    lost: u64,
    /// DWARF mode: waits whose snapshot was dropped (they keep a frame-pointer stack).
    pub(crate) snapshots_dropped: u64,
    /// Waits that slept, all rows.
    pub(crate) waits: u64,
    /// The unwinder the recording used (`fp`, `fp+cfi`, `dwarf`).
    pub(crate) unwind: String,
    /// The kernel hooks the recording used, as its header names them.
    pub(crate) hooks: String,
}

pub(crate) struct Sample {
    pub(crate) throughput: f64,
    pub(crate) lockscope: Option<LockscopeRun>,
    /// bpftrace count-only's count of futex calls, when it ran.
    pub(crate) bpftrace_count: Option<u64>,
}

fn spawn_workload(w: &Workload) -> Result<Child> {
    Command::new(&w.argv[0])
        .args(&w.argv[1..])
        .args(["--start-delay", &START_DELAY_S.to_string()])
        .args(["--linger", &LINGER_S.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", w.argv[0]))
}

/// The workload's JSON line's throughput (lockdemo: locks_per_sec, syncmap-load: ops_per_sec).
fn throughput(out: &str) -> Result<f64> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("workload printed no JSON")?;
    let v: Value = serde_json::from_str(line)?;
    v["locks_per_sec"]
        .as_f64()
        .or_else(|| v["ops_per_sec"].as_f64())
        .context("no throughput in the workload's JSON")
}

pub(crate) fn run_once(
    w: &Workload,
    tracer: Tracer,
    lockscope: &Path,
    tmp: &Path,
) -> Result<Sample> {
    let t0 = Instant::now();
    let workload = spawn_workload(w)?;
    let pid = workload.id();
    let profile = tmp.join("bench-profile.json");
    let _ = std::fs::remove_file(&profile);
    let traced = if tracer == Tracer::None {
        None
    } else {
        let c = start_tracer(tracer, pid, lockscope, &profile)?;
        Some((c, Instant::now()))
    };
    if t0.elapsed().as_secs_f64() > START_DELAY_S {
        bail!(
            "{} attached {:.2} s after the workload started, after its {START_DELAY_S} s start delay: raise START_DELAY_S",
            tracer.label(),
            t0.elapsed().as_secs_f64()
        );
    }
    let out = workload.wait_with_output()?;
    let throughput = throughput(&String::from_utf8_lossy(&out.stdout))?;
    finish(tracer, traced, &profile, throughput, Target::Exited)
}

/// Whether the traced process is gone when its run's tracer is stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// It exited: lockscope stops by itself.
    Exited,
    /// It serves on (a database server): every tracer is interrupted.
    Running,
}

/// Stops the tracer of one run (if any) and reads what it saw into the run's sample.
pub(crate) fn finish(
    tracer: Tracer,
    traced: Option<(Running, Instant)>,
    profile: &Path,
    throughput: f64,
    target: Target,
) -> Result<Sample> {
    let mut sample = Sample {
        throughput,
        lockscope: None,
        bpftrace_count: None,
    };
    let Some((running, started)) = traced else {
        return Ok(sample);
    };
    let interrupt = tracer.stops_on_sigint() || target == Target::Running;
    let (usage, wall_s, text) = stop(running, started, interrupt)?;
    if tracer.is_lockscope() {
        sample.lockscope = Some(read_lockscope(profile, &usage, wall_s)?);
    }
    sample.bpftrace_count = bpftrace_count(tracer, &text);
    Ok(sample)
}

/// bpftrace count-only's `@calls`, when `tracer` is that script.
pub(crate) fn bpftrace_count(tracer: Tracer, text: &str) -> Option<u64> {
    (tracer == Tracer::BpftraceCount)
        .then(|| {
            text.lines()
                .find_map(|l| l.strip_prefix("@calls: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .flatten()
}

/// lockscope's cost and counts from its profile and its process's resource usage.
pub(crate) fn read_lockscope(
    profile: &Path,
    usage: &libc::rusage,
    wall_s: f64,
) -> Result<LockscopeRun> {
    let p: Value = serde_json::from_slice(
        &std::fs::read(profile).with_context(|| format!("reading {}", profile.display()))?,
    )?;
    let lost = [
        "wait_map_full",
        "wake_map_full",
        "inflight_full",
        "stack_errors",
        "stack_map_full",
    ]
    .iter()
    .map(|k| p["losses"][k].as_u64().unwrap_or(0))
    .sum();
    Ok(LockscopeRun {
        cpu_s: secs_of(usage.ru_utime) + secs_of(usage.ru_stime),
        wall_s,
        max_rss_kib: usage.ru_maxrss as u64,
        attach_ms: p["meta"]["attach_ns"].as_f64().unwrap_or(0.0) / 1e6,
        events: p["counters"]["calls"].as_u64().unwrap_or(0),
        wait_calls: p["counters"]["wait_calls"].as_u64().unwrap_or(0),
        lost,
        snapshots_dropped: p["losses"]["snapshots_dropped"].as_u64().unwrap_or(0),
        waits: p["waits"].as_array().map_or(0, |w| {
            w.iter().map(|r| r["count"].as_u64().unwrap_or(0)).sum()
        }),
        unwind: p["meta"]["unwind"].as_str().unwrap_or("").to_string(),
        hooks: p["meta"]["hooks"].as_str().unwrap_or("").to_string(),
    })
}

/// Builds `workloads/c/SRC` with gcc and `flags` into target/bench-c/NAME.
pub(crate) fn build_c(src: &str, name: &str, flags: &[&str]) -> Result<PathBuf> {
    let dir = root().join("target/bench-c");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join(name);
    let src = root().join("workloads/c").join(src);
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(["-pthread".into(), "-o".into()]);
    args.push(bin.display().to_string());
    args.push(src.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cmd("gcc", &args)?;
    Ok(bin)
}

/// Each tracer's median, and the run-to-run spread of the untraced runs (the first; half the
/// min-max range, % of their median): ratios closer to 1.00 than this are noise.
pub(crate) fn medians_and_spread(runs: &mut [Vec<f64>]) -> (Vec<f64>, f64) {
    let med: Vec<f64> = runs.iter_mut().map(|v| median(v)).collect();
    let spread = spread_pct(&runs[0]);
    (med, spread)
}

/// A traced ÷ untraced ratio as printed, marked when it lies outside the untraced runs' own
/// spread (`spread_pct`, see [`medians_and_spread`]; at least 2%): `▼` a cost beyond the noise,
/// `▲` faster traced than untraced, which no tracer's work can cause except in a futex storm,
/// where a costlier wait means fewer lock hand-offs. Unmarked figures are noise.
pub(crate) fn ratio_cell(ratio: f64, spread_pct: f64) -> String {
    let band = spread_pct.max(2.0) / 100.0;
    let mark = if ratio > 1.0 + band {
        " ▲"
    } else if ratio < 1.0 - band {
        " ▼"
    } else {
        ""
    };
    format!("{ratio:.2}{mark}")
}

/// The spread of one set of runs: half the min-max range, % of their median.
pub(crate) fn spread_pct(runs: &[f64]) -> f64 {
    let (lo, hi) = runs
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let mut sorted = runs.to_vec();
    50.0 * (hi - lo) / median(&mut sorted).max(1.0)
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// Replaces (or appends) one benchmark's section of BENCHMARKS.md, keeping the others.
pub fn write_section(title: &str, doc: &str) -> Result<()> {
    let path = root().join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| "# lockscope benchmarks\n\nNumbers here are printed by the commands named in each section.\n\n".into());
    let new = match old.find(title) {
        Some(start) => {
            let end = old[start + title.len()..]
                .find("\n## ")
                .map_or(old.len(), |e| start + title.len() + e + 1);
            format!("{}{}{}", &old[..start], doc, &old[end..])
        }
        None => format!("{old}{doc}"),
    };
    std::fs::write(&path, new)?;
    Ok(())
}

/// Records a program whose lock is reached through `unique` distinct call paths, and returns
/// (distinct stacks in the profile, symbolization time).
pub(crate) fn symbolization(
    bin: &Path,
    lockscope: &Path,
    tmp: &Path,
    unique: u64,
) -> Result<(usize, f64)> {
    let mut w = Command::new(bin.join("lockdemo"))
        .args(["stacks", "--unique", &unique.to_string(), "--threads", "8"])
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let profile = tmp.join("bench-stacks.json");
    let status = Command::new(lockscope)
        .args(["record", "--quiet", "--pid", &w.id().to_string()])
        .args(["--duration", "8s", "-o"])
        .arg(&profile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = w.kill();
    let _ = w.wait();
    if !status?.success() {
        bail!("lockscope record failed on lockdemo stacks");
    }
    let p: Value = serde_json::from_slice(&std::fs::read(&profile)?)?;
    let stacks = p["stacks"].as_array().map_or(0, Vec::len);
    Ok((
        stacks,
        p["meta"]["symbolize_ns"].as_f64().unwrap_or(0.0) / 1e6,
    ))
}

/// Runs lockscope (`ours`) and a bpftrace count (`theirs`) on the same workload run: lockscope's
/// count (sched: waits begun; syscalls: futex calls) and bpftrace's.
pub(crate) fn agreement(
    w: &Workload,
    ours: Tracer,
    theirs: Tracer,
    lockscope: &Path,
    tmp: &Path,
) -> Result<(u64, u64)> {
    let workload = spawn_workload(w)?;
    let pid = workload.id();
    let profile = tmp.join("bench-agree.json");
    let t = Instant::now();
    let ls = start_tracer(ours, pid, lockscope, &profile)?;
    let bt = start_tracer(theirs, pid, lockscope, &profile)?;
    workload.wait_with_output()?;
    let (_, _, text) = stop(bt, t, true)?;
    let (usage, wall, _) = stop(ls, t, false)?;
    let key = if theirs == Tracer::BpftraceSleeps {
        "@sleeps: "
    } else {
        "@calls: "
    };
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
        .context("bpftrace printed no count")?;
    let run = read_lockscope(&profile, &usage, wall)?;
    let mine = if ours == Tracer::Lockscope {
        run.wait_calls
    } else {
        run.events
    };
    Ok((mine, count))
}
