//! Root integration tests of `top` losing its terminal: on a pty whose master is then closed
//! (as its controlling terminal, so SIGHUP comes; or as its stdio only, so only reads and writes
//! fail) it is gone within 2 s; SIGTERM ends it with status 0 and the terminal restored.
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

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
    assert_alt_screen_left(&screen);
}
