//! metrics: the Prometheus exposition of `GET /metrics`, encoded by `prometheus-client`.
//! Wait totals are the kernel's cumulative rows, so each series only grows while its process
//! is traced. `site` is the lock site (the first frame outside the lock code); each process
//! gets `--top-sites` of them, handed out as sites first appear and kept for good (a site that
//! lost its label would make its series and `other` go backwards), and the rest share
//! `site="other"`.
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tracer_common::Counter as K;

use super::targets::{Since, State};
use crate::analyze::{behind_label, category_of, shown_rows, Behind, Waits};
use crate::profile::blamed_function;

/// The label of the lock sites past a process's `--top-sites`.
pub const OTHER_SITE: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    pid: String,
    comm: String,
    cgroup: String,
    class: String,
    category: String,
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BehindLabels {
    pid: String,
    comm: String,
    behind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapCounter {
    pid: String,
    comm: String,
    counter: String,
}

/// The kernel's loss counters, by the `reason` label they get.
const KERNEL_LOSSES: [(K, &str); 7] = [
    (K::StackErrors, "stack_error"),
    (K::StackMapFull, "stack_map_full"),
    (K::WaitMapFull, "wait_map_full"),
    (K::WakeMapFull, "wake_map_full"),
    (K::InflightFull, "inflight_map_full"),
    (K::WakerMapFull, "waker_map_full"),
    (K::MapInsertFailed, "map_insert_failed"),
];

/// Encodes every metric as Prometheus text.
pub fn encode(state: &mut State, top_sites: usize) -> String {
    let mut reg = Registry::default();
    let wait_s = Family::<WaitLabels, Counter<f64, AtomicU64>>::default();
    let waits = Family::<WaitLabels, Counter>::default();
    let behind = Family::<BehindLabels, Counter<f64, AtomicU64>>::default();
    let pids: Vec<u32> = state.targets().keys().copied().collect();
    for pid in pids {
        let Some(p) = state.profile(pid, Since::Attach) else {
            continue;
        };
        let Some(t) = state.fleet.members.get_mut(&pid) else {
            continue;
        };
        // Per (class, category, site): waits and ns, hottest first so the first sites to take
        // the free labels are the heaviest. Integer ns throughout: seconds are derived once
        // per series, so a series can only grow.
        let mut sums: HashMap<(String, String, String), (u64, u64)> = HashMap::new();
        let mut behind_ns: HashMap<&'static str, u64> = HashMap::new();
        for (row, class) in shown_rows(&p, Waits::All) {
            let stack = row.stack.and_then(|s| p.stacks.get(s));
            let key = (
                class.name().to_string(),
                category_of(&p, stack, row.op),
                blamed_function(&p, stack),
            );
            let e = sums.entry(key).or_default();
            e.0 += row.count;
            e.1 += row.total_ns;
            for b in &row.behind {
                *behind_ns
                    .entry(behind_label(Behind::Phase(b.phase)))
                    .or_default() += b.ns;
            }
        }
        for (label, ns) in behind_ns {
            let kept = t.ext.exported_behind.entry(label).or_default();
            *kept = (*kept).max(ns);
        }
        for (label, ns) in &t.ext.exported_behind {
            behind
                .get_or_create(&BehindLabels {
                    pid: pid.to_string(),
                    comm: t.target.comm.clone(),
                    behind: (*label).into(),
                })
                .inc_by(seconds(*ns));
        }
        let mut sums: Vec<_> = sums.into_iter().collect();
        sums.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(&b.0)));
        // Sites past the cap share `other`: add them up before the floor is applied.
        let mut now: HashMap<SeriesKey, (u64, u64)> = HashMap::new();
        for ((class, category, site), (n, ns)) in sums {
            let site = site_label(&mut t.ext.sites, site, top_sites);
            let e = now.entry((class, category, site)).or_default();
            e.0 += n;
            e.1 += ns;
        }
        for (key, (n, ns)) in now {
            let kept = t.ext.exported.entry(key).or_default();
            *kept = (kept.0.max(n), kept.1.max(ns));
        }
        for ((class, category, site), (n, ns)) in &t.ext.exported {
            let labels = WaitLabels {
                pid: pid.to_string(),
                comm: t.target.comm.clone(),
                cgroup: t.ext.cgroup.clone(),
                class: class.clone(),
                category: category.clone(),
                site: site.clone(),
            };
            wait_s.get_or_create(&labels).inc_by(seconds(*ns));
            waits.get_or_create(&labels).inc_by(*n);
        }
    }
    reg.register_with_unit(
        "lockscope_lock_wait",
        "Thread time spent blocked waiting, by process and lock site",
        Unit::Seconds,
        wait_s,
    );
    reg.register(
        "lockscope_lock_waits",
        "Waits that blocked, by process and lock site",
        waits,
    );
    reg.register_with_unit(
        "lockscope_lock_wait_behind",
        "Of the wait time on the bundled map's lock, what its holder ran meanwhile (a phase)",
        Unit::Seconds,
        behind,
    );

    let lost = Family::<Reason, Counter>::default();
    let lose = |reason: &str, n: u64| {
        lost.get_or_create(&Reason {
            reason: reason.into(),
        })
        .inc_by(n);
    };
    for (c, reason) in KERNEL_LOSSES {
        lose(reason, state.fleet.counters[c as usize]);
    }
    lose("target_cap", state.losses.target_cap);
    lose("attach_failed", state.losses.attach_failed);
    lose("thread_unattributed", state.fleet.unattributed);
    lose("snapshot_unattributed", state.fleet.snapshot_unattributed);
    reg.register(
        "lockscope_events_lost",
        "Events and processes not traced, by why",
        lost,
    );

    let targets = Gauge::<i64>::default();
    targets.set(state.targets().len() as i64);
    reg.register("lockscope_targets", "Processes traced now", targets);
    let stacks = Gauge::<i64>::default();
    stacks.set(state.fleet.stack_entries() as i64);
    reg.register(
        "lockscope_stack_map_entries",
        "Stacks held in the kernel's stack map (65,536 fit)",
        stacks,
    );

    let map_counters = Family::<MapCounter, Counter>::default();
    for (pid, t) in state.targets() {
        let Some(m) = t.map.as_ref().filter(|m| m.stats_offset.is_some()) else {
            continue;
        };
        for (name, v) in crate::tracee::read_counters(*pid, m).unwrap_or_default() {
            map_counters
                .get_or_create(&MapCounter {
                    pid: pid.to_string(),
                    comm: t.target.comm.clone(),
                    counter: name,
                })
                .inc_by(v);
        }
    }
    reg.register(
        "lockscope_bundled_map_events",
        "The bundled map's own counters (promotions, rebuilds, entries copied, misses, …)",
        map_counters,
    );

    let own = own_usage();
    let cpu = Counter::<f64, AtomicU64>::default();
    cpu.inc_by(own.cpu_seconds);
    reg.register_with_unit(
        "lockscope_agent_cpu",
        "CPU time the agent used",
        Unit::Seconds,
        cpu,
    );
    let rss = Gauge::<i64>::default();
    rss.set(own.rss_bytes as i64);
    reg.register_with_unit(
        "lockscope_agent_resident_memory",
        "The agent's resident memory",
        Unit::Bytes,
        rss,
    );
    let up = Gauge::<f64, AtomicU64>::default();
    up.set(state.started.elapsed().as_secs_f64());
    reg.register_with_unit(
        "lockscope_agent_uptime",
        "Time since the agent started",
        Unit::Seconds,
        up,
    );

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// One wait series of a process: (class, category, site label).
pub type SeriesKey = (String, String, String);

