//! handoff: the user-space half of pairing waiters with wakers whose syscall ended after
//! theirs (see the kernel's `handoff`). The kernel records such a wait under the waker's stack
//! when the waker exits; this module records the ones no waker came for, and gives the
//! waiter's stack snapshot, sent before its waker was known, to the waker rows.
use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::Ebpf;
use tracer_common::{map, Handoff, HandoffKey, Outcome, WaitKey, WaitStats, HANDED_OFF, NO_STACK};

use crate::symbolize::Addr;

/// Takes the waits out of the kernel's hand-off slots that ended before `ended_before_ns`
/// (monotonic): no wake of their futex word exited since, and none is likely to. Whoever
/// deletes a slot records its wait (the kernel's rule), so each comes back exactly once, with
/// no waker. A live reader (the agent) calls this every tick instead of peeking at the slots,
/// which would count the same leftovers again at every read.
pub fn consume_leftovers(
    ebpf: &mut Ebpf,
    ended_before_ns: u64,
) -> Result<Vec<(WaitKey, WaitStats)>> {
    let mut slots: BpfHashMap<&mut MapData, HandoffKey, Handoff> =
        BpfHashMap::try_from(ebpf.map_mut(map::HANDOFFS).context("HANDOFFS map")?)?;
    let stale: Vec<(HandoffKey, Handoff)> = slots
        .iter()
        .filter_map(|item| item.ok())
        .filter(|(_, h)| h.start_ns.saturating_add(h.waited) < ended_before_ns)
        .collect();
    let mut out: Vec<(WaitKey, WaitStats)> = Vec::new();
    for (slot, h) in stale {
        // A waker that exited meanwhile claimed it (and recorded it): not ours.
        if slots.remove(&slot).is_err() {
            continue;
        }
        let key = WaitKey {
            waker_id: NO_STACK,
            flags: HANDED_OFF,
            ..h.key
        };
        let mut one = WaitStats::default();
        one.add_wait(h.waited, &h.blamed, Outcome::from_u32(h.outcome));
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, row)) => row.merge(&one),
            None => out.push((key, one)),
        }
    }
    Ok(out)
}

/// The kernel row key a snapshot names, with the waker left out.
fn waiter_of(k: &WaitKey) -> WaitKey {
    WaitKey {
        waker_id: NO_STACK,
        ..*k
    }
}

/// Snapshot rows of handed-off waits name no waker (the waiter sent its snapshot first); the
/// kernel rows of the same waits name the waker that recorded them. Each such snapshot row is
/// moved to those kernel rows, as many waits to each as that row holds and other snapshots do
/// not already explain. Times and histograms are split in proportion when one snapshot row
/// covers several wakers.
pub fn pair_snapshots(
    waits: &[(WaitKey, WaitStats)],
    rows: HashMap<(WaitKey, Vec<Addr>), WaitStats>,
) -> HashMap<(WaitKey, Vec<Addr>), WaitStats> {
    // Room left in each handed-off kernel row, by its waiter.
    let mut room: HashMap<WaitKey, Vec<(WaitKey, u64)>> = HashMap::new();
    for (k, v) in waits.iter().filter(|(k, _)| k.flags & HANDED_OFF != 0) {
        let taken: u64 = rows
            .iter()
            .filter(|((rk, _), _)| rk == k)
            .map(|(_, st)| st.count)
            .sum();
        room.entry(waiter_of(k))
            .or_default()
            .push((*k, v.count.saturating_sub(taken)));
    }
    let mut out = HashMap::new();
    let mut pending = Vec::new();
    for ((k, frames), st) in rows {
        if k.flags & HANDED_OFF != 0 && k.waker_id == NO_STACK {
            pending.push((k, frames, st));
        } else {
            out.entry((k, frames))
                .or_insert_with(WaitStats::default)
                .merge(&st);
        }
    }
    for (k, frames, st) in pending {
        let mut left = st;
        for (row, space) in room.entry(waiter_of(&k)).or_default().iter_mut() {
            if left.count == 0 {
                break;
            }
            let n = left.count.min(*space);
            if n == 0 {
                continue;
            }
            *space -= n;
            let part = share(&left, n);
            left = left.minus(&part);
            out.entry((*row, frames.clone()))
                .or_insert_with(WaitStats::default)
                .merge(&part);
        }
        // No kernel row has room: keep it as the kernel sent it (its waker unknown).
        if left.count > 0 {
            out.entry((k, frames))
                .or_insert_with(WaitStats::default)
                .merge(&left);
        }
    }
    out
}

/// `n` of the waits in `st`, with their share of its time; histogram counts are taken from
/// the longest buckets down in proportion (rounded so the part holds exactly `n`).
fn share(st: &WaitStats, n: u64) -> WaitStats {
    if n >= st.count {
        return *st;
    }
    let mut part = WaitStats {
        count: n,
        total_ns: (st.total_ns as u128 * n as u128 / st.count as u128) as u64,
        max_ns: st.max_ns,
        ..WaitStats::default()
    };
    let mut need = n;
    for (i, &c) in st.hist.iter().enumerate().rev() {
        let take = c.min(need);
        part.hist[i] = take;
        need -= take;
        if need == 0 {
            break;
        }
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::stats;

    fn key(waker: u64, flags: u32) -> WaitKey {
        WaitKey {
            stack_id: 7,
            waker_id: waker,
            uaddr: 0x1000,
            tid: 3,
            flags,
            ..WaitKey::default()
        }
    }

    #[test]
    fn a_handed_off_snapshot_goes_to_the_wakers_that_recorded_its_waits() {
        let frames = vec![Addr::Ip(0x10)];
        let waits = vec![
            (key(100, HANDED_OFF), stats(2, 200)),
            (key(200, HANDED_OFF), stats(1, 100)),
            (key(100, 0), stats(5, 500)),
        ];
        let rows = HashMap::from([
            ((key(NO_STACK, HANDED_OFF), frames.clone()), stats(3, 300)),
            ((key(100, 0), frames.clone()), stats(5, 500)),
        ]);
        let out = pair_snapshots(&waits, rows);
        let got = |k: WaitKey| out.get(&(k, frames.clone())).map(|s| (s.count, s.total_ns));
        assert_eq!(got(key(100, HANDED_OFF)), Some((2, 200)));
        assert_eq!(got(key(200, HANDED_OFF)), Some((1, 100)));
        assert_eq!(got(key(100, 0)), Some((5, 500)), "rows with a waker stay");
        assert_eq!(
            got(key(NO_STACK, HANDED_OFF)),
            None,
            "nothing left unpaired"
        );
        let total: u64 = out.values().map(|s| s.hist.iter().sum::<u64>()).sum();
        assert_eq!(total, 8, "every wait is in exactly one histogram");
    }

    #[test]
    fn a_snapshot_no_waker_claimed_keeps_its_unknown_waker() {
        let frames = vec![Addr::Ip(0x10)];
        // The kernel row already explained by another snapshot: no room.
        let waits = vec![(key(100, HANDED_OFF), stats(1, 100))];
        let rows = HashMap::from([
            ((key(100, HANDED_OFF), frames.clone()), stats(1, 100)),
            (
                (key(NO_STACK, HANDED_OFF), vec![Addr::Ip(0x20)]),
                stats(1, 50),
            ),
        ]);
        let out = pair_snapshots(&waits, rows);
        assert_eq!(out.len(), 2);
        assert!(out.contains_key(&(key(NO_STACK, HANDED_OFF), vec![Addr::Ip(0x20)])));
    }
}
