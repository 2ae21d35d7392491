//! Go's own `sync` benchmarks under lockscope beside Go's block profile of the same run:
//! the stack key both sides can name, the block profile read with `go tool pprof -raw`, and
//! the run itself. Shared by tests/go.rs and tests/go_matrix.rs.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lockscope_profile::profile::{FutexOp, Profile};

use super::typed::names;
use super::{lockscope, profile_at, text, tmp};

/// A goroutine wait's stack as both sides can name it: the `sync` lock methods (without the
/// slow-path helpers Go's profile skips) and the first frame outside `sync` and the runtime.
pub fn lock_key<'a>(frames: impl IntoIterator<Item = &'a str>) -> String {
    let mut sync = vec![];
    for f in frames {
        // Go 1.24+'s block profile leaves out internal/sync's frames (sync.Mutex wraps
        // internal/sync.Mutex); lockscope shows them, so the key does without them.
        if f.starts_with("sync.runtime_")
            || f.starts_with("internal/sync.")
            || f.ends_with(".lockSlow")
            || f.starts_with("runtime.")
        {
            continue;
        }
        if f.starts_with("sync.(") {
            sync.push(f.to_string());
            continue;
        }
        return format!("{} in {f}", sync.join(" < "));
    }
    sync.join(" < ")
}

/// `go tool pprof -raw` of a block profile: per stack key, (count, ns).
pub fn go_block_rows(bin: &Path, profile: &Path) -> BTreeMap<String, (u64, u64)> {
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw"])
        .arg(bin)
        .arg(profile)
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("go tool pprof (cargo xtask setup installs golang-go)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let raw = text(&out.stdout);
    // A section: its title line, for Samples a header line, then indented lines.
    let section = |name: &str, header: usize| -> Vec<&str> {
        raw.lines()
            .skip_while(|l| !l.starts_with(name))
            .skip(1 + header)
            .take_while(|l| l.starts_with(' '))
            .collect()
    };
    // Location id → its function names, inlined first.
    let mut locations: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut current = 0;
    for l in section("Locations", 0) {
        let t = l.trim();
        let func = if let Some((id, rest)) = t.split_once(": ") {
            current = id.parse().unwrap_or(0);
            rest.split_whitespace().nth(2)
        } else {
            t.split_whitespace().next()
        };
        if let Some(f) = func {
            locations.entry(current).or_default().push(f.to_string());
        }
    }
    let mut rows: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for l in section("Samples", 1) {
        let Some((values, ids)) = l.split_once(':') else {
            continue;
        };
        let v: Vec<u64> = values
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let names: Vec<String> = ids
            .split_whitespace()
            .filter_map(|i| i.parse::<u64>().ok())
            .flat_map(|i| locations.get(&i).cloned().unwrap_or_default())
            .collect();
        let r = rows
            .entry(lock_key(names.iter().map(String::as_str)))
            .or_default();
        r.0 += v[0];
        r.1 += v[1];
    }
    rows
}

/// Builds Go's own `sync` tests (`go test -c sync`) once per test.
pub fn sync_test_binary() -> std::path::PathBuf {
    let bin = tmp("sync.test");
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/go/cache");
    let built = Command::new("go")
        .args(["test", "-c", "-o"])
        .arg(&bin)
        .arg("sync")
        .env("GOCACHE", &cache)
        .env("HOME", std::env::temp_dir())
        .env("GOPROXY", "off")
        .output()
        .expect("go (cargo xtask setup installs golang-go)");
    assert!(built.status.success(), "{}", text(&built.stderr));
    bin
}

/// Per lock stack: (waits, ns)
pub type Rows = BTreeMap<String, (u64, u64)>;

/// Runs one of Go's `sync` benchmarks under `lockscope record FLAGS`, with Go's block profile
/// on: lockscope's goroutine rows and Go's, per stack, and the profile.
pub fn sync_bench(
    bin: &Path,
    bench: &str,
    flags: &[&str],
    benchtime: &str,
) -> (Rows, Rows, Profile) {
    let out_path = tmp("sync-bench.json");
    let block = tmp("sync-bench.block");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .args(flags)
        .arg("--")
        .arg(bin)
        .args(["-test.run=^$", "-test.cpu=4", "-test.blockprofilerate=1"])
        .arg(format!("-test.bench={bench}"))
        .arg(format!("-test.benchtime={benchtime}"))
        .arg(format!("-test.blockprofile={}", block.display()))
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{bench}: {}", text(&out.stderr));
    // The program ran to its end under the probes, as it does untraced: the probes changed
    // nothing it computes (`sync.test` checks itself and prints PASS).
    let stdout = text(&out.stdout);
    assert!(
        stdout.lines().any(|l| l == "PASS") && stdout.contains(bench.trim_matches(['^', '$'])),
        "{bench}: the traced program did not pass: {stdout}"
    );
    let p = profile_at(&out_path);
    let ours = goroutine_rows(&p);
    assert!(!ours.is_empty(), "{bench}: no goroutine waits traced");
    (ours, go_block_rows(bin, &block), p)
}

/// A profile's goroutine waits (the `go semacquire` rows) per lock stack key.
pub fn goroutine_rows(p: &Profile) -> Rows {
    let mut ours: Rows = BTreeMap::new();
    for r in &p.waits {
        if r.op != FutexOp::GoSemacquire || r.count == 0 {
            continue;
        }
        let frames = r.stack.map(|s| names(p, s)).unwrap_or_default();
        let e = ours
            .entry(lock_key(frames.iter().map(String::as_str)))
            .or_default();
        e.0 += r.count;
        e.1 += r.total_ns;
    }
    ours
}

/// A binary of the Go version matrix (`target/go/matrix/BUILD/NAME`, built by
/// `cargo xtask build-go`).
pub fn matrix_bin(build: &str, name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/go/matrix")
        .join(build)
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing (run `cargo xtask build-go`)",
        bin.display()
    );
    bin
}
