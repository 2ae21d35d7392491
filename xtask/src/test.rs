//! The README's test command (and CI's): lint, unit tests, root integration tests.
use anyhow::Result;

use crate::run::{cmd, cmd_env, is_root, step};

pub fn run() -> Result<()> {
    crate::setup::run()?;
    step("import cycles among tracer-user's modules");
    crate::cycles::run()?;
    step("format check");
    cmd("cargo", &["fmt", "--all", "--", "--check"])?;
    step("clippy (warnings are errors)");
    // tracer-ebpf builds only for the BPF target (through tracer-user's build.rs).
    cmd(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "tracer-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step("unit tests");
    cmd(
        "cargo",
        &[
            "test",
            "--workspace",
            "--exclude",
            "tracer-ebpf",
            "--lib",
            "--bins",
        ],
    )?;
    step("fuzzing the profile reader and every renderer (bolero, 60 s per target)");
    cmd_env(
        "cargo",
        &["test", "-p", "tracer-user", "--bin", "lockscope", "fuzz::"],
        &[("LOCKSCOPE_FUZZ_SECS", "60")],
    )?;
    step("model checking the bundled map's transitions (shuttle)");
    cmd(
        "cargo",
        &["test", "-p", "syncmap", "--features", "shuttle", "--lib"],
    )?;
    step("Miri: the bundled map's tests under the interpreter (its unsafe lives in arc-swap)");
    cmd(
        "cargo",
        &["+nightly", "miri", "test", "-p", "syncmap", "--lib"],
    )?;
    step("report formats: golden files, `go tool pprof` on the pprof output, SVG as XML, errors");
    cmd_env(
        "cargo",
        &["test", "-p", "tracer-user", "--test", "report"],
        // Go is installed by setup, so the pprof test must not skip here.
        &[("LOCKSCOPE_REQUIRE_GO", "1")],
    )?;
    crate::go::test()?;
    crate::go::build()?;
    crate::go::build_ground_truth()?;
    step("test workloads (release, frame pointers)");
    cmd("cargo", &["build", "--release", "-p", "workloads"])?;
    step("the same workloads without frame pointers (a plain release build), for DWARF unwinding");
    // An empty RUSTFLAGS overrides .cargo/config.toml's force-frame-pointers.
    cmd_env(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "workloads",
            "--target-dir",
            "target/nofp",
        ],
        &[("RUSTFLAGS", "")],
    )?;
    step("the map workload with its ground-truth log (--features ground-truth), for holder blame");
    cmd(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "workloads",
            "--features",
            "ground-truth",
            "--target-dir",
            "target/ground-truth",
        ],
    )?;
    step("root integration tests: real eBPF programs tracing real processes");
    if !is_root() {
        eprintln!("    note: not root, so the integration tests will skip themselves; run `sudo -E cargo xtask test`");
    }
    cmd_env(
        "cargo",
        &[
            "test",
            "-p",
            "tracer-user",
            "--test",
            "record",
            "--test",
            "bundled",
            "--test",
            "live",
            "--test",
            "dwarf",
            "--test",
            "go",
            "--test",
            "stdmap",
            "--test",
            "stacks",
            "--test",
            "safety",
            "--test",
            "debuginfo",
            "--test",
            "classify",
            "--test",
            "holder_blame",
            "--test",
            "pairing",
            "--test",
            "agent",
            "--test",
            "agent_http",
            "--test",
            "agent_targets",
            "--test",
            "top_hangup",
            "--",
            "--test-threads=1",
        ],
        &[("RUST_BACKTRACE", "1")],
    )?;
    Ok(())
}
