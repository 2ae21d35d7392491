//! The README's main job: build, start a contended workload, record it, print the table.
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::run::{cmd, is_root, root, step};

pub fn run(duration: &str) -> Result<()> {
    crate::setup::run()?;
    step("building lockscope and the demo workload (release)");
    cmd(
        "cargo",
        &["build", "--release", "-p", "tracer-user", "-p", "workloads"],
    )?;
    if !is_root() {
        bail!("tracing needs root: run `sudo -E cargo xtask demo`");
    }
    let bin = root().join("target/release");

    step("starting the workload: 8 threads taking one std::sync::Mutex (lockdemo contended)");
    let mut workload = Command::new(bin.join("lockdemo"))
        .args(["contended", "--threads", "8"])
        .stdout(Stdio::null())
        .spawn()
        .context("starting lockdemo")?;
    // Let its threads start before attaching.
    std::thread::sleep(Duration::from_millis(300));
    let pid = workload.id().to_string();
    let profile = root().join("target/demo-profile.json");

    step(&format!("recording pid {pid} for {duration}"));
    eprintln!(
        "    $ lockscope record --pid {pid} --duration {duration} -o {}",
        profile.display()
    );
    let status = Command::new(bin.join("lockscope"))
        .args(["record", "--pid", &pid, "--duration", duration, "-o"])
        .arg(&profile)
        .status();
    let _ = workload.kill();
    let _ = workload.wait();
    let status = status.context("running lockscope")?;
    if !status.success() {
        bail!("lockscope record failed ({status})");
    }
    step("done");
    eprintln!(
        "    print it again any time: target/release/lockscope report {}",
        profile.display()
    );
    Ok(())
}
