//! fuzz: the profile reader and every renderer under bolero. Two targets:
//!
//! - `profile_bytes`: arbitrary bytes as a profile file's contents;
//! - `mutated_profiles`: the checked-in profiles (tests/data and tests/fuzz-corpus), mutated
//!   structurally by the fuzzer's bytes (strings replaced with control characters and long
//!   runs, numbers set to extremes, indices pointed out of range, arrays emptied or repeated),
//!   so inputs get past the parser and reach the renderers.
//!
//! Each input must never panic, and every rendering stays within the same output bound
//! `report` enforces. `cargo test` runs each for a few seconds; `cargo xtask test` for 60 s
//! (`LOCKSCOPE_FUZZ_SECS`). `cargo bolero test` runs the same targets under libFuzzer.
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::analyze::{GroupBy, ViewOptions};
use crate::profile::{self, Limited, Profile};
use crate::render::Format;

const FORMATS: [Format; 6] = [
    Format::Table,
    Format::Csv,
    Format::Json,
    Format::Folded,
    Format::Svg,
    Format::Pprof,
];

fn budget() -> Duration {
    let secs = std::env::var("LOCKSCOPE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

/// Renders `p` in every format and grouping; the output bound is `report`'s.
fn render_all(p: &Profile, input_len: usize) {
    for format in FORMATS {
        for by in GroupBy::ALL {
            let view = ViewOptions {
                by,
                hist: true,
                ..ViewOptions::default()
            };
            let mut out = Limited {
                inner: Vec::new(),
                left: input_len as u64 * 64 + (16 << 20),
            };
            // Errors (the bound reached, a renderer refusing) are fine; panics are not.
            let _ = format.renderer(view, true).render(p, &mut out);
        }
    }
}

fn corpus() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    ["data", "fuzz-corpus"]
        .iter()
        .filter_map(|d| std::fs::read_dir(root.join(d)).ok())
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// Applies one mutation per pair of fuzzer bytes to `v`.
fn mutate(v: &mut Value, ops: &[u8]) {
    for pair in ops.chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        let mut n = 0usize;
        let target = arg as usize;
        visit(v, &mut |x| {
            n += 1;
            if n % 97 != target % 97 {
                return;
            }
            match (op % 8, &mut *x) {
                (0, Value::String(s)) => {
                    *s = "\u{1b}]0;t\u{7}\u{1b}[2J\u{202e}".repeat(1 + arg as usize % 4)
                }
                (1, Value::String(s)) => *s = "x".repeat(arg as usize * 97),
                (2, Value::Number(_)) => *x = Value::from(u64::MAX),
                (3, Value::Number(_)) => *x = Value::from(0),
                (4, Value::Number(_)) => *x = Value::from(arg as u64 * 1_000_003),
                (5, Value::Array(a)) => a.clear(),
                (6, Value::Array(a)) => {
                    if let Some(first) = a.first().cloned() {
                        a.extend(std::iter::repeat_n(first, 1 + arg as usize % 8));
                    }
                }
                (7, _) => *x = Value::Null,
                _ => {}
            }
        });
    }
}

fn visit(v: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    f(v);
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| visit(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| visit(x, f)),
        _ => {}
    }
}

#[test]
fn profile_bytes() {
    let name = Path::new("fuzz.json");
    bolero::check!()
        .with_test_time(budget())
        .for_each(|bytes: &[u8]| {
            if let Ok(p) = profile::parse(bytes, name) {
                render_all(&p, bytes.len());
            }
        });
}

#[test]
fn mutated_profiles() {
    let seeds = corpus();
    assert!(!seeds.is_empty(), "no checked-in profiles to mutate");
    let name = Path::new("fuzz.json");
    bolero::check!()
        .with_test_time(budget())
        .for_each(|ops: &[u8]| {
            let pick = ops.first().copied().unwrap_or(0) as usize % seeds.len();
            let mut v = seeds[pick].clone();
            mutate(&mut v, ops.get(1..).unwrap_or(&[]));
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            if let Ok(p) = profile::parse(&bytes, name) {
                render_all(&p, bytes.len());
            }
        });
}

/// Found by `mutated_profiles`: a frame at the top of the address space overflowed the pprof
/// mapping's limit.
#[test]
fn extreme_addresses_render() {
    let mut p = crate::profile::tests::sample();
    p.stacks[0].frames[0].addr = u64::MAX;
    p.stacks[0].frames[0].offset = Some(u64::MAX);
    render_all(&p, 1 << 20);
}
