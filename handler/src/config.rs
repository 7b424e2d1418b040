//! Typed settings, read once from the environment and validated at start.
//!
//! Every product setting is prefixed `HUB2LAKE_`. A bad value stops the process with
//! a message naming the setting, the value and what is allowed; nothing else in the
//! crate reads the environment for product settings.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub mod template;

pub use template::PathTemplate;

/// A setting that is missing or has a value we cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid setting {setting}={value:?}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub value: String,
    pub problem: String,
}

impl ConfigError {
    fn new(setting: &'static str, value: &str, problem: impl Into<String>) -> Self {
        Self {
            setting,
            value: value.to_string(),
            problem: problem.into(),
        }
    }
}

/// Where the lake lives, parsed from `HUB2LAKE_LAKE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    /// `file:///abs/dir`: the embedded default for laptops, tests and the demo.
    Local { root: PathBuf },
    /// Azure Blob / ADLS Gen2 through the Blob API.
    Azure {
        /// Storage account; `None` for `az://` URLs, where it comes from
        /// `AZURE_STORAGE_ACCOUNT_NAME` (or the emulator's well-known account).
        account: Option<String>,
        container: String,
        /// Path inside the container under which everything is written ("" for none).
        prefix: String,
    },
}

impl LakeLocation {
    /// Parses every URL form the design allows.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        const SETTING: &str = "HUB2LAKE_LAKE_URL";
        let allowed = "expected file:///abs/dir, az://<container>[/path], \
             https://<account>.blob.core.windows.net/<container>[/path] or \
             abfss://<container>@<account>.dfs.core.windows.net[/path]";
        let url =
            url::Url::parse(raw).map_err(|e| ConfigError::new(SETTING, raw, format!("not a URL ({e}); {allowed}")))?;
        match url.scheme() {
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(ConfigError::new(
                        SETTING,
                        raw,
                        "file URLs must have an empty host: file:///abs/dir",
                    ));
                }
                let root = url
                    .to_file_path()
                    .map_err(|_| ConfigError::new(SETTING, raw, "file URL must hold an absolute path"))?;
                Ok(Self::Local { root })
            }
            "az" | "azure" => {
                let container = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| ConfigError::new(SETTING, raw, "az:// URL has no container"))?;
                Ok(Self::Azure {
                    account: None,
                    container: valid_container(raw, container)?,
                    prefix: clean_prefix(url.path()),
                })
            }
            "https" => {
                let host = url.host_str().unwrap_or_default();
                let account = host
                    .strip_suffix(".blob.core.windows.net")
                    .or_else(|| host.strip_suffix(".dfs.core.windows.net"))
                    .ok_or_else(|| {
                        ConfigError::new(SETTING, raw, "https URLs must point at <account>.blob.core.windows.net")
                    })?;
                let path = url.path().trim_start_matches('/');
                let (container, rest) = path.split_once('/').unwrap_or((path, ""));
                if container.is_empty() {
                    return Err(ConfigError::new(
                        SETTING,
                        raw,
                        "https URL has no container: https://<account>.blob.core.windows.net/<container>",
                    ));
                }
                Ok(Self::Azure {
                    account: Some(account.to_string()),
                    container: valid_container(raw, container)?,
                    prefix: clean_prefix(rest),
                })
            }
            "abfss" | "abfs" => {
                let container = url.username();
                let host = url.host_str().unwrap_or_default();
                let account = host.strip_suffix(".dfs.core.windows.net").ok_or_else(|| {
                    ConfigError::new(
                        SETTING,
                        raw,
                        "abfss URLs look like abfss://<container>@<account>.dfs.core.windows.net",
                    )
                })?;
                if container.is_empty() {
                    return Err(ConfigError::new(SETTING, raw, "abfss URL has no container before '@'"));
                }
                Ok(Self::Azure {
                    account: Some(account.to_string()),
                    container: valid_container(raw, container)?,
                    prefix: clean_prefix(url.path()),
                })
            }
            other => Err(ConfigError::new(
                SETTING,
                raw,
                format!("unsupported scheme {other:?}; {allowed}"),
            )),
        }
    }
}

