//! new_stacks: keeps the memory maps complete for every recorded address. The kernel sends
//! the id of each stack the first time it stores it; if any of its addresses lies outside
//! the mappings read so far (a library loaded since, or a program that will exit before the
//! next periodic read), the maps are re-read at once, while the target still lives.
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tracer_common::{map, StackFrames};

use crate::attach::Tracer;
use crate::sys::MapHistory;

/// Re-reads forced by new stacks are at least this far apart (a burst of new stacks in a
/// starting program costs one read, not hundreds).
const MIN_REREAD: Duration = Duration::from_millis(20);

pub struct NewStacks {
    ring: AsyncFd<RingBuf<MapData>>,
    last_read: Option<Instant>,
    /// Stacks found to hold addresses outside the maps: re-read for them.
    pub rereads: u64,
}

impl NewStacks {
    /// Takes the ring buffer out of the loaded object (call inside the tokio runtime).
    pub fn take(tracer: &mut Tracer) -> Result<NewStacks> {
        let ring = RingBuf::try_from(
            tracer
                .ebpf
                .take_map(map::NEW_STACKS)
                .context("NEW_STACKS map")?,
        )?;
        Ok(NewStacks {
            // SAFETY: the RingBuf owns its fd and moves into the AsyncFd, so the fd stays open
            // and the same for the AsyncFd's whole life.
            ring: unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }?,
            last_read: None,
            rereads: 0,
        })
    }

    /// Waits until new stack ids are ready to read.
    pub async fn ready(&self) -> Result<()> {
        let mut guard = self.ring.readable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Reads the new stack ids; re-reads `maps` if one of them has a user-space address no
    /// mapping covers (a frame-pointer walk through frameless code also yields garbage such
    /// as small integers or non-canonical values: those are cut later, not looked for).
    pub fn check(&mut self, pid: u32, maps: &mut MapHistory, tracer: &Tracer) {
        let mut ids = Vec::new();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            if let Ok(b) = <[u8; 8]>::try_from(&item[..item.len().min(8)]) {
                ids.push(u64::from_ne_bytes(b));
            }
        }
        let Some(stacks) = tracer
            .ebpf
            .map(map::STACKS)
            .and_then(|m| BpfHashMap::<&MapData, u64, StackFrames>::try_from(m).ok())
        else {
            return;
        };
        let uncovered = ids.iter().any(|id| {
            stacks.get(id, 0).is_ok_and(|s| {
                s.frames[..(s.len as usize).min(s.frames.len())]
                    .iter()
                    .any(|&a| could_be_code(a) && maps.lookup(a).is_none())
            })
        });
        if !uncovered || self.last_read.is_some_and(|t| t.elapsed() < MIN_REREAD) {
            return;
        }
        self.last_read = Some(Instant::now());
        self.rereads += 1;
        maps.refresh(pid);
    }
}

/// An address user code could live at: above the unmapped first pages, below the top of the
/// 47-bit user half.
pub fn could_be_code(a: u64) -> bool {
    (0x1_0000..0x8000_0000_0000).contains(&a)
}
