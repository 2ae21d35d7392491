//! Root integration tests of tokio's async lock waits: `tokiolock` (64 tasks on 4 workers
//! serializing on one `tokio::sync::Mutex` in `update_session`) traced end to end, against
//! the wait the program measures itself; a stripped copy, whose header must say the async
//! waits cannot be probed and why; and fat-LTO builds, where `Acquire::poll` is inlined: with
//! full debug info it is probed at its DWARF inline sites, with `debug = "limited"` the
//! header says why it cannot be.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use lockscope_profile::profile::{FutexOp, Profile};
use serde_json::Value;

use common::typed::names;
use common::*;

/// The program's own line: `{"acquires":N,"wait_ns":W,"tasks":64}`.
fn measured(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("{\"acquires\""))
        .unwrap_or_else(|| panic!("no tokiolock line in: {stdout}"));
    serde_json::from_str(line).expect("tokiolock JSON")
}

/// The `tokio acquire` rows: (waits, ns, ns at `update_session`).
fn tokio_rows(p: &Profile) -> (u64, u64, u64) {
    let (mut at_site, mut all, mut count) = (0u64, 0u64, 0u64);
    for r in &p.waits {
        if r.op != FutexOp::TokioAcquire {
            continue;
        }
        let ns = r.total_ns;
        all += ns;
        count += r.count;
        let site = r
            .stack
            .is_some_and(|s| names(p, s).iter().any(|f| f.contains("update_session")));
        if site {
            at_site += ns;
        }
    }
    (count, all, at_site)
}

#[test]
fn tokio_mutex_waits_are_rows_at_update_session() {
    if !can_trace() {
        return;
    }
    let (_, stdout) = launch("tokiolock", &workload_bin("tokiolock"), &["3"], &[]);
    let p = launched("tokiolock");
    let own = measured(&stdout)["wait_ns"].as_u64().unwrap();
    let (count, all, at_site) = tokio_rows(&p);
    eprintln!(
        "program measured {own} ns of task wait; lockscope: {count} tokio acquires, {all} ns, {at_site} ns at update_session"
    );
    assert!(own > 0, "the program measured no wait: {stdout}");
    assert_eq!(
        p.tokio.as_ref().map(|t| t.probes),
        Some(3),
        "tokio probes in the profile: {:?}",
        p.tokio
    );
    assert!(
        stdout.contains("are the `tokio acquire` rows"),
        "no tokio line in the header: {stdout}"
    );
    assert_waits_match(own, all, at_site);
    // The releasing side: the one semaphore as the lock, and the guard's drop at the end of
    // update_session as the release that granted nearly every wait.
    let (mut on_lock, mut released_there) = (std::collections::BTreeMap::new(), 0u64);
    for r in p.waits.iter().filter(|r| r.op == FutexOp::TokioAcquire) {
        *on_lock.entry(r.uaddr).or_insert(0u64) += r.total_ns;
        let by = r.waker_stack.map(|s| names(&p, s)).unwrap_or_default();
        if by.iter().any(|f| f.contains("update_session")) {
            released_there += r.total_ns;
        }
    }
    let (lock, on_it) = on_lock
        .iter()
        .max_by_key(|(_, ns)| **ns)
        .expect("a tokio row");
    eprintln!("lock {lock:#x}: {on_it} ns; released at update_session: {released_there} ns");
    assert!(
        *lock != 0 && on_it * 100 >= all * 99,
        "tokio waits by lock: {on_lock:x?}"
    );
    assert!(
        released_there * 10 >= all * 9,
        "waits granted by a release at update_session {released_there} ns of {all} ns"
    );
    let report = lockscope()
        .arg("report")
        .arg(launched_path("tokiolock"))
        .args(["--by", "lock", "--top", "1"])
        .env("NO_COLOR", "1")
        .output()
        .expect("lockscope report");
    let out = text(&report.stdout);
    assert!(
        out.contains("most released at tokiolock::update_session"),
        "--by lock: {out}"
    );
    let by_category = lockscope()
        .arg("report")
        .arg(launched_path("tokiolock"))
        .args(["--by", "category", "--top", "1"])
        .env("NO_COLOR", "1")
        .output()
        .expect("lockscope report");
    let out = text(&by_category.stdout);
    assert!(out.contains("tokio Mutex (async)"), "--by category: {out}");
}

