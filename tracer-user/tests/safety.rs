//! Root integration tests of what a root tool must not do: write through planted names,
//! print a target's bytes raw to a terminal, trace what its caller could not, read without
//! bound, lose a recording to a signal, or give up on a process whose main thread exited.
mod common;

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::typed::{names, totals};
use common::*;
use lockscope_profile::profile::StopReason;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lockscope-profile/tests/data/lockdemo-contended.json")
}

fn odd_threads() -> PathBuf {
    build_c("odd_threads", "odd_threads", &["-O2"])
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = tmp(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `-o` at a symlink is refused; a name planted where a temporary might go is never written
/// through; the file is private; nothing is left beside it.
#[test]
fn outputs_never_write_through_planted_names() {
    let d = fresh_dir("planted");
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = d.join("link.txt");
    symlink(&victim, &link).unwrap();
    let out = lockscope()
        .args(["report"])
        .arg(fixture())
        .arg("-o")
        .arg(&link)
        .output()
        .unwrap();
    assert_one_line_error(&out, "symbolic link");
    // Every name an older lockscope used for its temporary, planted as a symlink.
    let target = d.join("out.txt");
    for name in [".out.txt.tmp-1", ".out.txt.lockscope-1-0"] {
        symlink(&victim, d.join(name)).unwrap();
    }
    let out = lockscope()
        .args(["report"])
        .arg(fixture())
        .arg("-o")
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .contains("lockscope: pid"));
    assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 5, "{left:?}");
}

/// `-o /dev/null`-like targets stay what they are.
#[test]
fn devices_are_written_in_place() {
    if !can_trace() {
        return;
    }
    let d = fresh_dir("devnull");
    let null = d.join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    let out = lockscope()
        .args(["report"])
        .arg(fixture())
        .arg("-o")
        .arg(&null)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta = std::fs::symlink_metadata(&null).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &meta.file_type()
    ));
}

/// Reading is bounded: a device, an oversized profile and a giant string are refused in one
/// line, before they are parsed.
#[test]
fn reading_is_bounded() {
    let out = lockscope().args(["report", "/dev/zero"]).output().unwrap();
    assert_one_line_error(&out, "not a regular file");
    let d = fresh_dir("bounded");
    let big = d.join("big.json");
    std::fs::write(&big, vec![b' '; 2 << 20]).unwrap();
    let out = lockscope()
        .args(["report"])
        .arg(&big)
        .env("LOCKSCOPE_MAX_PROFILE_BYTES", (1u64 << 20).to_string())
        .output()
        .unwrap();
    assert_one_line_error(&out, "more than the 1 MiB a profile may be");
    let long = d.join("long.json");
    let mut text_ = std::fs::read_to_string(fixture()).unwrap();
    text_ = text_.replacen("\"lockdemo\"", &format!("\"{}\"", "A".repeat(1 << 20)), 1);
    std::fs::write(&long, text_).unwrap();
    let out = lockscope().args(["report"]).arg(&long).output().unwrap();
    assert_one_line_error(&out, "a string longer than");
}

