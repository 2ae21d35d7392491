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
        let t0 = Instant::now();
        loop {
            let now = self.screen.lock().unwrap().clone();
            let shown = |n: &str| now.windows(n.len()).any(|w| w == n.as_bytes());
            if needles.iter().all(|n| shown(n)) {
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "top never showed {needles:?}: {}",
                String::from_utf8_lossy(&now)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses `q` and waits for top to exit.
    pub fn quit(mut self) {
        let _ = self.term.stdin.as_mut().unwrap().write_all(b"q");
        let t0 = Instant::now();
        while self.term.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(15), "top did not quit");
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for TopScreen {
    fn drop(&mut self) {
        let _ = self.term.kill();
        let _ = self.term.wait();
    }
}
