//! `csv`: one line per group with a header line (RFC 4180 quoting), for spreadsheets and
//! scripts; stacks are `;`-joined function names, innermost first.
use std::io::{self, Write};

use super::{key_label, stack_names, Render};
use crate::analyze::{groups, shown_totals, ViewOptions};
use crate::profile::{percent, Profile};

pub struct Csv {
    pub view: ViewOptions,
}

pub const HEADER: &str =
    "rank,by,key,waits,total_ns,avg_ns,max_ns,share_percent,threads,locks,stack";

/// Quotes a field when it holds a comma, quote or line break (Rust generics have commas).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Render for Csv {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{HEADER}")?;
        let grand = shown_totals(profile, self.view.waits).wait_ns;
        for (rank, g) in groups(profile, &self.view)
            .iter()
            .take(self.view.top)
            .enumerate()
        {
            let stack = stack_names(g.hottest_stack.and_then(|s| profile.stacks.get(s)), profile);
            let frames = match self.view.max_frames {
                Some(n) => &stack[..n.min(stack.len())],
                None => &stack[..],
            };
            writeln!(
                out,
                "{},{},{},{},{},{},{},{:.2},{},{},{}",
                rank + 1,
                self.view.by.name(),
                field(&key_label(&g.key, profile)),
                g.count,
                g.total_ns,
                g.avg_ns(),
                g.max_ns,
                percent(g.total_ns, grand),
                g.threads.len(),
                g.locks.len(),
                field(&frames.join(";"))
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("SyncMap<K,V>::load"), "\"SyncMap<K,V>::load\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
