//! `json`: the report as data, in the stable schema documented in docs/report-json.md
//! (`schema: "lockscope-report"`, `schema_version: 1`).
use crate::profile::{deadlocks, function_names, percent, MapKind, Profile};
use std::io::{self, Write};

use serde::Serialize;

use super::{bucket_range, key_label, releasers, Render};
use crate::analyze::{
    attribute, classify, groups, shown_totals, timeout_totals, Key, ViewOptions, Waits,
};

pub struct Json {
    pub view: ViewOptions,
}

pub const SCHEMA: &str = "lockscope-report";
/// Bump when a field changes meaning or goes away; adding fields does not bump it.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Report {
    schema: &'static str,
    schema_version: u32,
    pid: u32,
    comm: String,
    duration_ns: u64,
    stop: &'static str,
    unwind: String,
    by: &'static str,
    sort: &'static str,
    min_wait_ns: u64,
    /// Which waits the rows and totals cover: `contention`, `idle` or `all`.
    waits: &'static str,
    totals: Totals,
    /// The waits this view leaves out (`--waits`): idle waits by default.
    set_apart: SetApart,
    /// Groups left out by `--top` (not by `--min-wait`).
    omitted: usize,
    rows: Vec<Row>,
    /// Per module, frames nothing named and what would name them (absent when none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    unnamed: Vec<crate::profile::Unnamed>,
    /// The processes `record --follow-forks` followed (absent when none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    processes: Vec<crate::profile::Process>,
    bundled: Option<BundledReport>,
    /// Threads asleep in a futex wait from before attach to the end.
    blocked: Vec<BlockedReport>,
    /// Cycles of blocked threads, each waiting on a mutex the next one owns.
    possible_deadlocks: Vec<Vec<u32>>,
}

#[derive(Serialize)]
struct BlockedReport {
    tid: u32,
    /// What it waits for, as rows' `class`.
    class: &'static str,
    lock: String,
    op: String,
    /// The glibc mutex's owner, when it is a thread of the process.
    owner: Option<u32>,
    seen_ns: u64,
    /// Its stack's functions, innermost first.
    functions: Vec<String>,
}

#[derive(Serialize)]
struct Totals {
    waits: u64,
    wait_ns: u64,
    timeouts: u64,
    eagain: u64,
    lost_events: u64,
    lost_stacks: u64,
}

#[derive(Serialize)]
struct SetApart {
    waits: u64,
    wait_ns: u64,
}

#[derive(Serialize)]
struct Row {
    rank: usize,
    key: String,
    /// What the waits were: `contention`, or `idle-condvar`, `idle-park`, `idle-join`, ….
    class: &'static str,
    waits: u64,
    total_ns: u64,
    avg_ns: u64,
    max_ns: u64,
    share_percent: f64,
    threads: Vec<u32>,
    locks: Vec<String>,
    /// For `--by lock`: what the lock is and who released it.
    lock: Option<LockReport>,
    /// The group's hottest stack, innermost first.
    frames: Vec<FrameReport>,
    /// Non-empty log2 buckets of single waits.
    hist: Vec<Bucket>,
}

#[derive(Serialize)]
struct LockReport {
    what: String,
    symbol: Option<String>,
    releasing_threads: usize,
    woken: u64,
    /// Where the release that woke the most waiters was made (first frame outside lock code).
    #[serde(skip_serializing_if = "Option::is_none")]
    released_at: Option<String>,
}

#[derive(Serialize)]
struct FrameReport {
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    address: String,
    module: Option<String>,
    offset: Option<String>,
    /// True for functions inlined into the next entry.
    inlined: bool,
}

#[derive(Serialize)]
struct Bucket {
    ge_ns: u64,
    lt_ns: u64,
    count: u64,
}

#[derive(Serialize)]
struct BundledReport {
    /// Absent for the bundled map; `std-read-dirty` or `std-hash-trie` for Go's `sync.Map`.
    #[serde(skip_serializing_if = "MapKind::is_bundled")]
    kind: MapKind,
    categories: Vec<Share>,
    behind: Vec<Share>,
    fast_read_percent: Option<f64>,
    verdict: String,
}

