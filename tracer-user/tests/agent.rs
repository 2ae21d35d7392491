//! Root integration test of `lockscope agent`: the agent starts before its targets, finds
//! them by command name as they start, and a real Prometheus (Debian's, on 127.0.0.1 with a
//! temp config and data dir) scrapes it; `go tool pprof` reads its contention profile; a
//! target that exits is dropped and the next one picked up with its bundled-map uprobes;
//! SIGTERM detaches everything and exits 0 at once.
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::agent::*;
use common::*;

#[test]
fn the_agent_finds_targets_as_they_come_serves_prometheus_and_pprof_and_exits_clean() {
    if !can_trace() {
        return;
    }
    let tag = std::process::id() % 100_000;
    let demo_name = format!("lkdemo{tag}");
    let map_name = format!("lkmap{tag}");
    let demo = renamed_copy("lockdemo", &demo_name);
    let map_load = renamed_copy("syncmap-load", &map_name);
    let (agent, port) = start_agent(&[&demo_name, &map_name]);
    let agent_pid = agent.id();
    assert!(pids_traced(port).is_empty(), "nothing matches yet");
    let dir = tmp("prometheus");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_prom, prom_port) = start_prometheus(&dir, port);

    // A target started after the agent is found by its command name.
    let first = Killed(
        Command::new(&demo)
            .args(["contended", "--threads", "4", "--seconds", "60"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let p1 = u64::from(first.0.id());
    wait_for(
        "the first target to be traced",
        Duration::from_secs(10),
        || pids_traced(port).contains(&p1).then_some(()),
    );

    // Prometheus scraped a non-zero wait time at the lock site.
    let q = format!(r#"lockscope_lock_wait_seconds_total{{pid="{p1}",site="{SITE}"}}"#);
    let scraped = wait_for(
        "Prometheus to scrape the lock site",
        Duration::from_secs(30),
        || prom_query(prom_port, &q).into_iter().find(|&v| v > 0.0),
    );
    eprintln!("Prometheus: {q} = {scraped}");

    // go tool pprof reads the contention profile of the next 2 s and names the lock site.
    let url = format!("http://127.0.0.1:{port}/debug/pprof/contention?pid={p1}&seconds=2");
    let pprof = Command::new("go")
        .args(["tool", "pprof", "-top", &url])
        .env("PPROF_TMPDIR", &dir)
        .output()
        .expect("Debian's golang-go is needed: run `cargo xtask setup`");
    let top = text(&pprof.stdout);
    assert!(pprof.status.success(), "{}", text(&pprof.stderr));
    assert!(top.contains(SITE), "{top}");

    // The first target exits and a second starts: the first is dropped, the second found
    // with its bundled-map uprobes, and its counters only grow.
    let site = format!(r#"site="{SITE}""#);
    let before = metric(
        &get_text(port, "/metrics"),
        "lockscope_lock_wait_seconds_total",
        &[&format!(r#"pid="{p1}""#), &site],
    );
    assert!(before.is_some_and(|v| v > 0.0), "{before:?}");
    drop(first);
    let second = Killed(
        Command::new(&map_load)
            .args(["--preset", "range-insert", "--duration", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let p2 = u64::from(second.0.id());
    wait_for(
        "the first dropped, the second traced",
        Duration::from_secs(10),
        || (pids_traced(port) == [p2]).then_some(()),
    );
    let targets: Value = serde_json::from_str(&get_text(port, "/targets")).unwrap();
    let t2 = &targets["targets"][0];
    assert_eq!(t2["bundled_map"], true, "{targets}");
    assert!(t2["uprobes"].as_u64().unwrap() > 0, "{targets}");
    // Three rises of the second target's wait counter, each awaited (a tick is 1 s); every
    // scrape on the way is checked: it never goes back, and the first target is gone.
    let mut last = 0.0;
    for _ in 0..3 {
        last = wait_for(
            "the second target's waits to grow",
            Duration::from_secs(10),
            || {
                let body = get_text(port, "/metrics");
                assert!(!body.contains(&format!(r#"pid="{p1}""#)), "{body}");
                let now = metric(
                    &body,
                    "lockscope_lock_wait_seconds_total",
                    &[&format!(r#"pid="{p2}""#)],
                )
                .unwrap_or(0.0);
                assert!(now >= last, "went back from {last} to {now}: {body}");
                (now > last).then_some(now)
            },
        );
    }
    assert!(last > 0.0, "the second target's waits were counted");
    // The bundled map's own counters, and what its lock's holder ran while threads waited.
    let body = get_text(port, "/metrics");
    let p2_label = format!(r#"pid="{p2}""#);
    let promotions = metric(
        &body,
        "lockscope_bundled_map_events_total",
        &[&p2_label, r#"counter="promotions""#],
    );
    assert!(promotions.is_some_and(|v| v > 0.0), "{body}");
    let behind_rebuild = metric(
        &body,
        "lockscope_lock_wait_behind_seconds_total",
        &[&p2_label, r#"behind="dirty rebuild (O(n) copy)""#],
    );
    assert!(behind_rebuild.is_some_and(|v| v > 0.0), "{body}");
    assert_eq!(
        metric(&get_text(port, "/metrics"), "lockscope_targets", &[]).or_else(|| {
            get_text(port, "/metrics")
                .lines()
                .find_map(|l| l.strip_prefix("lockscope_targets ")?.parse().ok())
        }),
        Some(1.0)
    );
    // Prometheus saw no counter reset in any series.
    let resets = prom_query(
        prom_port,
        "sum(resets(lockscope_lock_wait_seconds_total[5m]))",
    );
    assert_eq!(resets, [0.0], "counter resets seen by Prometheus");

    // SIGTERM: detached and exited 0 within 2 s, no uprobe of the agent's left behind.
    let err = stop_agent(agent);
    assert!(err.contains(&format!("tracing pid {p2}")), "{err}");
    let events = std::fs::read_to_string("/sys/kernel/tracing/uprobe_events").unwrap_or_default();
    assert!(
        !events.contains(&format!("aya_{agent_pid}_")),
        "uprobes left: {events}"
    );
    drop(second);
}

/// A target in its own mount namespace, running a binary bind-mounted at a path the host does
/// not have: the agent reads its files through /proc/PID/root and names its lock site.
#[test]
fn a_target_in_its_own_mount_namespace_is_symbolized_through_its_root() {
    if !can_trace() {
        return;
    }
    let (name, bin) = named_copy("lockdemo", "lkct");
    let dir = tmp(&format!("{name}-mnt"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hidden = dir.join("hidden").join(&name);
    let (agent, port) = start_agent(&[&name]);
    let (d, h, b) = (dir.display(), hidden.display(), bin.display());
    let script = format!(
        "mount -t tmpfs lockscope-test '{d}' && mkdir '{d}/hidden' && touch '{h}' && \
         mount --bind '{b}' '{h}' && exec '{h}' contended --threads 4 --seconds 30"
    );
    let target = Killed(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("util-linux unshare"),
    );
    let pid = target.0.id();
    let labels = [format!(r#"pid="{pid}""#), format!(r#"site="{SITE}""#)];
    let waited = wait_for(
        "the lock site of the namespaced target",
        Duration::from_secs(20),
        || {
            let body = get_text(port, "/metrics");
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            metric(&body, "lockscope_lock_wait_seconds_total", &refs).filter(|&v| v > 0.0)
        },
    );
    eprintln!("namespaced target {pid}: {waited} s at {SITE}");
    assert!(
        !hidden.exists(),
        "{} is only inside the namespace",
        hidden.display()
    );
    let targets: Value = serde_json::from_str(&get_text(port, "/targets")).unwrap();
    let exe = targets["targets"][0]["exe"].as_str().unwrap_or("");
    assert_eq!(exe, format!("/proc/{pid}/root{h}"), "{targets}");
    stop_agent(agent);
}
