//! Root integration tests of the bundled-map attribution: each `syncmap-load` preset is traced
//! for a short window, and lockscope is checked against the map's own counters and against
//! what the preset is built to provoke.
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::*;

/// Each preset fills its map, waits `START_DELAY` (lockscope attaches then), works for
/// `WORKLOAD_SECS`, prints its counters and lingers idle, so lockscope's window (from attach to
/// its last read before the target exits) spans exactly the interval the workload counts.
const WORKLOAD_SECS: &str = "2";
const START_DELAY: &str = "1.6";
const LINGER: &str = "1";
/// Filling the largest map (100,000 keys) takes well under this.
const FILLED: Duration = Duration::from_millis(600);
/// Longer than the workload: the recording ends when the target exits.
const RECORD: &str = "30s";

struct Run {
    profile: Value,
    stdout: String,
    /// The workload's own JSON, printed at its exit.
    ground_truth: Value,
}

/// Runs a preset under lockscope with every phase probed (so traced read misses can be
/// checked too), or with `probes` given.
fn run_preset(preset: &str) -> Run {
    run_preset_with(preset, &["--phase-probes", "all"])
}

fn run_preset_with(preset: &str, probes: &[&str]) -> Run {
    let child = Command::new(workload_bin("syncmap-load"))
        .args(["--preset", preset, "--duration", WORKLOAD_SECS])
        .args(["--start-delay", START_DELAY, "--linger", LINGER])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start syncmap-load");
    std::thread::sleep(FILLED);
    let out_path = tmp(&format!("{preset}.json"));
    let out = record_with(&child.id().to_string(), RECORD, &out_path, probes);
    let finished = child.wait_with_output().expect("syncmap-load finishes");
    assert!(out.status.success(), "{preset}: {}", text(&out.stderr));
    let ground_truth: Value = serde_json::from_slice(&finished.stdout)
        .unwrap_or_else(|e| panic!("{preset}: workload printed no JSON ({e})"));
    Run {
        profile: load(&out_path),
        stdout: text(&out.stdout),
        ground_truth,
    }
}

fn verdict(r: &Run) -> &str {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("verdict: "))
        .unwrap_or_else(|| panic!("no verdict line in:\n{}", r.stdout))
}

/// The counters lockscope read from the target's memory over its window are exactly the
/// workload's own account of its run; and the traced promotions, rebuilds, entries copied and
/// read misses agree with them within 2% (or 2 events, for small counts).
fn assert_checks_agree(preset: &str, r: &Run) {
    let b = &r.profile["bundled"];
    assert_eq!(
        r.profile["meta"]["stop"], "target-exited",
        "{preset}: recording outlived the run"
    );
    assert_eq!(
        b["counters"], r.ground_truth["counters"],
        "{preset}: counters read from memory differ from the workload's own"
    );
    let checks = b["checks"].as_array().expect("checks");
    let probed = b["probed"].as_array().expect("probed").len();
    // promotions; rebuilds and entries copied; read misses: one check per probed phase's counts.
    let want = [0, 1, 3, 4][probed];
    assert_eq!(checks.len(), want, "{preset}: checks {checks:?}");
    for c in checks {
        let (t, n) = (
            c["traced"].as_u64().unwrap(),
            c["counted"].as_u64().unwrap(),
        );
        let diff = t.abs_diff(n);
        assert!(
            diff <= 2 || diff as f64 <= 0.02 * n as f64,
            "{preset}: {} traced {t} vs counted {n}",
            c["what"]
        );
    }
}

fn share(fast: u64, slow: u64) -> Option<f64> {
    (fast + slow > 0).then(|| fast as f64 * 100.0 / (fast + slow) as f64)
}

