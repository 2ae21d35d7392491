//! The table's section on threads blocked for the whole recording (asleep in a futex wait
//! from before attach to the end), and the possible deadlocks among them.
use std::io::{self, Write};

use super::key_label;
use super::table::{Paint, Table, LEAD_WIDTH};
use crate::analyze::{classify, lock_primitive, Key, Waits};
use crate::profile::{deadlocks, fmt_ns, Blocked, Profile};

impl Table {
    pub(super) fn blocked(
        &self,
        profile: &Profile,
        paint: Paint,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        if profile.blocked.is_empty() {
            return Ok(());
        }
        // Idle threads (a pool waiting for work all along) are listed only with --waits idle|all.
        let (shown, apart): (Vec<&Blocked>, Vec<&Blocked>) =
            profile.blocked.iter().partition(|b| {
                let stack = b.stack.and_then(|s| profile.stacks.get(s));
                self.view.waits.includes(classify(stack, b.op))
            });
        let (other, flag) = match self.view.waits {
            Waits::Idle => ("lock", "contention"),
            _ => ("idle", "idle"),
        };
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            paint.bold(&format!(
                "blocked for the whole recording: {} thread{} asleep in a futex wait from before attach to the end{}",
                shown.len(),
                if shown.len() == 1 { "" } else { "s" },
                if apart.is_empty() {
                    String::new()
                } else {
                    format!(" (and {} more in {other} waits: --waits {flag})", apart.len())
                }
            ))
        )?;
        let pad = " ".repeat(LEAD_WIDTH);
        for b in shown {
            let stack = b.stack.and_then(|s| profile.stacks.get(s));
            let owner = b
                .owner
                .map(|o| format!(", held by {}", key_label(&Key::Thread(o), profile)))
                .unwrap_or_default();
            writeln!(
                out,
                "  {} · asleep ≥ {} on {:#x} ({}, word {}{owner})",
                key_label(&Key::Thread(b.tid), profile),
                fmt_ns(b.seen_ns),
                b.uaddr,
                lock_primitive(stack),
                b.word
                    .map_or_else(|| "unreadable".into(), |w| w.to_string()),
            )?;
            self.stack_rows(profile, b.stack, &pad, paint, out)?;
        }
        for cycle in deadlocks(&profile.blocked) {
            let step = |tid: u32| {
                let uaddr = profile
                    .blocked
                    .iter()
                    .find(|b| b.tid == tid)
                    .map_or(0, |b| b.uaddr);
                format!(
                    "{} waits for {uaddr:#x}",
                    key_label(&Key::Thread(tid), profile)
                )
            };
            let mut text: Vec<String> = Vec::new();
            for (i, &t) in cycle.iter().enumerate() {
                let holder = cycle[(i + 1) % cycle.len()];
                text.push(format!(
                    "{} held by {}",
                    step(t),
                    key_label(&Key::Thread(holder), profile)
                ));
            }
            writeln!(
                out,
                "{}",
                paint.bold(&format!("possible deadlock: {}", text.join("; ")))
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::ViewOptions;
    use crate::profile::tests::{sample, stack};
    use crate::render::{Render, Table};

    #[test]
    fn blocked_threads_and_their_deadlock_are_listed() {
        let mut p = sample();
        p.waits.clear();
        for (tid, site, owner) in [(11, "lock_a_then_b", 12), (12, "lock_b_then_a", 11)] {
            p.stacks.push(stack(&[
                "__GI___lll_lock_wait",
                "___pthread_mutex_lock",
                site,
            ]));
            p.blocked.push(Blocked {
                tid,
                uaddr: 0x1000 * u64::from(tid),
                op: crate::profile::FutexOp::Wait,
                stack: Some(p.stacks.len() - 1),
                word: Some(2),
                owner: Some(owner),
                seen_ns: 1_500_000_000,
            });
        }
        p.stacks
            .push(stack(&["__pthread_clockjoin_ex", "main_join"]));
        p.blocked.push(Blocked {
            tid: 10,
            uaddr: 0x700,
            op: crate::profile::FutexOp::WaitBitset,
            stack: Some(p.stacks.len() - 1),
            word: Some(11),
            owner: None,
            seen_ns: 1_500_000_000,
        });
        let mut out = Vec::new();
        Table {
            view: ViewOptions::default(),
            color: false,
        }
        .render(&p, &mut out)
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("blocked for the whole recording: 2 threads"),
            "{text}"
        );
        assert!(!text.contains("main_join"), "{text}");
        assert!(
            text.contains("(and 1 more in idle waits: --waits idle)"),
            "{text}"
        );
        assert!(
            text.contains("▶ lock_a_then_b") && text.contains("▶ lock_b_then_a"),
            "{text}"
        );
        assert!(
            text.contains("(pthread mutex, word 2, held by 12)"),
            "{text}"
        );
        assert!(
            text.contains(
                "possible deadlock: 11 waits for 0xb000 held by 12; 12 waits for 0xc000 held by 11"
            ),
            "{text}"
        );
    }
}
