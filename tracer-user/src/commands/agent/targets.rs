//! targets: what the agent keeps of its processes beside the engine's rows (`collect::Fleet`):
//! which container each is in, its uprobes and their retries, what `/metrics` exported, and
//! its identity as attached; and the agent's own losses, caps and unwind plans.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::attach::{Hooks, Tracer, Uprobes};
pub use crate::collect::Since;
use crate::collect::{Fleet, Member, Strangers};
use crate::profile::Profile;
use crate::unwind::PlanCache;

use super::identity::Ident;

/// Losses only the agent can have, beside the engine's.
#[derive(Debug, Default, Clone, Copy)]
pub struct AgentLosses {
    /// Matching processes not traced because `--max-targets` were already traced.
    pub target_cap: u64,
    /// Matching processes whose probes could not be placed.
    pub attach_failed: u64,
}

/// The agent's own state of one traced process.
pub struct Agent {
    /// The process's cgroup (v2 path), a label: which container or service it is.
    pub cgroup: String,
    pub(super) uprobes: Uprobes,
    pub probes: usize,
    /// What `/metrics` last exported per series, in integer nanoseconds and counts: a series
    /// never goes below it (a wait that moved to another site label stays counted where it was).
    pub exported: HashMap<super::metrics::SeriesKey, (u64, u64)>,
    /// The same for the `behind` series, by phase label: ns.
    pub exported_behind: HashMap<&'static str, u64>,
    /// Lock sites with their own metric label, in the order they got one (kept for good, so
    /// every series only grows).
    pub sites: Vec<String>,
    /// The process as attached: an exec or a reused pid is a new target.
    pub(super) ident: Ident,
    /// Probes that failed to attach, retried with backoff (the futex waits are traced
    /// meanwhile).
    pub(super) retry: Option<Retry>,
}

/// One traced process: the engine's member, with the agent's state of it.
pub type Traced = Member<Agent>;

/// A probe attach to try again.
pub struct Retry {
    pub(super) at: Instant,
    pub(super) delay: Duration,
    pub why: String,
}

/// Whether the kernel programs copy stacks for the processes that ask (loaded so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    On,
    Off,
}

/// Everything the agent knows; the HTTP handlers read it between ticks.
pub struct State {
    /// The engine: every traced process's rows, maps and profiles.
    pub fleet: Fleet<Agent>,
    pub losses: AgentLosses,
    /// Matching processes left out by the cap (counted once each).
    pub(super) refused: BTreeSet<u32>,
    /// Matching processes left out by `--max-targets` (each counted once; taken when room
    /// frees), and whether the cap was logged.
    pub(super) capped: BTreeSet<u32>,
    pub(super) cap_logged: bool,
    pub started: Instant,
    /// Whether the kernel was loaded with stack copies (not with `--unwind fp`).
    pub(super) copies: Copies,
    /// Unwind plans by executable file.
    pub(super) plans: PlanCache,
}

impl State {
    pub fn new(copies: Copies, hooks: Hooks) -> State {
        State {
            fleet: Fleet::new(hooks, Strangers::Lost),
            losses: AgentLosses::default(),
            refused: BTreeSet::new(),
            capped: BTreeSet::new(),
            cap_logged: false,
            started: Instant::now(),
            copies,
            plans: PlanCache::default(),
        }
    }

    /// The traced processes, by pid.
    pub fn targets(&self) -> &BTreeMap<u32, Traced> {
        &self.fleet.members
    }

    /// One tick of the engine: maps, threads and the kernel's rows.
    pub fn refresh(&mut self, tracer: &mut Tracer, window: Duration) -> anyhow::Result<()> {
        self.fleet.tick(tracer, window)
    }

    /// The profile of `pid`'s waits since `since`, symbolized.
    pub fn profile(&mut self, pid: u32, since: Since) -> Option<Profile> {
        self.fleet.profile(pid, since)
    }

    /// Drops every target: detaches their uprobes (the tracer's drop does the rest).
    pub fn detach_all(&mut self, tracer: &mut Tracer) {
        for t in self.fleet.leave_all() {
            let _ = tracer.detach_uprobes(t.ext.uprobes);
        }
    }
}
