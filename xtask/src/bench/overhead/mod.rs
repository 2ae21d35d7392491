//! `cargo xtask bench`: what tracing costs the traced program and the rest of the host, lockscope
//! on the scheduler hooks and on the syscall tracepoints beside three bpftrace scripts, side by
//! side in one run, with issue 26's goals printed next to the results. A benchmark, not a test:
//! it asserts nothing, prints ratios and PASS/FAIL as measured, and writes BENCHMARKS.md.
//!
//! Rows: our own storms (the workload starts with a start delay, the tracer attaches inside it —
//! the run is void if it has not attached when the delay ends — the workload does a fixed-length
//! run, prints its throughput, lingers, exits: the measured interval is exactly the traced one)
//! and real programs (`programs`: db_bench, stress-ng, MariaDB with sysbench), each by its own
//! throughput figure. Tracers alternate within each round, in an order rotated per round, so
//! machine noise hits all of them alike; medians are reported.
//!
//! Then the host tax (a getppid() loop in an untraced process while each tracer records an idle
//! one), the BPF CPU each tracer's programs take on two storms (`budget`), the counts lockscope
//! and bpftrace agree on, and symbolization time.
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::tracers::{ensure_bpftrace, Tracer};
use super::{
    agreement, build_c, machine, median, medians_and_spread, ratio_cell, symbolization, tax,
    write_section, LockscopeRun, START_DELAY_S,
};
use crate::run::{cmd, is_root, root, step};
use rows::{measure, rows, Goal, Row, GOAL_ROUNDS, GOAL_TRACERS, TRACERS};

mod budget;
mod rows;

/// The host-tax table's tracers.
const TAX: [Tracer; 5] = [
    Tracer::None,
    Tracer::Lockscope,
    Tracer::LockscopeSyscalls,
    Tracer::BpftraceCount,
    Tracer::BpftraceOffCpu,
];
/// Issue 26's goals.
const RETAINED_GOAL: f64 = 0.95;
const TPS_GOAL: f64 = 0.97;
const TAX_GOAL: f64 = 1.05;

/// Which side of its goal a measure must lie on.
#[derive(Clone, Copy)]
enum Bound {
    AtLeast,
    AtMost,
}

/// A measured cell against its goal.
fn verdict(value: f64, goal: f64, bound: Bound) -> &'static str {
    let ok = match bound {
        Bound::AtLeast => value >= goal,
        Bound::AtMost => value <= goal,
    };
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