/// lockscope's fast-path share is within one point of the workload's own.
fn assert_fast_share_agrees(preset: &str, r: &Run) -> Option<f64> {
    let c = &r.profile["bundled"]["counters"];
    let mine = share(c["fast_reads"].as_u64()?, c["slow_loads"].as_u64()?);
    let g = &r.ground_truth["counters"];
    let truth = share(g["fast_reads"].as_u64()?, g["slow_loads"].as_u64()?);
    if let (Some(m), Some(t)) = (mine, truth) {
        assert!(
            (m - t).abs() <= 1.0,
            "{preset}: fast-path share {m:.2}% vs workload's {t:.2}%"
        );
    }
    mine
}

fn phase_row<'a>(r: &'a Run, name: &str) -> &'a Value {
    r.profile["bundled"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap()
}

#[test]
fn read_mostly_is_all_fast_path_and_no_wait() {
    if !can_trace() {
        return;
    }
    let r = run_preset("read-mostly");
    assert_checks_agree("read-mostly", &r);
    let fast = assert_fast_share_agrees("read-mostly", &r).expect("reads happened");
    assert!(fast >= 99.9, "fast share {fast}");
    let v = verdict(&r);
    assert!(v.starts_with("no meaningful lock wait on the map"), "{v}");
}

#[test]
fn update_existing_takes_no_lock() {
    if !can_trace() {
        return;
    }
    let r = run_preset("update-existing");
    assert_checks_agree("update-existing", &r);
    assert_fast_share_agrees("update-existing", &r);
    let v = verdict(&r);
    assert!(v.starts_with("no meaningful lock wait on the map"), "{v}");
}

#[test]
fn miss_storm_waits_behind_read_misses() {
    if !can_trace() {
        return;
    }
    let r = run_preset("miss-storm");
    assert_checks_agree("miss-storm", &r);
    assert_fast_share_agrees("miss-storm", &r);
    assert!(
        phase_row(&r, "promote")["calls"].as_u64().unwrap() > 10,
        "promotions traced"
    );
    let v = verdict(&r);
    assert!(
        v.contains("% of map lock wait is behind read misses"),
        "{v}"
    );
    assert!(v.contains("of it was read miss"), "{v}");
}

#[test]
fn range_insert_waits_behind_rebuilds() {
    if !can_trace() {
        return;
    }
    let r = run_preset("range-insert");
    assert_checks_agree("range-insert", &r);
    let v = verdict(&r);
    assert!(
        v.contains("% of map lock wait is behind dirty rebuild"),
        "{v}"
    );
    // Each range promotes, and the next insert copies the whole 10,000-key snapshot.
    assert!(v.contains("copying ~10,0"), "{v}");
}

/// The default probes only promotions and rebuilds (a uprobe per read miss would slow
/// miss-heavy programs several-fold): their checks still hold, misses come from the map's
/// counters, and the dominant cause is still found.
#[test]
fn range_insert_with_default_probes() {
    if !can_trace() {
        return;
    }
    let r = run_preset_with("range-insert", &[]);
    let probed: Vec<&str> = r.profile["bundled"]["probed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(probed, ["promote", "rebuild_dirty"]);
    assert_checks_agree("range-insert (default probes)", &r);
    assert!(r.stdout.contains("read misses: "), "{}", r.stdout);
    let v = verdict(&r);
    assert!(
        v.contains("% of map lock wait is behind dirty rebuild"),
        "{v}"
    );
}

#[test]
fn write_heavy_shows_its_rebuilds_and_the_misses_that_drive_them() {
    if !can_trace() {
        return;
    }
    let r = run_preset("write-heavy");
    assert_checks_agree("write-heavy", &r);
    assert_fast_share_agrees("write-heavy", &r);
    // Promotions need len(dirty) misses, so misses dominate the waiting; the rebuilds they
    // lead to each copy the whole 100,000-key snapshot.
    let v = verdict(&r);
    assert!(v.contains("of it was read miss"), "{v}");
    let rebuild = phase_row(&r, "rebuild_dirty");
    let (n, items) = (
        rebuild["returns"].as_u64().unwrap(),
        rebuild["items"].as_u64().unwrap(),
    );
    if let Some(each) = items.checked_div(n) {
        assert!(
            (90_000..=110_000).contains(&each),
            "entries per rebuild {each}"
        );
    }
}
