//! Golden files: every text format rendered from the saved profiles in tests/data, compared
//! byte for byte with tests/golden. Needs no kernel, root or bpf-linker (stable Rust).
//!
//! `LOCKSCOPE_BLESS=1 cargo test -p lockscope-profile --test golden` rewrites them from the
//! current output (review the diff before committing). tracer-user's `tests/report.rs` checks
//! that `lockscope report` with the matching flags prints the same files.
use std::path::{Path, PathBuf};

use lockscope_profile::analyze::{GroupBy, SortKey, ViewOptions, Weight};
use lockscope_profile::profile::{self, Profile};
use lockscope_profile::render::Format;

const CONTENDED: &str = "lockdemo-contended.json";
const MAP: &str = "syncmap-range-insert.json";

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn load(fixture: &str) -> Profile {
    let path = dir("data").join(fixture);
    profile::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

/// Renders `fixture` as `format` with `view` (no colour, as `report` does off a terminal) and
/// compares it with tests/golden/NAME, or rewrites that when blessing.
fn golden(name: &str, fixture: &str, format: Format, view: ViewOptions) {
    let mut out = Vec::new();
    format
        .renderer(view, false)
        .render(&load(fixture), &mut out)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = String::from_utf8(out).expect("text formats are UTF-8");
    let path = dir("golden").join(name);
    if std::env::var_os("LOCKSCOPE_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
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
            "{name} differs from {} at line {}:\n  got:  {:?}\n  want: {:?}\n(LOCKSCOPE_BLESS=1 rewrites it if the change is intended)",
            path.display(),
            first + 1,
            got.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

fn top(n: usize) -> ViewOptions {
    ViewOptions {
        top: n,
        ..ViewOptions::default()
    }
}

#[test]
fn golden_table() {
    golden(
        "table.txt",
        CONTENDED,
        Format::Table,
        ViewOptions::default(),
    );
    golden("table-map.txt", MAP, Format::Table, top(3));
}

#[test]
fn golden_table_views() {
    let view = |by| ViewOptions {
        by,
        ..ViewOptions::default()
    };
    golden(
        "table-by-lock-hist.txt",
        CONTENDED,
        Format::Table,
        ViewOptions {
            hist: true,
            ..view(GroupBy::Lock)
        },
    );
    golden(
        "table-by-function-count.txt",
        MAP,
        Format::Table,
        ViewOptions {
            sort: SortKey::Count,
            ..view(GroupBy::Function)
        },
    );
    golden(
        "table-by-thread.txt",
        CONTENDED,
        Format::Table,
        ViewOptions {
            top: 4,
            ..view(GroupBy::Thread)
        },
    );
    golden(
        "table-by-category-full.txt",
        MAP,
        Format::Table,
        ViewOptions {
            max_frames: None,
            min_wait_ns: 1_000_000,
            ..view(GroupBy::Category)
        },
    );
}

#[test]
fn golden_csv() {
    golden("report.csv", MAP, Format::Csv, ViewOptions::default());
}

#[test]
fn golden_json() {
    golden("report.json", MAP, Format::Json, top(3));
    golden(
        "report-by-lock.json",
        CONTENDED,
        Format::Json,
        ViewOptions {
            by: GroupBy::Lock,
            ..ViewOptions::default()
        },
    );
}

#[test]
fn golden_folded() {
    golden(
        "report.folded",
        CONTENDED,
        Format::Folded,
        ViewOptions::default(),
    );
    golden(
        "report-by-thread-count.folded",
        CONTENDED,
        Format::Folded,
        ViewOptions {
            by: GroupBy::Thread,
            weight: Weight::Count,
            ..ViewOptions::default()
        },
    );
}