impl fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { root } => write!(f, "file://{}", root.display()),
            Self::Azure {
                account,
                container,
                prefix,
            } => {
                let account = account.as_deref().unwrap_or("(from AZURE_STORAGE_ACCOUNT_NAME)");
                write!(f, "azure://{account}/{container}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
        }
    }
}

/// Azure container names: 3-63 chars, lowercase letters, digits and single hyphens.
fn valid_container(raw: &str, name: &str) -> Result<String, ConfigError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ok = (3..=63).contains(&name.len())
        && ok_chars
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok || name == "$root" {
        Ok(name.to_string())
    } else {
        Err(ConfigError::new(
            "HUB2LAKE_LAKE_URL",
            raw,
            format!(
                "container {name:?} is not a valid Azure container name \
                 (3-63 lowercase letters, digits and single hyphens)"
            ),
        ))
    }
}

fn clean_prefix(path: &str) -> String {
    path.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/")
}

/// How stored objects are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip {
        level: u32,
    },
    /// Zstandard (`.jsonl.zst`, `Content-Encoding: zstd`), level 1 to 22.
    Zstd {
        level: i32,
    },
}

impl Compression {
    /// File extension of data objects, without the leading dot.
    pub fn extension(self) -> &'static str {
        self.encoding().extension()
    }

    /// The `Content-Encoding` of data objects (none when uncompressed).
    pub fn content_encoding(self) -> Option<&'static str> {
        self.encoding().content_encoding()
    }
}

/// Which time decides an event's hour folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// When Event Hubs accepted the event (deterministic across re-deliveries).
    Enqueued,
    /// When the handler processed it (wall clock; re-deliveries may land in a later hour).
    Processed,
    /// MongoDB `clusterTime` of a change event, falling back to the enqueued time.
    ClusterTime,
}

/// How event bodies arrive in `Data.<binding>` (the function.json `dataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEncoding {
    /// Decide per batch: base64 when every body is base64 and none is JSON.
    Auto,
    /// `dataType: string`: each body is the UTF-8 text of the event.
    String,
    /// `dataType: binary`: each body is base64 of the event's bytes.
    Binary,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when started by the Functions host, text otherwise.
    Auto,
    Json,
    Text,
}

/// The handler's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub lake: LakeLocation,
    pub path_template: PathTemplate,
    pub compression: Compression,
    pub time_source: TimeSource,
    pub event_encoding: EventEncoding,
    /// JSON pointers that route non-change-stream JSON events.
    pub route_database_pointer: Option<String>,
    pub route_collection_pointer: Option<String>,
    pub max_request_bytes: usize,
    pub upload_concurrency: usize,
    /// Total time the storage client may spend retrying one call.
    pub storage_retry_budget: Duration,
    /// Maximum retries of one storage call.
    pub storage_max_retries: usize,
    /// Timeout of a single storage request.
    pub storage_request_timeout: Duration,
    /// The seal timer's NCRONTAB schedule (used by the simulator and docs).
    pub seal_schedule: String,
    pub seal_grace: Duration,
    pub seal_compact: bool,
    pub seal_target_object_bytes: u64,
    pub seal_max_run: Duration,
    pub log_format: LogFormat,
    /// Event Hub name and consumer group when the host's metadata lacks them.
    pub fallback_eventhub: String,
    pub fallback_consumer_group: String,
    /// The `HUB2LAKE_LOG_*` settings of the log stream (parsed in telemetry/settings.rs).
    pub log_stream: crate::telemetry::LogStreamSettings,
}

