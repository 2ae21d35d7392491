//! Rendering a profile with a followed child: labels say the process, the table lists the
//! followed processes, pprof samples of the child carry its pid, and a profile without
//! children renders as before.
use super::*;
use crate::analyze::{GroupBy, Waits};
use crate::profile::testing::{sample, sample_with_child};

fn render(r: &dyn Render, p: &Profile) -> String {
    let mut out = Vec::new();
    r.render(p, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn view(by: GroupBy) -> ViewOptions {
    ViewOptions {
        by,
        ..ViewOptions::default()
    }
}

#[test]
fn labels_say_the_process_once_there_are_several() {
    let p = sample_with_child();
    assert_eq!(key_label(&Key::Process(43), &p), "pid 43 (child)");
    assert_eq!(key_label(&Key::Process(42), &p), "pid 42 (demo)");
    assert_eq!(
        key_label(&Key::Lock(Some(43), 0x5000), &p),
        "0x5000 in pid 43"
    );
    assert_eq!(key_label(&Key::Lock(None, 0x5000), &p), "0x5000 in pid 42");
    assert_eq!(key_label(&Key::Lock(None, 0x5000), &sample()), "0x5000");
    // Each lock's releasers are its own process's.
    let r = releasers(&p, Some(43), 0x5000);
    assert_eq!((r.threads, r.woken), (1, 5));
    let r = releasers(&p, None, 0x5000);
    assert_eq!((r.threads, r.woken, r.hottest), (0, 0, None));
}

#[test]
fn the_table_lists_followed_processes_and_keeps_their_locks_apart() {
    let p = sample_with_child();
    let table = |by| {
        render(
            &Table {
                view: view(by),
                color: false,
            },
            &p,
        )
    };
    let locks = table(GroupBy::Lock);
    assert!(
        locks.contains("followed 1 forked process: pid 43 (child, unwind fp)"),
        "{locks}"
    );
    assert!(locks.contains("0x5000 in pid 43 unknown"), "{locks}");
    assert!(
        locks.contains("0x5000 in pid 42 static demo::LOCK (demo)"),
        "{locks}"
    );
    assert!(
        locks.contains("1 waiting threads · 1 releasing threads (5 woken)"),
        "{locks}"
    );
    let procs = table(GroupBy::Process);
    assert!(procs.contains("pid 43 (child)"), "{procs}");
    assert!(procs.contains("pid 42 (demo)"), "{procs}");
    let alone = render(
        &Table {
            view: view(GroupBy::Lock),
            color: false,
        },
        &sample(),
    );
    assert!(!alone.contains("followed"), "{alone}");
}

#[test]
fn folded_and_json_say_the_process() {
    let p = sample_with_child();
    let folded = render(
        &Folded {
            view: view(GroupBy::Process),
        },
        &p,
    );
    let roots: std::collections::BTreeSet<&str> =
        folded.lines().filter_map(|l| l.split(';').next()).collect();
    assert_eq!(
        roots,
        ["pid 42 (demo)", "pid 43 (child)"].into_iter().collect(),
        "{folded}"
    );
    let json: serde_json::Value = serde_json::from_str(&render(
        &Json {
            view: view(GroupBy::Stack),
        },
        &p,
    ))
    .unwrap();
    assert_eq!(json["processes"][0]["pid"], 43);
    assert_eq!(json["processes"][0]["unwind"], "fp");
    let locks = &json["rows"][0]["locks"];
    assert_eq!(
        locks,
        &serde_json::json!(["0x5000 in pid 42", "0x5000 in pid 43"])
    );
}

#[test]
fn pprof_samples_of_a_child_carry_its_pid() {
    let p = pprof::build(&sample_with_child(), Waits::Contention);
    let s = |i: i64| p.string_table[i as usize].as_str();
    let pids: Vec<Option<i64>> = p
        .sample
        .iter()
        .map(|x| x.label.iter().find(|l| s(l.key) == "pid").map(|l| l.num))
        .collect();
    assert_eq!(
        pids.iter().filter(|&&x| x == Some(43)).count(),
        1,
        "{pids:?}"
    );
    assert_eq!(pids.iter().filter(|x| x.is_none()).count(), 3, "{pids:?}");
    let alone = pprof::build(&sample(), Waits::Contention);
    assert!(!alone.string_table.iter().any(|t| t == "pid"));
}
