//! The golden cases, kept in one list: the file under tests/golden, the saved profile in
//! tests/data, the format and view the library renders it with, and the `lockscope report`
//! flags that ask for the same view. `tests/golden.rs` renders each through the library;
//! tracer-user's `tests/report.rs` includes this file by path and runs the flags, so a flag
//! that stops mapping to its view fails there.
#![allow(dead_code)] // each of the two tests reads its own half of a case

use std::path::Path;

use lockscope_profile::analyze::{GroupBy, SortKey, ViewOptions, Weight};
use lockscope_profile::render::Format;

pub const CONTENDED: &str = "lockdemo-contended.json";
pub const MAP: &str = "syncmap-range-insert.json";

/// One golden file and the two ways to produce it.
pub struct Case {
    pub name: &'static str,
    pub fixture: &'static str,
    pub format: Format,
    pub view: ViewOptions,
    pub flags: &'static [&'static str],
}

fn case(
    name: &'static str,
    fixture: &'static str,
    format: Format,
    view: ViewOptions,
    flags: &'static [&'static str],
) -> Case {
    Case {
        name,
        fixture,
        format,
        view,
        flags,
    }
}

/// Every golden case.
pub fn cases() -> Vec<Case> {
    let by = |by| ViewOptions {
        by,
        ..ViewOptions::default()
    };
    let top = |top| ViewOptions {
        top,
        ..ViewOptions::default()
    };
    let default = ViewOptions::default;
    vec![
        case("table.txt", CONTENDED, Format::Table, default(), &[]),
        case("table-map.txt", MAP, Format::Table, top(3), &["--top", "3"]),
        case(
            "table-by-lock-hist.txt",
            CONTENDED,
            Format::Table,
            ViewOptions {
                hist: true,
                ..by(GroupBy::Lock)
            },
            &["--by", "lock", "--hist"],
        ),
        case(
            "table-by-function-count.txt",
            MAP,
            Format::Table,
            ViewOptions {
                sort: SortKey::Count,
                ..by(GroupBy::Function)
            },
            &["--by", "function", "--sort", "count"],
        ),
        case(
            "table-by-thread.txt",
            CONTENDED,
            Format::Table,
            ViewOptions {
                top: 4,
                ..by(GroupBy::Thread)
            },
            &["--by", "thread", "--top", "4"],
        ),
        case(
            "table-by-category-full.txt",
            MAP,
            Format::Table,
            ViewOptions {
                max_frames: None,
                min_wait_ns: 1_000_000,
                ..by(GroupBy::Category)
            },
            &["--by", "category", "--full-stacks", "--min-wait", "1ms"],
        ),
        case(
            "report.csv",
            MAP,
            Format::Csv,
            default(),
            &["--format", "csv"],
        ),
        case(
            "report.json",
            MAP,
            Format::Json,
            top(3),
            &["--format", "json", "--top", "3"],
        ),
        case(
            "report-by-lock.json",
            CONTENDED,
            Format::Json,
            by(GroupBy::Lock),
            &["--format", "json", "--by", "lock"],
        ),
        case(
            "report.folded",
            CONTENDED,
            Format::Folded,
            default(),
            &["--format", "folded"],
        ),
        case(
            "report-by-thread-count.folded",
            CONTENDED,
            Format::Folded,
            ViewOptions {
                weight: Weight::Count,
                ..by(GroupBy::Thread)
            },
            &["--format", "folded", "--by", "thread", "--weight", "count"],
        ),
    ]
}

/// Panics unless `got` equals the golden file at `path`, naming the first line that differs;
/// `hint` says what to do about it.
pub fn compare(name: &str, path: &Path, got: &str, hint: &str) {
    let want = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with LOCKSCOPE_BLESS=1 cargo test -p lockscope-profile --test golden",
            path.display()
        )
    });
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\n  got:  {:?}\n  want: {:?}\n({hint})",
            path.display(),
            first + 1,
            got.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>"),
        );
    }
}
