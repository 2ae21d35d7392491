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
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::tracers::{ensure_bpftrace, start_tracer, stop, Tracer, TRACERS};
use super::{
    machine, median, medians_and_spread, run_once, spawn_workload, write_section, LockscopeRun,
    Workload, START_DELAY_S,
};
use crate::run::{cmd, is_root, root, step};

/// Work outside the lock that makes `lockdemo` moderately contended (~10k wait calls/s here).
const MODERATE_OUTSIDE: &str = "110";

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
        machine()
    );
    write_section("## Tracer overhead", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    Ok(())
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
