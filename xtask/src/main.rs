//! Build, demo and test orchestration: `cargo xtask setup|demo|test`.
mod demo;
mod run;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "lockscope's build, demo and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building lockscope needs (rust-src, llvm-22-dev, bpf-linker), skipping
    /// what is already there.
    Setup,
    /// Set up, build, start the bundled contended workload and record it.
    Demo {
        /// Recording length.
        #[arg(long, default_value = "5s")]
        duration: String,
    },
    /// Set up, lint, then run unit tests and the root integration tests.
    Test,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Demo { duration } => demo::run(&duration),
        Task::Test => test::run(),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}
