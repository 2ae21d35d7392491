//! The table's `--hist` block: a log2 histogram of one group's single waits.
use std::io::{self, Write};

use super::{Paint, LEAD_WIDTH};
use crate::analyze::Group;
use crate::profile::{fmt_count, fmt_ns};
use crate::render::bucket_range;

/// A log2 histogram of single waits, like plockstat -s and futexctn: one line per bucket
/// from the first to the last non-empty one.
pub(super) fn histogram(g: &Group, paint: Paint, out: &mut dyn Write) -> io::Result<()> {
    const BAR: usize = 40;
    let pad = " ".repeat(LEAD_WIDTH);
    let (Some(first), Some(last)) = (
        g.hist.iter().position(|&c| c > 0),
        g.hist.iter().rposition(|&c| c > 0),
    ) else {
        return Ok(());
    };
    let peak = g.hist.iter().copied().max().unwrap_or(1).max(1);
    writeln!(
        out,
        "{pad}{}",
        paint.dim(&format!(
            "{:>21}  {:<BAR$}  {:>10}",
            "wait", "distribution", "waits"
        ))
    )?;
    for (b, &n) in g.hist.iter().enumerate().take(last + 1).skip(first) {
        let (lo, hi) = bucket_range(b);
        let bar = "@".repeat(((n as u128 * BAR as u128).div_ceil(peak as u128)) as usize);
        writeln!(
            out,
            "{pad}{:>9} .. {:>8}  {bar:<BAR$}  {:>10}",
            fmt_ns(lo),
            fmt_ns(hi),
            fmt_count(n)
        )?;
    }
    Ok(())
}
