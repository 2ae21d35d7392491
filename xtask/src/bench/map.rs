//! `cargo xtask bench-map`: the bundled map's throughput per preset beside RwLock<HashMap>,
//! Mutex<HashMap> and dashmap, measured side by side in one run. A benchmark, not a test: it
//! asserts nothing and prints ratios.
use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{machine, median, spread_pct, write_section};
use crate::run::{cmd, root, step};

const PRESETS: [&str; 5] = [
    "read-mostly",
    "update-existing",
    "write-heavy",
    "miss-storm",
    "range-insert",
];
/// Rounds that spread wider than this (± % of their median) make a rough figure.
const UNSTEADY_PCT: f64 = 15.0;
const MAPS: [&str; 4] = ["syncmap", "rwlock-hashmap", "mutex-hashmap", "dashmap"];

pub fn run(rounds: usize, secs: f64) -> Result<()> {
    step("building the workload (release)");
    cmd("cargo", &["build", "--release", "-p", "workloads"])?;
    let bin = root().join("target/release/syncmap-load");
    step(&format!(
        "{} presets x {} maps x {rounds} rounds of {secs} s, maps interleaved, order rotated each round",
        PRESETS.len(),
        MAPS.len()
    ));
    let mut table = String::new();
    writeln!(
        table,
        "| preset | syncmap ops/s | rwlock-hashmap | mutex-hashmap | dashmap |"
    )?;
    writeln!(table, "|---|---:|---:|---:|---:|")?;
    for preset in PRESETS {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); MAPS.len()];
        for round in 0..rounds {
            for i in 0..MAPS.len() {
                let m = (i + round) % MAPS.len();
                samples[m].push(ops_per_sec(&bin, preset, MAPS[m], secs)?);
            }
        }
        // A figure whose rounds spread over ±UNSTEADY_PCT is rough: it says so.
        let spread: Vec<f64> = samples.iter().map(|s| spread_pct(s)).collect();
        let steady = |i: usize| match spread[i] {
            s if s > UNSTEADY_PCT => format!(" (±{s:.0}%)"),
            _ => String::new(),
        };
        let med: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
        let base = med[0];
        let ratio = |i: usize| format!("{:.2}x{}", med[i] / base, steady(i));
        let row = format!(
            "| {preset} | {:.0}{} | {} | {} | {} |",
            base,
            steady(0),
            ratio(1),
            ratio(2),
            ratio(3)
        );
        eprintln!("    {row}");
        writeln!(table, "{row}")?;
    }
    let machine = machine();
    let doc = format!(
        "## Bundled map throughput\n\n\
         Command: `cargo xtask bench-map` ({rounds} rounds of {secs} s per map and preset, \
         median; 4 threads; maps interleaved). Other maps are shown as a ratio of syncmap's \
         operations per second (higher is faster). A figure whose rounds spread over \
         ±{UNSTEADY_PCT:.0}% shows that spread: it is a rough figure.\n\nMachine: {machine}\n\n{table}\n"
    );
    write_section("## Bundled map throughput", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    Ok(())
}

fn ops_per_sec(bin: &std::path::Path, preset: &str, map: &str, secs: f64) -> Result<f64> {
    let out = Command::new(bin)
        .args([
            "--preset",
            preset,
            "--map",
            map,
            "--duration",
            &secs.to_string(),
        ])
        .output()
        .context("running syncmap-load")?;
    if !out.status.success() {
        bail!("syncmap-load --preset {preset} --map {map} failed");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["ops_per_sec"]
        .as_f64()
        .context("no ops_per_sec in the output")
}
