//! What the lake commands (`ls`, `verify`, `get`, `replay`) share: where the lake is, the
//! hour range, the database/collection filter, their help paragraphs, and opening the
//! lake with its inventory.

use chrono::Utc;
use clap::Args;

use super::terminal::spinner;
use crate::ops::inventory::Inventory;
use crate::ops::range::HourRange;
use crate::ops::{open_lake, OpsError};
use hub2lake::config::Settings;
use hub2lake::lake::Lake;

pub(super) const EXIT_CODES: &str = "Exit codes:\n  \
    0  success (verify: no problems; warnings are printed but do not fail it)\n  \
    1  verify found problems; get finished but some objects vanished mid-run\n  \
    2  usage or configuration: bad flags, range, lake URL, settings, credentials refused\n  \
    3  storage, network or local I/O failed part-way (get and replay resume when run again)";

pub(super) const LAKE_HELP: &str = "The lake is --lake or HUB2LAKE_LAKE_URL (file:///abs/dir, az://<container>[/path], \
    https://<account>.blob.core.windows.net/<container>[/path], abfss://<container>@<account>.dfs.core.windows.net[/path]); \
    credentials follow object_store's AZURE_* variables, exactly as for the handler; other HUB2LAKE_* settings \
    (HUB2LAKE_PATH_TEMPLATE) are read too.";

pub(super) const RANGE_HELP: &str =
    "Ranges are whole UTC hours: --from T starts with the hour containing T; --to YYYY-MM-DD \
    ends with that day, --to YYYY-MM-DDTHH with that hour, --to <RFC 3339 instant> just before it.";

/// Where the lake is.
#[derive(Debug, Clone, Args)]
pub struct LakeArgs {
    /// The lake URL (default: $HUB2LAKE_LAKE_URL).
    #[arg(long, value_name = "URL", env = "HUB2LAKE_LAKE_URL")]
    pub lake: Option<String>,
    /// Objects read at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

impl LakeArgs {
    /// Opens the lake and reads its inventory (with a spinner on a terminal).
    pub(super) async fn load(&self) -> Result<(Settings, Lake, Inventory), OpsError> {
        let (settings, lake) = open_lake(self.lake.as_deref(), env_lookup)?;
        let spinner = spinner(&format!("reading receipts and manifests of {}", lake.description()));
        let inv = Inventory::load(&lake, &settings.path_template, usize::from(self.concurrency)).await;
        spinner.finish_and_clear();
        Ok((settings, lake, inv?))
    }
}

/// The time range.
#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// First hour (UTC): YYYY-MM-DD, YYYY-MM-DDTHH, RFC 3339, now, now-<N>h, now-<N>d.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Last hour (UTC), inclusive for days and hours, exclusive for instants.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

impl RangeArgs {
    pub(super) fn parse(&self) -> Result<HourRange, OpsError> {
        Ok(HourRange::parse(self.from.as_deref(), self.to.as_deref(), Utc::now())?)
    }
}

/// A database / collection filter.
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// Only this database (as in the path: sanitised).
    #[arg(long, value_name = "NAME")]
    pub db: Option<String>,
    /// Only this collection (as in the path: sanitised).
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
}

/// The process environment, as the settings and credentials read it.
pub(super) fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok()
}
