//! table_trie: the table's section for Go 1.24+'s hash-trie `sync.Map`: what the waiting
//! goroutines were doing, which nodes they waited on (root or how deep), and the verdict.
//! The read/dirty design's promotion and rebuild lines have no place here.
use std::io::{self, Write};

use crate::analyze::attribute_trie;
use crate::profile::{fmt_count, fmt_ns, percent, Bundled, Profile, FAST_PATH_NOT_SAMPLED};

/// Nodes listed; the rest are summed on one line.
const NODES_SHOWN: usize = 5;

pub(super) fn trie_map(profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    let (Some(b), Some(a)) = (&profile.bundled, attribute_trie(profile)) else {
        return map_unwaited(profile, out);
    };
    writeln!(out)?;
    writeln!(
        out,
        "{} in {}: every write locks one trie node; Load and Range never lock",
        crate::knowledge::heading(b.kind, b.go_version.as_deref()),
        b.exe
    )?;
    let row = |out: &mut dyn Write, label: &str, waits: u64, ns: u64| {
        writeln!(
            out,
            "  {label:<44} {:>10} {:>11} {:>5.1}%",
            fmt_count(waits),
            fmt_ns(ns),
            percent(ns, a.map_wait_ns)
        )
    };
    let head = |out: &mut dyn Write, title: &str| {
        writeln!(
            out,
            "  {title:<44} {:>10} {:>11} {:>6}",
            "waits", "wait time", "share"
        )
    };
    head(out, "waiting goroutines were doing")?;
    for (op, s) in &a.by_op {
        row(out, op.label(), s.waits, s.wait_ns)?;
    }
    head(out, "waited on")?;
    for n in a.by_node.iter().take(NODES_SHOWN) {
        row(out, &n.label(), n.share.waits, n.share.wait_ns)?;
    }
    let rest = &a.by_node[a.by_node.len().min(NODES_SHOWN)..];
    if !rest.is_empty() {
        let (w, ns) = rest.iter().fold((0, 0), |(w, ns), n| {
            (w + n.share.waits, ns + n.share.wait_ns)
        });
        row(
            out,
            &format!("{} more nodes", fmt_count(rest.len() as u64)),
            w,
            ns,
        )?;
    }
    fast_path(b, out)?;
    writeln!(out, "verdict: {}", a.verdict)
}

/// Go's `sync.Map`: the sampled estimate of its lock-free read share.
pub(super) fn fast_path(b: &Bundled, out: &mut dyn Write) -> io::Result<()> {
    if b.kind.is_bundled() {
        return Ok(());
    }
    match &b.fast_path {
        Some(f) => writeln!(out, "  {}", f.line()),
        None => writeln!(out, "  {FAST_PATH_NOT_SAMPLED}"),
    }
}

/// Go's `sync.Map`, called by the program but waited on by no goroutine in this recording:
/// one line instead of a section of empty tables.
pub(super) fn map_unwaited(profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    let Some(b) = profile.bundled.as_ref().filter(|b| !b.kind.is_bundled()) else {
        return Ok(());
    };
    // Sampled, and no sample ran map code: the program links the map but did not use it.
    if b.fast_path.as_ref().is_some_and(|f| f.in_map == 0) {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{} in {}: no goroutine waited on it in this recording",
        crate::knowledge::heading(b.kind, b.go_version.as_deref()),
        b.exe
    )?;
    fast_path(b, out)?;
    let design = match b.kind {
        crate::profile::MapKind::StdHashTrie => "the hash trie",
        _ => "the map",
    };
    writeln!(
        out,
        "verdict: no lock wait on the map — {design} fits this workload"
    )
}