/// Records `bin` (tokiolock) for 1 s into `profile`: the header's line saying async waits
/// cannot be probed, which names the tokio version.
fn unprobeable_line(bin: &Path, profile: &Path) -> String {
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(profile)
        .arg("--")
        .arg(bin)
        .arg("1")
        .env("NO_COLOR", "1")
        .output()
        .expect("run lockscope");
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("async waits cannot be probed"))
        .unwrap_or_else(|| panic!("no 'async waits cannot be probed' line in: {err}"))
        .to_string();
    assert!(line.contains("tokio 1."), "no tokio version in: {line}");
    line
}

#[test]
fn stripped_tokio_build_says_async_waits_cannot_be_probed() {
    if !can_trace() {
        return;
    }
    let copy = tmp("tokiolock-stripped");
    std::fs::copy(workload_bin("tokiolock"), &copy).expect("copy tokiolock");
    let st = Command::new("strip")
        .arg(&copy)
        .status()
        .expect("run strip");
    assert!(st.success(), "strip failed");
    let profile = tmp("tokiolock-stripped.json");
    let line = unprobeable_line(&copy, &profile);
    assert!(line.contains("stripped"), "no reason in: {line}");
    let p = profile_at(&profile);
    let unprobed = p
        .tokio
        .as_ref()
        .and_then(|t| t.unprobed.as_deref())
        .unwrap_or_default();
    assert!(
        unprobed.contains("stripped"),
        "profile's tokio: {:?}",
        p.tokio
    );
    let report = lockscope()
        .arg("report")
        .arg(&profile)
        .env("NO_COLOR", "1")
        .output()
        .expect("lockscope report");
    assert!(
        text(&report.stdout).contains("async waits cannot be probed: the executable is stripped"),
        "report header: {}",
        text(&report.stdout)
    );
    assert!(
        p.waits.iter().all(|r| r.op != FutexOp::TokioAcquire),
        "tokio acquire rows from a stripped build"
    );
}

#[test]
fn sampled_tokio_waits_are_weighted_back_to_the_programs_own_wait() {
    if !can_trace() {
        return;
    }
    let name = "tokiolock-sampled";
    let (_, stdout) = launch(
        name,
        &workload_bin("tokiolock"),
        &["4"],
        &["--probe-windows", "10"],
    );
    let p = launched(name);
    let own = measured(&stdout)["wait_ns"].as_u64().unwrap();
    let (count, all, at_site) = tokio_rows(&p);
    let sampled = p.tokio.as_ref().and_then(|t| t.windows.clone());
    eprintln!(
        "program measured {own} ns of task wait; lockscope sampled {sampled:?}: {count} tokio acquires, {all} ns, {at_site} ns at update_session"
    );
    let s = sampled.expect("the profile says the async waits were sampled");
    assert_eq!(s.percent, 10);
    // 4 s at one 100 ms window a second; the window's length as the kernel's probes saw it.
    assert!((3..=5).contains(&s.windows), "{s:?}");
    assert!((90_000_000..=130_000_000).contains(&s.window_ns), "{s:?}");
    // The program's 64 tasks wait all the time: the weighted estimate must land near its own
    // total (unweighted, it would be a tenth).
    let ratio = at_site as f64 / own as f64;
    assert!(
        (0.75..=1.25).contains(&ratio),
        "weighted tokio waits at update_session {at_site} ns against the program's own {own} ns ({ratio:.2})"
    );
    let report = lockscope()
        .arg("report")
        .arg(launched_path(name))
        .env("NO_COLOR", "1")
        .output()
        .expect("lockscope report");
    let out = text(&report.stdout);
    assert!(
        out.contains("async waits sampled (--probe-windows 10)") && out.contains("not seen"),
        "report header: {out}"
    );
}

/// How much debug info a fat-LTO build of tokiolock carries.
#[derive(Clone, Copy)]
enum Debug {
    /// `debug = 2`: variable locations, so `Acquire::poll`'s inline sites can be probed.
    Full,
    /// `debug = "limited"` (this workspace's release profile): inline sites, no locations.
    Limited,
}

