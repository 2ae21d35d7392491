//! The README's test command (and CI's): lint, unit tests, root integration tests.
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::run::{cmd, cmd_env, is_root, root, step};

/// The test target that needs no root: golden files and every error path.
const REPORT_TEST: &str = "report";

pub fn run() -> Result<()> {
    crate::setup::run()?;
    remove_stale_test_dirs();
    step("import cycles among tracer-user's, lockscope-profile's and xtask's modules");
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
    // As root, a unit test that needs root (mknod) must not skip either.
    let require_root: &[(&str, &str)] = if is_root() {
        &[("LOCKSCOPE_REQUIRE_ROOT", "1")]
    } else {
        &[]
    };
    cmd_env(
        "cargo",
        &[
            "test",
            "--workspace",
            "--exclude",
            "tracer-ebpf",
            "--lib",
            "--bins",
        ],
        require_root,
    )?;
    step("fuzzing the profile reader and every renderer (bolero, 60 s per target)");
    cmd_env(
        "cargo",
        &["test", "-p", "lockscope-profile", "--lib", "fuzz::"],
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
    step("the library's golden files, rendered through its own API (no kernel, no root)");
    cmd(
        "cargo",
        &["test", "-p", "lockscope-profile", "--test", "golden"],
    )?;
    step("report formats: golden files, `go tool pprof` on the pprof output, SVG as XML, errors");
    cmd_env(
        "cargo",
        &["test", "-p", "tracer-user", "--test", REPORT_TEST],
        // Go is installed by setup, so the pprof test must not skip here.
        &[("LOCKSCOPE_REQUIRE_GO", "1")],
    )?;
    crate::go::test()?;
    crate::go::build()?;
    crate::go::build_ground_truth()?;
    crate::gomatrix::build()?;
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
        bail!("the root integration tests need root (they load eBPF programs): run `sudo -E cargo xtask test`");
    }
    let tests = root_tests(&root().join("tracer-user/tests"))?;
    eprintln!("    {} test files: {}", tests.len(), tests.join(", "));
    let mut args = vec!["test", "-p", "tracer-user"];
    for t in &tests {
        args.extend(["--test", t.as_str()]);
    }
    args.extend(["--", "--test-threads=1"]);
    // A root test that cannot trace fails here rather than skipping (tests/common/mod.rs).
    cmd_env(
        "cargo",
        &args,
        &[("RUST_BACKTRACE", "1"), ("LOCKSCOPE_REQUIRE_ROOT", "1")],
    )?;
    Ok(())
}

/// The root integration tests: every `tests/*.rs` but `report.rs` (run in its own step, no
/// root needed), sorted by name.
fn root_tests(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rs"))
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .filter(|n| n != REPORT_TEST)
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no root integration tests in {}", dir.display());
    }
    Ok(names)
}

/// Removes the scratch directories earlier runs' integration tests left in the temp directory
/// (`lockscope-it-PID`, and MariaDB's `lockscope-it-mariadb-PID`): one per test binary and
/// run, up to ~0.5 GB each (copied binaries, profiles), never removed by the tests themselves —
/// a day of CI runs filled this machine's disk. Only those whose process is gone; the last
/// failed run's stay until the next run, for a look.
fn remove_stale_test_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lockscope-it-"))
            .map(|rest| rest.strip_prefix("mariadb-").unwrap_or(rest))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        // A symlink planted under that name is not followed: only real directories go.
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_file_but_report_is_a_root_test() {
        let tests = root_tests(&root().join("tracer-user/tests")).unwrap();
        assert!(!tests.iter().any(|t| t == REPORT_TEST), "{tests:?}");
        for t in ["record", "bundled", "agent", "go", "pairing"] {
            assert!(tests.iter().any(|n| n == t), "{t} missing from {tests:?}");
        }
        // common/mod.rs is a helper, not a test target.
        assert!(
            !tests.iter().any(|t| t == "common" || t == "mod"),
            "{tests:?}"
        );
    }
}
