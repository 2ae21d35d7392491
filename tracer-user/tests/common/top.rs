//! `lockscope top` in a pseudo-terminal (util-linux `script`), for tests that read its screen.
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running `top` and everything it has drawn so far.
pub struct TopScreen {
    term: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl TopScreen {
    /// `lockscope top --pid PID ARGS…` on a 160×30 terminal.
    pub fn start(pid: u32, args: &[&str]) -> TopScreen {
        assert!(
            Command::new("script").arg("--version").output().is_ok(),
            "util-linux `script` is missing (Debian's bsdutils)"
        );
        let inner = format!(
            "stty cols 160 rows 30; exec {} top --pid {pid} --interval 300ms {}",
            env!("CARGO_BIN_EXE_lockscope"),
            args.join(" ")
        );
        let mut term = Command::new("script")
            .args(["-qfec", &inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start script");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut tty = term.stdout.take().unwrap();
        let reader = {
            let screen = Arc::clone(&screen);
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n @ 1..) = tty.read(&mut b) {
                    screen.lock().unwrap().extend_from_slice(&b[..n]);
                }
            })
        };
        TopScreen {
            term,
            screen,
            reader: Some(reader),
        }
    }

    /// Waits up to `limit` until every one of `needles` has been drawn; panics with the
    /// screen otherwise.
    pub fn wait_for(&self, needles: &[&str], limit: Duration) {
        self.wait_for_after(needles, 0, limit);
    }

    /// As [`TopScreen::wait_for`], drawn at byte `from` of the output or later; returns how
    /// much output there was then (for the next key's effect).
    pub fn wait_for_after(&self, needles: &[&str], from: usize, limit: Duration) -> usize {
        let t0 = Instant::now();
        loop {
            let now = self.screen.lock().unwrap().clone();
            let after = &now[from.min(now.len())..];
            let shown = |n: &str| after.windows(n.len()).any(|w| w == n.as_bytes());
            if needles.iter().all(|n| shown(n)) {
                return now.len();
            }
            assert!(
                t0.elapsed() < limit,
                "top never showed {needles:?}: {}",
                String::from_utf8_lossy(&now)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `keys` into the terminal.
    pub fn press(&mut self, keys: &[u8]) {
        self.term.stdin.as_mut().unwrap().write_all(keys).unwrap();
    }

    /// Presses `q` and waits for top to exit.
    pub fn quit(mut self) {
        self.press(b"q");
        self.exit();
    }

    /// Waits for top to exit (15 s at most); returns its status, stderr and everything it
    /// drew.
    pub fn exit(mut self) -> (std::process::ExitStatus, String, String) {
        let t0 = Instant::now();
        while self.term.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(15), "top did not quit");
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let status = self.term.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.term.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let screen = String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned();
        (status, err, screen)
    }
}

impl Drop for TopScreen {
    fn drop(&mut self) {
        let _ = self.term.kill();
        let _ = self.term.wait();
    }
}
