//! debuginfod: fetches a module's debug file by build id from the servers in
//! `DEBUGINFOD_URLS` (`GET URL/buildid/HEX/debuginfo`), into an on-disk cache.
//!
//! The cache is `$XDG_CACHE_HOME/lockscope/debuginfod` (or `~/.cache/…`): `HEX.debug` once
//! fetched, and `HEX.miss` for a build id no server had, not asked again for ten minutes. Each
//! fetch runs on its own thread with a whole-request timeout (`DEBUGINFOD_TIMEOUT` seconds,
//! default 30), so it never holds up the recording or a live refresh. Plain `http://` only: an
//! `https://` URL is skipped, and the unnamed-frame note says so.
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, SystemTime};

/// A build id no server had is asked for again after this long.
const MISS_TTL: Duration = Duration::from_secs(600);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The servers and the cache.
#[derive(Debug, Clone)]
pub struct Debuginfod {
    pub urls: Vec<String>,
    pub cache: PathBuf,
    pub timeout: Duration,
}

/// What the cache holds for a build id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    Hit(PathBuf),
    /// No server had it, recently.
    Miss,
    Unknown,
}

impl Debuginfod {
    /// From `DEBUGINFOD_URLS` (space-separated); `None` when it names no server.
    pub fn from_env() -> Option<Debuginfod> {
        let urls: Vec<String> = std::env::var("DEBUGINFOD_URLS")
            .ok()?
            .split_whitespace()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        if urls.is_empty() {
            return None;
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
            .join("lockscope/debuginfod");
        let timeout = std::env::var("DEBUGINFOD_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        Some(Debuginfod {
            urls,
            cache,
            timeout,
        })
    }

    fn hit_path(&self, build_id: &str) -> PathBuf {
        self.cache.join(format!("{build_id}.debug"))
    }

    fn miss_path(&self, build_id: &str) -> PathBuf {
        self.cache.join(format!("{build_id}.miss"))
    }

    /// The cache's answer, without asking any server.
    pub fn cached(&self, build_id: &str) -> Cached {
        let hit = self.hit_path(build_id);
        if hit.is_file() {
            return Cached::Hit(hit);
        }
        let fresh_miss = std::fs::metadata(self.miss_path(build_id))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < MISS_TTL);
        if fresh_miss {
            Cached::Miss
        } else {
            Cached::Unknown
        }
    }

    /// The debug file for `build_id`: from the cache, or fetched from the first server that
    /// has it (blocking, bounded by the timeout). The error is one line for the header.
    pub fn fetch(&self, build_id: &str) -> Result<PathBuf, String> {
        match self.cached(build_id) {
            Cached::Hit(p) => return Ok(p),
            Cached::Miss => return Err("not on the debuginfod servers (cached miss)".into()),
            Cached::Unknown => {}
        }
        std::fs::create_dir_all(&self.cache)
            .map_err(|e| format!("cannot create {}: {e}", self.cache.display()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut last = String::from("no http:// server in DEBUGINFOD_URLS");
        let mut all_missed = true;
        for base in &self.urls {
            if !base.starts_with("http://") {
                last = format!("{base}: only plain http:// debuginfod servers are supported");
                all_missed = false;
                continue;
            }
            let url = format!("{base}/buildid/{build_id}/debuginfo");
            match agent.get(&url).call() {
                Ok(resp) if resp.status() == 200 => {
                    return self.store(build_id, resp.into_body().as_reader());
                }
                Ok(resp) if resp.status() == 404 => {
                    last = format!("not on {base}");
                }
                Ok(resp) => {
                    last = format!("{base} answered {}", resp.status());
                    all_missed = false;
                }
                Err(e) => {
                    last = format!("{base}: {e}");
                    all_missed = false;
                }
            }
        }
        if all_missed {
            let _ = std::fs::File::create(self.miss_path(build_id));
        }
        Err(last)
    }

    /// Writes a download to the cache atomically (temp file, then rename).
    fn store(&self, build_id: &str, mut body: impl std::io::Read) -> Result<PathBuf, String> {
        let dest = self.hit_path(build_id);
        let tmp = self
            .cache
            .join(format!(".{build_id}.{}.part", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::copy(&mut body, &mut f)?;
            f.flush()?;
            std::fs::rename(&tmp, &dest)
        })();
        match written {
            Ok(()) => Ok(dest),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(format!("downloading {build_id}: {e}"))
            }
        }
    }

    /// Fetches on a background thread; the receiver gets the result once.
    pub fn spawn(&self, build_id: &str) -> Receiver<Result<PathBuf, String>> {
        let (tx, rx) = channel();
        let me = self.clone();
        let id = build_id.to_string();
        let spawned = std::thread::Builder::new()
            .name("debuginfod".into())
            .spawn(move || {
                let _ = tx.send(me.fetch(&id));
            });
        if let Err(e) = spawned {
            let (tx, rx2) = channel();
            let _ = tx.send(Err(format!("cannot start a fetch thread: {e}")));
            return rx2;
        }
        rx
    }
}

#[cfg(test)]
#[path = "debuginfod_tests.rs"]
mod tests;
