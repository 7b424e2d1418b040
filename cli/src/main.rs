//! `hub2lake`: the operator CLI.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hub2lake_cli::commands::Cli::parse();
    match hub2lake_cli::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hub2lake: {e:#}");
            ExitCode::from(1)
        }
    }
}
