//! lockscope: attach to a process, trace its futex waits in the kernel, report the hot stacks.
//!
//! Pipeline, one folder per stage: attach (load + attach eBPF) → collect (record, read
//! aggregates, assemble the profile) → symbolize (addresses → functions) → analyze (group,
//! classify, bundled-map causes) → render (formats); `profile` is the data model, `tracee` what
//! is known of the target's runtimes and maps, `sys` the host facts. `commands` drives it:
//! `record` once, `top` live, `agent` for many processes as a daemon; `report` (here)
//! re-renders a saved profile. `cli` is clap only.
//!
//! `profile`, `analyze` and `render` are the `lockscope-profile` library's (it needs no
//! kernel); they are re-exported here so `crate::profile::…` paths read as before.
mod attach;
mod cli;
mod collect;
mod commands;
mod symbolize;
mod sys;
mod tracee;
mod unwind;

pub(crate) use lockscope_profile::{analyze, profile, render};

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;

use cli::{Cli, Command};
use commands::ReportOptions;
use profile::{Limited, PendingOutput};
use render::use_color;

fn main() -> ExitCode {
    attach::init_log_from_env();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line, not clap's usage block: the error says what was wrong.
            let text = e.render().to_string();
            eprintln!("lockscope: {} (see --help)", one_line(&text));
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
            // Errors can quote a target's name or a profile's contents.
            eprintln!("lockscope: {}", profile::term_safe(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// clap's message as one line: its first paragraph (which may list what is missing on the
/// lines after a colon), without the usage block.
fn one_line(clap_text: &str) -> String {
    let words: Vec<&str> = clap_text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = words.join(" ");
    let line = line.trim_start_matches("error: ");
    if line.is_empty() {
        "bad arguments".into()
    } else if line.contains("not provided: --pid") {
        "say what to trace: --pid PID, or a command after -- (lockscope record -- CMD ARGS)".into()
    } else {
        line.to_string()
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => commands::record(&args.options()?),
        Command::Report(args) => report(&args.options()?).map(|()| ExitCode::SUCCESS),
        Command::Top(args) => commands::top(&args.options()?).map(|()| ExitCode::SUCCESS),
        Command::Agent(args) => commands::agent(&args.options()?),
    }
}

/// `lockscope report`: load, render, write (atomically, when to a file).
fn report(opts: &ReportOptions) -> anyhow::Result<()> {
    let mut profile = profile::load(&opts.profile)?;
    opts.lock_wrappers.mark(&mut profile);
    // Output in proportion to the input: 64× the profile's size (and 16 MiB for tiny ones).
    let limit = std::fs::metadata(&opts.profile).map_or(0, |m| m.len()) * 64 + (16 << 20);
    match &opts.output {
        Some(path) => {
            let out = PendingOutput::reserve_for("report", path)?;
            let r = opts.format.renderer(opts.view, false);
            out.commit_with(|w| {
                let mut w = Limited {
                    inner: w,
                    left: limit,
                };
                Ok(r.render(&profile, &mut w)?)
            })
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
            let mut out = Limited {
                inner: stdout.lock(),
                left: limit,
            };
            let r = opts.format.renderer(opts.view, use_color(tty));
            match r.render(&profile, &mut out).and_then(|()| out.flush()) {
                // `lockscope report … | head` is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        }
    }
}
