//! lockscope: attach to a process, trace its futex waits in the kernel, report the hot stacks.
//!
//! Pipeline: attach (load + attach eBPF) → collect (record, read aggregates) → symbolize
//! (addresses → functions) → assemble (the profile) → attribute (bundled-map causes) →
//! render (formats). `record`
//! drives it once; `top` drives it live; `report` re-renders a saved profile.
mod aggregate;
mod assemble;
mod attach;
mod attribute;
mod behind;
mod bundled;
mod cli;
mod collect;
mod golang;
mod launch;
mod locks;
mod preflight;
mod procfs;
mod profile;
mod record;
mod render;
mod symbolize;
mod top;
mod units;
mod unwind;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;

use cli::{Cli, Command, ReportOptions};
use profile::PendingOutput;
use render::use_color;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line, not clap's usage block: the error says what was wrong.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "lockscope: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lockscope: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => record::run(&args.options()?),
        Command::Report(args) => report(&args.options()?).map(|()| ExitCode::SUCCESS),
        Command::Top(args) => top::run(&args.options()?).map(|()| ExitCode::SUCCESS),
    }
}

/// `lockscope report`: load, render, write (atomically, when to a file).
fn report(opts: &ReportOptions) -> anyhow::Result<()> {
    let profile = profile::load(&opts.profile)?;
    match &opts.output {
        Some(path) => {
            let out = PendingOutput::reserve_for("report", path)?;
            let r = opts.format.renderer(opts.view, false);
            out.commit_with(|w| Ok(r.render(&profile, w)?))
        }
        None => {
            let stdout = std::io::stdout();
            let tty = stdout.is_terminal();
            if tty && opts.format.is_binary() {
                bail!(
                    "{} is binary: write it with -o FILE or redirect standard output",
                    opts.format.name()
                );
            }
            let mut out = stdout.lock();
            let r = opts.format.renderer(opts.view, use_color(tty));
            match r.render(&profile, &mut out).and_then(|()| out.flush()) {
                // `lockscope report … | head` is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        }
    }
}
