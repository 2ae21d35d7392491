//! Unit tests of assemble.
use super::*;
use crate::collect::{stats, Raw};
use crate::profile::StopReason;
use crate::sys::procfs_tests::target;
use crate::sys::MapHistory;
use crate::unwind::UnwindMode;

fn key(stack_id: u64) -> WaitKey {
    WaitKey {
        stack_id,
        waker_id: NO_STACK,
        uaddr: 0x5000,
        leaf_ret: 0,
        tid: 7,
        kind: 0,
        flags: 0,
        tgid: 0,
    }
}

/// Anonymous executable memory (JIT-like: no file to check calls in) holding the test
/// stacks' addresses.
fn code_maps() -> MapHistory {
    let mut m = MapHistory::default();
    m.merge(vec![crate::sys::Mapping {
        start: 0x1000,
        end: 0x5000,
        file_offset: 0,
        path: "[anon]".into(),
    }]);
    m
}

fn raw(dwarf: Option<HashMap<(WaitKey, Vec<Addr>), WaitStats>>) -> Raw {
    Raw {
        maps: code_maps(),
        dwarf,
        ..Raw::rows_only(
            vec![(key(1), stats(5, 5_000))],
            vec![],
            HashMap::from([(1, vec![0x1000, 0x2000])]),
            [0; tracer_common::NUM_COUNTERS as usize],
            StopReason::Duration,
            std::time::Duration::from_secs(1),
        )
    }
}

/// The profile of `raw`, its stacks walked as `mode` walks them.
fn build_profile(
    raw: Raw,
    mode: crate::unwind::UnwindMode,
    sym: &mut StackSymbolizer,
) -> crate::profile::Profile {
    let plan = crate::unwind::UnwindPlan {
        mode,
        snapshot_bytes: 0,
        why: None,
    };
    let hooks = crate::attach::Hooks::Trampolines;
    let inputs = super::super::Inputs {
        target: &target(),
        start_unix_ms: 0,
        map: None,
        plan: &plan,
        attach_ns: 7,
        hooks: &hooks,
        go_probes: 0,
        tokio: None,
        blocked: Vec::new(),
        wrappers: &Default::default(),
    };
    assemble(raw, &inputs, sym)
}

#[test]
fn snapshot_rows_replace_what_they_explain_and_the_rest_take_their_stacks() {
    let unwound = vec![Addr::Ip(0x1000), Addr::Return(0x3000), Addr::Return(0x4000)];
    let dwarf = HashMap::from([((key(1), unwound), stats(3, 3_000))]);
    let mut sym = StackSymbolizer::new(MapHistory::default());
    let p = build_profile(raw(Some(dwarf)), UnwindMode::Dwarf, &mut sym);
    assert_eq!(p.meta.unwind, crate::profile::Unwinder::Dwarf);
    let mut rows: Vec<(u64, u64, usize)> = p
        .waits
        .iter()
        .map(|r| (r.count, r.total_ns, p.stacks[r.stack.unwrap()].frames.len()))
        .collect();
    rows.sort();
    // Two waits lost their snapshot: they take the unwound stack of their row's three.
    assert_eq!(rows, vec![(5, 5_000, 3)]);
    assert_eq!(p.counters.stacks_inferred, 2);
    let hist: u64 = p.waits.iter().map(|r| r.hist.iter().sum::<u64>()).sum();
    assert_eq!(hist, 5, "histograms split, not doubled");
}

#[test]
fn fully_explained_rows_disappear_and_fp_mode_is_untouched() {
    let unwound = vec![Addr::Ip(0x1000), Addr::Return(0x3000)];
    let dwarf = HashMap::from([((key(1), unwound), stats(5, 5_000))]);
    let mut sym = StackSymbolizer::new(MapHistory::default());
    let p = build_profile(raw(Some(dwarf)), UnwindMode::Dwarf, &mut sym);
    assert_eq!(p.waits.len(), 1);
    assert_eq!(p.waits[0].count, 5);
    let fp = build_profile(raw(None), UnwindMode::FramePointers, &mut sym);
    assert_eq!(fp.meta.unwind, crate::profile::Unwinder::FramePointers);
    assert_eq!(fp.waits.len(), 1);
    assert_eq!(fp.waits[0].count, 5);
}

#[test]
fn a_wait_seen_asleep_at_attach_gets_the_scans_stack_when_the_kernel_took_none() {
    let scanned = vec![Addr::Ip(0x1000), Addr::Return(0x3000)];
    let asleep = |tid, uaddr| crate::collect::blocked::Asleep {
        tid,
        uaddr,
        kind: tracer_common::OpKind::Wait,
        frames: scanned.clone(),
        at: (0, 0),
        seeded_ns: 0,
    };
    let mut r = raw(None);
    let lost = WaitKey {
        stack_id: NO_STACK,
        ..key(1)
    };
    r.waits.push((lost, stats(1, 400_000_000)));
    // Another thread on the same word, and the scanned thread's stacked row, keep theirs.
    r.waits.push((WaitKey { tid: 8, ..lost }, stats(1, 1_000)));
    crate::collect::lend_scanned_stacks(&mut r, &[asleep(7, 0x5000), asleep(9, 0x5000)]);
    let mut sym = StackSymbolizer::new(MapHistory::default());
    let p = build_profile(r, UnwindMode::FramePointers, &mut sym);
    let mut rows: Vec<(u32, u64, Option<usize>)> = p
        .waits
        .iter()
        .map(|w| (w.tid, w.total_ns, w.stack.map(|s| p.stacks[s].frames.len())))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (7, 5_000, Some(2)),
            (7, 400_000_000, Some(2)),
            (8, 1_000, None)
        ]
    );
}

/// Everything the driver knows is in the profile as built: nothing is left for it to patch.
#[test]
fn the_profile_says_what_its_inputs_say() {
    let mut sym = StackSymbolizer::new(MapHistory::default());
    let p = build_profile(raw(None), UnwindMode::FpCfi, &mut sym);
    assert_eq!(p.meta.unwind, crate::profile::Unwinder::FpCfi);
    assert_eq!(p.meta.attach_ns, 7);
    assert_eq!(
        p.meta.hooks.as_deref(),
        Some(crate::attach::Hooks::Trampolines.describe().as_str())
    );
}
