//! assemble: turns what collect read (kernel rows, stacks, maps, counters) into the versioned
//! profile: symbolized stacks, DWARF snapshot rows merged with the kernel's, Go idle threads
//! set apart, lock names, and the bundled map's checks.
use std::collections::{BTreeMap, HashMap};

use tracer_common::{Counter, OpKind, Phase, PhaseStats, WaitKey, WaitStats, NO_STACK};

use super::build::Inputs;
use crate::collect::{MapWindow, Raw, SlotPhases, Snapshot};
use crate::profile::{
    Blamed, Bundled, Check, Counters, FutexOp, GoTarget, Losses, Meta, PhaseRow, Profile, TrieNode,
    WaitRow, WakeRow, FORMAT, VERSION,
};
use crate::profile::{MapCounter, MapKind};
use crate::symbolize::{frames_with_leaf, Addr, Cut, StackSymbolizer};
use crate::tracee;
use crate::tracee::BundledMap;
use crate::unwind::UnwindMode;

/// What each holder phase ran during a row's waits, heaviest first; `scale` (0..=1) keeps
/// the share of it that goes to a part of the row (DWARF mode splits rows by unwound stack).
fn behind(v: &WaitStats, scale: f64) -> Vec<Blamed> {
    let mut out: Vec<Blamed> = Phase::ALL
        .into_iter()
        .map(|p| Blamed {
            phase: p.into(),
            waits: (v.blamed_waits[p as usize] as f64 * scale).round() as u64,
            ns: (v.blamed_ns[p as usize] as f64 * scale).round() as u64,
        })
        .filter(|b| b.ns > 0)
        .collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.ns));
    out
}

/// The share of kernel row `v`'s time that `part` (a slice of the same waits) holds.
fn part_of(part_ns: u64, v: &WaitStats) -> f64 {
    if v.total_ns == 0 {
        0.0
    } else {
        (part_ns as f64 / v.total_ns as f64).min(1.0)
    }
}

