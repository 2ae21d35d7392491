//! shard: which shard of which sharded map a lock is (DashMap's shard `RawRwLock`s), as read
//! from the live target while it was recorded.
use serde::{Deserialize, Serialize};

/// A lock inside a sharded map's shard block, or why its shard could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockShard {
    /// Shard `index` of `count` of the DashMap whose shard block starts at `map`.
    DashMap { index: u32, count: u32, map: u64 },
    /// A DashMap shard lock whose shard was not read, for this reason.
    DashMapUnread { why: String },
}

impl LockShard {
    /// One phrase for the lock at `uaddr`: `shard 3 of 8 of the DashMap at 0x55…`.
    pub fn describe(&self, uaddr: u64) -> String {
        match self {
            LockShard::DashMap { index, count, map } => {
                format!("shard {index} of {count} of the DashMap at {map:#x}")
            }
            LockShard::DashMapUnread { why } => {
                format!("DashMap lock at {uaddr:#x} (shard not read: {why})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LockInfo, Region};
    use super::*;

    #[test]
    fn a_shard_is_described_and_old_profiles_load() {
        let mut info = LockInfo {
            uaddr: 0x5000_0100,
            pid: None,
            region: Region::Heap,
            module: None,
            symbol: None,
            shard: None,
        };
        let old = serde_json::to_string(&info).unwrap();
        assert!(!old.contains("shard"), "{old}");
        assert_eq!(serde_json::from_str::<LockInfo>(&old).unwrap(), info);
        info.shard = Some(LockShard::DashMap {
            index: 3,
            count: 8,
            map: 0x5000_0000,
        });
        assert_eq!(info.describe(), "shard 3 of 8 of the DashMap at 0x50000000");
        let new = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<LockInfo>(&new).unwrap(), info);
        info.shard = Some(LockShard::DashMapUnread {
            why: "memory at 0x10 unreadable".into(),
        });
        assert_eq!(
            info.describe(),
            "DashMap lock at 0x50000100 (shard not read: memory at 0x10 unreadable)"
        );
    }
}
