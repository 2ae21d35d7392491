//! lockshards: the shards of the locks the lock-hint probes saw (DashMap's shard locks), read
//! from each traced process's memory while it lives: at every tick (the recorder's, the
//! agent's) for the addresses new since the last, and once more at a recording's end for
//! those whose read failed. A profile is built after the target
//! may have exited, so it takes what was read here.
use std::collections::BTreeMap;

use tracer_common::LOCK_HINTED;

use super::Raw;
use crate::attach::Tracer;
use crate::profile::{LockInfo, LockShard};
use crate::tracee;

/// Shards found, by (tgid, lock address).
#[derive(Default)]
pub struct LockShards {
    found: BTreeMap<(u32, u64), LockShard>,
}

impl LockShards {
    /// Reads the shard of each lock address the kernel saw in a process `traced` says is
    /// traced that has none yet. `again`: also retry those whose read failed (the end's last
    /// try).
    pub fn read(&mut self, tracer: &Tracer, again: Retry, traced: impl Fn(u32) -> bool) {
        let Ok(addrs) = tracer.lock_hint_addrs() else {
            return;
        };
        for (addr, tgid) in addrs.into_iter().filter(|&(_, t)| traced(t)) {
            let known = self.found.get(&(tgid, addr));
            let retry =
                again == Retry::Failed && matches!(known, Some(LockShard::DashMapUnread { .. }));
            if known.is_none() || retry {
                self.found
                    .insert((tgid, addr), tracee::dash_shard(tgid, addr));
            }
        }
    }

    /// Forgets process `tgid`'s shards (it is traced no more).
    pub fn forget(&mut self, tgid: u32) {
        self.found.retain(|&(t, _), _| t != tgid);
    }

    /// The shards found in process `tgid`, by lock address.
    pub fn of(&self, tgid: u32) -> BTreeMap<u64, LockShard> {
        self.found
            .range((tgid, 0)..=(tgid, u64::MAX))
            .map(|(&(_, addr), s)| (addr, s.clone()))
            .collect()
    }
}

/// Whether [`LockShards::read`] retries the reads that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    NewOnly,
    Failed,
}

/// Each lock a wait row names, placed in the target's memory; a hinted lock (a DashMap shard's)
/// with the shard read while the target lived, or why none was.
pub fn lock_infos(raw: &Raw) -> Vec<LockInfo> {
    let mut uaddrs: Vec<u64> = raw.waits.iter().map(|(k, _)| k.uaddr).collect();
    uaddrs.sort_unstable();
    uaddrs.dedup();
    let mut infos = crate::tracee::describe_lock(&raw.maps.last_text, uaddrs);
    for (k, _) in raw.waits.iter().filter(|(k, _)| k.flags & LOCK_HINTED != 0) {
        if let Some(info) = infos
            .iter_mut()
            .find(|l| l.uaddr == k.uaddr && l.shard.is_none())
        {
            info.shard = Some(raw.lock_shards.get(&k.uaddr).cloned().unwrap_or_else(|| {
                LockShard::DashMapUnread {
                    why: "its memory was not read while the process lived".into(),
                }
            }));
        }
    }
    infos
}
