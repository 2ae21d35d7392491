//! follow: `record --follow-forks` after the recording. The engine kept every followed
//! process's rows apart (waits by the process the kernel saw them in, wakes by thread); each
//! process's rows are symbolized with its own memory maps, and the profiles are merged into
//! the parent's: one report, every process's stacks (a process's threads keep their own tids,
//! its rows and locks its pid).
use crate::collect::Raw;
use crate::profile::{Process, Profile};
use crate::sys::Target;
use crate::unwind::UnwindPlan;

/// Says which forked processes were followed, and how each one's stacks were walked.
pub fn announce(children: &[(Target, UnwindPlan, Raw)]) {
    if children.is_empty() {
        return;
    }
    let names: Vec<String> = children
        .iter()
        .map(|(t, plan, _)| {
            format!(
                "{} ({}, unwind {})",
                t.tgid,
                crate::profile::term_safe(&t.comm),
                plan.mode.name()
            )
        })
        .collect();
    eprintln!(
        "lockscope: followed {} forked processes: {}",
        names.len(),
        names.join(", ")
    );
}

/// Adds the followed process `other`'s stacks, rows, threads, locks and unnamed frames to
/// `into`, its module and stack indexes renumbered, its rows and locks marked with its pid, and
/// lists it (with how its stacks were walked) in `into.processes`. Counters and losses are the
/// kernel's, shared: kept once (but for the stacks each build inferred).
pub fn merge(into: &mut Profile, other: Profile) {
    let pid = Some(other.meta.pid);
    into.processes.push(Process {
        pid: other.meta.pid,
        comm: other.meta.comm,
        exe: other.meta.exe,
        unwind: other.meta.unwind,
    });
    into.processes.extend(other.processes);
    let module_map: Vec<usize> = other
        .modules
        .into_iter()
        .map(|m| match into.modules.iter().position(|x| *x == m) {
            Some(i) => i,
            None => {
                into.modules.push(m);
                into.modules.len() - 1
            }
        })
        .collect();
    let base = into.stacks.len();
    for mut s in other.stacks {
        for f in &mut s.frames {
            f.module = f.module.and_then(|m| module_map.get(m).copied());
        }
        into.stacks.push(s);
    }
    for mut w in other.waits {
        w.stack = w.stack.map(|i| i + base);
        w.waker_stack = w.waker_stack.map(|i| i + base);
        w.pid = w.pid.or(pid);
        into.waits.push(w);
    }
    for mut w in other.wakes {
        w.stack = w.stack.map(|i| i + base);
        w.pid = w.pid.or(pid);
        into.wakes.push(w);
    }
    into.threads.extend(other.threads);
    for mut l in other.locks {
        l.pid = l.pid.or(pid);
        if into.lock_info(l.pid, l.uaddr).is_none() {
            into.locks.push(l);
        }
    }
    into.meta.unnamed.extend(other.meta.unnamed);
    // Made when each process's rows were built, not read from the kernel: summed.
    into.counters.stacks_inferred += other.counters.stacks_inferred;
}

/// The unwinding of a target that exec'd during the recording, for its new image: the plan a
/// direct launch of that image gets where the kernel side captured what that needs; otherwise
/// the loaded plan, with a note saying what the new image would need.
pub fn replan_after_exec(
    loaded: crate::unwind::UnwindPlan,
    unwind: crate::unwind::Unwind,
    target: &crate::sys::Target,
) -> crate::unwind::UnwindPlan {
    let fresh = crate::unwind::choose(unwind, target);
    let name = crate::profile::term_safe(&target.comm).into_owned();
    let fresh_why = fresh.why.clone().unwrap_or_default();
    if fresh.mode == loaded.mode {
        return crate::unwind::UnwindPlan {
            why: fresh.why.map(|w| format!("after exec to {name}: {w}")),
            ..loaded
        };
    }
    if loaded.snapshot_bytes > 0 {
        // Stack copies were taken: they unwind any image, so they stay what the rows used.
        return crate::unwind::UnwindPlan {
            why: Some(format!(
                "after exec to {name}: stack copies kept from the launch (a direct launch: {fresh_why})"
            )),
            ..loaded
        };
    }
    eprintln!(
        "lockscope: {name} (exec'd during the recording) keeps no frame pointers, and stack copies were not being taken; `record --unwind dwarf` unwinds it"
    );
    crate::unwind::UnwindPlan {
        why: Some(format!(
            "frame walk kept after exec to {name}, which would need stack copies ({fresh_why}; --unwind dwarf)"
        )),
        ..loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::testing::sample;
    use crate::profile::Unwinder;

    #[test]
    fn a_merged_profile_keeps_both_processes_rows_on_their_own_stacks() {
        let mut a = sample();
        let mut b = sample();
        b.meta.pid = 4242;
        b.meta.comm = "child".into();
        b.meta.exe = Some("/bin/child".into());
        b.wakes = vec![crate::profile::WakeRow {
            stack: Some(0),
            uaddr: 0x5000,
            tid: 9,
            pid: None,
            op: crate::profile::FutexOp::Wake,
            calls: 1,
            woken: 1,
            empty: 0,
        }];
        let (stacks, waits, modules) = (a.stacks.len(), a.waits.len(), a.modules.len());
        let names = |p: &Profile, i: Option<usize>| {
            crate::render::stack_names(i.and_then(|i| p.stacks.get(i)), p)
        };
        let before: Vec<_> = b.waits.iter().map(|w| names(&b, w.stack)).collect();
        b.meta.unwind = Unwinder::Dwarf;
        merge(&mut a, b);
        assert_eq!(a.stacks.len(), 2 * stacks);
        assert_eq!(a.waits.len(), 2 * waits);
        // The same files are one module each.
        assert_eq!(a.modules.len(), modules);
        let after: Vec<_> = a.waits[waits..]
            .iter()
            .map(|w| names(&a, w.stack))
            .collect();
        assert_eq!(before, after);
        assert!(a.waits[waits..]
            .iter()
            .all(|w| w.stack.is_none_or(|s| s >= stacks)));
        // The parent's rows are the recorded process's; the child's carry its pid.
        assert!(a.waits[..waits].iter().all(|w| w.pid.is_none()));
        assert!(a.waits[waits..].iter().all(|w| w.pid == Some(4242)));
        assert!(a.wakes.iter().all(|w| w.pid == Some(4242)));
        assert_eq!(
            a.processes,
            vec![Process {
                pid: 4242,
                comm: "child".into(),
                exe: Some("/bin/child".into()),
                unwind: Unwinder::Dwarf,
            }]
        );
        // Both processes' statics at 0x5000 are kept, each under its own process.
        assert_eq!(a.locks.len(), 2);
        assert!(a.lock_info(None, 0x5000).is_some());
        assert!(a.lock_info(Some(4242), 0x5000).is_some());
    }
}
