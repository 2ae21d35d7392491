//! `folded`: flamegraph.pl / inferno folded stacks (`root;…;leaf weight`), weighted by wait
//! ns or by waits; `--by thread|lock|category` adds that as the root frame.
use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{key_label, stack_names, Render};
use crate::analyze::{category_of, shown_rows, GroupBy, Key, ViewOptions, Weight};
use crate::profile::Profile;

pub struct Folded {
    pub view: ViewOptions,
}

/// Folded lines, sorted (as inferno's collapsers emit them), with no zero weights.
pub fn folded_lines(profile: &Profile, view: &ViewOptions) -> Vec<String> {
    let mut acc: BTreeMap<String, u64> = BTreeMap::new();
    let mut frames_of: BTreeMap<Option<usize>, String> = BTreeMap::new();
    for (r, _) in shown_rows(profile, view.waits) {
        let frames = frames_of
            .entry(r.stack)
            .or_insert_with(|| {
                let stack = r.stack.and_then(|s| profile.stacks.get(s));
                let mut names = stack_names(stack, profile);
                names.reverse();
                names
                    .iter()
                    .map(|n| sanitize(n))
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .clone();
        let root = match view.by {
            GroupBy::Thread => Some(key_label(&Key::Thread(r.tid), profile)),
            GroupBy::Lock => {
                let lock = key_label(&Key::Lock(r.pid, r.uaddr), profile);
                Some(profile.lock_info(r.pid, r.uaddr).map_or_else(
                    || format!("lock {lock}"),
                    |l| format!("lock {lock} {}", l.describe()),
                ))
            }
            GroupBy::Process => Some(key_label(&Key::Process(profile.pid_of_wait(r)), profile)),
            GroupBy::Category => Some(category_of(
                profile,
                r.stack.and_then(|s| profile.stacks.get(s)),
                r.op,
            )),
            GroupBy::Stack | GroupBy::Function => None,
        };
        let line = match root {
            Some(root) => format!("{};{frames}", sanitize(&root)),
            None => frames,
        };
        let weight = match view.weight {
            Weight::WaitTime => r.total_ns,
            Weight::Count => r.count,
        };
        *acc.entry(line).or_default() += weight;
    }
    acc.into_iter()
        .filter(|(_, w)| *w > 0)
        .map(|(line, w)| format!("{line} {w}"))
        .collect()
}

/// `;` separates frames and the last space the weight: neither may appear inside a name.
fn sanitize(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

impl Render for Folded {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        for line in folded_lines(profile, &self.view) {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::sample;

    #[test]
    fn stacks_fold_outermost_first_with_weights() {
        let p = sample();
        let lines = folded_lines(&p, &ViewOptions::default());
        assert_eq!(
            lines,
            vec![
                "0x3000 500000".to_string(),
                "demo::worker;demo::hot;syscall 4000000".to_string(),
            ]
        );
        let by_count = ViewOptions {
            weight: Weight::Count,
            by: GroupBy::Thread,
            ..ViewOptions::default()
        };
        let lines = folded_lines(&p, &by_count);
        assert!(lines.contains(&"1 (worker-1);demo::worker;demo::hot;syscall 3".to_string()));
        assert!(lines.contains(&"2;demo::worker;demo::hot;syscall 1".to_string()));
    }
}