/// Every `HUB2LAKE_` setting with its default, for docs and `--help` (the log stream's
/// follow in [`crate::telemetry::settings::LOG_SETTINGS_DOC`]; [`all_settings_doc`] has both).
pub const SETTINGS_DOC: &[(&str, &str, &str)] = &[
    ("HUB2LAKE_LAKE_URL", "(required)", "where the lake is: file:///abs/dir, az://<container>[/path], https://<account>.blob.core.windows.net/<container>[/path], abfss://<container>@<account>.dfs.core.windows.net[/path]"),
    ("HUB2LAKE_PATH_TEMPLATE", defaults::PATH_TEMPLATE, "object path under the lake; tokens {database} {collection} {operation} {eventhub} {partition} {yyyy} {mm} {dd} {hh} {first_seq} {last_seq}; must hold {partition}, {first_seq} and {last_seq}; the extension is added"),
    ("HUB2LAKE_COMPRESSION", defaults::COMPRESSION, "gzip (.jsonl.gz), zstd (.jsonl.zst) or none (.jsonl)"),
    ("HUB2LAKE_GZIP_LEVEL", defaults::GZIP_LEVEL, "1 (fastest) to 9 (smallest)"),
    ("HUB2LAKE_ZSTD_LEVEL", defaults::ZSTD_LEVEL, "1 (fastest) to 22 (smallest), when HUB2LAKE_COMPRESSION=zstd"),
    ("HUB2LAKE_TIME_SOURCE", defaults::TIME_SOURCE, "which time picks the hour folder: enqueued, processed or cluster_time"),
    ("HUB2LAKE_EVENT_ENCODING", defaults::EVENT_ENCODING, "how bodies arrive: string (function.json dataType string), binary (base64) or auto"),
    ("HUB2LAKE_ROUTE_DATABASE_POINTER", "(unset)", "JSON pointer (e.g. /source/db) giving {database} for events that are not MongoDB change events"),
    ("HUB2LAKE_ROUTE_COLLECTION_POINTER", "(unset)", "JSON pointer (e.g. /type) giving {collection} for events that are not MongoDB change events"),
    ("HUB2LAKE_MAX_REQUEST_BYTES", defaults::MAX_REQUEST_BYTES, "largest request body accepted (413 above it)"),
    ("HUB2LAKE_UPLOAD_CONCURRENCY", defaults::UPLOAD_CONCURRENCY, "objects of one batch uploaded at once (1-256)"),
    ("HUB2LAKE_STORAGE_RETRY_SECS", defaults::STORAGE_RETRY_SECS, "time budget for retrying one storage call before answering 500 (1-540)"),
    ("HUB2LAKE_STORAGE_MAX_RETRIES", defaults::STORAGE_MAX_RETRIES, "retries of one storage call (0-50)"),
    ("HUB2LAKE_STORAGE_TIMEOUT_SECS", defaults::STORAGE_TIMEOUT_SECS, "timeout of one storage request (1-300)"),
    ("HUB2LAKE_SEAL_SCHEDULE", defaults::SEAL_SCHEDULE, "NCRONTAB (with seconds) of the seal timer"),
    ("HUB2LAKE_SEAL_GRACE_MINUTES", defaults::SEAL_GRACE_MINUTES, "minutes after an hour ends, and after its last write, before it is sealed without a watermark"),
    ("HUB2LAKE_SEAL_COMPACT", defaults::SEAL_COMPACT, "compact and de-duplicate sealed hours (true/false)"),
    ("HUB2LAKE_SEAL_TARGET_OBJECT_MB", defaults::SEAL_TARGET_OBJECT_MB, "size bound of compacted objects"),
    ("HUB2LAKE_SEAL_MAX_RUN_SECS", defaults::SEAL_MAX_RUN_SECS, "time budget of one seal run"),
    ("HUB2LAKE_LOG_FORMAT", defaults::LOG_FORMAT, "auto (JSON under the Functions host), json or text"),
];

/// Every setting's documentation: [`SETTINGS_DOC`], then the log stream's.
pub fn all_settings_doc() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    SETTINGS_DOC.iter().chain(crate::telemetry::settings::LOG_SETTINGS_DOC)
}

