//! Unit tests of table.
use super::*;
use crate::profile::tests::sample;

fn render(view: ViewOptions) -> String {
    let mut buf = Vec::new();
    Table { view, color: false }
        .render(&sample(), &mut buf)
        .unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn table_lists_hottest_stack_first_with_blame_marker() {
    let s = render(ViewOptions::default());
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].starts_with("lockscope: pid 42 (demo) · recorded 2.00 s (duration reached)"));
    assert!(lines[1].starts_with("waits 6 · 4.50 ms of thread time waiting · lost events 0"));
    let first = lines
        .iter()
        .position(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(
        lines[first].contains("4.00 ms") && lines[first].contains("88.9%"),
        "{}",
        lines[first]
    );
    assert!(lines[first].contains("syscall"));
    assert!(lines[first + 1].contains("▶ demo::hot") && lines[first + 1].ends_with("main.rs:21"));
    assert!(lines[first + 2].contains("  demo::worker"));
    let second = lines
        .iter()
        .position(|l| l.trim_start().starts_with("2 "))
        .unwrap();
    assert!(lines[second].contains("0x3000"), "{}", lines[second]);
}

#[test]
fn top_and_frame_limits_apply() {
    let s = render(ViewOptions {
        top: 1,
        max_frames: Some(1),
        ..ViewOptions::default()
    });
    assert!(s.contains("… 1 more stacks (--top N)"));
    // The blamed frame is shown even past the frame limit; the rest is summarised.
    assert!(s.contains("▶ demo::hot"));
    assert!(s.contains("… 1 more frames (--full-stacks)"));
}

#[test]
fn other_groupings_and_histograms_render() {
    let s = render(ViewOptions {
        by: GroupBy::Lock,
        hist: true,
        ..ViewOptions::default()
    });
    assert!(s.contains("0x5000 static demo::LOCK (demo)"), "{s}");
    assert!(s.contains("2 waiting threads · 0 releasing threads"), "{s}");
    assert!(s.contains("most waited at demo::hot"), "{s}");
    // The sample's waits sit in the 1-2 ms and 256-512 µs buckets.
    assert!(s.contains("1.05 ms ..  2.10 ms"), "{s}");
    let t = render(ViewOptions {
        by: GroupBy::Thread,
        ..ViewOptions::default()
    });
    assert!(t.contains("1 (worker-1)"), "{t}");
    let none = render(ViewOptions {
        min_wait_ns: 1_000_000_000,
        ..ViewOptions::default()
    });
    assert!(
        none.contains("no group has 1.00 s or more of wait"),
        "{none}"
    );
}

#[test]
fn colour_only_when_asked() {
    let mut buf = Vec::new();
    Table {
        view: ViewOptions::default(),
        color: true,
    }
    .render(&sample(), &mut buf)
    .unwrap();
    let s = String::from_utf8(buf).unwrap();
    assert!(s.contains("\x1b[1;33m"), "{s}");
    assert!(!render(ViewOptions::default()).contains('\x1b'));
}
