//! The operator CLI (`hub2lake`): thin commands over the library.

mod package;

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
    #[command(after_help = "Example:\n  cargo build --release && hub2lake package --out dist\n  cd dist/app && func start")]
    Package(package::PackageArgs),
    /// List every HUB2LAKE_ setting with its default and meaning.
    Settings,
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Package(args) => package::run(&args),
        Command::Settings => {
            for (name, default, meaning) in crate::config::SETTINGS_DOC {
                println!("{name}\n    default: {default}\n    {meaning}\n");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
