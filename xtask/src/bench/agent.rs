//! `cargo xtask bench-agent`: what the continuous agent costs.
//!
//! - Memory: the agent's resident set once it has found 50 idle targets (`sleep` processes it
//!   discovers by `--comm`), beside its resident set with none.
//! - Overhead: the futex storm (`lockdemo contended`, 4 threads) untraced and while the agent
//!   traces it, interleaved and rotated per round; medians.
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::tracers::Tracer;
use super::{machine, median, ratio_cell, run_once, spread_pct, write_section, Workload};
use crate::run::{cmd, is_root, root, step};

const IDLE_TARGETS: usize = 50;
const PORT: u16 = 19_464;

/// A plain HTTP/1.1 GET on the agent's port: the body.
fn get(path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", PORT)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The `lockscope_targets` gauge from /metrics.
fn targets() -> Option<u64> {
    get("/metrics")?
        .lines()
        .find(|l| l.starts_with("lockscope_targets "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// The lock waits /metrics counts for processes named `comm`.
fn waits_seen(comm: &str) -> u64 {
    let want = format!("comm=\"{comm}\"");
    get("/metrics").map_or(0, |m| {
        m.lines()
            .filter(|l| l.starts_with("lockscope_lock_waits_total{") && l.contains(&want))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    })
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

struct Agent(Child);

impl Agent {
    fn start(lockscope: &Path, comm: &str) -> Result<Agent> {
        let child = Command::new(lockscope)
            .args(["agent", "--listen", &format!("127.0.0.1:{PORT}")])
            .args(["--comm", comm])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting lockscope agent")?;
        let t0 = Instant::now();
        while get("/healthz").is_none() {
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("the agent did not answer on port {PORT}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Agent(child))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

pub fn run(rounds: usize) -> Result<()> {
    crate::setup::run()?;
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask bench-agent`");
    }
    step("building lockscope and the workloads (release)");
    cmd(
        "cargo",
        &["build", "--release", "-p", "tracer-user", "-p", "workloads"],
    )?;
    let bin = root().join("target/release");
    let lockscope = bin.join("lockscope");

    step(&format!(
        "the agent's memory with 0 and {IDLE_TARGETS} idle targets"
    ));
    let agent = Agent::start(&lockscope, "sleep")?;
    std::thread::sleep(Duration::from_secs(2));
    let empty = rss_kib(agent.0.id())?;
    let mut sleeps: Vec<Child> = (0..IDLE_TARGETS)
        .map(|_| Command::new("sleep").arg("120").spawn())
        .collect::<std::io::Result<_>>()?;
    let t0 = Instant::now();
    let found = loop {
        let n = targets().unwrap_or(0);
        if n >= IDLE_TARGETS as u64 || t0.elapsed() > Duration::from_secs(60) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let discovered_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let full = rss_kib(agent.0.id())?;
    for s in &mut sleeps {
        let _ = s.kill();
        let _ = s.wait();
    }
    drop(agent);
    eprintln!("    {found} targets found in {discovered_s:.1} s; RSS {empty} KiB -> {full} KiB");
    // The agent's exit detaches everything; the kernel finishes that work (RCU grace periods)
    // after the process is gone, and a process started meanwhile can take seconds to run.
    std::thread::sleep(Duration::from_secs(3));

    step(&format!(
        "the futex storm untraced and under the agent: {rounds} rounds"
    ));
    let storm = Workload {
        name: "futex storm".into(),
        argv: vec![
            bin.join("lockdemo").display().to_string(),
            "contended".into(),
            "--threads".into(),
            "4".into(),
            "--seconds".into(),
            "2".into(),
        ],
    };
    let tmp = std::env::temp_dir();
    let (mut bare, mut traced, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for i in 0..2 {
            let under_agent = (i + round) % 2 == 1;
            let s = if under_agent {
                let agent = Agent::start(&lockscope, "lockdemo")?;
                // The agent drops a target's series once it exits: watch them while it runs.
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let watch = {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let mut most = 0;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            most = most.max(waits_seen("lockdemo"));
                            std::thread::sleep(Duration::from_millis(250));
                        }
                        most
                    })
                };
                let s = run_once(&storm, Tracer::None, &lockscope, &tmp)?;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                seen.push(watch.join().unwrap_or(0));
                drop(agent);
                std::thread::sleep(Duration::from_secs(3));
                s
            } else {
                run_once(&storm, Tracer::None, &lockscope, &tmp)?
            };
            eprintln!(
                "    round {round} {:<12} {:>12.0} locks/s",
                if under_agent { "agent" } else { "untraced" },
                s.throughput
            );
            if under_agent {
                traced.push(s.throughput);
            } else {
                bare.push(s.throughput);
            }
        }
    }
    let spread = spread_pct(&bare);
    let (b, t) = (median(&mut bare), median(&mut traced));

    let mut doc = String::new();
    writeln!(
        doc,
        "## The agent\n\nCommand: `cargo xtask bench-agent` ({rounds} rounds). Machine: {}\n",
        machine()
    )?;
    writeln!(doc, "| measure | value |\n|---|---:|")?;
    writeln!(doc, "| resident set, no target | {} MiB |", empty / 1024)?;
    writeln!(
        doc,
        "| resident set, {found} idle targets (`sleep`, found by `--comm` in {discovered_s:.1} s) | {} MiB |",
        full / 1024
    )?;
    writeln!(
        doc,
        "| futex storm untraced (median locks/s) | {b:.0} ±{spread:.0}% |"
    )?;
    writeln!(
        doc,
        "| futex storm under the agent (median locks/s) | {t:.0} |"
    )?;
    writeln!(doc, "| retained | {} |", ratio_cell(t / b.max(1.0), spread))?;
    writeln!(
        doc,
        "| lock waits the agent reported for the storm, per round | {} |",
        seen.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        doc,
        "\nThe agent discovers the storm by polling /proc (once a second) and attaches during \
         the workload's {} s start delay, so the measured run is fully traced. A futex storm's \
         throughput is a poor cost measure on its own (a slower futex can raise it); \
         `cargo xtask bench-events` has the per-event costs.",
        2
    )?;
    write_section("## The agent", &doc)?;
    eprintln!("\n{doc}\n    written to BENCHMARKS.md");
    Ok(())
}
