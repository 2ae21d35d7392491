//! tty: `top`'s keyboard, read from its terminal with poll(2) and read(2). crossterm's own
//! reader loops forever on a hung-up terminal (a read of 0 bytes or EIO is retried at once),
//! so a `top` whose terminal closed spun at full speed and never saw SIGTERM; here EOF, EIO,
//! POLLHUP and POLLERR all end the session.
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `q`, Esc or Ctrl-C.
    Quit,
    /// `s`: the next sort key.
    Sort,
    /// `b`: the next grouping.
    By,
}

/// What one wait on the terminal gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Keys pressed (none when the wait timed out or a signal interrupted it).
    Keys(Vec<Key>),
    /// The terminal is gone: hung up, closed, or failing reads.
    HungUp,
}

/// The terminal `top` reads keys from: stdin when it is a terminal, else `/dev/tty` (as
/// crossterm chooses, so raw mode and the reads are on the same terminal).
pub struct Tty {
    fd: RawFd,
    /// Keeps `/dev/tty` open when it was opened here.
    _owned: Option<File>,
}

impl Tty {
    pub fn open() -> io::Result<Tty> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
            return Ok(Tty {
                fd: libc::STDIN_FILENO,
                _owned: None,
            });
        }
        let f = File::options().read(true).write(true).open("/dev/tty")?;
        Ok(Tty {
            fd: f.as_raw_fd(),
            _owned: Some(f),
        })
    }

    /// Waits up to `wait` for keys. A signal ends the wait early with no keys (the caller
    /// checks its quit flag).
    pub fn wait(&self, wait: Duration) -> Input {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the length given.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            return match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => Input::Keys(Vec::new()),
                _ => Input::HungUp,
            };
        }
        if rc == 0 {
            return Input::Keys(Vec::new());
        }
        if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return Input::HungUp;
        }
        let mut buf = [0u8; 64];
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => Input::HungUp,
            n if n < 0 => match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => Input::Keys(Vec::new()),
                _ => Input::HungUp,
            },
            n => Input::Keys(keys(&buf[..n as usize])),
        }
    }
}

/// Points stderr at /dev/null: after a hang-up, a message to the dead terminal would fail,
/// and `eprintln!` panics on a failed write.
pub fn stderr_to_null() {
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 2 of a descriptor we own; `null` closes its own copy after.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO) };
    }
}

/// The keys in bytes read from a raw-mode terminal. An escape sequence (an arrow, a function
/// key: ESC followed by `[` or `O`) is skipped whole; a lone ESC quits.
pub fn keys(bytes: &[u8]) -> Vec<Key> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'q' | b'Q' | 0x03 => out.push(Key::Quit),
            b's' => out.push(Key::Sort),
            b'b' => out.push(Key::By),
            0x1b => match bytes.get(i + 1) {
                Some(b'[') | Some(b'O') => {
                    // CSI/SS3: parameters, then one final byte in 0x40..=0x7e.
                    i += 2;
                    while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                        i += 1;
                    }
                }
                _ => out.push(Key::Quit),
            },
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_escape_sequences_are_skipped() {
        assert_eq!(keys(b"bs"), vec![Key::By, Key::Sort]);
        assert_eq!(keys(b"\x03"), vec![Key::Quit]);
        assert_eq!(keys(b"\x1b"), vec![Key::Quit]);
        // Up arrow, then F5 (CSI 15~), then b: only b is a key.
        assert_eq!(keys(b"\x1b[A\x1b[15~b"), vec![Key::By]);
        assert_eq!(keys(b"\x1bOPq"), vec![Key::Quit]);
        assert!(keys(b"xyz").is_empty());
    }

    /// A pty whose master is closed reads as hung up at once (POLLHUP or EOF), not as "no
    /// keys" forever.
    #[test]
    fn a_closed_pty_reads_as_hung_up() {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; the other arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        // Raw mode, as top sets it: bytes arrive as typed, not a line at a time.
        // SAFETY: termios is plain data, filled in by tcgetattr on our own pty.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(slave, &mut t), 0);
            libc::cfmakeraw(&mut t);
            assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &t), 0);
        }
        let tty = Tty {
            fd: slave,
            _owned: None,
        };
        assert_eq!(tty.wait(Duration::from_millis(10)), Input::Keys(vec![]));
        // SAFETY: writes two bytes from a valid buffer to our own pty master.
        assert_eq!(
            unsafe { libc::write(master, b"b\x1b".as_ptr().cast(), 2) },
            2
        );
        assert_eq!(
            tty.wait(Duration::from_millis(500)),
            Input::Keys(vec![Key::By, Key::Quit])
        );
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(master) };
        let t0 = std::time::Instant::now();
        assert_eq!(tty.wait(Duration::from_secs(5)), Input::HungUp);
        assert!(t0.elapsed() < Duration::from_secs(1));
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(slave) };
    }
}