/// Symbolizes the raw rows and assembles the profile (see `build`, which adds the threads
/// still blocked and the lock wrappers).
pub(super) fn assemble(mut raw: Raw, inputs: &Inputs, sym: &mut StackSymbolizer) -> Profile {
    let (target, map) = (inputs.target, inputs.map);
    // Snapshot modes: waits whose copy was dropped take their row's unwound stacks.
    let inferred = match (&mut raw.dwarf, inputs.plan.mode) {
        (Some(rows), UnwindMode::FpCfi | UnwindMode::Dwarf) => {
            super::infer::spread_remainders(&raw.waits, rows)
        }
        _ => 0,
    };
    sym.set_maps(&raw.maps);
    // A final stack is a kernel stack plus its validated leaf caller.
    let mut index: HashMap<(u64, u64), Option<usize>> = HashMap::new();
    let mut stacks = Vec::new();
    let mut resolve = |sym: &mut StackSymbolizer, stack_id: u64, leaf_ret: u64| -> Option<usize> {
        if stack_id == NO_STACK {
            return None;
        }
        *index.entry((stack_id, leaf_ret)).or_insert_with(|| {
            let kernel = raw.stacks.get(&stack_id)?;
            stacks.push(frames_with_leaf(kernel, leaf_ret, |a| {
                sym.is_return_address(a)
            }));
            Some(stacks.len() - 1)
        })
    };

    // DWARF mode: what the snapshots account for, per kernel row. The kernel row keeps only
    // the rest (waits whose snapshot was dropped), under its frame-pointer stack.
    let mut explained: HashMap<WaitKey, WaitStats> = HashMap::new();
    for ((key, _), st) in raw.dwarf.iter().flatten() {
        explained.entry(*key).or_default().merge(st);
    }
    let remainder =
        |k: &WaitKey, v: &WaitStats| -> WaitStats { explained.get(k).map_or(*v, |e| v.minus(e)) };
    let waits: Vec<WaitRow> = raw
        .waits
        .iter()
        .map(|(k, v)| (k, remainder(k, v), v))
        .map(|(k, v, whole)| WaitRow {
            stack: resolve(sym, k.stack_id, k.leaf_ret),
            // The waker's leaf is not kept per wait; its own wake row carries it.
            waker_stack: None,
            uaddr: k.uaddr,
            tid: k.tid,
            pid: None,
            op: FutexOp::from_kind(k.kind),
            count: v.count,
            total_ns: v.total_ns,
            max_ns: v.max_ns,
            interrupted: v.interrupted,
            timeouts: v.timeouts,
            timeout_ns: v.timeout_ns,
            errors: v.errors,
            holder_phase: None,
            behind: behind(whole, part_of(v.total_ns, whole)),
            covered_waits: (whole.covered as f64 * part_of(v.total_ns, whole)).round() as u64,
            hist: v.hist.to_vec(),
        })
        .collect();
    let wakes: Vec<WakeRow> = raw
        .wakes
        .iter()
        .map(|(k, v)| WakeRow {
            stack: resolve(sym, k.stack_id, k.leaf_ret),
            uaddr: k.uaddr,
            tid: k.tid,
            pid: None,
            op: FutexOp::from_kind(k.kind),
            calls: v.calls,
            woken: v.woken,
            empty: v.empty,
        })
        .collect();
    // Waiters name their waker by its kernel stack id and leaf; map that to its final stack.
    let waker_of: HashMap<u64, Option<usize>> = raw
        .wakes
        .iter()
        .zip(&wakes)
        .map(|((k, _), row)| (tracer_common::waker_id(k.stack_id, k.leaf_ret), row.stack))
        .collect();
    let mut waits: Vec<WaitRow> = waits
        .into_iter()
        .zip(&raw.waits)
        .map(|(mut row, (k, _))| {
            row.waker_stack = waker_of.get(&k.waker_id).copied().flatten();
            row
        })
        // A row fully explained by snapshots has nothing left to say.
        .filter(|r| r.count > 0 || r.timeouts > 0 || r.errors > 0 || r.interrupted > 0)
        .collect();
    // The snapshot rows, each under its unwound stack, with their share of the kernel row's
    // holder blame (the kernel keeps blame per row, not per snapshot).
    let kernel_row: HashMap<&WaitKey, &WaitStats> = raw.waits.iter().map(|(k, v)| (k, v)).collect();
    let mut unwound: HashMap<&[Addr], usize> = HashMap::new();
    for ((k, frames), st) in raw.dwarf.iter().flatten() {
        let stack = match unwound.get(frames.as_slice()) {
            Some(&i) => i,
            None => {
                stacks.push(frames.clone());
                unwound.insert(frames, stacks.len() - 1);
                stacks.len() - 1
            }
        };
        waits.push(WaitRow {
            stack: (!frames.is_empty()).then_some(stack),
            waker_stack: waker_of.get(&k.waker_id).copied().flatten(),
            uaddr: k.uaddr,
            tid: k.tid,
            pid: None,
            op: FutexOp::from_kind(k.kind),
            count: st.count,
            total_ns: st.total_ns,
            max_ns: st.max_ns,
            interrupted: 0,
            timeouts: st.timeouts,
            timeout_ns: st.timeout_ns,
            errors: 0,
            holder_phase: None,
            behind: kernel_row
                .get(k)
                .map_or_else(Vec::new, |v| behind(v, part_of(st.total_ns, v))),
            covered_waits: kernel_row.get(k).map_or(0, |v| {
                (v.covered as f64 * part_of(st.total_ns, v)).round() as u64
            }),
            hist: st.hist.to_vec(),
        });
    }

    let t = std::time::Instant::now();
    // Every frame shown is code of the target; a stack is cut at its first impossible frame.
    let mut cut: Vec<Cut> = stacks.iter_mut().map(|s| sym.cut_implausible(s)).collect();
    let mut stacks = sym.symbolize(stacks);
    let modules = sym.modules();
    // Go: cut scheduler stacks where they run into a parked goroutine's frames, and keep idle
    // threads parking (not contention) out of the rows, counted instead.
    let go = target.go.as_ref().map(|version| {
        for (s, c) in stacks.iter_mut().zip(cut.iter_mut()) {
            if tracee::cut_at_scheduler(s) {
                *c = Cut::Whole;
            }
        }
        let (idle, busy): (Vec<WaitRow>, Vec<WaitRow>) =
            std::mem::take(&mut waits).into_iter().partition(|r| {
                tracee::classify_go_wait(r.stack.and_then(|i| stacks.get(i)))
                    == tracee::GoWait::IdleThread
            });
        waits = busy;
        GoTarget {
            version: version.clone(),
            goroutine_probes: inputs.go_probes,
            idle_waits: idle.iter().map(|r| r.count).sum(),
            idle_ns: idle.iter().map(|r| r.total_ns).sum(),
            sampled: raw.go_sampled.clone(),
            windows: raw.windows.clone(),
        }
    });
    // Cuts are counted over the stacks rows show (DWARF mode replaces most kernel stacks).
    let shown: std::collections::BTreeSet<usize> = waits
        .iter()
        .flat_map(|r| [r.stack, r.waker_stack])
        .chain(wakes.iter().map(|r| r.stack))
        .flatten()
        .collect();
    let stacks_cut = shown
        .iter()
        .filter(|&&i| cut.get(i) == Some(&Cut::Cut))
        .count() as u64;
    let unnamed = sym.unnamed(&stacks);
    let symbolize_ns = t.elapsed().as_nanos() as u64;
    let c = |x: Counter| raw.counters[x as usize];
    let trie = map
        .filter(|m| active_kind(m, &raw.phases, raw.map_window.as_ref()) == MapKind::StdHashTrie)
        .map(|_| trie_nodes(target.tgid, &raw))
        .unwrap_or_default();
    let fast_path = map
        .and_then(|m| m.std.as_ref())
        .and_then(|_| super::oncpu::estimate(&raw.oncpu, sym));
    let locks = super::lockshards::lock_infos(&raw);
    let mut profile = Profile {
        format: FORMAT.into(),
        version: VERSION,
        meta: Meta {
            pid: target.tgid,
            comm: target.comm.clone(),
            exe: target.exe.as_ref().map(|p| p.display().to_string()),
            start_unix_ms: inputs.start_unix_ms,
            duration_ns: raw.elapsed.as_nanos() as u64,
            attach_ns: inputs.attach_ns,
            symbolize_ns,
            stop: raw.stop,
            unwind: inputs.plan.mode.into(),
            unwind_note: inputs.plan.why.clone(),
            hooks: Some(inputs.hooks.describe()),
            unnamed,
            kernel: kernel_release(),
            lockscope_version: env!("CARGO_PKG_VERSION").into(),
        },
        counters: Counters {
            calls: c(Counter::Calls),
            wait_calls: c(Counter::WaitEnters),
            wake_calls: c(Counter::WakeEnters),
            eagain: c(Counter::Eagain),
            in_flight_at_start: c(Counter::ExitWithoutEnter),
            still_waiting_at_end: raw.still_waiting,
            longest_unfinished_ns: raw.longest_unfinished_ns,
            empty_wakes: c(Counter::EmptyWakes),
            handed_off: c(Counter::HandedOff),
            waker_unknown: c(Counter::HandoffsFull) + c(Counter::WakerUnseen) + raw.handoffs_left,
            stacks_inferred: inferred,
        },
        losses: Losses {
            stack_errors: c(Counter::StackErrors),
            stack_map_full: c(Counter::StackMapFull),
            wait_map_full: c(Counter::WaitMapFull),
            wake_map_full: c(Counter::WakeMapFull),
            inflight_full: c(Counter::InflightFull) + c(Counter::SchedTasksFull),
            waker_map_full: c(Counter::WakerMapFull),
            snapshots_dropped: c(Counter::SnapshotsDropped),
            snapshot_read_errors: c(Counter::SnapshotReadErrors),
            stacks_cut,
            new_stack_notices_lost: c(Counter::NewStackNoticesLost),
            map_insert_failed: c(Counter::MapInsertFailed),
        },
        modules,
        stacks,
        waits,
        wakes,
        threads: raw.threads,
        go,
        tokio: inputs.tokio.clone(),
        blocked: Vec::new(),
        lock_wrappers: Default::default(),
        processes: Vec::new(),
        locks,
        bundled: map.map(|m| {
            let kind = active_kind(m, &raw.phases, raw.map_window.as_ref());
            let counted = kind.is_bundled();
            Bundled {
                kind,
                exe: m.exe.display().to_string(),
                probes: m.probed(kind).count(),
                probed: Phase::ALL
                    .iter()
                    .filter(|p| m.probed(kind).any(|q| q == **p))
                    .map(|p| p.function().to_string())
                    .collect(),
                phases: Phase::ALL
                    .iter()
                    .zip(&raw.phases[kind.slot() as usize])
                    .map(|(p, s)| PhaseRow {
                        phase: (*p).into(),
                        calls: s.calls,
                        returns: s.returns,
                        total_ns: s.total_ns,
                        max_ns: s.max_ns,
                        items: s.items,
                    })
                    .collect(),
                // Go's sync.Map has no counters: nothing is counted, so nothing is checked.
                counters: raw
                    .map_window
                    .as_ref()
                    .filter(|_| counted && m.stats_offset.is_some())
                    .map(|w| counter_delta(&w.start, &w.end)),
                counters_exact: raw.map_window.as_ref().is_some_and(|w| w.end_exact),
                checks: raw
                    .map_window
                    .as_ref()
                    .filter(|_| counted && m.stats_offset.is_some())
                    .map(|w| checks(w, m))
                    .unwrap_or_default(),
                go_version: m
                    .std
                    .as_ref()
                    .filter(|_| !counted)
                    .map(|s| s.version.clone()),
                trie_nodes: trie.clone(),
                fast_path: fast_path.filter(|_| !counted),
            }
        }),
    };
    tracee::fold_gil_timeouts(&mut profile);
    profile
}