/// tokiolock built as a user's release with `lto = "fat"` and `codegen-units = 1`, into a
/// target directory of its own (the workspace's release profile is left as it is).
fn fat_lto_tokiolock(debug: Debug) -> PathBuf {
    let (level, dir) = match debug {
        Debug::Full => ("2", "lto-full"),
        Debug::Limited => ("\"limited\"", "lto"),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join(dir);
    let out = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "workloads",
            "--bin",
            "tokiolock",
        ])
        .args(["--config", "profile.release.lto=\"fat\""])
        .args(["--config", "profile.release.codegen-units=1"])
        .args(["--config", &format!("profile.release.debug={level}")])
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "fat-LTO build of tokiolock failed: {}",
        text(&out.stderr)
    );
    let bin = target.join("release/tokiolock");
    // The premise: LTO left no out-of-line poll.
    let nm = Command::new("nm").arg(&bin).output().expect("run nm");
    let syms = text(&nm.stdout);
    assert!(
        syms.contains("batch_semaphore..Acquire")
            && !syms.contains(
                "batch_semaphore..Acquire$u20$as$u20$core..future..future..Future$GT$4poll"
            ),
        "fat-LTO tokiolock still has an out-of-line Acquire::poll"
    );
    bin
}

#[test]
fn fat_lto_tokio_waits_are_probed_at_polls_inline_sites() {
    if !can_trace() {
        return;
    }
    let bin = fat_lto_tokiolock(Debug::Full);
    let name = "tokiolock-lto";
    let (_, stdout) = launch(name, &bin, &["3"], &[]);
    let p = launched(name);
    let own = measured(&stdout)["wait_ns"].as_u64().unwrap();
    let (count, all, at_site) = tokio_rows(&p);
    let t = p.tokio.clone().expect("tokio in the profile");
    eprintln!(
        "fat LTO: program measured {own} ns of task wait; lockscope: {count} tokio acquires, {all} ns, {at_site} ns at update_session; {t:?}"
    );
    let inl = t
        .inlined
        .as_ref()
        .expect("the profile says poll was inlined");
    assert!(
        inl.probed >= 1 && inl.probed <= inl.found,
        "inline sites: {inl:?}"
    );
    let header = stdout
        .lines()
        .find(|l| l.contains("are the `tokio acquire` rows"))
        .unwrap_or_else(|| panic!("no tokio line in the header: {stdout}"));
    assert!(
        header.contains(&format!(
            "inlined (fat LTO), at {} of {} DWARF inline sites",
            inl.probed, inl.found
        )),
        "header: {header}"
    );
    assert_waits_match(own, all, at_site);
    // The releasing side, through `Semaphore::release`'s own inline sites.
    let released_there: u64 = p
        .waits
        .iter()
        .filter(|r| r.op == FutexOp::TokioAcquire)
        .filter(|r| {
            r.waker_stack
                .is_some_and(|s| names(&p, s).iter().any(|f| f.contains("update_session")))
        })
        .map(|r| r.total_ns)
        .sum();
    eprintln!("released at update_session: {released_there} ns ({inl:?})");
    assert!(
        released_there * 10 >= all * 9,
        "waits granted by a release at update_session {released_there} ns of {all} ns"
    );
}

#[test]
fn fat_lto_build_without_locations_says_async_waits_cannot_be_probed() {
    if !can_trace() {
        return;
    }
    let bin = fat_lto_tokiolock(Debug::Limited);
    let profile = tmp("tokiolock-lto-limited.json");
    let line = unprobeable_line(&bin, &profile);
    eprintln!("{line}");
    assert!(
        line.contains("is inlined (fat LTO?)") && line.contains("no location of its `self`"),
        "no reason in: {line}"
    );
    let p = profile_at(&profile);
    let unprobed = p.tokio.as_ref().and_then(|t| t.unprobed.clone());
    assert!(
        unprobed.is_some_and(|u| u.contains("inline site")),
        "profile's tokio: {:?}",
        p.tokio
    );
    assert!(
        p.waits.iter().all(|r| r.op != FutexOp::TokioAcquire),
        "tokio acquire rows from a build whose poll could not be probed"
    );
}

/// lockscope's tokio acquire waits (`all`, `at_site` at update_session) against the program's
/// own measure: at least half of it at the site, and not more than 1.5x in all.
fn assert_waits_match(own: u64, all: u64, at_site: u64) {
    assert!(
        at_site * 2 >= own,
        "tokio acquire waits at update_session {at_site} ns < half the program's own {own} ns"
    );
    assert!(
        all <= own + own / 2,
        "lockscope's {all} ns is more than 1.5x the program's {own} ns: waits counted twice?"
    );
}
