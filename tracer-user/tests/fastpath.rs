//! Root integration tests of the lock-free read share of Go's `sync.Map`, estimated from
//! on-CPU samples, in both designs: a read-mostly run shows a high share and a write-bound or
//! miss-bound one a low share, each stated as an estimate with its sampling error.
mod common;

use lockscope_profile::profile::{MapKind, Profile};

use common::gobench::matrix_bin;
use common::*;

/// The estimate in a profile: (share in percent, samples in the map).
fn share(name: &str, p: &Profile, stdout: &str) -> (f64, u64) {
    let f = p
        .bundled
        .as_ref()
        .and_then(|b| b.fast_path.as_ref())
        .unwrap_or_else(|| panic!("{name}: no fast_path in {:?}", p.bundled));
    let (in_map, lock_free) = (f.in_map, f.lock_free);
    assert_eq!(f.hz, 99, "{name}");
    assert!(f.samples >= in_map && in_map >= lock_free, "{name}: {f:?}");
    assert!(
        in_map >= 30,
        "{name}: only {in_map} on-CPU samples in the map ({f:?})"
    );
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("reads: ~"))
        .unwrap_or_else(|| panic!("{name}: no estimate line in {stdout}"));
    assert!(
        line.contains("estimate") && line.contains("points sampling error"),
        "{name}: {line}"
    );
    let pct = 100.0 * lock_free as f64 / in_map as f64;
    eprintln!("{name}: {line}");
    (pct, in_map)
}

/// The kind of map the profile explains, if it found one.
fn kind(p: &Profile) -> Option<MapKind> {
    p.bundled.as_ref().map(|b| b.kind)
}

fn std_run(preset: &str) -> (f64, u64) {
    let args = ["--map", "std", "--preset", preset, "--duration", "4"];
    let name = format!("fastpath-std-{preset}");
    let (_, stdout) = launch(&name, &go_bin("syncmap-load-go"), &args, &[]);
    let p = launched(&name);
    assert_eq!(kind(&p), Some(MapKind::StdReadDirty), "{name}");
    share(&name, &p, &stdout)
}

/// Go 1.19's read/dirty `sync.Map`: 99% Loads of live keys (all in the read map) against
/// Loads of keys just stored (every one a miss that locks), and a writer inserting new keys.
#[test]
fn std_read_mostly_reads_lock_free_and_miss_storm_and_write_heavy_do_not() {
    if !can_trace() {
        return;
    }
    let (read, _) = std_run("read-mostly");
    let (miss, _) = std_run("miss-storm");
    // One goroutine inserting new keys (each first store after a promotion copies the map
    // under the lock) while three Load old keys from the read map: in between.
    let (write, _) = std_run("write-heavy");
    assert!(read >= 80.0, "read-mostly: {read:.1}% lock-free");
    assert!(
        read - write >= 10.0,
        "read-mostly {read:.1}% vs write-heavy {write:.1}%"
    );
    assert!(miss <= 60.0, "miss-storm: {miss:.1}% lock-free");
    assert!(
        read - miss >= 25.0,
        "read-mostly {read:.1}% vs miss-storm {miss:.1}%"
    );
}

/// Go 1.27's hash-trie `sync.Map` (its wrappers inlined): goroutines only storing to hot keys
/// against Go's own read-mostly benchmark on `*sync.Map`.
#[test]
fn trie_stores_are_not_reads_and_load_mostly_hits_are() {
    if !can_trace() {
        return;
    }
    let build = "go1.27.3-internal";
    let name = "fastpath-trie-maphot";
    let args = ["-mode", "maphot", "-duration", "4s", "-goroutines", "4"];
    let (_, stdout) = launch(name, &matrix_bin(build, "lockstorm"), &args, &[]);
    let p = launched(name);
    assert_eq!(kind(&p), Some(MapKind::StdHashTrie), "{name}");
    let (stores, _) = share(name, &p, &stdout);
    assert!(
        stores <= 10.0,
        "{name}: {stores:.1}% lock-free reads in a store-only run"
    );

    let name = "fastpath-trie-loadmostlyhits";
    let args = [
        "-test.run=^$",
        "-test.bench=^BenchmarkMapLoadMostlyHits$/^\\*sync\\.Map$",
        "-test.benchtime=4s",
        "-test.count=1",
        "-test.cpu=2",
    ];
    let (_, stdout) = launch(name, &matrix_bin(build, "sync.test"), &args, &[]);
    let p = launched(name);
    assert_eq!(kind(&p), Some(MapKind::StdHashTrie), "{name}");
    let (reads, _) = share(name, &p, &stdout);
    assert!(reads >= 80.0, "{name}: {reads:.1}% lock-free reads");
}
