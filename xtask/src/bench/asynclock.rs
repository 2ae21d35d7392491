//! `cargo xtask bench-tokio` (also run at the end of `cargo xtask bench`): what tracing costs
//! a tokio program whose 64 tasks live on one `tokio::sync::Mutex` (`workloads/src/tokiolock.rs`,
//! 4 workers): its acquires per second untraced, under lockscope following every async wait,
//! and under `--probe-windows 10` and `5`, interleaved and rotated per round; medians. Beside each, the
//! tasks' wait lockscope reported against the wait the program timed itself.
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{machine, median, write_section};
use crate::run::{cmd, root, step};

/// The configurations compared: a label and lockscope's flags (`None`: untraced).
const CONFIGS: [(&str, Option<&[&str]>); 4] = [
    ("untraced", None),
    ("lockscope", Some(&[])),
    (
        "lockscope --probe-windows 10",
        Some(&["--probe-windows", "10"]),
    ),
    (
        "lockscope --probe-windows 5",
        Some(&["--probe-windows", "5"]),
    ),
];
/// Issue 25's goal: traced at most this many times slower.
const GOAL: f64 = 1.5;
/// Seconds per run.
const SECS: &str = "3";

/// One run: (acquires, the program's own wait ns, lockscope's `tokio acquire` ns).
fn run_once(lockscope: &Path, bin: &Path, flags: Option<&[&str]>) -> Result<(f64, f64, f64)> {
    let profile = std::env::temp_dir().join("bench-tokio.json");
    let out = match flags {
        None => Command::new(bin).arg(SECS).output()?,
        Some(f) => {
            let _ = std::fs::remove_file(&profile);
            Command::new(lockscope)
                .args(["record", "--quiet", "-o"])
                .arg(&profile)
                .args(f)
                .arg("--")
                .arg(bin)
                .arg(SECS)
                .stderr(Stdio::null())
                .output()?
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("{\"acquires\""))
        .with_context(|| format!("no tokiolock line in: {text}"))?;
    let own: Value = serde_json::from_str(line)?;
    let num = |k: &str| own[k].as_f64().unwrap_or(0.0);
    let traced = match flags {
        None => 0.0,
        Some(_) => {
            let p: Value = serde_json::from_slice(&std::fs::read(&profile)?)?;
            p["waits"]
                .as_array()
                .context("no waits in the profile")?
                .iter()
                .filter(|r| r["op"] == "tokio acquire")
                .filter_map(|r| r["total_ns"].as_f64())
                .sum()
        }
    };
    Ok((num("acquires"), num("wait_ns"), traced))
}

pub fn run(rounds: usize) -> Result<()> {
    crate::setup::run()?;
    step("building lockscope and tokiolock (release)");
    cmd(
        "cargo",
        &["build", "--release", "-p", "tracer-user", "-p", "workloads"],
    )?;
    let bin = root().join("target/release");
    let (lockscope, tokiolock) = (bin.join("lockscope"), bin.join("tokiolock"));
    step(&format!(
        "tokiolock ({SECS} s): {rounds} rounds x {} configurations",
        CONFIGS.len()
    ));
    let mut acquires: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    let mut agree: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..rounds {
        for i in 0..CONFIGS.len() {
            let c = (i + round) % CONFIGS.len();
            let (label, flags) = CONFIGS[c];
            let (n, own, traced) = run_once(&lockscope, &tokiolock, flags)?;
            eprintln!("    round {round} {label:<30} {n:>9.0} acquires");
            acquires[c].push(n);
            if flags.is_some() && own > 0.0 {
                agree[c].push(traced / own);
            }
        }
    }
    let med: Vec<f64> = acquires.iter_mut().map(|v| median(v)).collect();
    let mut table = String::new();
    writeln!(
        table,
        "| configuration | acquires/s (median) | slower than untraced | goal ≤ {GOAL}× | task wait lockscope reported ÷ the program's own |"
    )?;
    writeln!(table, "|---|---:|---:|---|---:|")?;
    let secs: f64 = SECS.parse()?;
    for (i, (label, flags)) in CONFIGS.iter().enumerate() {
        let per_s = med[i] / secs;
        if flags.is_none() {
            writeln!(table, "| {label} | {per_s:.0} | – | – | – |")?;
            continue;
        }
        let slower = med[0] / med[i].max(f64::MIN_POSITIVE);
        let verdict = if slower <= GOAL { "PASS" } else { "FAIL" };
        let agreement = median(&mut agree[i]);
        writeln!(
            table,
            "| {label} | {per_s:.0} | {slower:.2}× | {verdict} | {agreement:.3} |"
        )?;
    }
    let doc = format!(
        "## tokio's async locks\n\n\
         Command: `cargo xtask bench-tokio` (also the end of `cargo xtask bench`): `tokiolock {SECS}` \
         (64 tasks, 4 workers, one `tokio::sync::Mutex`), {rounds} rounds per configuration, \
         interleaved and rotated; medians. lockscope records from exec. Every acquire in this \
         program waits, and each costs four uprobe traps (two polls, the drop and the release) \
         while the probes are attached: `--probe-windows P` attaches them for 100 ms windows \
         making up P% of the time and weights the rows back up (the header says how, and what \
         it misses).\n\n\
         Machine: {}\n\n{table}",
        machine()
    );
    write_section("## tokio's async locks", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    Ok(())
}
