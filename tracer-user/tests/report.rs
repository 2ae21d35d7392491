//! `lockscope report` on saved profiles: golden files for the text formats, the real
//! `go tool pprof` on the pprof output, the SVG parsed as XML, and every bad-input error.
//! No root needed: the fixtures are profiles recorded by `lockscope record`, in
//! lockscope-profile/tests/data.
//!
//! The golden files belong to the library (lockscope-profile/tests/golden, rewritten with
//! `LOCKSCOPE_BLESS=1 cargo test -p lockscope-profile --test golden`); here `lockscope report`
//! with the matching flags must print them unchanged, so the flags map to the same views.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{text, tmp};

/// `lockscope` with colour off, as the golden files are.
fn lockscope() -> Command {
    let mut c = common::lockscope();
    c.env("NO_COLOR", "1");
    c
}

/// The library's test files: `data` (saved profiles) or `golden`.
fn library_tests(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lockscope-profile/tests")
        .join(dir)
}

fn data(name: &str) -> PathBuf {
    library_tests("data").join(name)
}

fn run(args: &[&str]) -> Output {
    lockscope().args(args).output().expect("run lockscope")
}

#[path = "../../lockscope-profile/tests/support/golden_cases.rs"]
mod golden_cases;
use golden_cases::{cases, compare, CONTENDED, MAP};

/// Compares `report FIXTURE FLAGS` with the library's golden file NAME.
fn golden(name: &str, fixture: &str, flags: &[&str]) {
    let fixture = data(fixture);
    let mut all = vec!["report", fixture.to_str().unwrap()];
    all.extend_from_slice(flags);
    let out = run(&all);
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    compare(
        name,
        &library_tests("golden").join(name),
        &text(&out.stdout),
        "the library's golden test renders the same view: run it first",
    );
}

/// Every golden case, through `lockscope report` and the case's flags.
#[test]
fn golden_files_through_report() {
    for c in cases() {
        golden(c.name, c.fixture, c.flags);
    }
}

