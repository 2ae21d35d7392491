//! lifecycle: targets coming and going. A matching process is added to the kernel's set first
//! (its futex waits are traced from then on), then its uprobes are placed; probes that fail
//! are retried with backoff without losing the futex waits. A process that exits, execs or
//! whose pid is reused is dropped (its rows, in-flight slots and stacks freed) and, if it still
//! matches, attached again as what it is now. Past `--max-targets`, the busiest processes (by
//! CPU time) are taken first, and the cap is logged once.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::identity::{live_exe, Change, Ident};
use super::targets::{Agent, Copies, Retry, State, Traced};
use crate::attach::Tracer;
use crate::collect::{Fleet, Joining, SnapshotDrain};
use crate::commands::session::{self, Probes};
use crate::profile::term_safe;
use crate::sys;
use crate::unwind::{self, PlanCache, Unwind, UnwindMode};

/// The first retry of failed probes, doubled after each failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);

impl State {
    /// Attaches to the processes that appeared, drops those that are gone or changed, and
    /// retries failed probes that are due.
    pub fn update_targets(
        &mut self,
        tracer: &mut Tracer,
        running: &BTreeSet<u32>,
        probes: &Probes,
        max_targets: usize,
    ) {
        let changed: Vec<(u32, Change)> = self
            .fleet
            .members
            .iter()
            .map(|(&pid, t)| match running.contains(&pid) {
                true => (pid, Change::of(pid, &t.ext.ident)),
                false => (pid, Change::Gone),
            })
            .filter(|(_, c)| *c != Change::Same)
            .collect();
        for (pid, why) in changed {
            if let Err(e) = self.drop_target(tracer, pid, why) {
                eprintln!("lockscope agent: dropping pid {pid}: {e:#}");
            }
        }
        self.refused.retain(|p| running.contains(p));
        self.capped.retain(|p| running.contains(p));
        let mut new: Vec<u32> = running
            .iter()
            .filter(|p| !self.fleet.members.contains_key(p) && !self.refused.contains(p))
            .copied()
            .collect();
        if self.fleet.members.len() + new.len() > max_targets {
            // Busiest first: the processes most likely to have lock waits worth seeing.
            new.sort_by_key(|&p| std::cmp::Reverse(cpu_ticks(p)));
        }
        for pid in new {
            if self.fleet.members.len() >= max_targets {
                if self.capped.insert(pid) {
                    self.losses.target_cap += 1;
                }
                if !self.cap_logged {
                    self.cap_logged = true;
                    eprintln!(
                        "lockscope agent: --max-targets {max_targets} reached: the busiest processes are traced, the rest counted as lockscope_events_lost_total{{reason=\"target_cap\"}} (logged once)"
                    );
                }
                continue;
            }
            let began = Instant::now();
            let reader = Reader {
                copies: self.copies,
                plans: &mut self.plans,
            };
            match attach_target(tracer, pid, probes, &mut self.fleet, reader) {
                Ok(t) => {
                    eprintln!(
                        "lockscope agent: tracing pid {pid} ({}), unwind {}{}, attached in {} ms",
                        term_safe(&t.target.comm),
                        t.plan.mode.name(),
                        t.plan
                            .why
                            .as_deref()
                            .map(|w| format!(" ({})", term_safe(w)))
                            .unwrap_or_default(),
                        began.elapsed().as_millis()
                    );
                    // A probe that failed because the process exited meanwhile lost nothing.
                    if let Some(r) = t.ext.retry.as_ref().filter(|_| Ident::of(pid).is_some()) {
                        self.losses.attach_failed += 1;
                        eprintln!(
                            "lockscope agent: pid {pid}: probes not placed (futex waits are traced; retrying): {}",
                            r.why
                        );
                    }
                    self.capped.remove(&pid);
                }
                // It exited between the scan and the attach: nothing was lost.
                Err(_) if Ident::of(pid).is_none() => {}
                Err(e) => {
                    // Not traceable at all (not ours to trace): not tried again.
                    self.refused.insert(pid);
                    self.losses.attach_failed += 1;
                    eprintln!("lockscope agent: cannot trace pid {pid}: {e:#}");
                }
            }
        }
        self.retry_probes(tracer, probes);
    }

    /// Places the probes of targets whose last attempt failed, when their backoff is up.
    fn retry_probes(&mut self, tracer: &mut Tracer, probes: &Probes) {
        let now = Instant::now();
        for (pid, t) in &mut self.fleet.members {
            let Some(r) = &t.ext.retry else { continue };
            if r.at > now {
                continue;
            }
            let delay = r.delay;
            match place(tracer, t, probes) {
                Ok(()) => eprintln!(
                    "lockscope agent: pid {pid}: probes placed on retry ({})",
                    t.ext.probes
                ),
                Err(e) => {
                    let delay = (delay * 2).min(RETRY_MAX);
                    t.ext.retry = Some(Retry {
                        at: now + delay,
                        delay,
                        why: format!("{e:#}"),
                    });
                }
            }
        }
    }

