//! children: `record --follow-forks`. The kernel adds each process a traced process forks to
//! the traced set, asking for stack copies as its parent did; every tick this reads the set
//! and, for each child while it lives, its memory maps, threads and what it runs (a child
//! usually execs right after the fork), and chooses its unwinding for that executable as
//! `record` would: the kernel's flags for it, and the snapshot reader's unwinder.
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::SnapshotDrain;
use crate::attach::Tracer;
use crate::sys::{self, thread_names, MapHistory, Target};
use crate::unwind::{self, PlanCache, Unwind, UnwindMode, UnwindPlan};

/// One followed process, as last seen alive.
pub struct Child {
    pub target: Target,
    pub maps: MapHistory,
    pub threads: BTreeMap<u32, String>,
    /// How its stacks are walked, chosen for the executable it ran when last seen.
    pub plan: UnwindPlan,
    /// That executable.
    chosen_for: Option<PathBuf>,
}

pub struct Children {
    pub seen: BTreeMap<u32, Child>,
    unwind: Unwind,
    /// Plans by executable file (a script starts the same programs many times).
    plans: PlanCache,
}

impl Children {
    /// `unwind`: what `--unwind` asked for (each child's mode is chosen from it).
    pub fn new(unwind: Unwind) -> Children {
        Children {
            seen: BTreeMap::new(),
            unwind,
            plans: PlanCache::default(),
        }
    }

    /// Reads the set (`parent` left out) and refreshes each child; a child seen for the first
    /// time or running a new executable gets its unwinding chosen. Without a snapshot reader
    /// (the object copies no stacks) every child walks frame pointers.
    pub fn refresh(&mut self, tracer: &mut Tracer, parent: u32, drain: Option<&SnapshotDrain>) {
        for pid in tracer.targets().unwrap_or_default() {
            if pid == parent {
                continue;
            }
            let Ok(target) = sys::target(pid) else {
                // Gone: its pid must not stay in the set for whoever gets it next.
                let _ = tracer.remove_target(pid);
                continue;
            };
            let child = self.seen.entry(pid).or_insert_with(|| Child {
                target: target.clone(),
                maps: MapHistory::default(),
                threads: BTreeMap::new(),
                plan: unwind::choose(Unwind::FramePointers, &target),
                chosen_for: None,
            });
            child.target = target;
            child.maps.refresh(pid);
            thread_names(pid, &mut child.threads);
            if child.chosen_for.is_none() || child.chosen_for != child.target.exe {
                child.chosen_for = child.target.exe.clone();
                child.plan = match drain {
                    Some(_) => self.plans.choose(self.unwind, &child.target),
                    None => unwind::choose(Unwind::FramePointers, &child.target),
                };
                if let Some(d) = drain {
                    match child.plan.mode {
                        UnwindMode::FramePointers => d.remove(pid),
                        mode => d.add(pid, SnapshotDrain::load(pid, mode)),
                    }
                }
                // A full set cannot refuse a key it holds; a child gone meanwhile is fine.
                let _ = tracer.add_target(pid, child.plan.mode.target_flags());
            }
        }
    }
}
