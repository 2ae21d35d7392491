//! Helpers of the agent's root tests: a free port, plain HTTP requests, the agent started and
//! stopped, metric lookups, and a real Prometheus.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// The lock site of lockdemo's contended mode.
pub const SITE: &str = "lockdemo::contended_lock_site";

/// A free TCP port on 127.0.0.1 (free when asked; nothing else here races for it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0; (status, body).
pub fn get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf[split + 4..].to_vec()))
}

pub fn get_text(port: u16, path: &str) -> String {
    let (status, body) = get(port, path).unwrap_or_else(|| panic!("GET {path} failed"));
    let body = text(&body);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Polls `f` every 200 ms until it gives a value, for at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `renamed_copy` under `PREFIX` + this run's pid: (the name, the copy).
pub fn named_copy(bin: &str, prefix: &str) -> (String, PathBuf) {
    let name = format!("{prefix}{}", std::process::id() % 100_000);
    let copy = renamed_copy(bin, &name);
    (name, copy)
}

/// A copy of a workload under a name no other test uses, so the agent's `--comm` matches
/// only the processes this test starts.
pub fn renamed_copy(bin: &str, name: &str) -> PathBuf {
    let to = tmp(name);
    std::fs::copy(workload_bin(bin), &to).unwrap();
    to
}

/// The sum of a metric's samples whose labels include every one of `labels`. Summed in
/// sorted order, so the same samples give the same sum whatever order the series come in
/// (a float sum depends on its order).
pub fn metric(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = Vec::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name).filter(|r| r.starts_with('{')) else {
            continue;
        };
        let (set, value) = rest.rsplit_once(' ')?;
        if labels.iter().all(|l| set.contains(l)) {
            found.push(value.parse::<f64>().ok()?);
        }
    }
    found.sort_by(f64::total_cmp);
    (!found.is_empty()).then(|| found.iter().sum())
}

pub fn pids_traced(port: u16) -> Vec<u64> {
    let v: Value = serde_json::from_str(&get_text(port, "/targets")).unwrap();
    v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pid"].as_u64().unwrap())
        .collect()
}

/// Percent-encodes a PromQL query for a URL.
pub fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's instant query; the values of the result vector.
pub fn prom_query(port: u16, q: &str) -> Vec<f64> {
    let Some((200, body)) = get(port, &format!("/api/v1/query?query={}", encode(q))) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `lockscope agent --comm NAME…` on a free port and waits until it serves.
pub fn start_agent(comms: &[&str]) -> (Child, u16) {
    let mut args = Vec::new();
    for c in comms {
        args.extend(["--comm".to_string(), c.to_string()]);
    }
    start_agent_with(lockscope(), &args)
}

/// Starts `CMD agent --listen 127.0.0.1:PORT --window 5s ARGS…` (CMD: lockscope, or a
/// wrapper whose last argument is lockscope) and waits until it serves.
pub fn start_agent_with(mut cmd: Command, args: &[String]) -> (Child, u16) {
    let port = free_port();
    cmd.args([
        "agent",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--window",
        "5s",
    ]);
    cmd.args(args);
    let agent = cmd.stderr(Stdio::piped()).spawn().unwrap();
    wait_for("the agent's /healthz", Duration::from_secs(20), || {
        get(port, "/healthz").filter(|(s, _)| *s == 200)
    });
    (agent, port)
}

/// SIGTERM: the agent must exit 0 within 2 s; returns what it printed.
pub fn stop_agent(mut agent: Child) -> String {
    let t0 = Instant::now();
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    err
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_prometheus(dir: &Path, agent_port: u16) -> (Killed, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: lockscope\n    \
             scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's prometheus is needed: run `cargo xtask setup`");
    (Killed(child), port)
}
