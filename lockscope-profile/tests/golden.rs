//! Golden files: every text format rendered from the saved profiles in tests/data, compared
//! byte for byte with tests/golden. Needs no kernel, root or bpf-linker (stable Rust).
//!
//! `LOCKSCOPE_BLESS=1 cargo test -p lockscope-profile --test golden` rewrites them from the
//! current output (review the diff before committing). tracer-user's `tests/report.rs` checks
//! that `lockscope report` with the matching flags prints the same files; both read the one
//! list of cases in tests/support/golden_cases.rs.
use std::path::{Path, PathBuf};

use lockscope_profile::analyze::ViewOptions;
use lockscope_profile::profile::{self, Profile};
use lockscope_profile::render::Format;

#[path = "support/golden_cases.rs"]
mod golden_cases;
use golden_cases::{cases, compare};

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
    compare(
        name,
        &path,
        &got,
        "LOCKSCOPE_BLESS=1 rewrites it if the change is intended",
    );
}

/// Every case of each format, so a failure names the format's test.
fn golden_format(format: Format) {
    let cases: Vec<_> = cases().into_iter().filter(|c| c.format == format).collect();
    assert!(!cases.is_empty(), "no golden case for {format:?}");
    for c in cases {
        golden(c.name, c.fixture, c.format, c.view);
    }
}

#[test]
fn golden_table() {
    golden_format(Format::Table);
}

#[test]
fn golden_csv() {
    golden_format(Format::Csv);
}

#[test]
fn golden_json() {
    golden_format(Format::Json);
}

#[test]
fn golden_folded() {
    golden_format(Format::Folded);
}
