//! `cargo xtask bench`: what tracing costs the traced program, lockscope beside bpftrace, side by
//! side in one run. A benchmark, not a test: it asserts nothing, prints ratios and writes
//! BENCHMARKS.md.
//!
//! Every run: the workload starts with a start delay, the tracer attaches inside it (the run is
//! void if it has not attached when the delay ends), the workload does a fixed-length run and
//! prints its throughput, lingers, exits. So the measured interval is exactly the traced one.
//! Tracers alternate within each round, in an order rotated per round, so machine noise hits
//! all of them alike; medians are reported.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::run::{cmd, is_root, root, step};
use crate::tracers::{ensure_bpftrace, secs_of, start_tracer, stop, Tracer, TRACERS};

/// The workload waits this long before working: the tracer attaches meanwhile.
const START_DELAY_S: f64 = 3.0;
/// And stays this long after printing, so the tracer sees it to the end.
const LINGER_S: f64 = 0.5;
/// Work outside the lock that makes `lockdemo` moderately contended (~10k wait calls/s here).
const MODERATE_OUTSIDE: &str = "110";

pub(crate) struct Workload {
    pub(crate) name: String,
    /// A Go program (the goroutine-uprobe comparison runs only on these).
    pub(crate) go: bool,
    /// Binary and arguments; `--start-delay`, `--linger` and the run length are added.
    pub(crate) argv: Vec<String>,
}

