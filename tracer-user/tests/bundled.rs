//! Root integration tests of the bundled-map attribution: each `syncmap-load` preset is traced
//! for a short window, and lockscope is checked against the map's own counters and against
//! what the preset is built to provoke.
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use lockscope_profile::profile::{HolderPhase, PhaseRow, Profile, StopReason};
use serde_json::Value;

use common::*;

/// Each preset fills its map and says so, waits `START_DELAY` (lockscope attaches then), works
/// for `WORKLOAD_SECS`, prints its counters and lingers idle, so lockscope's window (from attach
/// to its last read before the target exits) spans exactly the interval the workload counts.
/// The delay stays fixed: lockscope's window starts just after it says "tracing" (its first
/// read of the map's counters comes after that line), so no line marks the moment the work
/// may begin; the delay covers the attach with room to spare.
const WORKLOAD_SECS: &str = "2";
const START_DELAY: &str = "1.6";
const LINGER: &str = "1";
/// Longer than the workload: the recording ends when the target exits.
const RECORD: &str = "30s";

struct Run {
    profile: Profile,
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
    let mut child = Command::new(workload_bin("syncmap-load"))
        .args(["--preset", preset, "--duration", WORKLOAD_SECS])
        .args([
            "--say-filled",
            "--start-delay",
            START_DELAY,
            "--linger",
            LINGER,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start syncmap-load");
    // Attached once the map is filled (it says so), not after a guessed fill time.
    let mut said = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "syncmap-load: filled", "{preset}");
    let out_path = tmp(&format!("{preset}.json"));
    let out = record_with(&child.id().to_string(), RECORD, &out_path, probes);
    let finished = child.wait_with_output().expect("syncmap-load finishes");
    let _ = said.read_to_string(&mut line);
    assert!(out.status.success(), "{preset}: {}", text(&out.stderr));
    let ground_truth: Value = serde_json::from_slice(&finished.stdout)
        .unwrap_or_else(|e| panic!("{preset}: workload printed no JSON ({e})"));
    Run {
        profile: profile_at(&out_path),
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
    let b = r.profile.bundled.as_ref().expect("the bundled map found");
    assert_eq!(
        r.profile.meta.stop,
        StopReason::TargetExited,
        "{preset}: recording outlived the run"
    );
    let own: Option<BTreeMap<String, u64>> =
        serde_json::from_value(r.ground_truth["counters"].clone())
            .expect("the workload's counters are numbers");
    assert_eq!(
        b.counters, own,
        "{preset}: counters read from memory differ from the workload's own"
    );
    let checks = &b.checks;
    let probed = b.probed.len();
    // promotions; rebuilds and entries copied; read misses: one check per probed phase's counts.
    let want = [0, 1, 3, 4][probed];
    assert_eq!(checks.len(), want, "{preset}: checks {checks:?}");
    for c in checks {
        let (t, n) = (c.traced, c.counted);
        let diff = t.abs_diff(n);
        assert!(
            diff <= 2 || diff as f64 <= 0.02 * n as f64,
            "{preset}: {} traced {t} vs counted {n}",
            c.what
        );
    }
}

fn share(fast: u64, slow: u64) -> Option<f64> {
    (fast + slow > 0).then(|| fast as f64 * 100.0 / (fast + slow) as f64)
}

/// lockscope's fast-path share is within one point of the workload's own.
fn assert_fast_share_agrees(preset: &str, r: &Run) -> Option<f64> {
    let c = r.profile.bundled.as_ref()?.counters.as_ref()?;
    let mine = share(*c.get("fast_reads")?, *c.get("slow_loads")?);
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

fn phase_row(r: &Run, phase: HolderPhase) -> &PhaseRow {
    r.profile
        .bundled
        .iter()
        .flat_map(|b| &b.phases)
        .find(|p| p.phase == phase)
        .unwrap_or_else(|| panic!("no {phase:?} row"))
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
        phase_row(&r, HolderPhase::Promote).calls > 10,
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
    let probed: Vec<&str> = r
        .profile
        .bundled
        .iter()
        .flat_map(|b| &b.probed)
        .map(String::as_str)
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
    let rebuild = phase_row(&r, HolderPhase::Rebuild);
    let (n, items) = (rebuild.returns, rebuild.items);
    if let Some(each) = items.checked_div(n) {
        assert!(
            (90_000..=110_000).contains(&each),
            "entries per rebuild {each}"
        );
    }
}
