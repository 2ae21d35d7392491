//! owners: which member a row is of — the process the kernel saw the wait in, else its
//! thread's, learnt from /proc; and, where the fleet keeps them, members made for the rows of
//! traced processes it had none for.

use super::{Fleet, Joining, Strangers};
use crate::sys::{self, Target};
use crate::unwind::{UnwindMode, UnwindPlan};

impl<X> Fleet<X> {
    /// The traced process a wait row belongs to: the process the kernel saw it in when that
    /// is traced (the thread may be gone), else its thread's.
    pub(super) fn owner_of_row(&mut self, tgid: u32, tid: u32) -> Option<u32> {
        if self.members.contains_key(&tgid) {
            self.owner.insert(tid, tgid);
            return Some(tgid);
        }
        if let Some(pid) = self.owner_of(tid) {
            return Some(pid);
        }
        match self.strangers {
            Strangers::Join { ext, parent } if tgid != 0 && !self.retired(tgid, tid) => {
                self.join_stranger(tgid, parent, ext());
                self.owner.insert(tid, tgid);
                Some(tgid)
            }
            _ => None,
        }
    }

    /// A member for a traced process none was made for: as it is now if it still runs, else
    /// as its parent was (its maps never read: a fork copies its parent's memory, so the two
    /// match unless it exec'd, and the plan says so).
    fn join_stranger(&mut self, tgid: u32, parent: u32, ext: X) {
        let (target, maps, plan) = match (sys::target(tgid), self.members.get(&parent)) {
            (Ok(t), _) => {
                let plan = UnwindPlan {
                    mode: UnwindMode::FramePointers,
                    snapshot_bytes: 0,
                    why: Some("frame walk: first seen at a read".to_string()),
                };
                (t, None, plan)
            }
            (Err(_), Some(p)) => {
                let target = Target {
                    tgid,
                    ..p.target.clone()
                };
                let plan = UnwindPlan {
                    why: Some(format!(
                        "exited before any read: named with its parent {parent}'s maps, as at its fork"
                    )),
                    ..p.plan.clone()
                };
                (target, Some(p.maps.clone()), plan)
            }
            (Err(_), None) => {
                let target = Target {
                    tgid,
                    comm: String::new(),
                    exe: None,
                    go: None,
                };
                let plan = UnwindPlan {
                    mode: UnwindMode::FramePointers,
                    snapshot_bytes: 0,
                    why: Some("exited before any read of its memory maps".to_string()),
                };
                (target, None, plan)
            }
        };
        let member = self.join(Joining::now(target, None, plan, ext));
        if let Some(m) = maps {
            member.maps = m;
        }
    }

    /// Whether a row is of a member dropped in the last seconds (its process, or its thread).
    pub(super) fn retired(&self, tgid: u32, tid: u32) -> bool {
        self.retired.contains_key(&tid) || (tgid != 0 && self.retired.contains_key(&tgid))
    }

    /// The process a thread belongs to, if it is traced: known threads first, then /proc
    /// (a thread that started and waited since the last tick).
    pub(super) fn owner_of(&mut self, tid: u32) -> Option<u32> {
        if let Some(&p) = self.owner.get(&tid) {
            return Some(p);
        }
        let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
        let tgid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))?
            .trim()
            .parse()
            .ok()?;
        self.members.contains_key(&tgid).then(|| {
            self.owner.insert(tid, tgid);
            tgid
        })
    }
}
