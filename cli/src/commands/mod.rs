//! The operator CLI (`hub2lake`): thin commands over the library.

mod bench;
pub mod bridge;
mod credential_arg;
pub mod demo;
mod destination;
pub mod eventhub_args;
mod get;
pub mod lake;
mod lake_args;
mod ls;
mod package;
mod replay;
pub mod simulate;
mod terminal;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// hub2lake: land Azure Event Hubs batches as hourly JSON Lines in ADLS Gen2.
#[derive(Debug, Parser)]
#[command(name = "hub2lake", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Assemble the deployable Functions app folder (host.json, functions/, handler) and a zip.
    #[command(
        after_help = "Example:\n  cargo build --release && hub2lake package --out dist\n  cd dist/app && func start"
    )]
    Package(package::PackageArgs),
    /// List every HUB2LAKE_ setting with its default and meaning.
    Settings,
    /// Run the real handler under a simulated Functions host: Event Hub batches, retries,
    /// checkpoints, restarts and the seal timer, then a summary of the lake.
    #[command(after_help = "Examples:\n  \
        hub2lake simulate --lake /tmp/lake\n  \
        hub2lake simulate --settings local.settings.json --partitions 8 --events 100000 --event-size 2000\n  \
        hub2lake simulate --lake /tmp/lake --kill-at 1:3 --time-scale 0.001\n  \
        hub2lake simulate --lake /tmp/lake --input events.jsonl --batch-size 50\n\n\
        Exit code 3: some failed batches were checkpointed past (their events are not in the lake).")]
    Simulate(Box<simulate::SimulateArgs>),
    /// A few thousand MongoDB change events through the real handler into ./lake, in seconds.
    #[command(after_help = "Example:\n  cargo build --release && ./target/release/hub2lake demo")]
    Demo(demo::DemoArgs),
    /// Measure the real handler over HTTP: events/s, MB/s, latency percentiles, CPU, peak memory, start-up.
    #[command(after_help = "Examples:\n  \
        cargo build --release && ./target/release/hub2lake bench\n  \
        hub2lake bench --partitions 2 --batches-per-partition 20 --batch-size 1000 --event-size 1024 --gzip-level 1 --json bench.json\n\n\
        Exit code 1 if any invocation was not answered 2xx.")]
    Bench(bench::BenchArgs),
    #[command(flatten)]
    Lake(lake::LakeCommand),
    /// Move a Redis Stream's entries to an Event Hub (or files) through a consumer group:
    /// XACK after the hub accepted, claims, dead letters; `bridge publish` adds test entries.
    Bridge(Box<bridge::BridgeArgs>),
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Package(args) => package::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Lake(cmd) => lake::run(cmd),
        Command::Bridge(args) => bridge::run(*args),
        Command::Settings => {
            for (name, default, meaning) in hub2lake::config::all_settings_doc() {
                println!("{name}\n    default: {default}\n    {meaning}\n");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
