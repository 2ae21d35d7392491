//! children: `record --follow-forks`. The kernel adds each process a traced process forks to
//! the traced set, asking for stack copies as its parent did; every tick this reads the set
//! and makes each child a member of the recording's fleet while it lives (its rows, maps and
//! threads are the fleet's), and chooses its unwinding for the executable it runs (again after
//! the exec a child usually makes right after the fork) as `record` would: the kernel's flags
//! for it, and the snapshot reader's unwinder.
use std::collections::HashMap;
use std::path::PathBuf;

use super::{Fleet, Joining, SnapshotDrain};
use crate::attach::Tracer;
use crate::sys;
use crate::unwind::{self, PlanCache, Unwind, UnwindMode};

pub struct Children {
    unwind: Unwind,
    /// Plans by executable file (a script starts the same programs many times).
    plans: PlanCache,
    /// The executable each child's unwinding was chosen for.
    chosen_for: HashMap<u32, Option<PathBuf>>,
}

impl Children {
    /// `unwind`: what `--unwind` asked for (each child's mode is chosen from it).
    pub fn new(unwind: Unwind) -> Children {
        Children {
            unwind,
            plans: PlanCache::default(),
            chosen_for: HashMap::new(),
        }
    }

    /// Reads the set (`parent` left out): a child seen for the first time joins the fleet,
    /// and one running a new executable gets its unwinding chosen again. Without a snapshot
    /// reader (the object copies no stacks) every child walks frame pointers.
    pub fn refresh(&mut self, tracer: &mut Tracer, parent: u32, fleet: &mut Fleet<()>) {
        for pid in tracer.targets().unwrap_or_default() {
            if pid == parent {
                continue;
            }
            let Ok(target) = sys::target(pid) else {
                // Gone: its pid must not stay in the set for whoever gets it next.
                let _ = tracer.remove_target(pid);
                continue;
            };
            // Exiting (a zombie's executable cannot be read): nothing to choose again for,
            // and its snapshots so far must stay.
            if target.exe.is_none() && self.chosen_for.contains_key(&pid) {
                continue;
            }
            if self.chosen_for.get(&pid) == Some(&target.exe) {
                if let Some(m) = fleet.members.get_mut(&pid) {
                    m.target = target;
                }
                continue;
            }
            self.chosen_for.insert(pid, target.exe.clone());
            let plan = match &fleet.drain {
                Some(_) => self.plans.choose(self.unwind, &target),
                None => unwind::choose(Unwind::FramePointers, &target),
            };
            if let Some(d) = &fleet.drain {
                match plan.mode {
                    UnwindMode::FramePointers => d.remove(pid),
                    mode => d.add(pid, SnapshotDrain::load(pid, mode)),
                }
            }
            // A full set cannot refuse a key it holds; a child gone meanwhile is fine.
            let _ = tracer.add_target(pid, plan.mode.target_flags());
            match fleet.members.get_mut(&pid) {
                Some(m) => {
                    m.target = target;
                    m.plan = plan;
                }
                None => {
                    fleet.join(Joining::now(target, None, plan, ()));
                }
            }
        }
    }
}
