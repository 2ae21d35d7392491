//! A `lockscope record` run watched through its stderr: lockscope prints "lockscope: tracing
//! pid …" (or "lockscope: launched …") once its probes are attached, so a test waits for that
//! line — a ready handshake — instead of sleeping for a guessed attach time.
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an attach may take on a loaded 2-core machine.
const ATTACH_LIMIT: Duration = Duration::from_secs(30);

/// A running lockscope whose stderr lines are collected as they come (its stdout is kept
/// whole, for [`Recording::finish`]).
pub struct Recording {
    child: Option<Child>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    /// Every stderr line read so far.
    pub said: Vec<String>,
}

impl Recording {
    /// Spawns `cmd` (a `lockscope record …`) with stdout and stderr piped.
    pub fn spawn(mut cmd: Command) -> Recording {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lockscope record");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = out.read_to_end(&mut all);
            all
        });
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Recording {
            child: Some(child),
            lines,
            reader: Some(reader),
            stdout: Some(stdout),
            said: Vec::new(),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Blocks until lockscope says its probes are attached; the instant it said so.
    pub fn wait_tracing(&mut self) -> Instant {
        let t0 = Instant::now();
        loop {
            let left = ATTACH_LIMIT.saturating_sub(t0.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let ready = l.starts_with("lockscope: tracing pid")
                        || l.starts_with("lockscope: launched");
                    self.said.push(l);
                    if ready {
                        return Instant::now();
                    }
                }
                Err(_) => panic!("lockscope never started tracing: {:?}", self.said),
            }
        }
    }

    /// Sends `signal` to lockscope.
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.id() as i32, signal) };
    }

    /// Waits for lockscope to exit: its status, stdout, and every line it said on stderr.
    pub fn finish(mut self) -> Output {
        let status = self
            .child
            .take()
            .unwrap()
            .wait()
            .expect("wait for lockscope");
        self.reader.take().unwrap().join().unwrap();
        let stdout = self.stdout.take().unwrap().join().unwrap();
        self.said.extend(self.lines.try_iter());
        Output {
            status,
            stdout,
            stderr: self.said.join("\n").into_bytes(),
        }
    }
}

impl Drop for Recording {
    /// Kills lockscope if a test panicked before [`Recording::finish`] (its probes go with its
    /// file descriptors).
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
