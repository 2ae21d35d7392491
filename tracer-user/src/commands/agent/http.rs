//! http: the agent's endpoints, HTTP/1 (hyper) on the agent's single-threaded runtime:
//! `/metrics` (Prometheus), `/debug/pprof/contention` (a gzipped pprof profile, the same as
//! `report --format pprof`), `/targets` (JSON) and `/healthz`.
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use super::listen::{Busy, Conns, Listener, HEADER_TIMEOUT};
use super::metrics;
use super::targets::{Since, State};
use crate::analyze::Waits;
use crate::render::{Pprof, Render};

/// The longest `seconds=N` a profile request may ask for.
const MAX_SECONDS: u64 = 3600;

/// What the handlers share with the agent's loop.
pub struct Ctx {
    pub state: RefCell<State>,
    /// Bumped after every refresh of the kernel's rows.
    pub ticks: watch::Receiver<u64>,
    /// Asks the agent's loop to read the rows now.
    pub refresh_now: tokio::sync::Notify,
    pub top_sites: usize,
    /// `--token-file`'s token: required on every endpoint but `/healthz`.
    pub token: Option<String>,
}

type Reply = Response<Full<Bytes>>;

/// Serves connections until the task is dropped.
pub async fn serve(listener: Listener, ctx: Rc<Ctx>) {
    let conns = Rc::new(Conns::default());
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                // Out of descriptors or a transient error: never a busy loop.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !conns.make_room() {
            // Every connection is inside a request: this one is closed at once.
            continue;
        }
        let (id, busy, registered) = conns.open();
        let ctx = ctx.clone();
        let flag = busy.clone();
        let task = tokio::task::spawn_local(async move {
            let _registered = registered;
            let svc = service_fn(move |req| {
                let ctx = ctx.clone();
                let busy = Busy::enter(&flag);
                async move {
                    let _busy = busy;
                    Ok::<_, Infallible>(route(&ctx, req).await)
                }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
        conns.started(id, busy, task.abort_handle());
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn text(status: StatusCode, body: String) -> Reply {
    reply(status, "text/plain; charset=utf-8", body + "\n")
}

async fn route(ctx: &Ctx, req: Request<hyper::body::Incoming>) -> Reply {
    // hyper sends HEAD's headers (content-length included) without the body.
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD".into());
    }
    if req.uri().path() != "/healthz" && !authorized(ctx.token.as_deref(), &req) {
        return text(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer TOKEN (the agent's --token-file)".into(),
        );
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics::encode(&mut ctx.state.borrow_mut(), ctx.top_sites),
        ),
        "/debug/pprof/contention" => match contention(ctx, &query).await {
            Ok(bytes) => reply(StatusCode::OK, "application/octet-stream", bytes),
            Err((status, why)) => text(status, why),
        },
        "/targets" => reply(
            StatusCode::OK,
            "application/json",
            targets_json(&ctx.state.borrow()).to_string(),
        ),
        "/healthz" => text(StatusCode::OK, "ok".into()),
        other => text(
            StatusCode::NOT_FOUND,
            format!(
                "no {other}: try /metrics, /debug/pprof/contention?pid=PID&seconds=N, /targets, /healthz"
            ),
        ),
    }
}

/// Whether the request carries the token (always, when there is none).
fn authorized<B>(token: Option<&str>, req: &Request<B>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared in constant time: every byte is looked at whatever the first mismatch.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// `a=1&b=2` → {a: 1, b: 2} (the values this server takes need no percent-decoding).
fn parse_query(q: &str) -> HashMap<&str, &str> {
    q.split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

type Failure = (StatusCode, String);

/// The profile of one process's waits over the next `seconds` (the last window for 0).
async fn contention(ctx: &Ctx, query: &HashMap<&str, &str>) -> Result<Vec<u8>, Failure> {
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let pid = match query.get("pid") {
        Some(p) => p
            .parse::<u32>()
            .map_err(|_| bad(format!("pid={p} is not a process id")))?,
        None => {
            let state = ctx.state.borrow();
            match state.targets().keys().collect::<Vec<_>>()[..] {
                [only] => *only,
                _ => {
                    return Err(bad(
                        "say which process: ?pid=PID (GET /targets lists them)".into()
                    ))
                }
            }
        }
    };
    let seconds = match query.get("seconds") {
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|&s| s <= MAX_SECONDS)
            .ok_or_else(|| bad(format!("seconds={s}: give 0 to {MAX_SECONDS}")))?,
        None => 0,
    };
    let gone = || {
        (
            StatusCode::NOT_FOUND,
            format!("pid {pid} is not traced (GET /targets lists the traced processes)"),
        )
    };
    let profile = if seconds == 0 {
        ctx.state.borrow_mut().profile(pid, Since::LastWindow)
    } else {
        let at = std::time::Instant::now();
        let base = ctx
            .state
            .borrow()
            .targets()
            .get(&pid)
            .ok_or_else(gone)?
            .base();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        // Rows read after the sleep, not before it: asked for now.
        let mut ticks = ctx.ticks.clone();
        ticks.mark_unchanged();
        ctx.refresh_now.notify_one();
        let _ = ticks.changed().await;
        ctx.state.borrow_mut().profile(pid, Since::Rows(at, &base))
    };
    let profile = profile.ok_or_else(gone)?;
    let mut out = Vec::new();
    Pprof {
        waits: Waits::Contention,
    }
    .render(&profile, &mut out)
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}")))?;
    Ok(out)
}

fn targets_json(state: &State) -> serde_json::Value {
    let targets: Vec<serde_json::Value> = state
        .targets()
        .iter()
        .map(|(pid, t)| {
            let (waits, ns) = t
                .waits
                .values()
                .fold((0u64, 0u64), |(n, ns), v| (n + v.count, ns + v.total_ns));
            serde_json::json!({
                "pid": pid,
                "comm": t.target.comm,
                "exe": t.target.exe.as_ref().map(|e| e.display().to_string()),
                "cgroup": t.ext.cgroup,
                "go": t.target.go,
                "bundled_map": t.map.is_some(),
                "unwind": t.plan.mode.name(),
                "unwind_note": t.plan.why,
                "uprobes": t.ext.probes,
                // Probes that failed to attach and are being retried: why the last try failed.
                "uprobes_pending": t.ext.retry.as_ref().map(|r| crate::profile::term_safe(&r.why)),
                "attached_unix_ms": t.attached_unix_ms,
                "waits": waits,
                "wait_seconds": ns as f64 / 1e9,
                "lock_site_labels": t.ext.sites.len(),
                "symbol_lookups": t.symbol_lookups(),
            })
        })
        .collect();
    serde_json::json!({
        "targets": targets,
        "lost": {
            "target_cap": state.losses.target_cap,
            "attach_failed": state.losses.attach_failed,
            "thread_unattributed": state.fleet.unattributed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_split_into_pairs() {
        let q = parse_query("pid=42&seconds=2&flag");
        assert_eq!(q.get("pid"), Some(&"42"));
        assert_eq!(q.get("seconds"), Some(&"2"));
        assert_eq!(q.get("flag"), Some(&""));
        assert!(parse_query("").is_empty());
    }
}
