//! Build, demo and test orchestration: `cargo xtask setup|demo|test`.
mod bench;
mod cycles;
mod demo;
mod go;
mod gomatrix;
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
    /// Set up, build, start a bundled-map workload and record it.
    Demo {
        /// syncmap-load preset: read-mostly, update-existing, write-heavy, miss-storm,
        /// range-insert.
        #[arg(long, default_value = "range-insert")]
        preset: String,
        /// Recording length, in seconds.
        #[arg(long, default_value = "5s")]
        duration: String,
        /// Trace the plain std Mutex demo (lockdemo) instead.
        #[arg(long)]
        lockdemo: bool,
        /// Trace the Go port of the bundled map (target/go/syncmap-load-go) instead.
        #[arg(long, conflicts_with = "lockdemo")]
        go: bool,
    },
    /// Set up, lint, then run unit tests and the root integration tests.
    Test,
    /// Build the Go workloads into target/go, and the Go version matrix into target/go/matrix.
    BuildGo,
    /// Benchmark tracer overhead: lockscope (scheduler hooks, syscall tracepoints, DWARF) beside
    /// bpftrace scripts on our storms and on db_bench, stress-ng, a pthread storm and MariaDB;
    /// the host tax; issue 26's goals with PASS/FAIL as measured; then `bench-tokio`.
    Bench {
        /// Rounds per workload and tracer (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
    },
    /// What each tracer adds per futex event, the host-wide tax of tracing, and Go's own
    /// sync benchmarks under lockscope.
    BenchEvents {
        /// Rounds per tracer (the fastest per-call round, and Go's median, are reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// BenchmarkRWMutexWrite100 across the Go version matrix, untraced and traced.
    BenchGo {
        /// Rounds per build and configuration (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// What tracing costs a tokio program on one hot `tokio::sync::Mutex`, exact and sampled
    /// (also run at the end of `bench`).
    BenchTokio {
        /// Rounds per configuration (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// The continuous agent's memory with 50 idle targets and its cost on the futex storm.
    BenchAgent {
        /// Rounds (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// List import cycles among tracer-user's and xtask's modules (fails on one).
    Cycles,
    /// Benchmark the unwinders (`--unwind fp`, the default, `--unwind dwarf`) on C programs
    /// built with and without frame pointers and on the Rust futex storm.
    BenchUnwind {
        /// Rounds per workload and tracer (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
    },
    /// Benchmark the bundled map against RwLock<HashMap>, Mutex<HashMap> and dashmap.
    BenchMap {
        /// Rounds per map and preset (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Demo {
            preset,
            duration,
            lockdemo,
            go,
        } => demo::run(&preset, &duration, lockdemo, go),
        Task::Test => test::run(),
        Task::BuildGo => crate::setup::run()
            .and_then(|()| go::build().map(|_| ()))
            .and_then(|()| gomatrix::build()),
        Task::BenchMap { rounds, secs } => bench::map::run(rounds, secs),
        // Per-event costs and Go's own benchmarks are `bench-events` (its Go version matrix alone
        // would take `bench` past 20 minutes); the host tax is measured here.
        Task::Bench { rounds, secs } => {
            bench::overhead::run(rounds, secs).and_then(|()| bench::asynclock::run(rounds.max(5)))
        }
        Task::BenchTokio { rounds } => bench::asynclock::run(rounds),
        Task::BenchGo { rounds } => bench::events::run_go_matrix(rounds),
        Task::BenchUnwind { rounds, secs } => bench::unwind::run(rounds, secs),
        Task::Cycles => cycles::run(),
        Task::BenchEvents { rounds } => bench::events::run(rounds),
        Task::BenchAgent { rounds } => bench::agent::run(rounds),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}