/// A target that names its threads with escape sequences cannot reach the terminal.
#[test]
fn target_names_are_escaped_for_the_terminal() {
    if !can_trace() {
        return;
    }
    let bin = odd_threads();
    let out_path = tmp("escape.json");
    let out = lockscope()
        .args(["record", "--by", "thread", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(&bin)
        .args(["escape-name", "1"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!bytes.contains(&0x1b), "raw ESC on {what}: {}", text(bytes));
        assert!(!bytes.contains(&0x07), "raw BEL on {what}");
    }
    assert!(
        text(&out.stdout).contains("\\u{1b}]0;pwned"),
        "{}",
        text(&out.stdout)
    );
    // The profile keeps the exact bytes, JSON-escaped.
    let p = profile_at(&out_path);
    assert!(p.threads.values().any(|s| s.starts_with('\u{1b}')));
}

/// SIGHUP (a closed terminal) saves the recording like Ctrl-C.
#[test]
fn sighup_saves_the_recording() {
    if !can_trace() {
        return;
    }
    let w = Workload::start(&["contended", "--threads", "4", "--seconds", "30"]);
    let out_path = tmp("sighup.json");
    let _ = std::fs::remove_file(&out_path);
    // Half a second traced, then the hangup: the length of the recording.
    let out = record_until_signal(
        &w.pid(),
        &out_path,
        libc::SIGHUP,
        SignalAt::Tracing(Duration::from_millis(500)),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p = profile_at(&out_path);
    assert_eq!(p.meta.stop, StopReason::Interrupted);
    assert!(!totals(&p).is_empty());
}

/// A process whose main thread called pthread_exit lives on in its threads: it is traced.
#[test]
fn a_process_whose_main_thread_exited_is_traced() {
    if !can_trace() {
        return;
    }
    let bin = odd_threads();
    let mut w = Command::new(&bin)
        .args(["leader-exits", "4"])
        .spawn()
        .unwrap();
    // Ready once the main thread has exited: the leader stays a zombie while its threads run.
    let leader = PathBuf::from(format!("/proc/{0}/task/{0}/stat", w.id()));
    poll_until("the leader to exit", Duration::from_secs(10), || {
        task_state(&leader) == Some('Z')
    });
    let out_path = tmp("leader.json");
    let out = record(&w.id().to_string(), "1500ms", &out_path);
    let _ = w.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p = profile_at(&out_path);
    let tops = totals(&p);
    assert!(!tops.is_empty(), "nothing recorded");
    let top = names(&p, tops[0].0);
    assert!(top.iter().any(|n| n == "odd_lock_site"), "{top:?}");
}

/// With only the capabilities `setcap` grants, a user may trace what it could ptrace, and
/// nothing else: root's process is refused in one line.
#[test]
fn capabilities_do_not_let_a_user_trace_other_users() {
    if !can_trace() {
        return;
    }
    let d = fresh_dir("setcap");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = d.join("lockscope");
    std::fs::copy(env!("CARGO_BIN_EXE_lockscope"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let set = Command::new("setcap")
        .args(["cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep"])
        .arg(&copy)
        .output()
        .expect("setcap (libcap2-bin)");
    assert!(set.status.success(), "setcap: {}", text(&set.stderr));
    let mut roots = Command::new("sleep").arg("30").spawn().unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&copy)
        .args([
            "record",
            "--pid",
            &roots.id().to_string(),
            "--duration",
            "1s",
            "-o",
        ])
        .arg(d.join("x.json"))
        .output()
        .unwrap();
    let _ = roots.kill();
    let _ = roots.wait();
    assert_one_line_error(&out, "may not trace PID");
}

/// A target that execs into the bundled workload mid-recording: the report names the new
/// image, and the map's phases are probed in it and counted from its exec.
#[test]
fn exec_during_a_recording_is_followed() {
    if !can_trace() {
        return;
    }
    let bin = workload_bin("syncmap-load");
    let script = format!(
        "sleep 1; exec {} --preset range-insert --duration 2 --linger 1",
        bin.display()
    );
    let out_path = tmp("exec.json");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exec'd"),
        "{}",
        text(&out.stderr)
    );
    let p = profile_at(&out_path);
    assert_eq!(p.meta.comm, "syncmap-load");
    let canonical = bin.canonicalize().unwrap();
    assert_eq!(p.meta.exe.as_deref(), canonical.to_str());
    let b = p
        .bundled
        .as_ref()
        .expect("no bundled section after the exec");
    for c in &b.checks {
        let (traced, counted) = (c.traced, c.counted);
        assert!(counted > 0, "{c:?}");
        assert!(traced.abs_diff(counted) <= counted / 50 + 2, "{c:?}");
    }
}

/// Run through sudo, a new output belongs to the user who ran sudo, not to root.
#[test]
fn outputs_belong_to_the_sudo_user() {
    if !can_trace() {
        return;
    }
    let d = fresh_dir("sudo");
    let path = d.join("mine.txt");
    let out = lockscope()
        .args(["report"])
        .arg(fixture())
        .arg("-o")
        .arg(&path)
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (65534, 65534, 0o600));
}
