//! set_apart: the header's one line about the waits a view leaves out (idle waits under the
//! default view, lock contention under `--waits idle`), with where most of them were.
use crate::analyze::{groups, shown_totals, GroupBy, ViewOptions, Waits};
use crate::profile::{fmt_count, fmt_ns, is_lock_code, Profile};
use crate::render::{frame_lines, key_label};

/// The header's one line about the waits a view leaves out, if any were recorded.
pub fn set_apart_line(profile: &Profile, waits: Waits) -> Option<String> {
    let other = match waits {
        Waits::Contention => Waits::Idle,
        Waits::Idle => Waits::Contention,
        Waits::All => return None,
    };
    let t = shown_totals(profile, other);
    if t.waits == 0 {
        return None;
    }
    let view = ViewOptions {
        by: GroupBy::Function,
        waits: other,
        ..ViewOptions::default()
    };
    let top = groups(profile, &view).into_iter().next().map(|g| {
        let stack = g.hottest_stack.and_then(|s| profile.stacks.get(s));
        // The frame the table marks ▶: unresolved frames of a stripped program count too.
        let site = stack
            .and_then(|s| {
                s.frames
                    .iter()
                    .flat_map(|f| frame_lines(f, profile))
                    .map(|(name, _)| name)
                    .find(|name| !is_lock_code(profile, name))
            })
            .unwrap_or_else(|| key_label(&g.key, profile));
        format!(
            " · most in {site} ({}, {})",
            crate::analyze::lock_primitive(stack),
            fmt_ns(g.total_ns)
        )
    });
    let what = match other {
        Waits::Idle => "idle waits, not lock contention (condition waits, parking, joins, events)",
        _ => "lock contention, not shown",
    };
    Some(format!(
        "{what}: {} · {} of thread time{} (--waits {})",
        fmt_count(t.waits),
        fmt_ns(t.wait_ns),
        top.unwrap_or_default(),
        other.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::{row, sample, stack};

    #[test]
    fn the_header_sums_up_what_a_view_leaves_out_on_one_line() {
        let mut p = sample();
        assert_eq!(set_apart_line(&p, Waits::Contention), None);
        p.stacks.push(stack(&[
            "___pthread_cond_wait",
            "pool_worker",
            "start_thread",
        ]));
        let cond = p.stacks.len() - 1;
        p.waits.push(row(Some(cond), 7, 4, 9_000_000, 3_000_000));
        let line = set_apart_line(&p, Waits::Contention).unwrap();
        assert!(
            line.starts_with("idle waits, not lock contention"),
            "{line}"
        );
        assert!(line.contains(": 4 · 9.00 ms"), "{line}");
        assert!(
            line.contains("most in pool_worker (pthread condvar"),
            "{line}"
        );
        let line = set_apart_line(&p, Waits::Idle).unwrap();
        assert!(line.starts_with("lock contention, not shown: 6"), "{line}");
        assert_eq!(set_apart_line(&p, Waits::All), None);
    }
}
