//! lockscope: attach to a process, trace its futex waits in the kernel, report the hot stacks.
//!
//! Pipeline: attach (load + attach eBPF) → collect (record, read aggregates) → symbolize
//! (addresses → functions) → render (tables). `record` drives it; `report` re-renders a profile.
mod aggregate;
mod attach;
mod attribute;
mod bundled;
mod cli;
mod collect;
mod preflight;
mod procfs;
mod profile;
mod record;
mod render;
mod symbolize;
mod units;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use render::{Render, Table};

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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockscope: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Record(args) => record::run(&args.options()?),
        Command::Report(args) => {
            let profile = profile::load(&args.profile)?;
            let mut out = std::io::stdout().lock();
            Table { view: args.view() }.render(&profile, &mut out)?;
            Ok(())
        }
    }
}