#[derive(Serialize)]
struct Share {
    label: &'static str,
    waits: u64,
    wait_ns: u64,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Render for Json {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let t = shown_totals(profile, self.view.waits);
        let apart = match self.view.waits {
            Waits::Contention => shown_totals(profile, Waits::Idle),
            Waits::Idle => shown_totals(profile, Waits::Contention),
            Waits::All => Default::default(),
        };
        let all = groups(profile, &self.view);
        let rows = all
            .iter()
            .take(self.view.top)
            .enumerate()
            .map(|(i, g)| {
                let stack = g.hottest_stack.and_then(|s| profile.stacks.get(s));
                let mut frames = Vec::new();
                for f in stack.map(|s| &s.frames[..]).unwrap_or(&[]) {
                    let module = f
                        .module
                        .and_then(|m| profile.modules.get(m))
                        .map(|m| m.path.clone());
                    let base = |function: Option<String>, file, line, inlined| FrameReport {
                        function,
                        file,
                        line,
                        address: format!("{:#x}", f.addr),
                        module: module.clone(),
                        offset: f.offset.map(|o| format!("{o:#x}")),
                        inlined,
                    };
                    if f.syms.is_empty() {
                        frames.push(base(None, None, None, false));
                    }
                    for (j, s) in f.syms.iter().enumerate() {
                        frames.push(base(
                            Some(s.name.clone()),
                            s.file.clone(),
                            s.line,
                            j + 1 < f.syms.len(),
                        ));
                    }
                }
                if let Some(n) = self.view.max_frames {
                    frames.truncate(n);
                }
                let lock = match g.key {
                    Key::Lock(pid, uaddr) => {
                        let info = profile.lock_info(pid, uaddr);
                        let r = releasers(profile, pid, uaddr);
                        Some(LockReport {
                            what: info.map_or_else(|| "unknown".into(), |l| l.describe()),
                            symbol: info.and_then(|l| l.symbol.clone()),
                            releasing_threads: r.threads,
                            woken: r.woken,
                            released_at: r.hottest.map(|s| {
                                crate::profile::blamed_function(profile, profile.stacks.get(s))
                            }),
                        })
                    }
                    _ => None,
                };
                Row {
                    rank: i + 1,
                    key: key_label(&g.key, profile),
                    class: g.class.name(),
                    waits: g.count,
                    total_ns: g.total_ns,
                    avg_ns: g.avg_ns(),
                    max_ns: g.max_ns,
                    share_percent: round2(percent(g.total_ns, t.wait_ns)),
                    threads: g.threads.iter().copied().collect(),
                    locks: g
                        .locks
                        .iter()
                        .map(|&(pid, a)| key_label(&Key::Lock(pid, a), profile))
                        .collect(),
                    lock,
                    frames,
                    hist: g
                        .hist
                        .iter()
                        .enumerate()
                        .filter(|(_, &c)| c > 0)
                        .map(|(b, &count)| {
                            let (ge_ns, lt_ns) = bucket_range(b);
                            Bucket {
                                ge_ns,
                                lt_ns,
                                count,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let shares = |v: &[(crate::analyze::Behind, crate::analyze::Share)]| {
            v.iter()
                .map(|(b, s)| Share {
                    label: b.label(),
                    waits: s.waits,
                    wait_ns: s.wait_ns,
                })
                .collect()
        };
        let bundled = attribute(profile).map(|a| BundledReport {
            kind: profile
                .bundled
                .as_ref()
                .map_or(MapKind::Bundled, |b| b.kind),
            categories: a
                .by_category
                .iter()
                .map(|(c, s)| Share {
                    label: c.label(),
                    waits: s.waits,
                    wait_ns: s.wait_ns,
                })
                .collect(),
            behind: shares(&a.behind),
            fast_read_percent: a.fast_read_percent.map(round2),
            verdict: a.verdict,
        });
        let m = &profile.meta;
        let report = Report {
            schema: SCHEMA,
            schema_version: SCHEMA_VERSION,
            pid: m.pid,
            comm: m.comm.clone(),
            duration_ns: m.duration_ns,
            stop: m.stop.describe(),
            unwind: m.unwind.to_string(),
            by: self.view.by.name(),
            sort: self.view.sort.name(),
            min_wait_ns: self.view.min_wait_ns,
            waits: self.view.waits.name(),
            set_apart: SetApart {
                waits: apart.waits,
                wait_ns: apart.wait_ns,
            },
            totals: Totals {
                waits: t.waits,
                wait_ns: t.wait_ns,
                timeouts: timeout_totals(profile).timeouts,
                eagain: profile.counters.eagain,
                lost_events: profile.losses.events(),
                lost_stacks: profile.losses.stacks(),
            },
            omitted: all.len().saturating_sub(self.view.top),
            rows,
            unnamed: m.unnamed.clone(),
            processes: profile.processes.clone(),
            bundled,
            blocked: profile
                .blocked
                .iter()
                .map(|b| BlockedReport {
                    tid: b.tid,
                    class: classify(b.stack.and_then(|s| profile.stacks.get(s)), b.op).name(),
                    lock: format!("{:#x}", b.uaddr),
                    op: b.op.to_string(),
                    owner: b.owner,
                    seen_ns: b.seen_ns,
                    functions: b
                        .stack
                        .and_then(|s| profile.stacks.get(s))
                        .map(|s| function_names(s).map(String::from).collect())
                        .unwrap_or_default(),
                })
                .collect(),
            possible_deadlocks: deadlocks(&profile.blocked),
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)
    }
}
