//! Root integration tests of the launch and live modes: `record -- CMD` traces a command from
//! exec and exits with its status; `top` runs in a real pseudo-terminal (util-linux `script`),
//! shows the hot frame, regroups on `b`, quits on Ctrl-C (a key in raw mode) and restores the
//! terminal.
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

#[test]
fn record_launches_a_command_traces_it_and_returns_its_status() {
    if !can_trace() {
        return;
    }
    let out_path = tmp("launched.json");
    let lockdemo = workload_bin("lockdemo");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(&lockdemo)
        .args([
            "contended",
            "--threads",
            "4",
            "--seconds",
            "1",
            "--exit-code",
            "3",
        ])
        .output()
        .expect("run lockscope");
    assert_eq!(
        out.status.code(),
        Some(3),
        "lockscope should exit with the command's status: {}",
        text(&out.stderr)
    );
    let p = load(&out_path);
    assert_eq!(p["meta"]["stop"], "target-exited");
    assert_eq!(p["meta"]["comm"], "lockdemo");
    let tops = stack_totals(&p);
    assert!(!tops.is_empty(), "no waits traced from exec");
    let names = frame_names(&p, tops[0].0);
    assert!(
        names.iter().any(|n| n == "lockdemo::contended_lock_site"),
        "{names:#?}"
    );
    // The one contended lock is the static SHARED_LOCK, named from lockdemo's symbols, and
    // the report's per-lock table says so.
    let locks = p["locks"].as_array().expect("locks");
    assert!(
        locks.iter().any(|l| l["region"] == "static"
            && l["symbol"]
                .as_str()
                .is_some_and(|s| s.contains("SHARED_LOCK"))),
        "{locks:#?}"
    );
    let report = lockscope()
        .args(["report", "--by", "lock"])
        .arg(&out_path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let table = text(&report.stdout);
    assert!(
        table.contains("static lockdemo::SHARED_LOCK (lockdemo)"),
        "{table}"
    );
    // The status line printed to stdout is the command's, and lockscope's own report follows.
    assert!(text(&out.stdout).contains("contended_lock_site"));
}

#[test]
fn a_launched_bundled_map_counts_from_exec() {
    if !can_trace() {
        return;
    }
    let out_path = tmp("launched-map.json");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(workload_bin("syncmap-load"))
        .args(RANGE_INSERT_RUN)
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The workload's JSON goes to the same stdout, before lockscope's report.
    let stdout = text(&out.stdout);
    let truth: Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no workload JSON in: {stdout}"));
    let p = load(&out_path);
    let checks = p["bundled"]["checks"].as_array().expect("checks");
    assert!(!checks.is_empty(), "{:#?}", p["bundled"]);
    for c in checks {
        let (traced, counted) = (
            c["traced"].as_u64().unwrap(),
            c["counted"].as_u64().unwrap(),
        );
        let off = (traced as f64 - counted as f64).abs() / (counted.max(1) as f64);
        assert!(
            off <= 0.02,
            "{c}: traced vs counted {:.2}% apart",
            off * 100.0
        );
    }
    // From exec, the window is the whole life: the counters equal the workload's totals.
    let counters = &p["bundled"]["counters"];
    for key in ["promotions", "rebuilds", "entries_copied"] {
        assert_eq!(
            counters[key], truth["counters_since_start"][key],
            "{key}: lockscope read {} , workload printed {}",
            counters[key], truth["counters_since_start"][key]
        );
    }
}

/// `--follow-forks`: a shell that starts two contending programs is traced in both, each
/// symbolized with its own memory maps; without it, only the shell is.
#[test]
fn follow_forks_traces_the_children_a_script_starts() {
    if !can_trace() {
        return;
    }
    let script = format!(
        "'{}' contended --threads 4 --seconds 2 & '{}' --preset range-insert --duration 2 & wait",
        workload_bin("lockdemo").display(),
        workload_bin("syncmap-load").display()
    );
    let sites = |extra: &[&str]| {
        let (p, _) = launch("follow", Path::new("sh"), &["-c", &script], extra);
        let names: Vec<String> = stack_totals(&p)
            .into_iter()
            .filter(|&(_, n, _)| n > 0)
            .flat_map(|(s, _, _)| frame_names(&p, s))
            .collect();
        (names, p)
    };
    let (names, p) = sites(&["--follow-forks"]);
    assert!(
        names.iter().any(|n| n == "lockdemo::contended_lock_site"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("syncmap::SyncMap<") && n.ends_with(">::slow_store")),
        "{names:?}"
    );
    // Threads of both programs, under their own names.
    let threads: Vec<&str> = p["threads"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_str)
        .collect();
    assert!(threads.contains(&"lockdemo"), "{threads:?}");
    assert!(
        threads.iter().any(|t| t.starts_with("syncmap")),
        "{threads:?}"
    );
    let (names, _) = sites(&[]);
    assert!(
        !names.iter().any(|n| n == "lockdemo::contended_lock_site"),
        "children are not traced without --follow-forks: {names:?}"
    );
}

#[test]
fn record_output_extension_picks_the_format() {
    if !can_trace() {
        return;
    }
    let svg = tmp("recorded.svg");
    let out = lockscope()
        .args(["record", "--quiet", "-o"])
        .arg(&svg)
        .arg("--")
        .arg(workload_bin("lockdemo"))
        .args(["contended", "--threads", "4", "--seconds", "1"])
        .output()
        .expect("run lockscope");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = std::fs::read_to_string(&svg).unwrap();
    assert!(body.contains("<svg"), "not an SVG");
    assert!(body.contains("contended_lock_site"));
    assert!(text(&out.stderr).contains("report saved to"));
}

#[test]
fn launching_a_missing_program_fails_in_one_line() {
    if !can_trace() {
        return;
    }
    let out = lockscope()
        .args(["record", "--", "/nonexistent/prog"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "cannot run /nonexistent/prog: no such file");
}

#[test]
fn top_in_a_terminal_shows_the_hot_frame_and_restores_it() {
    if !can_trace() {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        panic!("util-linux `script` is missing (Debian's bsdutils)");
    }
    let w = Workload::start(&["contended", "--threads", "8"]);
    let inner = format!(
        "stty cols 160 rows 30; exec {} top --pid {} --interval 300ms",
        env!("CARGO_BIN_EXE_lockscope"),
        w.pid()
    );
    let mut term = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script");
    std::thread::sleep(Duration::from_secs(3));
    term.stdin.as_mut().unwrap().write_all(b"b").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    term.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let started = Instant::now();
    while term.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "top did not quit on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = term.wait_with_output().unwrap();
    let screen = text(&out.stdout);
    assert!(
        out.status.success(),
        "top failed: {screen}{}",
        text(&out.stderr)
    );
    assert!(
        screen.contains("lockdemo::contended_lock_site"),
        "hot frame not shown: {screen}"
    );
    // ratatui redraws only changed cells: "stack" → "function" rewrites from "tion" on
    // ("fun" and "c" land where "sta" and "c" were).
    assert!(
        screen.contains("tion (b)"),
        "the b key did not switch the grouping"
    );
    // Entered and left the alternate screen; raw mode is restored by the same call.
    assert!(
        screen.contains("\x1b[?1049h"),
        "never entered the alternate screen"
    );
    assert!(
        screen.contains("\x1b[?1049l"),
        "did not restore the terminal"
    );
}

/// Whether `top`'s pty is its controlling terminal (then closing the master sends SIGHUP) or
/// only its stdin and stdout (then the reads and writes fail: EOF, EIO).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctty {
    Controlling,
    StdioOnly,
}

/// `lockscope top` on a fresh pty of its own; the pty's master, read by a thread until `stop`.
struct PtyTop {
    top: std::process::Child,
    master: i32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl PtyTop {
    fn start(pid: &str, ctty: Ctty) -> PtyTop {
        use std::os::fd::FromRawFd;
        use std::os::unix::process::CommandExt;
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 30,
            ws_col: 160,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors; the name and termios may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty");
        // Only the dup'd slave goes to the child: a master it inherited would keep the pty up.
        // SAFETY: fcntl on our own descriptors.
        unsafe {
            libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        // SAFETY: dup'd descriptors of our own pty slave, each owned by one Stdio.
        let io = |fd: i32| unsafe { Stdio::from_raw_fd(libc::dup(fd)) };
        let mut cmd = lockscope();
        cmd.args(["top", "--pid", pid, "--interval", "300ms"])
            .stdin(io(slave))
            .stdout(io(slave))
            .stderr(io(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if ctty == Ctty::Controlling {
                    libc::ioctl(0, libc::TIOCSCTTY, 0);
                }
                Ok(())
            });
        }
        let top = cmd.spawn().expect("start top");
        // SAFETY: closing our copy of the slave; the child has its own.
        unsafe { libc::close(slave) };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let quit = stop.clone();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        let reader = std::thread::spawn(move || {
            while !quit.load(std::sync::atomic::Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: master,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                    continue;
                }
                let mut buf = [0u8; 4096];
                // SAFETY: reads into a local buffer of that length.
                let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n as usize]);
            }
        });
        PtyTop {
            top,
            master,
            stop,
            seen,
            reader: Some(reader),
        }
    }

    /// Waits until `top` has drawn its header (attaching takes a while on a busy machine).
    fn wait_drawn(&self) {
        let t0 = Instant::now();
        while !text(&self.seen.lock().unwrap()).contains("lockscope top") {
            assert!(t0.elapsed() < Duration::from_secs(30), "top never drew");
            assert!(self.reader.as_ref().is_some_and(|r| !r.is_finished()));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops reading the master; what `top` wrote to it.
    fn screen(&mut self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        text(&self.seen.lock().unwrap())
    }

    /// Waits up to `limit` for `top` to exit; its status.
    fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.top.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for PtyTop {
    fn drop(&mut self) {
        let _ = self.top.kill();
        let _ = self.top.wait();
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        // SAFETY: closing our own descriptor (-1 once closed).
        if self.master >= 0 {
            unsafe { libc::close(self.master) };
        }
    }
}

/// The terminal `top` runs in goes away (a closed tmux window, a dropped ssh session): `top`
/// is gone within 2 s, whether the hang-up comes as SIGHUP or only as failing reads.
#[test]
fn top_exits_when_its_terminal_hangs_up() {
    if !can_trace() {
        return;
    }
    let w = Workload::start(&["contended", "--threads", "4"]);
    for ctty in [Ctty::Controlling, Ctty::StdioOnly] {
        let mut t = PtyTop::start(&w.pid(), ctty);
        t.wait_drawn();
        std::thread::sleep(Duration::from_millis(500));
        assert!(t.top.try_wait().unwrap().is_none(), "top ended on its own");
        t.screen();
        // SAFETY: closing our own pty master: the hang-up.
        unsafe { libc::close(t.master) };
        t.master = -1;
        let status = t.exited_within(Duration::from_secs(2));
        assert!(
            status.is_some(),
            "top still running 2 s after its terminal hung up ({})",
            if ctty == Ctty::Controlling {
                "SIGHUP"
            } else {
                "EOF/EIO only"
            }
        );
    }
}

/// SIGTERM ends `top` at once, with status 0 and the terminal restored.
#[test]
fn top_exits_on_sigterm_and_restores_the_terminal() {
    if !can_trace() {
        return;
    }
    let w = Workload::start(&["contended", "--threads", "4"]);
    let mut t = PtyTop::start(&w.pid(), Ctty::Controlling);
    t.wait_drawn();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(t.top.id() as i32, libc::SIGTERM) };
    let status = t.exited_within(Duration::from_secs(2));
    let screen = t.screen();
    let status = status.expect("top still running 2 s after SIGTERM");
    assert!(status.success(), "{status}: {screen}");
    assert!(
        screen.contains("\x1b[?1049h"),
        "never entered the alternate screen"
    );
    assert!(
        screen.contains("\x1b[?1049l"),
        "did not restore the terminal"
    );
}
