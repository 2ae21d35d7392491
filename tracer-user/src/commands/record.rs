//! The `record` command: preflight → attach → collect → symbolize → render, and the profile.
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

use super::follow;
use super::options::{Launch, RecordOptions};
use super::session::{Probes, Session};
use crate::collect::{self, Inputs, Namer};
use crate::profile::{term_safe, PendingOutput};
use crate::render::{use_color, Render, Table};
use crate::sys::{self, Target};

pub fn run(opts: &RecordOptions) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    sys::check_privileges()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Ctrl-C from here on ends the recording, saved, even while attaching.
    let stops = {
        let _in = rt.enter();
        collect::StopSignals::listen()?
    };
    // A launched command is forked now and held before exec until every probe is live.
    let (target, mut launched) = match &opts.launch {
        Launch::Pid(pid) => {
            let target = sys::target(*pid)?;
            sys::check_may_trace(target.tgid)?;
            (target, None)
        }
        Launch::Command(argv) => {
            let l = sys::spawn(argv)?;
            let target = Target {
                tgid: l.pid,
                comm: l
                    .exe
                    .file_name()
                    .map_or_else(|| l.program.clone(), |n| n.to_string_lossy().into_owned()),
                exe: Some(l.exe.clone()),
                go: None,
            };
            (target, Some(l))
        }
    };
    // From here until the kernel hooks are live (a launched command was forked above: it keeps
    // its priority).
    let boost = sys::AttachPriority::raise();
    let output_path = opts
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("lockscope-{}.json", target.tgid)));
    let what = if opts.output_format.is_some() {
        "report"
    } else {
        "profile"
    };
    let output = PendingOutput::reserve_for(what, &output_path)?;
    sys::ensure_tracefs()?;
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);

    // Threads already asleep in a futex wait make no call the probes could see: find them
    // now (a deadlock from before attach); once the probes are live, those still in the same
    // call get a wait dated then, and the others nothing (see `collect::seed_blocked`).
    let mut asleep = match opts.launch {
        Launch::Pid(_) => collect::scan_blocked(target.tgid, crate::sys::monotonic_ns()),
        Launch::Command(_) => Vec::new(),
    };
    let target_pid = target.tgid;
    let probes = Probes {
        unwind: opts.unwind,
        phases: &opts.phases,
        go_uprobes: opts.go_uprobes,
        go_sample: opts.go_sample,
        windows: opts.probe_windows,
        follow: opts.follow,
        hooks: opts.hooks,
    };
    let mut session = match Session::start(target, &probes, boost, |t| {
        collect::seed_blocked(t, &mut asleep, target_pid)?;
        Ok(asleep
            .iter()
            .map(|a| (a.tid, a.seeded_ns, a.frames.clone()))
            .collect())
    }) {
        Ok(s) => s,
        Err(e) => {
            output.abandon();
            return Err(e);
        }
    };
    let attach_ns = t0.elapsed().as_nanos() as u64;
    session.announce();
    super::session::sample_std_map(&mut session);
    let Session {
        mut target,
        map,
        plan,
        tracer,
        go_probes,
        go_sample,
        tokio,
        windows,
        snapshots,
        hints: _,
    } = session;
    if let Launch::Pid(pid) = opts.launch {
        if pid != target.tgid {
            eprintln!(
                "lockscope: {pid} is a thread of process {}; tracing the whole process",
                target.tgid
            );
        }
    }
    let until = match opts.duration {
        Some(d) => format!("for {d:.1?}"),
        None => "until it exits".to_string(),
    };
    match &mut launched {
        Some(l) => {
            if let Err(e) = l.release() {
                output.abandon();
                return Err(e);
            }
            if let Some(s) = &snapshots {
                s.exec_happened();
            }
            eprintln!(
                "lockscope: launched {} as pid {}, tracing {until}; Ctrl-C stops early",
                term_safe(&l.program),
                l.pid
            );
        }
        None => eprintln!(
            "lockscope: tracing pid {} ({}) {until}; Ctrl-C stops early",
            target.tgid,
            term_safe(&target.comm)
        ),
    }

    let _reactor = rt.enter();
    let mut recorder = collect::Recorder::new(
        tracer,
        collect::Setup {
            target: target.clone(),
            plan: plan.clone(),
            start: match launched {
                Some(_) => collect::Start::FromExec,
                None => collect::Start::Attached,
            },
            map,
            phases: opts.phases.clone(),
            follow: opts.follow,
            go_sample,
            windows,
            snapshots,
            unwind: opts.unwind,
        },
    )?;
    let stop = rt.block_on(recorder.run(collect::Until {
        duration: opts.duration,
        stops,
        progress: opts.progress,
    }))?;
    let collect::Finished {
        mut raw,
        children,
        tracer,
    } = recorder.finish(stop)?;
    // After an exec the report names what ran last, and the map probed in it; its unwinding
    // is chosen again for the new image, as a direct launch would choose it.
    let mut plan = plan;
    if let Some(id) = raw.exec.take() {
        target.comm = id.comm;
        target.go = crate::tracee::go_version(&id.exe);
        target.exe = Some(id.exe);
        plan = super::follow::replan_after_exec(plan, opts.unwind, &target);
    }
    let map = raw.map.take();
    collect::lend_scanned_stacks(&mut raw, &asleep);
    let blocked = collect::still_blocked(&tracer, target.tgid, asleep, crate::sys::monotonic_ns())?;
    let mut namer = Namer::for_maps(&raw.maps);
    let tokio = tokio.into_target(raw.windows.clone());
    let mut profile = collect::build(
        raw,
        Inputs {
            target: &target,
            start_unix_ms,
            map: map.as_ref(),
            plan: &plan,
            attach_ns,
            hooks: &tracer.hooks,
            go_probes,
            tokio,
            blocked,
            wrappers: &opts.lock_wrappers,
        },
        &mut namer,
    );
    follow::announce(&children);
    for (child, plan, raw) in children {
        let mut namer = Namer::for_maps(&raw.maps);
        let inputs = Inputs {
            target: &child,
            start_unix_ms,
            map: None,
            plan: &plan,
            attach_ns,
            hooks: &tracer.hooks,
            go_probes: 0,
            tokio: None,
            blocked: Vec::new(),
            wrappers: &opts.lock_wrappers,
        };
        follow::merge(&mut profile, collect::build(raw, inputs, &mut namer));
    }
    match opts.output_format {
        None => output.commit(&profile)?,
        Some(format) => {
            let r = format.renderer(opts.view, false);
            output.commit_with(|w| Ok(r.render(&profile, w)?))?;
        }
    }
    let mut stdout = std::io::stdout().lock();
    let color = use_color(stdout.is_terminal());
    Table {
        view: opts.view,
        color,
    }
    .render(&profile, &mut stdout)?;
    stdout.flush()?;
    // Phase uprobes are released here, after the report (see `Tracer::detach`).
    drop(tracer);
    eprintln!(
        "lockscope: {}; {what} saved to {}",
        collect::describe_stop(
            profile.meta.stop,
            std::time::Duration::from_nanos(profile.meta.duration_ns)
        ),
        output_path.display()
    );
    match &mut launched {
        Some(l) => {
            let code = l.wait()?;
            // The status byte: a shell's 128+signal fits, anything else is clamped.
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}
