//! Root integration test of the agent's unwinding: each target's mode is chosen for its own
//! executable as `record` chooses it, so the agent and `record` name the same lock site — on a
//! C program with frame pointers over Debian's frameless glibc (`fp+cfi`), and on one without
//! frame pointers (`dwarf`), traced by one agent at once; `top` on the same processes shows
//! the same site.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::agent::*;
use common::top::TopScreen;
use common::*;

/// The function the C workload takes its lock in (workloads/c/pthread_contend.c).
const SITE: &str = "contended_site";

/// The first data row of `record --by function`: where the program took the hottest lock.
fn record_site(stdout: &str) -> String {
    stdout
        .lines()
        .skip_while(|l| !(l.trim_start().starts_with('#') && l.contains("function")))
        .nth(1)
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no function row in: {stdout}"))
        .to_string()
}

/// The agent's contention seconds of `pid` by `site` label, from /metrics.
fn agent_sites(port: u16, pid: u32) -> Vec<(String, f64)> {
    let body = get_text(port, "/metrics");
    let want = format!("pid=\"{pid}\"");
    let mut out: Vec<(String, f64)> = body
        .lines()
        .filter_map(|l| l.strip_prefix("lockscope_lock_wait_seconds_total{"))
        .filter(|l| l.contains(&want) && l.contains("class=\"contention\""))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            let site = labels.split("site=\"").nth(1)?.split('"').next()?;
            Some((site.to_string(), value.parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// The agent's hottest site of `pid` once it holds at least 1 s of contention, and its share.
fn agent_site(port: u16, pid: u32) -> (String, f64) {
    let sites = wait_for(
        "the agent to count 1 s of contention",
        Duration::from_secs(30),
        || {
            let s = agent_sites(port, pid);
            (s.iter().map(|(_, v)| v).sum::<f64>() >= 1.0).then_some(s)
        },
    );
    let total: f64 = sites.iter().map(|(_, v)| v).sum();
    eprintln!("agent, pid {pid}: {sites:?}");
    (sites[0].0.clone(), sites[0].1 / total)
}

/// The agent's `/targets` entry of `pid`.
fn target_of(port: u16, pid: u32) -> Value {
    let v: Value = serde_json::from_str(&get_text(port, "/targets")).unwrap();
    v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["pid"].as_u64() == Some(u64::from(pid)))
        .cloned()
        .unwrap_or(Value::Null)
}

fn start(bin: &Path) -> Killed {
    Killed(
        Command::new(bin)
            .args(["4", "120"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_agent_names_the_lock_site_record_names_with_and_without_frame_pointers() {
    if !can_trace() {
        return;
    }
    let tag = std::process::id() % 100_000;
    let (fp_name, nofp_name) = (format!("uwfp{tag}"), format!("uwnofp{tag}"));
    let fp_bin = build_c(
        "pthread_contend",
        &fp_name,
        &["-O2", "-fno-omit-frame-pointer"],
    );
    let nofp_bin = build_c(
        "pthread_contend",
        &nofp_name,
        &["-O2", "-fomit-frame-pointer"],
    );

    // `record`'s lock site on each program (its own launch, `--unwind auto`).
    let (p, out) = launch("uw-rec-fp", &fp_bin, &["4", "1"], &["--by", "function"]);
    assert_eq!(
        p["meta"]["unwind"], "fp+cfi",
        "{}",
        p["meta"]["unwind_note"]
    );
    let record_fp = record_site(&out);
    let (p, out) = launch("uw-rec-nofp", &nofp_bin, &["4", "1"], &["--by", "function"]);
    assert_eq!(p["meta"]["unwind"], "dwarf", "{}", p["meta"]["unwind_note"]);
    let record_nofp = record_site(&out);
    eprintln!("record: fp over frameless glibc → {record_fp}; no frame pointers → {record_nofp}");
    assert_eq!(record_fp, SITE);
    assert_eq!(record_nofp, SITE);

    // One agent (default --unwind auto), both programs started after it.
    let (agent, port) = start_agent(&[&fp_name, &nofp_name]);
    let agent_pid = agent.id();
    let fp = start(&fp_bin);
    let nofp = start(&nofp_bin);
    let (fp_pid, nofp_pid) = (fp.0.id(), nofp.0.id());
    wait_for(
        "both programs to be traced",
        Duration::from_secs(10),
        || {
            let traced = pids_traced(port);
            [fp_pid, nofp_pid]
                .iter()
                .all(|p| traced.contains(&u64::from(*p)))
                .then_some(())
        },
    );
    assert_eq!(target_of(port, fp_pid)["unwind"], "fp+cfi");
    assert_eq!(target_of(port, nofp_pid)["unwind"], "dwarf");
    let (agent_fp, share_fp) = agent_site(port, fp_pid);
    let (agent_nofp, share_nofp) = agent_site(port, nofp_pid);
    eprintln!(
        "agent: fp over frameless glibc → {agent_fp} ({:.1}%); no frame pointers → {agent_nofp} ({:.1}%)",
        share_fp * 100.0,
        share_nofp * 100.0
    );
    assert_eq!(agent_fp, record_fp);
    assert_eq!(agent_nofp, record_nofp);
    // `top` on the same two processes, beside the agent: the same site, in the same mode.
    for (pid, mode) in [(fp_pid, "fp+cfi"), (nofp_pid, "dwarf")] {
        let top = TopScreen::start(pid, &["--by", "function"]);
        // Blank cells are skipped, not drawn: needles hold no spaces.
        top.wait_for(&[SITE, mode], Duration::from_secs(20));
        top.quit();
        eprintln!("top, pid {pid}: {SITE} shown, unwind {mode}");
    }
    // The site holds nearly all the time, not just the largest share.
    assert!(share_fp > 0.95, "{share_fp}");
    assert!(share_nofp > 0.95, "{share_nofp}");
    // pprof says the mode too: the profile's meta is not serialised there, /targets is.
    let pprof = get(
        port,
        &format!("/debug/pprof/contention?pid={nofp_pid}&seconds=0"),
    )
    .expect("pprof");
    assert_eq!(pprof.0, 200);
    let lost = metric(
        &get_text(port, "/metrics"),
        "lockscope_events_lost_total",
        &["reason=\"snapshot_unattributed\""],
    );
    assert_eq!(
        lost,
        Some(0.0),
        "snapshots of known targets are never unattributed"
    );
    eprintln!(
        "agent RSS with an fp+cfi and a dwarf target: {} KiB",
        vm_rss_kib(agent_pid)
    );
    drop(fp);
    drop(nofp);
    let err = stop_agent(agent);
    for line in err.lines().filter(|l| l.contains("attached in")) {
        eprintln!("{line}");
    }

    // The frame walk alone (`--unwind fp`) on the same program names the caller's caller:
    // the mode chosen is what makes the agent right.
    let (agent, port) = start_agent_with(
        lockscope(),
        &[
            "--comm".to_string(),
            fp_name.clone(),
            "--unwind".to_string(),
            "fp".to_string(),
        ],
    );
    let fp = start(&fp_bin);
    let pid = fp.0.id();
    wait_for("the program to be traced", Duration::from_secs(10), || {
        pids_traced(port).contains(&u64::from(pid)).then_some(())
    });
    assert_eq!(target_of(port, pid)["unwind"], "fp");
    let (walked, _) = agent_site(port, pid);
    eprintln!("agent --unwind fp: fp over frameless glibc → {walked}");
    assert_eq!(walked, "worker");
    drop(fp);
    stop_agent(agent);
}
