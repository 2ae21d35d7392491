//! agent: `lockscope agent`, the continuous daemon. One eBPF object traces a set of processes
//! (the kernel filter in set mode); processes that match are found by polling /proc every
//! second, attached when they appear and dropped when they exit. An HTTP server on the same
//! single-threaded runtime serves Prometheus metrics and pprof profiles of what was traced.
//! Each process's stacks are walked as `--unwind` chooses for its executable (`auto`: as
//! `record` would), its stack copies read by one snapshot reader for all of them.
//! SIGTERM or SIGINT detaches everything and exits 0.
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Result;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::attach::{self, Filter};
use crate::commands::options::AgentOptions;
use crate::commands::session::Probes;
use crate::sys;

mod discover;
mod http;
mod identity;
mod lifecycle;
mod listen;
mod metrics;
mod targets;

use discover::Select;
use http::Ctx;
use targets::{Copies, State};

/// How often /proc is polled and the kernel's rows are read.
const TICK: Duration = Duration::from_secs(1);

pub fn run(opts: &AgentOptions) -> Result<ExitCode> {
    sys::check_privileges()?;
    sys::ensure_tracefs()?;
    // Fixed pids must exist now; the rest are found as they come.
    if let Select::Match { pids, .. } = &opts.select {
        for &pid in pids {
            let t = crate::sys::target(pid)?;
            sys::check_may_trace(t.tgid)?;
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, serve(opts))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(opts: &AgentOptions) -> Result<()> {
    let listener = listen::Listener::bind(&opts.listen).await?;
    // Loaded with stack copies on unless every process walks frame pointers (`--unwind fp`);
    // each process then asks for copies or not (its mode, chosen as it is attached).
    let bytes = opts.unwind.load_bytes();
    let mut tracer = attach::attach(Filter::Set, bytes, opts.hooks)?;
    let copies = match bytes {
        0 => Copies::Off,
        _ => Copies::On,
    };
    let probes = Probes::unsampled(opts.unwind, &opts.phases, opts.go_uprobes, opts.hooks);
    let (tick_tx, tick_rx) = watch::channel(0u64);
    let ctx = Rc::new(Ctx {
        state: RefCell::new(State::new(copies, tracer.hooks.clone())),
        ticks: tick_rx,
        refresh_now: tokio::sync::Notify::new(),
        top_sites: opts.top_sites,
        token: opts.token.clone(),
    });
    eprintln!(
        "lockscope agent: listening on {} (/metrics, /debug/pprof/contention?pid=PID&seconds=N, /targets, /healthz)",
        listener.describe()
    );
    let server = tokio::task::spawn_local(http::serve(listener, ctx.clone()));
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // A daemon outlives the terminal or session that started it: SIGHUP is noted, not fatal.
    let mut sighup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(TICK);
    let mut n = 0u64;
    let result = loop {
        tokio::select! {
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            _ = sighup.recv() => eprintln!("lockscope agent: SIGHUP ignored (SIGTERM stops the agent)"),
            // A profile request whose seconds are up reads the rows now, not at the next tick.
            _ = async {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = ctx.refresh_now.notified() => {}
                }
            } => {
                let running = discover::scan(&opts.select);
                let mut state = ctx.state.borrow_mut();
                state.update_targets(&mut tracer, &running, &probes, opts.max_targets);
                if let Err(e) = state.refresh(&mut tracer, opts.window) {
                    break Err(e);
                }
                n += 1;
                let _ = tick_tx.send(n);
            }
        }
    };
    server.abort();
    ctx.state.borrow_mut().detach_all(&mut tracer);
    tracer.detach()?;
    // The snapshot reader stops before the object it reads goes.
    ctx.state.borrow_mut().fleet.drain.take();
    drop(tracer);
    eprintln!("lockscope agent: detached; exiting");
    result
}