    /// Stops tracing `pid` and frees what the kernel held for it: its rows, in-flight slots
    /// and the stacks no other target's rows name.
    pub(super) fn drop_target(&mut self, tracer: &mut Tracer, pid: u32, why: Change) -> Result<()> {
        let Some(t) = self.fleet.leave(tracer, pid)? else {
            return Ok(());
        };
        eprintln!(
            "lockscope agent: pid {pid} ({}) {}; dropped",
            term_safe(&t.target.comm),
            why.name()
        );
        tracer.detach_uprobes(t.ext.uprobes)
    }
}

/// A process's CPU time so far (utime + stime, in clock ticks); 0 when unreadable.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_string();
            Some(
                after
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum(),
            )
        })
        .unwrap_or(0)
}

/// Places `t`'s uprobes (the bundled map's phases, goroutine probes). On failure the ones
/// placed are taken off again, and the caller retries later.
fn place(tracer: &mut Tracer, t: &mut Traced, probes: &Probes) -> Result<()> {
    let placed = session::plan_probes(&t.target, probes)
        .and_then(|plan| session::place(tracer, &t.target, t.map.as_ref(), probes, plan));
    let uprobes = tracer.take_uprobes();
    match placed {
        Ok(placed) => {
            t.go_probes = placed.go_probes;
            t.tokio = placed.tokio.into_target(None);
            t.ext.probes = uprobes.len();
            t.ext.uprobes = uprobes;
            t.ext.retry = None;
            Ok(())
        }
        Err(e) => {
            let _ = tracer.detach_uprobes(uprobes);
            Err(e)
        }
    }
}

/// How [`attach_target`] chooses a process's unwinding.
struct Reader<'a> {
    copies: Copies,
    plans: &'a mut PlanCache,
}

/// Finds what `pid` runs and adds it to the kernel's set (its futex waits are traced from
/// here on) and to the fleet, then places its uprobes; failed probes are left to
/// [`State::retry_probes`].
fn attach_target<'f>(
    tracer: &mut Tracer,
    pid: u32,
    probes: &Probes,
    fleet: &'f mut Fleet<Agent>,
    reader: Reader,
) -> Result<&'f mut Traced> {
    let t0 = Instant::now();
    let ident = Ident::of(pid).context("the process is gone")?;
    let mut target = sys::target(pid)?;
    // With capabilities rather than root, only processes the caller could ptrace.
    sys::check_may_trace(target.tgid)?;
    // A deleted or replaced executable is read as the file the process runs.
    target.exe = target.exe.as_deref().map(|e| live_exe(target.tgid, e));
    let map = session::recognise(&mut target, probes);
    // Its unwinding, as `record` would choose it for this executable. Without stack copies
    // in the kernel (`--unwind fp`) that is the frame walk.
    let mut plan = match reader.copies {
        Copies::On => reader.plans.choose(probes.unwind, &target),
        Copies::Off => unwind::choose(Unwind::FramePointers, &target),
    };
    // The reader starts with the first process that copies stacks.
    if plan.mode != UnwindMode::FramePointers && fleet.drain.is_none() {
        match SnapshotDrain::prepare_set().start(tracer, Vec::new()) {
            Ok(d) => fleet.drain = Some(d),
            Err(e) => {
                eprintln!("lockscope agent: no stack-copy reader ({e:#}); walking frame pointers");
                plan = unwind::choose(Unwind::FramePointers, &target);
            }
        }
    }
    let drain = fleet.drain.as_ref();
    // The reader knows the process (its modules loaded) before the kernel sends its copies.
    if let (Some(d), UnwindMode::FpCfi | UnwindMode::Dwarf) = (drain, plan.mode) {
        d.add(pid, SnapshotDrain::load(pid, plan.mode));
    }
    if let Err(e) = tracer.add_target(target.tgid, plan.mode.target_flags()) {
        if let Some(d) = drain {
            d.remove(pid);
        }
        return Err(e);
    }
    let ext = Agent {
        cgroup: sys::cgroup(pid),
        uprobes: tracer.take_uprobes(),
        probes: 0,
        exported: Default::default(),
        exported_behind: Default::default(),
        sites: Vec::new(),
        ident,
        retry: None,
    };
    let t = fleet.join(Joining::now(target, map, plan, ext));
    if let Err(e) = place(tracer, t, probes) {
        t.ext.retry = Some(Retry {
            at: Instant::now() + RETRY_FIRST,
            delay: RETRY_FIRST,
            why: format!("{e:#}"),
        });
    }
    t.attach_ns = t0.elapsed().as_nanos() as u64;
    Ok(t)
}
