//! Root integration tests of Go targets: the Go port of the bundled map
//! (target/go/syncmap-load-go, built by `cargo xtask test`) traced end to end. A Go process's
//! futex waits are OS threads; lockscope must tell idle parking from contention and must not
//! charge a thread's wait to the goroutine that last ran on it.
mod common;

use std::path::{Path, PathBuf};

use common::*;

fn go_workload() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/go/syncmap-load-go");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test` or `cargo xtask build-go`",
        bin.display()
    );
    bin
}

#[test]
fn go_futex_waits_are_threads_not_goroutines() {
    if !can_trace() {
        return;
    }
    let out_path = tmp("go.json");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(go_workload())
        .args(["--preset", "miss-storm", "--duration", "2", "--linger", "1"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p = load(&out_path);
    let go = &p["go"];
    assert!(
        go["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("go1.")),
        "not recognised as Go: {go}"
    );
    // Go keeps frame pointers: auto stays with the cheap frame walk.
    assert_eq!(p["meta"]["unwind"], "fp");
    // Four goroutines on two CPUs leave Ms idle: that parking is counted apart, not as rows.
    assert!(go["idle_waits"].as_u64().unwrap() > 0, "{go}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("idle-thread parkings"), "{stdout}");
    for (i, _, _) in stack_totals(&p) {
        let names = frame_names(&p, i);
        assert!(
            !names
                .iter()
                .any(|n| n == "runtime.mPark" || n == "runtime.stopm"),
            "an idle-thread stack is listed as contention: {names:#?}"
        );
        // Nothing past the scheduler's stack switch: those frames are a parked goroutine's.
        if let Some(at) = names.iter().position(|n| n == "runtime.mcall") {
            assert_eq!(at + 1, names.len(), "frames past runtime.mcall: {names:#?}");
        }
    }
}
