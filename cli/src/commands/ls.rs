//! `hub2lake ls`: the hours of the lake, sealed or not, with their counts and gaps.

use clap::Args;

use super::lake_args::{LakeArgs, RangeArgs, RouteArgs, EXIT_CODES, LAKE_HELP, RANGE_HELP};
use super::terminal::print_json;
use crate::ops::{exit, ls, OpsError};

pub(super) fn help() -> String {
    format!(
        "Examples:\n  \
        hub2lake ls --lake file:///data/lake --from 2025-01-15\n  \
        hub2lake ls --lake abfss://lake@contoso.dfs.core.windows.net --from now-6h --db shop --collection orders\n  \
        HUB2LAKE_LAKE_URL=az://lake hub2lake ls --from 2025-01-15T08 --to 2025-01-15T12 --json | jq '.units[]'\n\n\
        {LAKE_HELP}\n{RANGE_HELP}\n\n{EXIT_CODES}"
    )
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub route: RouteArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(args: LsArgs) -> Result<u8, OpsError> {
    let range = args.range.parse()?;
    let (_, lake, inv) = args.lake.load().await?;
    let listing = ls::listing(
        &inv,
        lake.description(),
        &range,
        args.route.db.as_deref(),
        args.route.collection.as_deref(),
    );
    if args.json {
        print_json(&listing)?;
    } else {
        print!("{}", ls::render_table(&listing));
    }
    Ok(exit::OK)
}
