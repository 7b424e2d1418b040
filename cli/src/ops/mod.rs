//! Operator tools over a lake: what it holds ([`inventory`], [`ls`]), whether it is
//! whole ([`verify`]), getting it out ([`get`], [`merge`]) and re-publishing recorded
//! events to an Event Hub ([`replay`], which sends through [`hub2lake::eventhub`]).
//!
//! Everything here only reads the lake (nothing is written to it, nothing is deleted),
//! so it is safe to run against a live lake while the handler and the seal timer work.
//! The `hub2lake ls | verify | get | replay` commands are thin over these functions.

pub mod get;
pub mod inventory;
pub mod ls;
pub mod merge;
pub mod range;
pub mod replay;
pub mod scan;
pub mod verify;

use std::path::PathBuf;

use hub2lake::config::{ConfigError, LakeLocation, Settings};
use hub2lake::lake::{Lake, LakeError, StorageFailure};

/// Why an operator command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A setting or the lake URL is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--from` / `--to` is unusable.
    #[error(transparent)]
    Range(#[from] range::RangeError),
    /// A flag or a combination of flags is unusable.
    #[error("{0}")]
    Usage(String),
    /// The lake refused or failed a call.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Data does not have the shape the command needs.
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// Sending to the destination failed.
    #[error(transparent)]
    Sink(#[from] hub2lake::eventhub::SinkError),
    /// A bug or a crashed worker task.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Exit codes of the lake commands (documented in `--help` and docs/recovery.md).
pub mod exit {
    /// Success (for `verify`: no problems, possibly warnings).
    pub const OK: u8 = 0;
    /// `verify` found problems (warnings alone do not count); `get` finished but some
    /// objects vanished mid-run (a seal compacted them).
    pub const FINDINGS: u8 = 1;
    /// Usage or configuration: bad flags, range, lake URL, settings or credentials.
    pub const USAGE: u8 = 2;
    /// Storage, network or local I/O failed part-way: run the command again (`get` and
    /// `replay` resume where they stopped).
    pub const RUNTIME: u8 = 3;
}

impl OpsError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// The exit code this failure maps to: configuration and refused credentials are
    /// usage errors (2), everything else a runtime failure (3).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Range(_) | Self::Usage(_) => exit::USAGE,
            // The lake's one classification: a lake that cannot be opened, refused
            // credentials or permissions, an invalid path or an operation the store
            // does not support need the operator, not a second run.
            Self::Lake(e) if e.failure() == StorageFailure::Refused => exit::USAGE,
            Self::Sink(e) if e.is_configuration() => exit::USAGE,
            _ => exit::RUNTIME,
        }
    }
}

/// Opens the lake the operator names, with the handler's settings conventions.
///
/// `lake_url` (the `--lake` flag) wins over `HUB2LAKE_LAKE_URL`; every other
/// `HUB2LAKE_*` setting (the path template above all) and object_store's `AZURE_*`
/// credentials come from `env`. A local lake must already exist: reading a lake never
/// creates one.
pub fn open_lake(lake_url: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<(Settings, Lake), OpsError> {
    let settings = Settings::from_lookup(|key| match (key, lake_url) {
        ("HUB2LAKE_LAKE_URL", Some(url)) => Some(url.to_string()),
        _ => env(key),
    })
    .map_err(|e| match e.setting {
        "HUB2LAKE_LAKE_URL" if e.value.is_empty() => OpsError::Usage(
            "no lake given: pass --lake URL or set HUB2LAKE_LAKE_URL (file:///abs/dir, az://<container>[/path], \
             https://<account>.blob.core.windows.net/<container>[/path], \
             abfss://<container>@<account>.dfs.core.windows.net[/path])"
                .into(),
        ),
        _ => OpsError::Config(e),
    })?;
    if let LakeLocation::Local { root } = &settings.lake {
        if !root.is_dir() {
            return Err(OpsError::Usage(format!(
                "the lake directory {} does not exist (check --lake / HUB2LAKE_LAKE_URL)",
                root.display()
            )));
        }
    }
    let lake = Lake::open(&settings)?;
    Ok((settings, lake))
}

/// Runs blocking work (decompression, parsing, local files) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OpsError> + Send + 'static,
) -> Result<T, OpsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpsError::Internal(format!("worker task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lake_flag_wins_and_a_missing_lake_is_a_usage_error() {
        let e = open_lake(None, |_| None).unwrap_err();
        assert!(e.to_string().contains("--lake"), "{e}");
        assert_eq!(e.exit_code(), exit::USAGE);

        let e = open_lake(Some("file:///definitely/not/here/hub2lake"), |k| {
            (k == "HUB2LAKE_LAKE_URL").then(|| "file:///tmp".into())
        })
        .unwrap_err();
        assert!(e.to_string().contains("/definitely/not/here/hub2lake"), "{e}");
        assert_eq!(e.exit_code(), exit::USAGE);

        let e = open_lake(Some("ftp://x"), |_| None).unwrap_err();
        assert!(e.to_string().contains("HUB2LAKE_LAKE_URL"), "{e}");
        assert_eq!(e.exit_code(), exit::USAGE);

        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let (settings, lake) = open_lake(Some(&url), |_| None).unwrap();
        assert!(matches!(settings.lake, LakeLocation::Local { .. }));
        assert!(lake.description().starts_with("file://"));
    }

    #[test]
    fn refused_storage_is_a_usage_error_and_everything_else_a_runtime_failure() {
        let storage = |source| {
            OpsError::Lake(LakeError::Storage {
                path: "db/coll".into(),
                source,
            })
        };
        let denied = object_store::Error::PermissionDenied {
            path: "db/coll".into(),
            source: "403".into(),
        };
        assert_eq!(storage(denied).exit_code(), exit::USAGE);
        let outage = object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: "503 Service Unavailable".into(),
        };
        assert_eq!(storage(outage).exit_code(), exit::RUNTIME);
        let gone = object_store::Error::NotFound {
            path: "db/coll".into(),
            source: "404".into(),
        };
        assert_eq!(storage(gone).exit_code(), exit::RUNTIME);
        let conflict = OpsError::Lake(LakeError::Conflict {
            path: "db/coll".into(),
            reason: "other content".into(),
        });
        assert_eq!(conflict.exit_code(), exit::RUNTIME);
    }

    #[test]
    fn other_settings_come_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let e = open_lake(Some(&url), |k| (k == "HUB2LAKE_COMPRESSION").then(|| "brotli".into())).unwrap_err();
        assert!(e.to_string().contains("HUB2LAKE_COMPRESSION"), "{e}");
        assert_eq!(e.exit_code(), exit::USAGE);
    }
}
