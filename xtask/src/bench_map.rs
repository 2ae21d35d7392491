//! `cargo xtask bench-map`: the bundled map's throughput per preset beside RwLock<HashMap>,
//! Mutex<HashMap> and dashmap, measured side by side in one run. A benchmark, not a test: it
//! asserts nothing and prints ratios.
use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run::{cmd, root, step};

const PRESETS: [&str; 5] = [
    "read-mostly",
    "update-existing",
    "write-heavy",
    "miss-storm",
    "range-insert",
];
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
        let med: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
        let base = med[0];
        let ratio = |x: f64| format!("{:.2}x", x / base);
        let row = format!(
            "| {preset} | {:.0} | {} | {} | {} |",
            base,
            ratio(med[1]),
            ratio(med[2]),
            ratio(med[3])
        );
        eprintln!("    {row}");
        writeln!(table, "{row}")?;
    }
    let machine = machine();
    let doc = format!(
        "## Bundled map throughput\n\n\
         Command: `cargo xtask bench-map` ({rounds} rounds of {secs} s per map and preset, \
         median; 4 threads; maps interleaved). Other maps are shown as a ratio of syncmap's \
         operations per second (higher is faster).\n\nMachine: {machine}\n\n{table}\n"
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