/// The map the recording explains when the executable holds both the bundled map and Go's
/// `sync.Map` (the Go workload links both): the one whose phases ran, the bundled map when
/// neither or both did and its counters say it ran.
fn active_kind(m: &BundledMap, phases: &SlotPhases, window: Option<&MapWindow>) -> MapKind {
    let Some(std) = &m.std else {
        return MapKind::Bundled;
    };
    let bundled_here = !m.phases.is_empty() || m.stats_offset.is_some();
    let calls = |k: MapKind| -> u64 { phases[k.slot() as usize].iter().map(|s| s.calls).sum() };
    let bundled_ran = window
        .map(|w| counter_delta(&w.start, &w.end).values().sum::<u64>())
        .unwrap_or(0)
        + calls(MapKind::Bundled);
    if bundled_here && bundled_ran > 0 && bundled_ran >= calls(std.kind) {
        MapKind::Bundled
    } else if !bundled_here || calls(std.kind) > 0 || std.kind == MapKind::StdHashTrie {
        std.kind
    } else {
        MapKind::Bundled
    }
}

/// Depths of the hash-trie nodes the hottest goroutine waits were on, read from the target
/// while it lives (none once it has exited).
fn trie_nodes(pid: u32, raw: &Raw) -> Vec<TrieNode> {
    let mut by_sema: HashMap<u64, u64> = HashMap::new();
    for (k, v) in &raw.waits {
        if k.kind == OpKind::GoSemacquire as u32 {
            *by_sema.entry(k.uaddr).or_default() += v.total_ns;
        }
    }
    let mut hot: Vec<(u64, u64)> = by_sema.into_iter().collect();
    hot.sort_by_key(|&(_, ns)| std::cmp::Reverse(ns));
    crate::tracee::node_depths(pid, hot.into_iter().map(|(sema, _)| sema))
        .into_iter()
        .map(|(sema, depth)| TrieNode { sema, depth })
        .collect()
}

