//! Root integration tests of Go's `sync.Map` in both designs, on the Go version matrix
//! (`target/go/matrix`, built by `cargo xtask test`): the hash trie of Go 1.24+ explained by
//! operation and node (hot keys deep in the trie apart from a small map's root), checked
//! against Go's block profile; and Go's own adversarial benchmark under each design.
mod common;

use std::path::PathBuf;
use std::process::Output;

use lockscope_profile::profile::MapKind;

use common::gobench::*;
use common::*;

/// `lockstorm -mode maphot` under lockscope from exec, for longer than it works (it lingers,
/// so the trie's nodes are read while it lives): the output, profile and block profile.
fn maphot(build: &str, keys: &str) -> (Output, PathBuf, Rows, Rows) {
    let bin = matrix_bin(build, "lockstorm");
    let out_path = tmp(&format!("trie-{build}-{keys}.json"));
    let block = tmp(&format!("trie-{build}-{keys}.block"));
    let out = lockscope()
        .args(["record", "--duration", "4s", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(&bin)
        .args([
            "-mode",
            "maphot",
            "-keys",
            keys,
            "-duration",
            "2s",
            "-linger",
            "5s",
        ])
        .arg("-blockprofile")
        .arg(&block)
        .env("NO_COLOR", "1")
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{build}: {}", text(&out.stderr));
    let ours = goroutine_rows(&profile_at(&out_path));
    let go = go_block_rows(&bin, &block);
    (out, out_path, ours, go)
}

fn verdict(out: &Output) -> String {
    text(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with("verdict: "))
        .unwrap_or_default()
        .to_string()
}

/// Writers on 4 hot keys of a 100,000-key map (Go 1.27, both link modes): the trie's waits
/// are at least 90% of Go's block profile's, and the verdict names hot keys on deep nodes.
/// The same writers on a 4-key map: the verdict names the root.
#[test]
fn hash_trie_waits_are_explained_by_node() {
    if !can_trace() {
        return;
    }
    for build in ["go1.27.3-internal", "go1.27.3-external-stripped"] {
        let (out, path, ours, go) = maphot(build, "100000");
        let p = profile_at(&path);
        let key = "sync.(*Map).Store in main.storeHot";
        let (n, ns) = ours.get(key).copied().unwrap_or_default();
        let (gn, gns) = go.get(key).copied().unwrap_or_default();
        eprintln!("{build}: {key}: lockscope {n} waits {ns} ns · Go {gn} waits {gns} ns");
        assert!(
            gn > 0,
            "{build}: Go's block profile has no map wait: {go:?}"
        );
        assert!(
            n as f64 >= 0.9 * gn as f64 && ns as f64 >= 0.9 * gns as f64,
            "{build}: lockscope {n} waits {ns} ns, Go {gn} waits {gns} ns ({ours:?})"
        );
        assert_eq!(
            p.bundled.as_ref().map(|b| b.kind),
            Some(MapKind::StdHashTrie),
            "{:?}",
            p.bundled
        );
        let v = verdict(&out);
        eprintln!("{build} hot keys: {v}");
        assert!(v.contains("hot keys") && v.contains("depth"), "{v}");
        let stdout = text(&out.stdout);
        assert!(
            !stdout.contains("promotion") && !stdout.contains("rebuild"),
            "read/dirty lines printed for the trie: {stdout}"
        );
        // `--by category` counts the goroutine waits in the map, as the section does (the
        // runtime's thread futex waits under map code are not map waits).
        let by = lockscope()
            .args(["report", "--by", "category"])
            .arg(&path)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let listing = text(&by.stdout);
        let waits: u64 = listing
            .lines()
            .find(|l| l.contains("sync.Map Store/Swap"))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(|w| w.replace(',', "").parse().unwrap())
            .unwrap_or_else(|| panic!("{build}: no sync.Map category: {listing}"));
        assert_eq!(waits, n, "{build}: --by category against the trie rows");
    }
    let (out, _, _, _) = maphot("go1.27.3-internal", "0");
    let v = verdict(&out);
    eprintln!("small map: {v}");
    // Four keys sit in the root's 16 slots, unless the process's hash seed puts two in one
    // slot: those two then go to a node at depth 1 (CI once read "2 nodes at depth 1").
    assert!(v.contains("root node") || v.contains(" at depth 1 "), "{v}");
}

/// Go's own adversarial sync.Map benchmark under each design, stripped and externally
/// linked: the hash trie (1.27) has next to no lock wait and says the map fits; the
/// read/dirty map (1.19) waits behind its O(n) dirty rebuilds, probed from the PC table.
#[test]
fn adversarial_alloc_gets_each_designs_verdict() {
    if !can_trace() {
        return;
    }
    for (build, bench, want) in [
        (
            "go1.27.3-external-stripped",
            "^BenchmarkMapAdversarialAlloc$/^\\*sync\\.Map$",
            "the hash trie fits this workload",
        ),
        (
            "go1.19-external-stripped",
            "^BenchmarkAdversarialAlloc$/^\\*sync\\.Map$",
            "behind dirty rebuild",
        ),
    ] {
        let out_path = tmp("adversarial.json");
        let out = lockscope()
            .args(["record", "--duration", "3s", "-o"])
            .arg(&out_path)
            .arg("--")
            .arg(matrix_bin(build, "sync.test"))
            .args(["-test.run=^$", "-test.cpu=4", "-test.benchtime=6s"])
            .arg(format!("-test.bench={bench}"))
            .env("NO_COLOR", "1")
            .output()
            .expect("run lockscope");
        assert!(out.status.success(), "{build}: {}", text(&out.stderr));
        let v = verdict(&out);
        eprintln!("{build} {bench}: {v}");
        assert!(v.contains(want), "{build}: {v}");
    }
}