pub fn run(rounds: usize, secs: f64) -> Result<()> {
    let began = Instant::now();
    crate::setup::run()?;
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask bench`");
    }
    ensure_bpftrace()?;
    step("building lockscope, the workloads (release) and the C loops");
    cmd(
        "cargo",
        &["build", "--release", "-p", "tracer-user", "-p", "workloads"],
    )?;
    crate::go::build()?;
    let pthread = build_c(
        "pthread_contend.c",
        "pthread_fp",
        &["-O2", "-fno-omit-frame-pointer"],
    )?;
    let futex_loop = build_c("futex_loop.c", "futex_loop", &["-O2"])?;
    let bin = root().join("target/release");
    let lockscope = bin.join("lockscope");
    let tmp: PathBuf = std::env::temp_dir();

    let mut table = String::new();
    let labels: Vec<&str> = TRACERS[1..].iter().map(|t| t.label()).collect();
    writeln!(table, "| workload | untraced | {} |", labels.join(" | "))?;
    writeln!(table, "|---|---:|{}", "---:|".repeat(labels.len()))?;
    let mut costs = String::new();
    writeln!(costs, "| workload | lockscope | futex calls/s seen | waits begun/s | waits/s recorded | lockscope CPU (% of a core) | peak RSS | attach | lost events | snapshots dropped |")?;
    writeln!(costs, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let mut goals = String::new();
    writeln!(
        goals,
        "| goal | lockscope (sched, fp) | lockscope (sched, dwarf) |"
    )?;
    writeln!(goals, "|---|---:|---:|")?;
    let off_cpu = TRACERS.iter().position(|t| *t == Tracer::BpftraceOffCpu);
    for row in rows(&bin, &pthread, secs) {
        let name = row.name();
        let extra = match row.goal() {
            Goal::None => String::new(),
            _ => format!(" + {GOAL_ROUNDS} x {}", GOAL_TRACERS.len()),
        };
        step(&format!(
            "{name}: {rounds} rounds x {} tracers{extra}",
            TRACERS.len()
        ));
        let row_began = Instant::now();
        let (samples, active_s) = measure(&row, rounds, secs, &lockscope, &tmp)?;
        eprintln!("    ({:.0} s)", row_began.elapsed().as_secs_f64());
        let unit = row.unit();
        let mut tput: Vec<Vec<f64>> = samples
            .iter()
            .map(|v| v.iter().map(|s| s.throughput).collect())
            .collect();
        let (med, spread) = medians_and_spread(&mut tput);
        let ratio =
            |t: usize| (!tput[t].is_empty()).then(|| med[t] / med[0].max(f64::MIN_POSITIVE));
        let cells: Vec<String> = (1..TRACERS.len())
            .map(|t| ratio(t).map_or("–".to_string(), |r| ratio_cell(r, spread)))
            .collect();
        writeln!(
            table,
            "| {name} | {:.0} {unit} ±{spread:.0}% | {} |",
            med[0],
            cells.join(" | ")
        )?;
        for (t, runs) in TRACERS
            .iter()
            .zip(&samples)
            .filter(|(t, _)| t.is_lockscope())
        {
            let runs: Vec<&LockscopeRun> =
                runs.iter().filter_map(|s| s.lockscope.as_ref()).collect();
            if runs.is_empty() {
                continue;
            }
            let m = |f: &dyn Fn(&LockscopeRun) -> f64| {
                median(&mut runs.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let calls = m(&|r| r.events as f64) / active_s;
            let begun = m(&|r| r.wait_calls as f64) / active_s;
            let waits = m(&|r| r.waits as f64) / active_s;
            // Not known for a launched command (NaN): its usage includes the command's.
            let cpu = m(&|r| 100.0 * r.cpu_s / r.wall_s.max(1e-9));
            let cpu = if cpu.is_nan() {
                "–".to_string()
            } else {
                format!("{cpu:.1}%")
            };
            let rss = m(&|r| r.max_rss_kib as f64 / 1024.0);
            let attach = m(&|r| r.attach_ms);
            let lost: u64 = runs.iter().map(|r| r.lost).sum();
            let dropped: u64 = runs.iter().map(|r| r.snapshots_dropped).sum();
            let snaps: u64 = runs.iter().map(|r| r.waits).sum();
            let snapshots = if *t == Tracer::LockscopeDwarf {
                format!("{dropped} of {snaps}")
            } else {
                "–".into()
            };
            writeln!(
                costs,
                "| {name} | {} | {calls:.0} | {begun:.0} | {waits:.0} | {cpu} | {rss:.1} MiB | {attach:.0} ms | {lost} | {snapshots} |",
                t.label()
            )?;
        }
        let goal = row.goal();
        if goal == Goal::None {
            continue;
        }
        let cell = |t: Tracer, floor: f64| -> String {
            let i = TRACERS.iter().position(|x| *x == t).unwrap_or(0);
            ratio(i).map_or("not measured".into(), |r| {
                format!("{r:.2} {}", verdict(r, floor, Bound::AtLeast))
            })
        };
        let floor = if goal == Goal::Tps {
            TPS_GOAL
        } else {
            RETAINED_GOAL
        };
        writeln!(
            goals,
            "| {name}: retained ≥ {floor:.2} (untraced ±{spread:.0}%) | {} | {} |",
            cell(Tracer::Lockscope, floor),
            cell(Tracer::LockscopeDwarf, floor)
        )?;
        if goal == Goal::Retained {
            if let Some(peer) = off_cpu.and_then(ratio) {
                writeln!(
                    goals,
                    "| {name}: retained ≥ the sched_switch-only script's {peer:.2} | {} | {} |",
                    cell(Tracer::Lockscope, peer),
                    cell(Tracer::LockscopeDwarf, peer)
                )?;
            }
        }
    }

    let tax_rounds = rounds.max(3);
    step(&format!(
        "host tax: getppid() in an untraced process while each tracer records an idle one, {tax_rounds} rounds"
    ));
    let fastest = tax::fastest(&TAX, tax_rounds, &futex_loop, &lockscope, &tmp)?;
    let mut tax = String::new();
    writeln!(
        tax,
        "| tracer recording an idle process | ns per getppid() elsewhere | × none |"
    )?;
    writeln!(tax, "|---|---:|---:|")?;
    for (t, ns) in TAX.iter().zip(&fastest) {
        let x = ns / fastest[0];
        writeln!(tax, "| {} | {ns:.0} | {x:.2}× |", t.label())?;
        if *t == Tracer::Lockscope {
            writeln!(
                goals,
                "| host tax ≤ {TAX_GOAL:.2}× none | {x:.2}× {} | (same hooks) |",
                verdict(x, TAX_GOAL, Bound::AtMost)
            )?;
        }
    }

    step(
        "BPF CPU per second on stress-ng and the pthread storm (bpf_stats, each tracer's programs)",
    );
    let budget = budget::measure(&pthread, &lockscope, &tmp)?;

    step("agreement: lockscope and bpftrace attached at once to the same futex-storm run");
    let storm = rows(&bin, &pthread, secs)
        .into_iter()
        .find_map(|r| match r {
            Row::Own(w, _) => Some(w),
            _ => None,
        })
        .context("no storm row")?;
    let mut agree = String::new();
    for (ours, theirs, what) in [
        (
            Tracer::Lockscope,
            Tracer::BpftraceSleeps,
            "futex waits that slept (lockscope sched `wait_calls`, bpftrace `@sleeps`)",
        ),
        (
            Tracer::LockscopeSyscalls,
            Tracer::BpftraceCount,
            "futex calls (lockscope --hooks syscalls `calls`, bpftrace count-only `@calls`)",
        ),
    ] {
        let (a, b) = agreement(&storm, ours, theirs, &lockscope, &tmp)?;
        let diff = 100.0 * a.abs_diff(b) as f64 / b.max(1) as f64;
        writeln!(
            agree,
            "- {what}: lockscope {a}, bpftrace {b} ({diff:.3}% apart)."
        )?;
    }

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

    let minutes = began.elapsed().as_secs_f64() / 60.0;
    let doc = format!(
        "## Tracer overhead\n\n\
         Command: `cargo xtask bench` ({rounds} rounds of {secs} s per workload and tracer, \
         tracers interleaved and rotated; medians; {minutes:.0} min in all; the rows with a goal \
         then run {GOAL_ROUNDS} more rounds of untraced, lockscope on the scheduler hooks and the \
         sched_switch script, and their medians are of all their runs). Retained throughput is \
         traced / untraced (1.00 = no cost); ± is the untraced runs' own spread (half their range, \
         % of the median), so ratios within it of 1.00 are noise. Our own workloads wait \
         {START_DELAY_S} s before their run so the tracer attaches first; db_bench runs readrandom \
         twice (the tracer attaches during the first, the second is measured); MariaDB runs \
         sysbench after the tracer attached to the server; stress-ng's workers are forked below \
         the command, so lockscope launches it (`record --follow-forks`) \
         and bpftrace follows the workers' name.\n\nMachine: {}\n\n{table}\n\
         ### Goals (issue 26), as measured in this run\n\n{goals}\n\
         ### Host tax\n\nA getppid() loop (`workloads/c/futex_loop.c getppid`) in an untraced \
         process while the tracer records an idle `sleep`; each tracer's fastest of \
         {tax_rounds} rounds.\n\n{tax}\n\
         ### BPF CPU per second\n\nThe kernel's `bpf_stats`, read from each tracer's own program \
         descriptors over 3 s in the middle of a 7 s run (medians of 3 rounds). Both programs keep \
         every core busy, so the BPF share of the cores bounds what a tracer can leave them: a \
         retained 0.95 leaves 5% for everything the tracer adds, the hooks' own dispatch \
         included. `bpf_stats` adds two clock reads to each run, counted here.\n\n{budget}\n\
         ### lockscope's own cost\n\n{costs}\n\
         ### Agreement\n\nOne futex-storm run each, both tracers attached at once:\n\n{agree}\n\
         ### Symbolization\n\n{sym}",
        machine()
    );
    write_section("## Tracer overhead", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    Ok(())
}