/// The default of every setting that has one, written once: [`Settings::from_lookup`]
/// parses these exactly as it parses a value that is set, and [`SETTINGS_DOC`] (what
/// `hub2lake settings` prints) shows them.
pub mod defaults {
    /// The design's layout.
    pub const PATH_TEMPLATE: &str = "{database}/{collection}/{yyyy}/{mm}/{dd}/{hh}/{partition}-{first_seq}-{last_seq}";
    pub const COMPRESSION: &str = "gzip";
    pub const GZIP_LEVEL: &str = "6";
    pub const ZSTD_LEVEL: &str = "3";
    pub const TIME_SOURCE: &str = "enqueued";
    pub const EVENT_ENCODING: &str = "auto";
    /// 2 GiB: a batch of 1000 events of 1 MB each fits.
    pub const MAX_REQUEST_BYTES: &str = "2147483648";
    pub const UPLOAD_CONCURRENCY: &str = "8";
    pub const STORAGE_RETRY_SECS: &str = "60";
    pub const STORAGE_MAX_RETRIES: &str = "5";
    pub const STORAGE_TIMEOUT_SECS: &str = "30";
    /// Every five minutes, at second 0 (NCRONTAB with seconds).
    pub const SEAL_SCHEDULE: &str = "0 */5 * * * *";
    pub const SEAL_GRACE_MINUTES: &str = "15";
    pub const SEAL_COMPACT: &str = "true";
    pub const SEAL_TARGET_OBJECT_MB: &str = "128";
    pub const SEAL_MAX_RUN_SECS: &str = "240";
    pub const LOG_FORMAT: &str = "auto";
}

/// The default object path template (the design's layout).
pub const DEFAULT_TEMPLATE: &str = defaults::PATH_TEMPLATE;

/// The seal timer's default schedule, for everything that starts the seal timer
/// without the Functions host (the simulator, the demo).
pub const DEFAULT_SEAL_SCHEDULE: &str = defaults::SEAL_SCHEDULE;