/// The hottest stack's innermost frame in lockscope's own JSON report.
fn top_frame(fixture: &str) -> (String, String) {
    let out = run(&[
        "report",
        data(fixture).to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &v["rows"][0];
    let frames = row["frames"].as_array().unwrap();
    let leaf = frames[0]["function"].as_str().unwrap().to_string();
    (leaf, row["key"].as_str().unwrap().to_string())
}

#[test]
fn pprof_is_read_by_go_tool_pprof() {
    let go = Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        // `cargo xtask test` installs Go and sets this, so CI never skips.
        assert!(
            std::env::var_os("LOCKSCOPE_REQUIRE_GO").is_none(),
            "go is not installed: run `cargo xtask setup`"
        );
        eprintln!("skipping: no `go` (cargo xtask setup installs Debian's golang-go)");
        return;
    }
    for fixture in [CONTENDED, MAP] {
        let path = tmp(&format!("{fixture}.pb.gz"));
        let out = run(&[
            "report",
            data(fixture).to_str().unwrap(),
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let top = Command::new("go")
            .args(["tool", "pprof", "-top", path.to_str().unwrap()])
            .env("HOME", std::env::temp_dir())
            .output()
            .unwrap();
        let listing = text(&top.stdout);
        assert!(
            top.status.success(),
            "go tool pprof: {}{listing}",
            text(&top.stderr)
        );
        assert!(listing.contains("Type: delay"), "{listing}");
        // The first row under the column header is the function with the most flat delay:
        // the innermost frame of lockscope's hottest stack.
        let rows: Vec<&str> = listing
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("flat"))
            .skip(1)
            .collect();
        let first = rows.first().unwrap_or_else(|| panic!("no rows: {listing}"));
        let (leaf, _) = top_frame(fixture);
        let func = first
            .split_whitespace()
            .skip(5)
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            func, leaf,
            "pprof's top function vs lockscope's:\n{listing}"
        );
        // And the blamed lock site shows up in the cumulative view.
        let cum = Command::new("go")
            .args(["tool", "pprof", "-top", "-cum", path.to_str().unwrap()])
            .env("HOME", std::env::temp_dir())
            .output()
            .unwrap();
        let (_, site) = top_frame(fixture);
        let cum = text(&cum.stdout);
        assert!(
            cum.contains(&site) || cum.contains(&without_generics(&site)),
            "{site} missing:\n{cum}"
        );
    }
}

/// pprof drops some `<…>` groups from names when it prints them (as C++ template arguments).
fn without_generics(name: &str) -> String {
    let mut depth = 0;
    name.chars()
        .filter(|&c| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

#[test]
fn svg_is_xml_and_names_the_hottest_frame() {
    let path = tmp("flame.svg");
    let out = run(&[
        "report",
        data(CONTENDED).to_str().unwrap(),
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(&path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&svg);
    let mut elements = 0;
    let mut title_text = String::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_)) => elements += 1,
            Ok(quick_xml::events::Event::Text(t)) => {
                title_text.push_str(&t[..]);
                title_text.push('\n');
            }
            Ok(_) => {}
            Err(e) => panic!("not XML at {}: {e}", reader.buffer_position()),
        }
    }
    assert!(elements > 10, "{elements} elements");
    let (_, site) = top_frame(CONTENDED);
    assert!(title_text.contains(&site), "{site} not in the SVG");
    assert!(title_text.contains("lock wait: pid"), "no title");
}

/// Runs a command that must fail with exactly one line on stderr containing `want`.
fn fails_with(args: &[&str], want: &str) {
    let out = run(args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed: {}",
        text(&out.stdout)
    );
}

#[test]
fn bad_profiles_get_one_clear_line() {
    fails_with(
        &["report", "/nonexistent/p.json"],
        "no profile at /nonexistent/p.json",
    );
    let full = std::fs::read_to_string(data(CONTENDED)).unwrap();
    let trunc = tmp("trunc.json");
    std::fs::write(&trunc, &full[..full.len() / 2]).unwrap();
    fails_with(&["report", trunc.to_str().unwrap()], "corrupt or truncated");
    let corrupt = tmp("corrupt.json");
    std::fs::write(&corrupt, b"\x00\x01garbage").unwrap();
    fails_with(
        &["report", corrupt.to_str().unwrap()],
        "corrupt or truncated",
    );
    let other = tmp("other.json");
    std::fs::write(&other, r#"{"format": "something-else"}"#).unwrap();
    fails_with(
        &["report", other.to_str().unwrap()],
        "is not a lockscope profile",
    );
    let newer = tmp("newer.json");
    std::fs::write(&newer, full.replacen("\"version\":1", "\"version\":2", 1)).unwrap();
    fails_with(
        &["report", newer.to_str().unwrap()],
        "newer than this lockscope reads",
    );
    let damaged = tmp("damaged.json");
    std::fs::write(&damaged, full.replacen("\"waits\":[", "\"waits\":[7,", 1)).unwrap();
    fails_with(
        &["report", damaged.to_str().unwrap()],
        "damaged lockscope profile",
    );
}

#[test]
fn bad_options_get_one_clear_line() {
    let p = data(CONTENDED);
    let p = p.to_str().unwrap();
    fails_with(
        &["report", p, "--by", "color"],
        "invalid value 'color' for '--by",
    );
    fails_with(
        &["report", p, "--sort", "size"],
        "invalid value 'size' for '--sort",
    );
    fails_with(
        &["report", p, "--format", "png"],
        "invalid value 'png' for '--format",
    );
    fails_with(
        &["report", p, "--min-wait", "soon"],
        "--min-wait 'soon' is not a duration",
    );
    fails_with(
        &["report", p, "-o", "/nonexistent-dir/x.svg"],
        "cannot write report to /nonexistent-dir/x.svg",
    );
    fails_with(&["record", "--", "no-such-program-xyz"], "");
}

#[test]
fn output_files_are_written_whole_and_only_on_success() {
    let csv = tmp("r.csv");
    let out = run(&[
        "report",
        data(MAP).to_str().unwrap(),
        "-o",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = std::fs::read_to_string(&csv).unwrap();
    assert!(body.starts_with("rank,by,key,waits,total_ns"), "{body}");
    assert!(out.stdout.is_empty());
    // No temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(csv.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
