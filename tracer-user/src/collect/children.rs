//! children: `record --follow-forks`. The kernel adds each process a traced process forks to
//! the traced set; every tick this reads the set and, for each child while it lives, its
//! memory maps, threads and what it runs (a child usually execs right after the fork).
//! Children that exited leave the set.
use std::collections::BTreeMap;

use crate::attach::Tracer;
use crate::sys::{self, thread_names, MapHistory, Target};

/// One followed process, as last seen alive.
pub struct Child {
    pub target: Target,
    pub maps: MapHistory,
    pub threads: BTreeMap<u32, String>,
}

#[derive(Default)]
pub struct Children {
    pub seen: BTreeMap<u32, Child>,
}

impl Children {
    /// Reads the set (`parent` left out) and refreshes each child.
    pub fn refresh(&mut self, tracer: &mut Tracer, parent: u32) {
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
            });
            child.target = target;
            child.maps.refresh(pid);
            thread_names(pid, &mut child.threads);
        }
    }
}