fn workloads(bin: &Path, secs: f64) -> Vec<Workload> {
    let s = secs.to_string();
    let lockdemo = |name: &str, extra: &[&str]| Workload {
        name: name.into(),
        go: false,
        argv: [bin.join("lockdemo").display().to_string()]
            .into_iter()
            .chain(["contended", "--threads", "8", "--seconds", &s].map(String::from))
            .chain(extra.iter().map(|a| a.to_string()))
            .collect(),
    };
    let mut w = vec![
        lockdemo("futex storm (8 threads, one std Mutex)", &[]),
        lockdemo("moderate contention", &["--outside", MODERATE_OUTSIDE]),
    ];
    for preset in [
        "read-mostly",
        "update-existing",
        "write-heavy",
        "miss-storm",
        "range-insert",
    ] {
        w.push(Workload {
            name: format!("syncmap {preset}"),
            go: false,
            argv: [
                bin.join("syncmap-load").display().to_string(),
                "--preset".into(),
                preset.into(),
                "--duration".into(),
                s.clone(),
            ]
            .into(),
        });
    }
    // The Go port under the same presets: goroutine waits are timed by uprobes.
    let go_bin = root()
        .join("target/go/syncmap-load-go")
        .display()
        .to_string();
    for preset in ["write-heavy", "miss-storm"] {
        w.push(Workload {
            name: format!("Go syncmap {preset}"),
            go: true,
            argv: [
                go_bin.clone(),
                "--preset".into(),
                preset.into(),
                "--duration".into(),
                s.clone(),
            ]
            .into(),
        });
    }
    w
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

/// Records a program whose lock is reached through `unique` distinct call paths, and returns
/// (distinct stacks in the profile, symbolization time).
fn symbolization(bin: &Path, lockscope: &Path, tmp: &Path, unique: u64) -> Result<(usize, f64)> {
    let mut w = Command::new(bin.join("lockdemo"))
        .args(["stacks", "--unique", &unique.to_string(), "--threads", "8"])
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let profile = tmp.join("bench-stacks.json");
    let status = Command::new(lockscope)
        .args([
            "record",
            "--quiet",
            "--pid",
            &w.id().to_string(),
            "--duration",
            "8s",
            "-o",
        ])
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

pub fn run(rounds: usize, secs: f64) -> Result<()> {
    crate::setup::run()?;
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask bench`");
    }
    ensure_bpftrace()?;
    step("building lockscope and the workloads (release)");
    cmd(
        "cargo",
        &["build", "--release", "-p", "tracer-user", "-p", "workloads"],
    )?;
    crate::go::build()?;
    let bin = root().join("target/release");
    let lockscope = bin.join("lockscope");
    let tmp: PathBuf = std::env::temp_dir();
    let loads = workloads(&bin, secs);

    let mut table = String::new();
    let labels: Vec<&str> = TRACERS[1..].iter().map(|t| t.label()).collect();
    writeln!(
        table,
        "| workload | untraced ops/s | {} |",
        labels.join(" | ")
    )?;
    writeln!(table, "|---|---:|{}", "---:|".repeat(labels.len()))?;
    let mut costs = String::new();
    writeln!(costs, "| workload | unwind | futex calls/s seen | waits/s (snapshots) | lockscope CPU (% of a core) | peak RSS | attach | lost events | snapshots dropped |")?;
    writeln!(costs, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for w in &loads {
        step(&format!(
            "{}: {rounds} rounds x {} tracers, {secs} s each",
            w.name,
            TRACERS.len()
        ));
        let mut tput: Vec<Vec<f64>> = vec![Vec::new(); TRACERS.len()];
        let mut ls_runs = Vec::new();
        let mut dwarf_runs = Vec::new();
        for round in 0..rounds {
            for i in 0..TRACERS.len() {
                let t = (i + round) % TRACERS.len();
                if TRACERS[t].go_only() && !w.go {
                    continue;
                }
                let s = run_once(w, TRACERS[t], &lockscope, &tmp)?;
                eprintln!(
                    "    round {round} {:<24} {:>12.0} ops/s",
                    TRACERS[t].label(),
                    s.throughput
                );
                tput[t].push(s.throughput);
                match TRACERS[t] {
                    Tracer::Lockscope => ls_runs.extend(s.lockscope),
                    Tracer::LockscopeDwarf => dwarf_runs.extend(s.lockscope),
                    _ => {}
                }
            }
        }
        let (med, spread) = medians_and_spread(&mut tput);
        let ratios: Vec<String> = tput[1..]
            .iter()
            .zip(&med[1..])
            .map(|(runs, m)| {
                if runs.is_empty() {
                    "–".to_string()
                } else {
                    format!("{:.2}", m / med[0])
                }
            })
            .collect();
        writeln!(
            table,
            "| {} | {:.0} ±{spread:.0}% | {} |",
            w.name,
            med[0],
            ratios.join(" | ")
        )?;
        for (mode, runs) in [("fp", &ls_runs), ("dwarf", &dwarf_runs)] {
            let m =
                |f: fn(&LockscopeRun) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
            // Futex calls happen only in the workload's run, not its delay or linger.
            let events = m(|r| r.events as f64) / secs;
            let waits = m(|r| r.waits as f64) / secs;
            let cpu = m(|r| 100.0 * r.cpu_s / r.wall_s.max(1e-9));
            let rss = m(|r| r.max_rss_kib as f64 / 1024.0);
            let attach = m(|r| r.attach_ms);
            let lost: u64 = runs.iter().map(|r| r.lost).sum();
            let dropped: u64 = runs.iter().map(|r| r.snapshots_dropped).sum();
            let snaps: u64 = runs.iter().map(|r| r.waits).sum();
            writeln!(
                costs,
                "| {} | {mode} | {events:.0} | {waits:.0} | {cpu:.1}% | {rss:.1} MiB | {attach:.0} ms | {lost} | {} |",
                w.name,
                if mode == "fp" {
                    "–".to_string()
                } else {
                    format!("{dropped} of {snaps}")
                }
            )?;
        }
    }

    step("agreement: lockscope and bpftrace count-only attached at once, same run (futex storm)");
    let agree = agreement(&loads[0], &lockscope, &tmp)?;

    step("symbolization time, 1k and 10k distinct stacks");
    let mut sym = String::new();
    writeln!(
        sym,
        "| distinct call paths | stacks in the profile | symbolization time |"
    )?;
    writeln!(sym, "|---:|---:|---:|")?;
    for unique in [1_000, 10_000] {
        let (stacks, ms) = symbolization(&bin, &lockscope, &tmp, unique)?;
        writeln!(sym, "| {unique} | {stacks} | {ms:.0} ms |")?;
    }

    let doc = format!(
        "## Tracer overhead\n\n\
         Command: `cargo xtask bench` ({rounds} rounds of {secs} s per workload and tracer, \
         tracers interleaved and rotated; medians). Retained throughput is traced / untraced \
         (1.00 = no cost); ± is the untraced runs' own spread (half their range, % of the median), \
         so ratios within it of 1.00 are noise. The workload waits {START_DELAY_S} s before its run so the tracer \
         attaches first: the measured interval is exactly the traced one.\n\nMachine: {}\n\n\
         {table}\n### lockscope's own cost\n\n{costs}\n### Symbolization\n\n{sym}\n\
         ### Agreement\n\n{agree}\n",
        crate::bench_map::machine()
    );
    crate::bench_map::write_section("## Tracer overhead", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    // Storm throughput alone hides what each event costs (a slower futex can raise a storm's
    // throughput): the per-event costs, the host-wide tax and Go's own benchmarks follow.
    crate::bench_events::run(rounds.max(5))
}

/// Runs lockscope and the count-only bpftrace on the same workload run and compares the
/// futex calls each counted.
fn agreement(w: &Workload, lockscope: &Path, tmp: &Path) -> Result<String> {
    let workload = spawn_workload(w)?;
    let pid = workload.id();
    let profile = tmp.join("bench-agree.json");
    let t = Instant::now();
    let ls = start_tracer(Tracer::Lockscope, pid, lockscope, &profile)?;
    let bt = start_tracer(Tracer::BpftraceCount, pid, lockscope, &profile)?;
    workload.wait_with_output()?;
    let (_, _, text) = stop(bt, t, true)?;
    stop(ls, t, false)?;
    let theirs: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("@calls: "))
        .and_then(|v| v.trim().parse().ok())
        .context("bpftrace printed no count")?;
    let p: Value = serde_json::from_slice(&std::fs::read(&profile)?)?;
    let ours = p["counters"]["calls"].as_u64().unwrap_or(0);
    let diff = 100.0 * ours.abs_diff(theirs) as f64 / theirs.max(1) as f64;
    Ok(format!(
        "Futex calls counted over one futex-storm run by both at once: lockscope {ours}, \
         bpftrace {theirs} ({diff:.3}% apart).\n"
    ))
}