/// Integer nanoseconds as the exported seconds: one conversion of a monotonic integer, so
/// the exported value never goes down.
fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The label `site` gets: its own while fewer than `top` sites have one, kept for good.
fn site_label(sites: &mut Vec<String>, site: String, top: usize) -> String {
    if sites.contains(&site) {
        site
    } else if sites.len() < top {
        sites.push(site.clone());
        site
    } else {
        OTHER_SITE.to_string()
    }
}

struct Usage {
    cpu_seconds: f64,
    rss_bytes: u64,
}

/// The agent's own CPU time and RSS, from /proc/self.
fn own_usage() -> Usage {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name's ')': state is field 3, utime 14 and stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Usage {
        cpu_seconds: ticks as f64 / hz,
        rss_bytes: rss_kb * 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_past_the_cap_share_other_and_labels_are_kept() {
        let mut sites = Vec::new();
        assert_eq!(site_label(&mut sites, "a".into(), 2), "a");
        assert_eq!(site_label(&mut sites, "b".into(), 2), "b");
        assert_eq!(site_label(&mut sites, "c".into(), 2), OTHER_SITE);
        // A labelled site keeps its label however it ranks later.
        assert_eq!(site_label(&mut sites, "a".into(), 2), "a");
        assert_eq!(sites, ["a", "b"]);
    }

    #[test]
    fn own_usage_reads_this_process() {
        let u = own_usage();
        assert!(u.rss_bytes > 0);
        assert!(u.cpu_seconds >= 0.0);
    }
}
