//! The README's main job: build, start a bundled-map workload, record it, print the report.
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::run::{cmd, is_root, root, step};

/// Seconds the workload keeps running past the recording, so it is alive throughout.
const WORKLOAD_SLACK_SECS: f64 = 3.0;

pub fn run(preset: &str, duration: &str, lockdemo: bool, go: bool) -> Result<()> {
    crate::setup::run()?;
    step("building lockscope and the workloads (release)");
    cmd(
        "cargo",
        &["build", "--release", "-p", "tracer-user", "-p", "workloads"],
    )?;
    if go {
        return run_go(preset, duration);
    }
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask demo`");
    }
    let bin = root().join("target/release");
    let secs: f64 = duration
        .trim_end_matches('s')
        .parse()
        .context("--duration: seconds, e.g. 5s")?;

    let mut workload = if lockdemo {
        step("starting lockdemo: 8 threads taking one std::sync::Mutex");
        Command::new(bin.join("lockdemo"))
            .args(["contended", "--threads", "8"])
            .stdout(Stdio::null())
            .spawn()
            .context("starting lockdemo")?
    } else {
        step(&format!(
            "starting syncmap-load --preset {preset}: the bundled map under a workload built to provoke one phase"
        ));
        let run_for = format!("{}", secs + WORKLOAD_SLACK_SECS);
        Command::new(bin.join("syncmap-load"))
            .args(["--preset", preset, "--duration", &run_for])
            .stdout(Stdio::null())
            .spawn()
            .context("starting syncmap-load")?
    };
    // Let it fill its map and get going before attaching.
    std::thread::sleep(Duration::from_millis(700));
    let pid = workload.id().to_string();
    let profile = root().join("target/demo-profile.json");

    step(&format!("recording pid {pid} for {duration}"));
    eprintln!(
        "    $ lockscope record --pid {pid} --duration {duration} --top 3 -o {}",
        profile.display()
    );
    let status = Command::new(bin.join("lockscope"))
        .args([
            "record",
            "--pid",
            &pid,
            "--duration",
            duration,
            "--top",
            "3",
            "-o",
        ])
        .arg(&profile)
        .status();
    let _ = workload.kill();
    let _ = workload.wait();
    let status = status.context("running lockscope")?;
    if !status.success() {
        bail!("lockscope record failed ({status})");
    }
    step("the same profile as a flamegraph and by lock");
    let svg = root().join("target/demo-flamegraph.svg");
    cmd(
        bin.join("lockscope").to_str().context("path")?,
        &[
            "report",
            profile.to_str().context("path")?,
            "-o",
            svg.to_str().context("path")?,
        ],
    )?;
    cmd(
        bin.join("lockscope").to_str().context("path")?,
        &[
            "report",
            profile.to_str().context("path")?,
            "--by",
            "lock",
            "--top",
            "2",
        ],
    )?;
    step("done");
    eprintln!(
        "    print it again any time, in any view or format: target/release/lockscope report {} [--by function|lock|thread|category] [--format csv|json|folded|svg|pprof]",
        profile.display()
    );
    eprintln!("    flamegraph: {}", svg.display());
    eprintln!("    live view: target/release/lockscope top --pid PID");
    eprintln!("    other presets: cargo xtask demo --preset read-mostly|update-existing|write-heavy|miss-storm|range-insert");
    Ok(())
}

/// The Go port of the bundled map, launched under lockscope (`record -- CMD`): goroutine waits
/// timed by uprobes, phases by return-instruction probes, counters read from the Go process.
fn run_go(preset: &str, duration: &str) -> Result<()> {
    let go_bin = crate::go::build()?;
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask demo --go`");
    }
    let secs = duration.trim_end_matches('s');
    let lockscope = root().join("target/release/lockscope");
    let profile = root().join("target/demo-go-profile.json");
    step(&format!(
        "launching syncmap-load-go --preset {preset} under lockscope for {duration}"
    ));
    cmd(
        lockscope.to_str().context("path")?,
        &[
            "record",
            "--top",
            "3",
            "-o",
            profile.to_str().context("path")?,
            "--",
            go_bin.to_str().context("path")?,
            "--preset",
            preset,
            "--duration",
            secs,
            "--linger",
            "1",
        ],
    )?;
    step("done");
    eprintln!(
        "    print it again: target/release/lockscope report {} --by category",
        profile.display()
    );
    Ok(())
}
