//! rows: what `cargo xtask bench` measures — its tracers (the columns), its rows (our own storms
//! and the real programs, each with its goal) — and the rounds that measure one row.
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::bench::programs::{Mariadb, Program};
use crate::bench::tracers::Tracer;
use crate::bench::{run_once, Sample, Workload};
use crate::run::root;

/// The columns. Dropped from earlier runs: perf stat (the same tracepoint floor as bpftrace
/// count-only), `--phase-probes all` (a uprobe cost of the bundled map only, not a kernel-hook
/// question) and the Go-only `--go-uprobes off` / `--go-sample 10` (measured on Go's own
/// benchmarks by `bench-events`).
pub(super) const TRACERS: [Tracer; 7] = [
    Tracer::None,
    Tracer::Lockscope,
    Tracer::LockscopeSyscalls,
    Tracer::LockscopeDwarf,
    Tracer::BpftraceStacks,
    Tracer::BpftraceCount,
    Tracer::BpftraceOffCpu,
];
/// The tracers a goal compares: untraced, lockscope on the scheduler hooks and the sched_switch
/// script.
pub(super) const GOAL_TRACERS: [Tracer; 4] = [
    Tracer::None,
    Tracer::Lockscope,
    Tracer::LockscopeDwarf,
    Tracer::BpftraceOffCpu,
];
/// Rounds of `GOAL_TRACERS` alone after a goal row's full rounds: a real program's runs spread
/// by ±10-25% here, and three samples cannot place a median within 5%.
pub(super) const GOAL_ROUNDS: usize = 4;

/// Work outside the lock that makes `lockdemo` moderately contended (~10k wait calls/s here).
const MODERATE_OUTSIDE: &str = "110";

/// One row of the table.
pub(super) enum Row {
    Own(Workload, Goal),
    DbBench,
    StressNg,
    Mariadb,
}

/// What the goals ask of a row.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Goal {
    None,
    /// Retained ≥ 0.95 and ≥ the sched_switch-only script's.
    Retained,
    /// Retained TPS ≥ 0.97.
    Tps,
}

impl Row {
    /// The row's name in the tables.
    pub(super) fn name(&self) -> String {
        match self {
            Row::Own(w, _) => w.name.clone(),
            Row::DbBench => "RocksDB db_bench readrandom (8 threads, one cache shard)".into(),
            Row::StressNg => "stress-ng --mutex 4".into(),
            Row::Mariadb => "MariaDB, sysbench oltp_read_write (16 threads)".into(),
        }
    }

    /// The unit of the row's own throughput figure.
    pub(super) fn unit(&self) -> &'static str {
        match self {
            Row::Own(..) | Row::DbBench => "ops/s",
            Row::StressNg => "bogo ops/s",
            Row::Mariadb => "TPS",
        }
    }

    pub(super) fn goal(&self) -> Goal {
        match self {
            Row::Own(_, goal) => *goal,
            Row::DbBench | Row::StressNg => Goal::Retained,
            Row::Mariadb => Goal::Tps,
        }
    }
}

fn own(name: &str, argv: Vec<String>) -> Row {
    with_goal(name, argv, Goal::None)
}

fn with_goal(name: &str, argv: Vec<String>, goal: Goal) -> Row {
    let w = Workload {
        name: name.into(),
        argv,
    };
    Row::Own(w, goal)
}

pub(super) fn rows(bin: &Path, pthread: &Path, secs: f64) -> Vec<Row> {
    let s = secs.to_string();
    let lockdemo = |extra: &[&str]| -> Vec<String> {
        [bin.join("lockdemo").display().to_string()]
            .into_iter()
            .chain(["contended", "--threads", "8", "--seconds", &s].map(String::from))
            .chain(extra.iter().map(|a| a.to_string()))
            .collect()
    };
    let map = |bin: PathBuf, preset: &str| -> Vec<String> {
        [bin.display().to_string(), "--preset".into(), preset.into()]
            .into_iter()
            .chain(["--duration".into(), s.clone()])
            .collect()
    };
    vec![
        own("futex storm (8 threads, one std Mutex)", lockdemo(&[])),
        own(
            "moderate contention",
            lockdemo(&["--outside", MODERATE_OUTSIDE]),
        ),
        own(
            "syncmap miss-storm",
            map(bin.join("syncmap-load"), "miss-storm"),
        ),
        own(
            "Go syncmap write-heavy",
            map(root().join("target/go/syncmap-load-go"), "write-heavy"),
        ),
        with_goal(
            "C pthread mutex storm (8 threads)",
            vec![pthread.display().to_string(), "8".into(), s.clone()],
            Goal::Retained,
        ),
        Row::DbBench,
        Row::StressNg,
        Row::Mariadb,
    ]
}

/// Rounds of one row, interleaved and rotated: every tracer's samples (empty where the tracer
/// cannot run on the row).
pub(super) fn measure(
    row: &Row,
    rounds: usize,
    secs: f64,
    lockscope: &Path,
    tmp: &Path,
) -> Result<(Vec<Vec<Sample>>, f64)> {
    let program = match row {
        Row::Own(..) => None,
        Row::DbBench => Some(Program::db_bench(tmp)?),
        Row::StressNg => Some(Program::StressNg),
        Row::Mariadb => Some(Mariadb::start(tmp)?),
    };
    let active_s = program.as_ref().map_or(secs, |p| p.active_s(secs));
    let mut samples: Vec<Vec<Sample>> = (0..TRACERS.len()).map(|_| Vec::new()).collect();
    let all: Vec<usize> = (0..TRACERS.len()).collect();
    let goal: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&t| GOAL_TRACERS.contains(&TRACERS[t]))
        .collect();
    let extra = if row.goal() == Goal::None {
        0
    } else {
        GOAL_ROUNDS
    };
    for round in 0..rounds + extra {
        let set = if round < rounds { &all } else { &goal };
        for i in 0..set.len() {
            let t = set[(i + round) % set.len()];
            let s = match (row, &program) {
                (Row::Own(w, _), _) => Some(run_once(w, TRACERS[t], lockscope, tmp)?),
                (_, Some(p)) => p.run(TRACERS[t], lockscope, tmp, secs)?,
                _ => None,
            };
            if let Some(s) = s {
                let hooks = s.lockscope.as_ref().map_or("", |r| r.hooks.as_str());
                let sched = hooks.contains("sched_switch");
                if TRACERS[t] == Tracer::Lockscope && !sched
                    || TRACERS[t] == Tracer::LockscopeSyscalls && sched
                {
                    bail!("{} ran on other hooks: {hooks}", TRACERS[t].label());
                }
                eprintln!(
                    "    round {round} {:<34} {:>12.0}",
                    TRACERS[t].label(),
                    s.throughput
                );
                samples[t].push(s);
            }
        }
    }
    Ok((samples, active_s))
}
