//! The benchmarks (`cargo xtask bench`, `bench-events`, `bench-unwind`, `bench-agent`,
//! `bench-map`): one file each, none importing another, and here what they share — a workload
//! run under one tracer (`run_once`), medians and spread, the machine line, and writing one
//! section of BENCHMARKS.md. `tracers` starts and stops each tracer compared.
//!
//! Benchmarks, not tests: they assert nothing, print ratios and write BENCHMARKS.md.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::run::root;
use tracers::{secs_of, start_tracer, stop, Tracer};

pub mod agent;
pub mod events;
pub mod map;
pub mod overhead;
mod tracers;
pub mod unwind;

/// The workload waits this long before working: the tracer attaches meanwhile.
const START_DELAY_S: f64 = 3.0;
/// And stays this long after printing, so the tracer sees it to the end.
const LINGER_S: f64 = 0.5;

/// A program a benchmark runs, traced or not.
pub(crate) struct Workload {
    pub(crate) name: String,
    /// A Go program (the goroutine-uprobe comparison runs only on these).
    pub(crate) go: bool,
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
    /// Events not counted at all (full maps).
    lost: u64,
    /// DWARF mode: waits whose snapshot was dropped (they keep a frame-pointer stack).
    pub(crate) snapshots_dropped: u64,
    /// Waits that slept, all rows.
    pub(crate) waits: u64,
    /// The unwinder the recording used (`fp`, `fp+cfi`, `dwarf`).
    pub(crate) unwind: String,
}

pub(crate) struct Sample {
    pub(crate) throughput: f64,
    pub(crate) lockscope: Option<LockscopeRun>,
    /// bpftrace count-only's count of futex calls, when it ran.
    bpftrace_count: Option<u64>,
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
    let mut sample = Sample {
        throughput,
        lockscope: None,
        bpftrace_count: None,
    };
    let Some((running, started)) = traced else {
        return Ok(sample);
    };
    let (usage, wall_s, text) = stop(running, started, tracer.stops_on_sigint())?;
    match tracer {
        Tracer::Lockscope
        | Tracer::LockscopeDwarf
        | Tracer::LockscopeAllPhases
        | Tracer::LockscopeNoGoUprobes
        | Tracer::LockscopeGoSample
        | Tracer::LockscopeAuto => {
            let p: Value = serde_json::from_slice(&std::fs::read(&profile)?)?;
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
            sample.lockscope = Some(LockscopeRun {
                cpu_s: secs_of(usage.ru_utime) + secs_of(usage.ru_stime),
                wall_s,
                max_rss_kib: usage.ru_maxrss as u64,
                attach_ms: p["meta"]["attach_ns"].as_f64().unwrap_or(0.0) / 1e6,
                events: p["counters"]["calls"].as_u64().unwrap_or(0),
                lost,
                snapshots_dropped: p["losses"]["snapshots_dropped"].as_u64().unwrap_or(0),
                waits: p["waits"].as_array().map_or(0, |w| {
                    w.iter().map(|r| r["count"].as_u64().unwrap_or(0)).sum()
                }),
                unwind: p["meta"]["unwind"].as_str().unwrap_or("").to_string(),
            });
        }
        Tracer::BpftraceCount => {
            sample.bpftrace_count = text
                .lines()
                .find_map(|l| l.strip_prefix("@calls: "))
                .and_then(|v| v.trim().parse().ok());
        }
        _ => {}
    }
    Ok(sample)
}

/// Each tracer's median, and the run-to-run spread of the untraced runs (the first; half the
/// min-max range, % of their median): ratios closer to 1.00 than this are noise.
pub(crate) fn medians_and_spread(runs: &mut [Vec<f64>]) -> (Vec<f64>, f64) {
    let med: Vec<f64> = runs.iter_mut().map(|v| median(v)).collect();
    let (lo, hi) = runs[0]
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let spread = 50.0 * (hi - lo) / med[0].max(1.0);
    (med, spread)
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