impl Settings {
    /// Reads settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|k| vars.get(k).cloned())
    }

    /// Reads settings from any key → value lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = Lookup(&get);
        let lake_raw = lookup
            .get("HUB2LAKE_LAKE_URL")
            .ok_or_else(|| ConfigError::new("HUB2LAKE_LAKE_URL", "", "is required (e.g. file:///tmp/lake)"))?;
        let lake = LakeLocation::parse(&lake_raw)?;
        let template_raw = lookup.or("HUB2LAKE_PATH_TEMPLATE", defaults::PATH_TEMPLATE);
        let path_template = PathTemplate::parse(&template_raw)
            .map_err(|problem| ConfigError::new("HUB2LAKE_PATH_TEMPLATE", &template_raw, problem))?;
        let level = lookup.number("HUB2LAKE_GZIP_LEVEL", defaults::GZIP_LEVEL, 1..=9)?;
        let zstd_level = lookup.number("HUB2LAKE_ZSTD_LEVEL", defaults::ZSTD_LEVEL, 1..=22)?;
        let compression = match lookup
            .or("HUB2LAKE_COMPRESSION", defaults::COMPRESSION)
            .to_ascii_lowercase()
            .as_str()
        {
            "gzip" | "gz" => Compression::Gzip { level: level as u32 },
            "zstd" | "zst" => Compression::Zstd {
                level: zstd_level as i32,
            },
            "none" | "off" => Compression::None,
            other => {
                return Err(ConfigError::new(
                    "HUB2LAKE_COMPRESSION",
                    other,
                    "allowed: gzip, zstd, none",
                ))
            }
        };
        let time_source = lookup.choice(
            "HUB2LAKE_TIME_SOURCE",
            defaults::TIME_SOURCE,
            &[
                ("enqueued", TimeSource::Enqueued),
                ("processed", TimeSource::Processed),
                ("cluster_time", TimeSource::ClusterTime),
            ],
        )?;
        let event_encoding = lookup.choice(
            "HUB2LAKE_EVENT_ENCODING",
            defaults::EVENT_ENCODING,
            &[
                ("auto", EventEncoding::Auto),
                ("string", EventEncoding::String),
                ("binary", EventEncoding::Binary),
            ],
        )?;
        let log_format = lookup.choice(
            "HUB2LAKE_LOG_FORMAT",
            defaults::LOG_FORMAT,
            &[
                ("auto", LogFormat::Auto),
                ("json", LogFormat::Json),
                ("text", LogFormat::Text),
            ],
        )?;
        let seal_schedule = lookup.or("HUB2LAKE_SEAL_SCHEDULE", defaults::SEAL_SCHEDULE);
        let fields = seal_schedule.split_whitespace().count();
        if fields != 6 {
            return Err(ConfigError::new(
                "HUB2LAKE_SEAL_SCHEDULE",
                &seal_schedule,
                format!("NCRONTAB needs 6 fields (second minute hour day month weekday), found {fields}"),
            ));
        }
        let seal_compact = match lookup
            .or("HUB2LAKE_SEAL_COMPACT", defaults::SEAL_COMPACT)
            .to_ascii_lowercase()
            .as_str()
        {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => return Err(ConfigError::new("HUB2LAKE_SEAL_COMPACT", other, "allowed: true, false")),
        };
        Ok(Self {
            lake,
            path_template,
            compression,
            time_source,
            event_encoding,
            route_database_pointer: lookup.pointer("HUB2LAKE_ROUTE_DATABASE_POINTER")?,
            route_collection_pointer: lookup.pointer("HUB2LAKE_ROUTE_COLLECTION_POINTER")?,
            max_request_bytes: lookup.number(
                "HUB2LAKE_MAX_REQUEST_BYTES",
                defaults::MAX_REQUEST_BYTES,
                1024..=(16 << 30),
            )? as usize,
            upload_concurrency: lookup.number("HUB2LAKE_UPLOAD_CONCURRENCY", defaults::UPLOAD_CONCURRENCY, 1..=256)?
                as usize,
            storage_retry_budget: Duration::from_secs(lookup.number(
                "HUB2LAKE_STORAGE_RETRY_SECS",
                defaults::STORAGE_RETRY_SECS,
                1..=540,
            )?),
            storage_max_retries: lookup.number("HUB2LAKE_STORAGE_MAX_RETRIES", defaults::STORAGE_MAX_RETRIES, 0..=50)?
                as usize,
            storage_request_timeout: Duration::from_secs(lookup.number(
                "HUB2LAKE_STORAGE_TIMEOUT_SECS",
                defaults::STORAGE_TIMEOUT_SECS,
                1..=300,
            )?),
            seal_schedule,
            seal_grace: Duration::from_secs(
                60 * lookup.number(
                    "HUB2LAKE_SEAL_GRACE_MINUTES",
                    defaults::SEAL_GRACE_MINUTES,
                    0..=7 * 24 * 60,
                )?,
            ),
            seal_compact,
            seal_target_object_bytes: lookup.number(
                "HUB2LAKE_SEAL_TARGET_OBJECT_MB",
                defaults::SEAL_TARGET_OBJECT_MB,
                1..=4096,
            )? << 20,
            seal_max_run: Duration::from_secs(lookup.number(
                "HUB2LAKE_SEAL_MAX_RUN_SECS",
                defaults::SEAL_MAX_RUN_SECS,
                5..=3600,
            )?),
            log_format,
            fallback_eventhub: lookup.or("EVENTHUB_NAME", "_unknown"),
            fallback_consumer_group: lookup.or("EVENTHUB_CONSUMER_GROUP", "$Default"),
            log_stream: crate::telemetry::LogStreamSettings::from_lookup(&get)?,
        })
    }

    /// Settings for a local lake at `root` with every other value at its default.
    pub fn local(root: impl Into<PathBuf>) -> Self {
        let root: PathBuf = root.into();
        let url = format!("file://{}", root.display());
        Self::from_lookup(|k| (k == "HUB2LAKE_LAKE_URL").then(|| url.clone()))
            .expect("default settings with a local lake are valid")
    }
}

