//! tax: the host-wide tax of a tracer's hooks — a getppid() loop in an untraced process
//! (`workloads/c/futex_loop.c getppid`) while the tracer traces an idle one.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::tracers::{start_tracer, stop, Tracer};

/// ns per getppid() of an untraced process (`futex_loop getppid`) while `tracer` traces an
/// idle one: the host-wide tax of the tracer's hooks.
fn host_tax(tracer: Tracer, futex_loop: &Path, lockscope: &Path, tmp: &Path) -> Result<f64> {
    let mut idle = Command::new("sleep").arg("60").spawn()?;
    let traced = match tracer {
        Tracer::None => None,
        t => Some((
            start_tracer(t, idle.id(), lockscope, &tmp.join("bench-idle.json"))?,
            Instant::now(),
        )),
    };
    let out = Command::new(futex_loop)
        .args(["getppid", "3000000"])
        .stderr(Stdio::null())
        .output()?;
    let _ = idle.kill();
    let _ = idle.wait();
    if let Some((running, started)) = traced {
        stop(running, started, tracer.stops_on_sigint())?;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).context("getppid loop JSON")?;
    v["ns_per_call"].as_f64().context("no ns_per_call")
}

/// Each tracer's fastest ns per getppid() over `rounds` rounds, interleaved and rotated (a fixed
/// loop only gets slower from noise), in the order of `tracers`.
pub(crate) fn fastest(
    tracers: &[Tracer],
    rounds: usize,
    futex_loop: &Path,
    lockscope: &Path,
    tmp: &Path,
) -> Result<Vec<f64>> {
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); tracers.len()];
    for round in 0..rounds {
        for i in 0..tracers.len() {
            let t = (i + round) % tracers.len();
            let ns = host_tax(tracers[t], futex_loop, lockscope, tmp)?;
            eprintln!("    round {round} {:<34} {ns:>6.0} ns", tracers[t].label());
            per[t].push(ns);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(per
        .iter()
        .map(|v| v.iter().copied().fold(f64::INFINITY, f64::min))
        .collect())
}
