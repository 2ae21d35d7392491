//! `cargo xtask bench-unwind`: what each unwinder costs the traced program, on C programs
//! built the two ways distributions build them and on the Rust futex storm: `--unwind fp`,
//! the default (`auto`: `fp+cfi` for the frame-pointer C build, whose glibc has none; `dwarf`
//! for the build without; `fp` for Rust) and `--unwind dwarf`, side by side in one run.
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};

use super::tracers::Tracer;
use super::{
    build_c, machine, median, medians_and_spread, ratio_cell, run_once, write_section,
    LockscopeRun, Workload,
};
use crate::run::{cmd, is_root, root, step};

const TRACERS: [Tracer; 4] = [
    Tracer::None,
    Tracer::Lockscope,
    Tracer::LockscopeAuto,
    Tracer::LockscopeDwarf,
];

fn c_storm(name: &str, bin: &Path, secs: f64) -> Workload {
    Workload {
        name: name.into(),
        argv: vec![bin.display().to_string(), "8".into(), secs.to_string()],
    }
}

pub fn run(rounds: usize, secs: f64) -> Result<()> {
    crate::setup::run()?;
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask bench-unwind`");
    }
    step("building lockscope and the workloads (release), and the C storm two ways");
    cmd(
        "cargo",
        &["build", "--release", "-p", "tracer-user", "-p", "workloads"],
    )?;
    let fp = build_c(
        "pthread_contend.c",
        "pthread_fp",
        &["-O2", "-fno-omit-frame-pointer"],
    )?;
    let nofp = build_c(
        "pthread_contend.c",
        "pthread_nofp",
        &["-O2", "-fomit-frame-pointer"],
    )?;
    let bin = root().join("target/release");
    let lockscope = bin.join("lockscope");
    let tmp = std::env::temp_dir();
    let loads = [
        c_storm(
            "C pthread storm, -fno-omit-frame-pointer (glibc without)",
            &fp,
            secs,
        ),
        c_storm("C pthread storm, -fomit-frame-pointer", &nofp, secs),
        Workload {
            name: "Rust futex storm (8 threads, one std Mutex)".into(),
            argv: [bin.join("lockdemo").display().to_string()]
                .into_iter()
                .chain(["contended", "--threads", "8", "--seconds"].map(String::from))
                .chain([secs.to_string()])
                .collect(),
        },
    ];
    let mut table = String::new();
    let labels: Vec<&str> = TRACERS[1..].iter().map(|t| t.label()).collect();
    writeln!(
        table,
        "| workload | untraced ops/s | {} | auto chose |",
        labels.join(" | ")
    )?;
    writeln!(table, "|---|---:|{}---|", "---:|".repeat(labels.len()))?;
    let mut costs = String::new();
    writeln!(
        costs,
        "| workload | tracer | waits/s | lockscope CPU (% of a core) | snapshots dropped |"
    )?;
    writeln!(costs, "|---|---|---:|---:|---:|")?;
    for w in &loads {
        step(&format!(
            "{}: {rounds} rounds x {} tracers, {secs} s each",
            w.name,
            TRACERS.len()
        ));
        let mut tput: Vec<Vec<f64>> = vec![Vec::new(); TRACERS.len()];
        let mut runs: Vec<Vec<LockscopeRun>> = vec![Vec::new(); TRACERS.len()];
        for round in 0..rounds {
            for i in 0..TRACERS.len() {
                let t = (i + round) % TRACERS.len();
                let s = run_once(w, TRACERS[t], &lockscope, &tmp)?;
                eprintln!(
                    "    round {round} {:<20} {:>12.0} ops/s",
                    TRACERS[t].label(),
                    s.throughput
                );
                tput[t].push(s.throughput);
                runs[t].extend(s.lockscope);
            }
        }
        let (med, spread) = medians_and_spread(&mut tput);
        let ratios: Vec<String> = med[1..]
            .iter()
            .map(|m| ratio_cell(m / med[0], spread))
            .collect();
        let chose = runs[2]
            .first()
            .map_or("?", |r| r.unwind.as_str())
            .to_string();
        writeln!(
            table,
            "| {} | {:.0} ±{spread:.0}% | {} | {chose} |",
            w.name,
            med[0],
            ratios.join(" | ")
        )?;
        for (t, r) in TRACERS.iter().zip(&runs).skip(1) {
            let m = |f: fn(&LockscopeRun) -> f64| median(&mut r.iter().map(f).collect::<Vec<_>>());
            let dropped: u64 = r.iter().map(|x| x.snapshots_dropped).sum();
            let waits: u64 = r.iter().map(|x| x.waits).sum();
            writeln!(
                costs,
                "| {} | {} | {:.0} | {:.1}% | {dropped} of {waits} |",
                w.name,
                t.label(),
                m(|x| x.waits as f64) / secs,
                m(|x| 100.0 * x.cpu_s / x.wall_s.max(1e-9)),
            )?;
        }
    }
    let doc = format!(
        "## Unwinding cost\n\n\
         Command: `cargo xtask bench-unwind` ({rounds} rounds of {secs} s per workload and \
         tracer, interleaved and rotated; medians). Retained throughput, traced / untraced; ± is \
         the untraced runs' own spread. `lockscope (auto)` is the default, whose choice is in the \
         last column. A futex storm's throughput can rise when each wait costs more (fewer lock \
         handoffs), so read the ratios with lockscope's own cost below.\n\nMachine: {}\n\n\
         {table}\n### lockscope's own cost per unwinder\n\n{costs}",
        machine()
    );
    write_section("## Unwinding cost", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    Ok(())
}
