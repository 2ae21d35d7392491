//! Root integration tests of the agent's HTTP side: slow and idle clients cannot hold
//! connections or starve `/healthz` (a header timeout and a connection cap), HEAD is answered,
//! SIGHUP does not stop the agent, a token guards every endpoint but `/healthz`, and a unix
//! socket is created mode 0600 without replacing a file or following a symlink.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::agent::*;
use common::*;

/// A name no process has: the agent traces nothing in these tests.
const NOBODY: &str = "lkhttp-none";

/// `lockscope agent --comm NOBODY --listen LISTEN`, not started.
fn agent_listening_on(listen: String) -> std::process::Command {
    let mut c = lockscope();
    c.args(["agent", "--comm", NOBODY, "--listen"]).arg(listen);
    c
}

/// A raw request and the whole reply.
fn exchange(mut s: impl Read + Write, request: &str) -> String {
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    text(&out)
}

/// The status code of a raw reply (0 when there is none).
fn status(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Whether the server closed `s` (a read gives EOF or a reset, not a timeout).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

/// Whether the server has closed `s` by now (EOF or a reset; no data waiting is "open").
fn closed_now(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 256];
    let closed = loop {
        match s.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) => break e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Whether SIGHUP is pending (`SigPnd` or `ShdPnd` of `/proc/PID/status`).
fn hup_pending(status: &str) -> bool {
    status
        .lines()
        .filter_map(|l| l.strip_prefix("SigPnd:").or(l.strip_prefix("ShdPnd:")))
        .any(|m| u64::from_str_radix(m.trim(), 16).is_ok_and(|m| m & 1 != 0))
}

#[test]
fn slow_clients_are_cut_off_head_is_answered_and_sighup_is_survived() {
    if !can_trace() {
        return;
    }
    let (agent, port) = start_agent(&[NOBODY]);

    // HEAD: the GET's status and headers, no body.
    let head = exchange(
        connect(port),
        "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&head), 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length:"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "a body came with HEAD: {head}");

    // 300 slowloris connections (more than the cap), each with half a request.
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(port);
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // /healthz still answers at once: the oldest idle connection made room.
    let t0 = Instant::now();
    let health = exchange(connect(port), "GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(status(&health), 200, "{health}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // The header timeout (5 s) closes every one of them, trickling or not. The 3 s is part of
    // the test: 50 of them trickle a header line well inside the timeout.
    let opened = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    for s in slow.iter_mut().take(50) {
        let _ = s.write_all(b"X-Slow: 1\r\n");
    }
    // Each one closed by 7 s after it opened (watched, not slept through).
    let mut open = slow;
    while !open.is_empty() && opened.elapsed() < Duration::from_secs(7) {
        open.retain_mut(|s| !closed_now(s));
        std::thread::sleep(Duration::from_millis(50));
    }
    open.retain_mut(|s| !closed_by_server(s));
    assert_eq!(
        open.len(),
        0,
        "{} slow connections still open after 7 s",
        open.len()
    );
    // An idle connection that never sends a byte is closed too, within 6 s.
    let mut idle = connect(port);
    let opened = Instant::now();
    while !closed_now(&mut idle) && opened.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(closed_by_server(&mut idle), "an idle connection was kept");

    // SIGHUP: noted, and the agent keeps serving. Checked once the signal was taken (no
    // longer pending), when its default action would have ended the agent.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGHUP) };
    let proc_status = format!("/proc/{}/status", agent.id());
    poll_until("SIGHUP to be delivered", Duration::from_secs(5), || {
        !hup_pending(&std::fs::read_to_string(&proc_status).unwrap_or_default())
    });
    let health = exchange(connect(port), "GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(status(&health), 200, "after SIGHUP: {health}");
    let err = stop_agent(agent);
    assert!(err.contains("SIGHUP ignored"), "{err}");
}

#[test]
fn a_token_guards_everything_but_healthz() {
    if !can_trace() {
        return;
    }
    let token_file = tmp("agent-token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A token others can read is refused, in one line.
    let out = lockscope()
        .args(["agent", "--comm", NOBODY, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert_one_line_error(&out, "readable by others; chmod 600 it");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = [
        "--comm".to_string(),
        NOBODY.to_string(),
        "--token-file".to_string(),
        token_file.display().to_string(),
    ];
    let (agent, port) = start_agent_with(lockscope(), &args);
    let without = exchange(connect(port), "GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status(&without), 401, "{without}");
    let wrong = exchange(
        connect(port),
        "GET /targets HTTP/1.0\r\nAuthorization: Bearer s3cret-token-0123456780\r\n\r\n",
    );
    assert_eq!(status(&wrong), 401, "{wrong}");
    let with = exchange(
        connect(port),
        "GET /metrics HTTP/1.0\r\nAuthorization: Bearer s3cret-token-0123456789\r\n\r\n",
    );
    assert_eq!(status(&with), 200, "{with}");
    assert!(with.contains("lockscope_targets"), "{with}");
    stop_agent(agent);
}

#[test]
fn a_unix_socket_is_private_and_never_replaces_a_file() {
    if !can_trace() {
        return;
    }
    let dir = tmp("sockdir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sock = dir.join("agent.sock");

    // A file, or a planted symlink, at the path: refused, and left as it was.
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    std::os::unix::fs::symlink(&victim, &sock).unwrap();
    let out = agent_listening_on(format!("unix:{}", sock.display()))
        .output()
        .unwrap();
    assert_one_line_error(&out, "already exists");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_symlink());
    std::fs::remove_file(&sock).unwrap();

    // A directory others may write to: refused.
    let open_dir = tmp("sockdir-open");
    let _ = std::fs::remove_dir_all(&open_dir);
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = agent_listening_on(format!("unix:{}/a.sock", open_dir.display()))
        .output()
        .unwrap();
    assert_one_line_error(&out, "writable by root only");

    let mut agent = agent_listening_on(format!("unix:{}", sock.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let meta = wait_for("the socket", Duration::from_secs(20), || {
        std::fs::symlink_metadata(&sock).ok()
    });
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let reply = wait_for("/healthz on the socket", Duration::from_secs(10), || {
        let s = UnixStream::connect(&sock).ok()?;
        Some(exchange(s, "GET /healthz HTTP/1.0\r\n\r\n"))
    });
    assert_eq!(status(&reply), 200, "{reply}");
    let metrics = exchange(
        UnixStream::connect(&sock).unwrap(),
        "GET /metrics HTTP/1.0\r\n\r\n",
    );
    assert!(metrics.contains("lockscope_targets"), "{metrics}");
    // A second agent on the same socket refuses in one line.
    let out = agent_listening_on(format!("unix:{}", sock.display()))
        .output()
        .unwrap();
    assert_one_line_error(&out, "already exists");
    // SIGTERM: exits 0 and removes its socket.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!sock.exists(), "the socket was left behind");
}
