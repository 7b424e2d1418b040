//! The lake commands `hub2lake ls | verify | get | replay` as one subcommand group run on
//! one async runtime; each command lives in its own module over [`crate::ops`].

use std::process::ExitCode;

use clap::Subcommand;

use super::get::GetArgs;
use super::ls::LsArgs;
use super::replay::ReplayArgs;
use super::terminal::init_logging;
use super::verify::VerifyArgs;
use super::{get, ls, replay, verify};
use hub2lake::telemetry::error_chain;

/// The lake operator commands; the `hub2lake` CLI flattens them into its own.
#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// List the hours of the lake: per (hour, database, collection) sealed or not, objects,
    /// records, bytes, partitions and gaps.
    #[command(after_help = ls::help())]
    Ls(LsArgs),
    /// Check the lake against its receipts and manifests: missing, orphan and corrupt objects,
    /// gaps in sequence numbers, duplicates. Exit code 0 only when clean.
    #[command(after_help = verify::help())]
    Verify(VerifyArgs),
    /// Download a range of the lake (folder structure kept, concurrent, resumable), optionally
    /// decompressed and merged into one de-duplicated JSON Lines file.
    #[command(after_help = get::help())]
    Get(GetArgs),
    /// Re-publish the recorded original events of a range to an Event Hub (or to files, or a dry
    /// run), in order per partition, in batches under the size limit, resumably.
    #[command(after_help = replay::help())]
    Replay(Box<ReplayArgs>),
}

/// Runs a lake command; the exit code says how it went (see `--help`).
pub fn run(cmd: LakeCommand) -> anyhow::Result<ExitCode> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let outcome = runtime.block_on(async {
        match cmd {
            LakeCommand::Ls(args) => ls::run(args).await,
            LakeCommand::Verify(args) => verify::run(args).await,
            LakeCommand::Get(args) => get::run(args).await,
            LakeCommand::Replay(args) => replay::run(*args).await,
        }
    });
    Ok(match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hub2lake: error: {}", error_chain(&e));
            ExitCode::from(e.exit_code())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: LakeCommand,
    }

    #[test]
    fn the_commands_parse() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        let cli = Cli::try_parse_from([
            "x",
            "get",
            "--from",
            "2025-01-15",
            "--to",
            "2025-01-15",
            "--to-dir",
            "d",
        ])
        .unwrap();
        assert!(matches!(cli.cmd, LakeCommand::Get(ref g) if g.out == std::path::Path::new("d")));
        let e = Cli::try_parse_from(["x", "replay", "--from", "2025-01-15"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = Cli::try_parse_from(["x", "get", "--out", "d", "--dedup-by", "event_id"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(Cli::try_parse_from(["x", "replay", "--dry-run", "--to-eventhub", "--namespace", "n"]).is_ok());
        assert!(Cli::try_parse_from(["x", "replay", "--to-file", "d", "--to-eventhub"]).is_err());
    }
}