fn counter_delta(start: &Snapshot, end: &Snapshot) -> BTreeMap<String, u64> {
    end.counters
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(start.counters.get(k).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// Traced phase counts against the map's counters over the same window.
/// Only for probed phases: an unprobed phase's traced count is not zero, it is unknown.
fn checks(w: &MapWindow, map: &BundledMap) -> Vec<Check> {
    let probed = |p: Phase| map.phases.iter().any(|(q, _)| *q == p);
    let counted = counter_delta(&w.start, &w.end);
    let traced = |p: Phase, f: fn(&PhaseStats) -> u64| {
        let slot = MapKind::Bundled.slot() as usize;
        f(&w.end.phases[slot][p as usize]).saturating_sub(f(&w.start.phases[slot][p as usize]))
    };
    let calls = |s: &PhaseStats| s.calls;
    let items = |s: &PhaseStats| s.items;
    [
        (
            Phase::Promote,
            "promotions",
            calls as fn(&PhaseStats) -> u64,
            MapCounter::Promotion,
        ),
        (Phase::Rebuild, "rebuilds", calls, MapCounter::Rebuild),
        (
            Phase::Rebuild,
            "entries copied",
            items,
            MapCounter::EntriesCopied,
        ),
        (Phase::Miss, "read misses", calls, MapCounter::ReadMiss),
    ]
    .into_iter()
    .filter(|(p, ..)| probed(*p))
    .map(|(p, what, f, key)| Check {
        what: what.into(),
        traced: traced(p, f),
        counted: counted.get(key.name()).copied().unwrap_or(0),
    })
    .collect()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
