//! render: output formats. One `Render` impl per format (table, csv, json, folded, svg,
//! pprof); they share the grouping in `analyze` and the frame naming here.
//!
//! Exposes `Format`, the `Render` trait and its impls, and the frame and header helpers `top`
//! and `record` reuse; it reads the profile and `analyze`, and nothing above.
mod csv;
mod folded;
mod header;
mod json;
mod pprof;
mod set_apart;
mod svg;
mod table;
mod table_blocked;
mod table_trie;

use std::io::{self, Write};
use std::path::Path;

pub use csv::Csv;
pub use folded::Folded;
pub use header::{header, unnamed_line};
pub use json::Json;
pub use pprof::Pprof;
pub use set_apart::set_apart_line;
pub use svg::Svg;
pub use table::Table;

use crate::analyze::{Key, ViewOptions};
use crate::profile::{Frame, Profile, Stack};

pub trait Render {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()>;
}

/// Every output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
    Folded,
    Svg,
    Pprof,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Folded => "folded",
            Format::Svg => "svg",
            Format::Pprof => "pprof",
        }
    }

    /// The format a file name asks for, where it is obvious. `.json` is not here: for
    /// `record -o` it means the profile itself, which `report` reads back.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        [
            (".csv", Format::Csv),
            (".folded", Format::Folded),
            (".svg", Format::Svg),
            (".pb.gz", Format::Pprof),
            (".pprof", Format::Pprof),
            (".txt", Format::Table),
        ]
        .into_iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, f)| f)
    }

    /// Binary formats are not written to a terminal.
    pub fn is_binary(self) -> bool {
        self == Format::Pprof
    }

    pub fn renderer(self, view: ViewOptions, color: bool) -> Box<dyn Render> {
        match self {
            Format::Table => Box::new(Table { view, color }),
            Format::Csv => Box::new(Csv { view }),
            Format::Json => Box::new(Json { view }),
            Format::Folded => Box::new(Folded { view }),
            Format::Svg => Box::new(Svg { view }),
            Format::Pprof => Box::new(Pprof { waits: view.waits }),
        }
    }
}

/// Whether to colour output going to `is_terminal`: never when `NO_COLOR` is set
/// (no-color.org: any non-empty value).
pub fn use_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Display name of a frame that did not resolve: `libfoo.so+0x1f12`.
pub fn unresolved_name(frame: &Frame, profile: &Profile) -> String {
    profile.unnamed_frame(frame)
}

/// Display lines of one frame: one per function (inlined ones first), with `file:line`.
pub fn frame_lines(frame: &Frame, profile: &Profile) -> Vec<(String, Option<String>)> {
    if frame.syms.is_empty() {
        return vec![(unresolved_name(frame, profile), None)];
    }
    frame
        .syms
        .iter()
        .map(|s| {
            let loc = s.file.as_ref().map(|f| {
                let short = f.rsplit('/').next().unwrap_or(f);
                match s.line {
                    Some(l) => format!("{short}:{l}"),
                    None => short.to_string(),
                }
            });
            (s.name.clone(), loc)
        })
        .collect()
}

/// Function names of a stack, innermost first, unresolved frames by address.
pub fn stack_names(stack: Option<&Stack>, profile: &Profile) -> Vec<String> {
    match stack {
        Some(s) => s
            .frames
            .iter()
            .flat_map(|f| frame_lines(f, profile).into_iter().map(|(n, _)| n))
            .collect(),
        None => vec!["[stack lost]".into()],
    }
}

/// The label of a group's key: a function, `0x5000`, `1234 (worker-1)`, `pid 1234 (demo)`,
/// a category. With followed processes a lock says whose it is: `0x5000 in pid 1234`.
pub fn key_label(key: &Key, profile: &Profile) -> String {
    match key {
        Key::Stack(s) => {
            crate::profile::blamed_function(profile, s.and_then(|s| profile.stacks.get(s)))
        }
        Key::Function(f) | Key::Category(f) => f.clone(),
        Key::Lock(pid, a) if !profile.processes.is_empty() => {
            format!("{a:#x} in pid {}", pid.unwrap_or(profile.meta.pid))
        }
        Key::Lock(_, a) => format!("{a:#x}"),
        Key::Process(pid) => profile.process_label(*pid),
        Key::Thread(t) => match profile.threads.get(t) {
            Some(name) => format!("{t} ({name})"),
            None => t.to_string(),
        },
    }
}

/// Who released one lock: from the wake rows on its word (futex wakes, and the releases that
/// granted tokio's async waits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Releasers {
    /// Threads that woke waiters on it.
    pub threads: usize,
    /// Waiters they woke.
    pub woken: u64,
    /// The stack that woke the most (index into the profile's stacks).
    pub hottest: Option<usize>,
}

/// Who released `uaddr` in process `pid` (`None`: the recorded one).
pub fn releasers(profile: &Profile, pid: Option<u32>, uaddr: u64) -> Releasers {
    let mut tids = std::collections::BTreeSet::new();
    let mut woken = 0;
    let mut by_stack: std::collections::BTreeMap<usize, u64> = Default::default();
    for w in profile
        .wakes
        .iter()
        .filter(|w| w.uaddr == uaddr && w.pid == pid && w.woken > 0)
    {
        tids.insert(w.tid);
        woken += w.woken;
        if let Some(s) = w.stack {
            *by_stack.entry(s).or_default() += w.woken;
        }
    }
    Releasers {
        threads: tids.len(),
        woken,
        // The most wakes; the lowest index on a tie, so the choice is stable.
        hottest: by_stack
            .iter()
            .max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s)))
            .map(|(s, _)| *s),
    }
}

/// Bucket `b` of the wait histogram as `[floor, ceiling)` in ns.
pub fn bucket_range(b: usize) -> (u64, u64) {
    let floor = tracer_common::bucket_floor_ns(b);
    let ceiling = if b == 0 { 1 } else { floor.saturating_mul(2) };
    (floor, ceiling)
}

#[cfg(test)]
mod process_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_file_names() {
        let f = |p: &str| Format::from_path(Path::new(p));
        assert_eq!(f("out.svg"), Some(Format::Svg));
        assert_eq!(f("x/y.PB.GZ"), Some(Format::Pprof));
        assert_eq!(f("a.pprof"), Some(Format::Pprof));
        assert_eq!(f("a.folded"), Some(Format::Folded));
        assert_eq!(f("a.csv"), Some(Format::Csv));
        assert_eq!(f("a.json"), None);
        assert_eq!(f("profile"), None);
    }

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        assert_eq!(bucket_range(0), (0, 1));
        assert_eq!(bucket_range(1), (1, 2));
        assert_eq!(bucket_range(11), (1024, 2048));
        for ns in [1u64, 5, 1000, 123_456_789] {
            let (lo, hi) = bucket_range(tracer_common::hist_bucket(ns));
            assert!(lo <= ns && ns < hi, "{ns} in [{lo}, {hi})");
        }
    }
}