struct Lookup<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Lookup<'_, F> {
    /// A set, non-blank value.
    fn get(&self, key: &str) -> Option<String> {
        (self.0)(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn or(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or_else(|| default.to_string())
    }

    /// A whole number in `range`; the default goes through the same checks.
    fn number(
        &self,
        key: &'static str,
        default: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let raw = self.or(key, default);
        let n: u64 = raw.parse().map_err(|_| {
            ConfigError::new(
                key,
                &raw,
                format!("must be a whole number from {} to {}", range.start(), range.end()),
            )
        })?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(ConfigError::new(
                key,
                &raw,
                format!("must be from {} to {}", range.start(), range.end()),
            ))
        }
    }

    fn choice<T: Copy>(&self, key: &'static str, default: &str, options: &[(&str, T)]) -> Result<T, ConfigError> {
        let raw = self.or(key, default);
        options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&raw))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
                ConfigError::new(key, &raw, format!("allowed: {}", names.join(", ")))
            })
    }

    fn pointer(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(p) if p.starts_with('/') => Ok(Some(p)),
            Some(p) => Err(ConfigError::new(
                key,
                &p,
                "a JSON pointer starts with '/', e.g. /source/db",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn lake_url_forms_parse() {
        assert_eq!(
            LakeLocation::parse("file:///tmp/lake").unwrap(),
            LakeLocation::Local {
                root: "/tmp/lake".into()
            }
        );
        assert_eq!(
            LakeLocation::parse("az://lake/raw/events").unwrap(),
            LakeLocation::Azure {
                account: None,
                container: "lake".into(),
                prefix: "raw/events".into()
            }
        );
        assert_eq!(
            LakeLocation::parse("https://acct.blob.core.windows.net/lake").unwrap(),
            LakeLocation::Azure {
                account: Some("acct".into()),
                container: "lake".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            LakeLocation::parse("abfss://lake@acct.dfs.core.windows.net/mongo/").unwrap(),
            LakeLocation::Azure {
                account: Some("acct".into()),
                container: "lake".into(),
                prefix: "mongo".into()
            }
        );
    }

    #[test]
    fn bad_lake_urls_name_the_problem() {
        for bad in [
            "s3://bucket",
            "file://host/x",
            "az://UPPER",
            "https://example.com/c",
            "not a url",
            "abfss://acct.dfs.core.windows.net",
        ] {
            let err = LakeLocation::parse(bad).unwrap_err();
            assert_eq!(err.setting, "HUB2LAKE_LAKE_URL", "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn missing_lake_url_is_refused() {
        let err = settings(&[]).unwrap_err();
        assert_eq!(err.setting, "HUB2LAKE_LAKE_URL");
        assert!(err.problem.contains("required"));
    }

    #[test]
    fn out_of_range_numbers_are_refused_with_the_range() {
        let err = settings(&[("HUB2LAKE_LAKE_URL", "file:///tmp/l"), ("HUB2LAKE_GZIP_LEVEL", "12")]).unwrap_err();
        assert_eq!(err.setting, "HUB2LAKE_GZIP_LEVEL");
        assert!(
            err.problem.contains("1 to 9") || err.problem.contains("from 1 to 9"),
            "{err}"
        );
        let err = settings(&[
            ("HUB2LAKE_LAKE_URL", "file:///tmp/l"),
            ("HUB2LAKE_UPLOAD_CONCURRENCY", "lots"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "HUB2LAKE_UPLOAD_CONCURRENCY");
    }

    #[test]
    fn choices_list_what_is_allowed() {
        let err = settings(&[
            ("HUB2LAKE_LAKE_URL", "file:///tmp/l"),
            ("HUB2LAKE_COMPRESSION", "brotli"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "HUB2LAKE_COMPRESSION");
        assert!(err.problem.contains("gzip, zstd, none"), "{err}");
        let err = settings(&[("HUB2LAKE_LAKE_URL", "file:///tmp/l"), ("HUB2LAKE_TIME_SOURCE", "wall")]).unwrap_err();
        assert!(err.problem.contains("enqueued, processed, cluster_time"), "{err}");
    }

    #[test]
    fn zstd_takes_its_own_level_from_1_to_22() {
        let lake = ("HUB2LAKE_LAKE_URL", "file:///tmp/l");
        let s = settings(&[lake, ("HUB2LAKE_COMPRESSION", "zstd")]).unwrap();
        assert_eq!(s.compression, Compression::Zstd { level: 3 });
        assert_eq!(s.compression.extension(), "jsonl.zst");
        assert_eq!(s.compression.content_encoding(), Some("zstd"));
        let s = settings(&[lake, ("HUB2LAKE_COMPRESSION", "ZSTD"), ("HUB2LAKE_ZSTD_LEVEL", "19")]).unwrap();
        assert_eq!(s.compression, Compression::Zstd { level: 19 });
        for bad in ["0", "23", "-1", "fast"] {
            let err = settings(&[lake, ("HUB2LAKE_COMPRESSION", "zstd"), ("HUB2LAKE_ZSTD_LEVEL", bad)]).unwrap_err();
            assert_eq!(err.setting, "HUB2LAKE_ZSTD_LEVEL", "{bad}");
            assert!(err.problem.contains("from 1 to 22"), "{err}");
        }
    }

    #[test]
    fn defaults_are_sane() {
        let s = settings(&[("HUB2LAKE_LAKE_URL", "file:///tmp/l")]).unwrap();
        assert_eq!(s.compression, Compression::Gzip { level: 6 });
        assert_eq!(s.time_source, TimeSource::Enqueued);
        assert!(s.max_request_bytes >= 1_500_000_000, "a 1000 x 1 MB batch must fit");
        assert_eq!(s.seal_schedule, "0 */5 * * * *");
        assert_eq!(s.path_template.as_str(), DEFAULT_TEMPLATE);
    }

    #[test]
    fn every_documented_setting_is_read() {
        let source = include_str!("config.rs");
        for (name, _, _) in SETTINGS_DOC {
            let quoted = format!("\"{name}\"");
            assert!(
                source.matches(&quoted).count() >= 2,
                "{name} is documented but never read"
            );
        }
    }

    /// Settings with a documented default, each set to exactly that default.
    fn documented_defaults() -> Vec<(&'static str, &'static str)> {
        SETTINGS_DOC
            .iter()
            .filter(|(_, default, _)| !default.starts_with('('))
            .map(|(name, default, _)| (*name, *default))
            .collect()
    }

    #[test]
    fn the_documented_defaults_are_the_parsed_defaults() {
        let lake = ("HUB2LAKE_LAKE_URL", "file:///tmp/l");
        let unset = settings(&[lake]).unwrap();
        let mut explicit = documented_defaults();
        assert!(explicit.len() >= 15, "{explicit:?}");
        explicit.push(lake);
        assert_eq!(settings(&explicit).unwrap(), unset);
        // And each default means something: a different value gives other settings.
        let other = settings(&[lake, ("HUB2LAKE_SEAL_SCHEDULE", "0 0 * * * *")]).unwrap();
        assert_ne!(other, unset);
    }

    #[test]
    fn the_readme_settings_table_shows_the_documented_defaults() {
        let readme = include_str!("../../README.md");
        let plain = |cell: &str| cell.trim().trim_matches('`').trim_matches(['(', ')']).to_string();
        let rows: HashMap<String, String> = readme
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').collect();
                (cells.len() >= 4 && cells[1].trim().starts_with("`HUB2LAKE_"))
                    .then(|| (plain(cells[1]), plain(cells[2])))
            })
            .collect();
        for (name, default, _) in SETTINGS_DOC {
            let shown = rows
                .get(*name)
                .unwrap_or_else(|| panic!("README.md's settings table lacks {name}"));
            assert_eq!(shown, &plain(default), "README.md's default of {name}");
        }
    }
}
