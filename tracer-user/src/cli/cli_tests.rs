//! Unit tests of cli.
use super::*;
use crate::analyze::Waits;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("lockscope").chain(args.iter().copied()))
}

#[test]
fn record_takes_a_pid_or_a_command_not_both() {
    let Command::Record(r) = parse(&["record", "-p", "12"]).unwrap().command else {
        panic!("record")
    };
    let o = r.options().unwrap();
    assert!(matches!(o.launch, Launch::Pid(12)));
    assert_eq!(o.duration, Some(Duration::from_secs(10)));
    let Command::Record(r) = parse(&["record", "--", "prog", "--flag", "x"])
        .unwrap()
        .command
    else {
        panic!("record")
    };
    let o = r.options().unwrap();
    assert!(matches!(&o.launch, Launch::Command(c) if c == &["prog", "--flag", "x"]));
    assert_eq!(o.duration, None, "a launched command runs to its end");
    assert!(parse(&["record"]).is_err());
    assert!(parse(&["record", "-p", "1", "--", "x"]).is_err());
    let Command::Record(r) = parse(&["record", "-p", "0"]).unwrap().command else {
        panic!("record")
    };
    assert!(r.options().is_err());
}

#[test]
fn output_extension_picks_the_format() {
    let Command::Record(r) = parse(&["record", "-p", "5", "-o", "flame.svg"])
        .unwrap()
        .command
    else {
        panic!("record")
    };
    assert_eq!(r.options().unwrap().output_format, Some(Format::Svg));
    let Command::Report(r) = parse(&["report", "p.json", "-o", "x.pb.gz"])
        .unwrap()
        .command
    else {
        panic!("report")
    };
    assert_eq!(r.options().unwrap().format, Format::Pprof);
    let Command::Report(r) = parse(&["report", "p.json", "-f", "csv", "-o", "x.svg"])
        .unwrap()
        .command
    else {
        panic!("report")
    };
    assert_eq!(r.options().unwrap().format, Format::Csv, "--format wins");
}

#[test]
fn view_flags_become_view_options() {
    let Command::Report(r) = parse(&[
        "report",
        "p.json",
        "--by",
        "lock",
        "--sort",
        "max",
        "--top",
        "3",
        "--min-wait",
        "2ms",
        "--full-stacks",
        "--hist",
    ])
    .unwrap()
    .command
    else {
        panic!("report")
    };
    let v = r.options().unwrap().view;
    assert_eq!(v.by, GroupBy::Lock);
    assert_eq!(v.sort, SortKey::Max);
    assert_eq!(v.top, 3);
    assert_eq!(v.min_wait_ns, 2_000_000);
    assert_eq!(v.max_frames, None);
    assert!(v.hist);
    let Command::Report(r) = parse(&["report", "p.json", "--min-wait", "soon"])
        .unwrap()
        .command
    else {
        panic!("report")
    };
    let e = r.options().unwrap_err().to_string();
    assert!(e.starts_with("--min-wait 'soon'"), "{e}");
}

#[test]
fn waits_is_a_view_option_of_every_command() {
    let parse = |args: &[&str]| parse(args).unwrap().command;
    let Command::Report(r) = parse(&["report", "p.json"]) else {
        panic!("report")
    };
    assert_eq!(r.options().unwrap().view.waits, Waits::Contention);
    let Command::Report(r) = parse(&["report", "p.json", "--waits", "all"]) else {
        panic!("report")
    };
    assert_eq!(r.options().unwrap().view.waits, Waits::All);
    let Command::Record(r) = parse(&["record", "-p", "3", "--waits", "idle"]) else {
        panic!("record")
    };
    assert_eq!(r.options().unwrap().view.waits, Waits::Idle);
    let Command::Top(t) = parse(&["top", "-p", "3", "--waits", "idle"]) else {
        panic!("top")
    };
    assert_eq!(t.options().unwrap().waits, Waits::Idle);
}
