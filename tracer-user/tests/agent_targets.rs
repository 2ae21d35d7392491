//! Root integration tests of the agent's targets as they change and of what it counts: every
//! counter only grows and the loss counters stand still once no target is left (hand-off
//! leftovers are taken once); a binary deleted and replaced after start is still named; a
//! process that execs is re-identified and re-probed; and under the shipped unit's
//! capabilities (`setpriv`), a Go target's goroutine waits are traced.
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::agent::*;
use common::*;

/// Every `*_total` sample of a /metrics body, by name and labels.
fn counters(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            name.ends_with("_total")
                .then(|| Some((series.to_string(), value.parse().ok()?)))?
        })
        .collect()
}

fn targets(port: u16) -> Vec<Value> {
    let v: Value = serde_json::from_str(&get_text(port, "/targets")).unwrap();
    v["targets"].as_array().cloned().unwrap_or_default()
}

#[test]
fn counters_only_grow_and_losses_stand_still_once_no_target_is_left() {
    if !can_trace() {
        return;
    }
    let (name, bin) = named_copy("lockdemo", "lkleft");
    let (agent, port) = start_agent(&[&name]);
    let target = Killed(
        Command::new(&bin)
            .args(["contended", "--threads", "8", "--seconds", "6"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = u64::from(target.0.id());
    wait_for("the target traced", Duration::from_secs(10), || {
        pids_traced(port).contains(&pid).then_some(())
    });
    // While it runs: no counter sample ever goes down between two scrapes.
    let mut last = counters(&get_text(port, "/metrics"));
    let mut scrapes = 0;
    let site = format!(r#"site="{SITE}""#);
    let mut waited = 0.0;
    while pids_traced(port).contains(&pid) {
        std::thread::sleep(Duration::from_millis(250));
        let now = counters(&get_text(port, "/metrics"));
        for (series, v) in &now {
            if let Some(before) = last.get(series) {
                assert!(v >= before, "{series} went from {before} to {v}");
            }
            if series.starts_with("lockscope_lock_wait_seconds_total") && series.contains(&site) {
                waited = f64::max(waited, *v);
            }
        }
        last = now;
        scrapes += 1;
    }
    assert!(scrapes > 5, "only {scrapes} scrapes while the target ran");
    assert!(waited > 0.0, "the target's waits were not counted");
    drop(target);
    // No target left: every loss counter stands still (left-over hand-offs are taken once).
    // Kept fixed: the agent takes a hand-off with no waker once it is 2 s old (LEFTOVER_AGE)
    // on its next 1 s tick, a timer of its own that nothing outside can see.
    std::thread::sleep(Duration::from_secs(3));
    let lost = |body: &str| {
        counters(body)
            .into_iter()
            .filter(|(s, _)| s.starts_with("lockscope_events_lost_total"))
            .collect::<BTreeMap<_, _>>()
    };
    let before = lost(&get_text(port, "/metrics"));
    // The window the counters must stand still in: the test itself.
    std::thread::sleep(Duration::from_secs(5));
    let after = lost(&get_text(port, "/metrics"));
    assert_eq!(before, after, "loss counters moved with no target");
    eprintln!("losses with no target: {after:?}");
    stop_agent(agent);
}

#[test]
fn a_deleted_and_replaced_binary_is_still_named() {
    if !can_trace() {
        return;
    }
    let (name, bin) = named_copy("lockdemo", "lkdel");
    // Returns once its threads run: the binary is mapped and can be deleted.
    let target = Workload::start_path(&bin, &["contended", "--threads", "4", "--seconds", "30"]);
    let pid = target.0.id();
    // An upgrade in place: the file is deleted and another program put at its path.
    std::fs::remove_file(&bin).unwrap();
    std::fs::copy(workload_bin("syncmap-load"), &bin).unwrap();
    let (agent, port) = start_agent(&[&name]);
    let labels = [format!(r#"pid="{pid}""#), format!(r#"site="{SITE}""#)];
    let waited = wait_for(
        "the replaced binary's lock site",
        Duration::from_secs(20),
        || {
            let body = get_text(port, "/metrics");
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            metric(&body, "lockscope_lock_wait_seconds_total", &refs).filter(|&v| v > 0.0)
        },
    );
    eprintln!("replaced binary, pid {pid}: {waited} s at {SITE}");
    let t = targets(port);
    assert_eq!(t[0]["exe"], format!("/proc/{pid}/exe"), "{t:?}");
    stop_agent(agent);
}

#[test]
fn a_process_that_execs_is_reidentified_and_reprobed() {
    if !can_trace() {
        return;
    }
    let (name, map_load) = named_copy("syncmap-load", "lkexec");
    // The shell execs once told to, after the agent has traced it as `sh`.
    let script = format!(
        "read go; exec '{}' --preset range-insert --duration 30",
        map_load.display()
    );
    let mut target = Killed(
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = target.0.id();
    let (agent, port) = start_agent_with(lockscope(), &["--pid".into(), pid.to_string()]);
    let first = wait_for("the shell traced", Duration::from_secs(10), || {
        targets(port).into_iter().find(|t| t["pid"] == pid)
    });
    assert_eq!(first["comm"], "sh", "{first}");
    assert_eq!(first["bundled_map"], false, "{first}");
    let mut go = target.0.stdin.take().unwrap();
    go.write_all(b"go\n").unwrap();
    let after = wait_for("the exec'd image traced", Duration::from_secs(20), || {
        targets(port)
            .into_iter()
            .find(|t| t["pid"] == pid && t["comm"] == name.as_str())
    });
    assert_eq!(after["bundled_map"], true, "{after}");
    assert!(after["uprobes"].as_u64().unwrap() > 0, "{after}");
    // The new image's probes report: what the bundled map's lock holder ran.
    let p = format!(r#"pid="{pid}""#);
    let behind = wait_for(
        "the new image's probes to report",
        Duration::from_secs(20),
        || {
            metric(
                &get_text(port, "/metrics"),
                "lockscope_lock_wait_behind_seconds_total",
                &[&p],
            )
            .filter(|&v| v > 0.0)
        },
    );
    eprintln!("after exec, pid {pid}: {behind} s behind the map's phases");
    let err = stop_agent(agent);
    assert!(err.contains("exec'd; dropped"), "{err}");
}

/// The capabilities the shipped unit grants (its AmbientCapabilities line).
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/lockscope-agent.service"),
    )
    .unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit names its capabilities");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

/// `setpriv` granting exactly `caps` (inheritable, ambient, bounding), then lockscope.
fn with_caps(caps: &[String]) -> Command {
    let set = format!(
        "-all,{}",
        caps.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut setpriv = Command::new("setpriv");
    setpriv
        .args([
            format!("--inh-caps={set}"),
            format!("--ambient-caps={set}"),
            format!("--bounding-set={set}"),
            "--".into(),
        ])
        .arg(env!("CARGO_BIN_EXE_lockscope"));
    setpriv
}

#[test]
fn under_the_units_capabilities_goroutine_waits_are_traced() {
    if !can_trace() {
        return;
    }
    let caps = unit_capabilities();
    let setpriv = with_caps(&caps);
    let name = format!("lkgo{}", std::process::id() % 100_000);
    let go = tmp(&name);
    std::fs::copy(go_bin("syncmap-load-go"), &go).unwrap();
    let (agent, port) = start_agent_with(setpriv, &["--comm".into(), name.clone()]);
    // The agent really runs with only those capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(eff.count_ones() as usize, caps.len(), "{caps:?}: {status}");
    let target = Killed(
        Command::new(&go)
            .args(["--preset", "miss-storm", "--duration", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = target.0.id();
    let t = wait_for("the Go target traced", Duration::from_secs(15), || {
        targets(port).into_iter().find(|t| t["pid"] == pid)
    });
    assert!(t["go"].is_string(), "not recognised as Go: {t}");
    assert!(
        t["uprobes"].as_u64().unwrap() > 0,
        "goroutine probes not placed: {t}"
    );
    assert!(t["uprobes_pending"].is_null(), "{t}");
    // A goroutine blocked on the map's mutex parks in the scheduler without a futex call:
    // only the goroutine probes see it. Measured here over 6-8 s of miss-storm: ~2,900 waits
    // at loadMiss with the probes, 1 with --go-uprobes off.
    let p = format!(r#"pid="{pid}""#);
    let goroutine = wait_for("goroutine waits", Duration::from_secs(20), || {
        metric(
            &get_text(port, "/metrics"),
            "lockscope_lock_waits_total",
            &[&p, r#"site="lockscope.dev/go/syncmap.(*Map).loadMiss""#],
        )
        .filter(|&v| v >= 500.0)
    });
    eprintln!("under {caps:?}: {goroutine} goroutine waits");
    stop_agent(agent);
}

/// Without CAP_SYS_ADMIN a uprobe cannot be placed: the process's futex waits are traced all
/// the same, the failure is counted once, and the probes are retried (and fail again).
#[test]
fn probes_that_fail_keep_the_futex_waits_and_are_retried() {
    if !can_trace() {
        return;
    }
    let caps: Vec<String> = ["bpf", "perfmon", "sys_ptrace"].map(String::from).to_vec();
    let name = format!("lkgonc{}", std::process::id() % 100_000);
    let go = tmp(&name);
    std::fs::copy(go_bin("syncmap-load-go"), &go).unwrap();
    let (agent, port) = start_agent_with(with_caps(&caps), &["--comm".into(), name.clone()]);
    let target = Killed(
        Command::new(&go)
            .args(["--preset", "miss-storm", "--duration", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = target.0.id();
    let t = wait_for(
        "futex waits without probes",
        Duration::from_secs(15),
        || {
            targets(port)
                .into_iter()
                .find(|t| t["pid"] == pid && t["waits"].as_u64() > Some(0))
        },
    );
    assert_eq!(t["uprobes"], 0, "{t}");
    assert!(
        t["uprobes_pending"]
            .as_str()
            .is_some_and(|w| w.contains("Permission denied")),
        "{t}"
    );
    // Two retries later (2 s, then 4 s): still counted once. Kept fixed: the backoff is the
    // agent's own timer, and no endpoint shows a retry.
    std::thread::sleep(Duration::from_secs(7));
    let v: Value = serde_json::from_str(&get_text(port, "/targets")).unwrap();
    assert_eq!(v["lost"]["attach_failed"], 1, "{v}");
    drop(target);
    stop_agent(agent);
}

/// The agent's resident memory, from its own gauge.
fn rss_mib(port: u16) -> f64 {
    let body = get_text(port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("lockscope_agent_resident_memory_bytes "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap()
        / 1048576.0
}

/// Sample lines of /metrics (series, not comments).
fn series(port: u16) -> usize {
    let body = get_text(port, "/metrics");
    body.lines().filter(|l| !l.starts_with('#')).count()
}

/// Two minutes of short-lived targets (1-3 s each, four at a time, a lock storm or the
/// bundled map) under a real Prometheus: memory stays flat, the series go back to the
/// baseline, the loss counters stand still once no target is left, and Prometheus sees no
/// counter reset.
#[test]
fn a_two_minute_churn_keeps_memory_flat_and_counters_monotonic() {
    if !can_trace() {
        return;
    }
    let tag = std::process::id() % 100_000;
    let (demo_name, map_name) = (format!("lkch{tag}"), format!("lkchm{tag}"));
    let demo = renamed_copy("lockdemo", &demo_name);
    let map_load = renamed_copy("syncmap-load", &map_name);
    let (agent, port) = start_agent(&[&demo_name, &map_name]);
    let dir = tmp("churn-prometheus");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_prom, prom_port) = start_prometheus(&dir, port);
    let baseline = series(port);
    let t0 = std::time::Instant::now();
    let mut running: Vec<Killed> = Vec::new();
    let (mut started, mut warm) = (0u32, None);
    while t0.elapsed() < Duration::from_secs(120) {
        running.retain_mut(|k| k.0.try_wait().unwrap().is_none());
        while running.len() < 4 {
            let secs = (1 + started % 3).to_string();
            let child = if started % 3 == 2 {
                Command::new(&map_load)
                    .args(["--preset", "range-insert", "--duration", &secs])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            } else {
                Command::new(&demo)
                    .args(["contended", "--threads", "4", "--seconds", &secs])
                    .stdout(Stdio::null())
                    .spawn()
            };
            running.push(Killed(child.unwrap()));
            started += 1;
        }
        if warm.is_none() && t0.elapsed() > Duration::from_secs(20) {
            warm = Some(rss_mib(port));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for k in &mut running {
        let _ = k.0.wait();
    }
    let end_rss = rss_mib(port);
    let warm = warm.unwrap();
    eprintln!("churn: {started} targets; RSS {warm:.1} MiB at 20 s, {end_rss:.1} MiB at the end");
    assert!(
        end_rss <= warm * 1.2,
        "RSS grew from {warm:.1} to {end_rss:.1} MiB"
    );
    wait_for(
        "the series back to the baseline",
        Duration::from_secs(10),
        || (series(port) == baseline).then_some(()),
    );
    // The kernel's stack map is emptied of the dropped targets' stacks.
    let stacks = || {
        let body = get_text(port, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("lockscope_stack_map_entries "))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let left = stacks();
    wait_for("the stack map emptied", Duration::from_secs(15), || {
        stacks().filter(|&n| n == 0)
    });
    eprintln!("stack map entries once no target was left: {left:?}, then 0");
    let lost = |port| {
        counters(&get_text(port, "/metrics"))
            .into_iter()
            .filter(|(s, _)| s.starts_with("lockscope_events_lost_total"))
            .collect::<BTreeMap<_, _>>()
    };
    let before = lost(port);
    // The window the counters must stand still in: the test itself.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(before, lost(port), "loss counters moved with no target");
    eprintln!("losses after the churn: {before:?}");
    for name in [
        "lockscope_lock_wait_seconds_total",
        "lockscope_lock_waits_total",
        "lockscope_lock_wait_behind_seconds_total",
        "lockscope_events_lost_total",
        "lockscope_bundled_map_events_total",
    ] {
        // No series at all would also show no reset: say so apart.
        let held = prom_query(prom_port, &format!("count(count_over_time({name}[5m]))"));
        assert!(
            !held.is_empty(),
            "{name}: Prometheus holds no sample of it: the agent never exported it in {started} targets"
        );
        let resets = prom_query(prom_port, &format!("sum(resets({name}[5m]))"));
        assert_eq!(resets, [0.0], "{name}: counter resets seen by Prometheus");
    }
    stop_agent(agent);
}
