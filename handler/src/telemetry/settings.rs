//! The `HUB2LAKE_LOG_*` settings of the log stream, read once and validated at start.
//!
//! Defaults are declared once here ([`LOG_SETTINGS_DOC`] documents them for README and
//! `hub2lake settings`). A malformed value stops the start naming the setting; a
//! connection string's value is never echoed. Nothing here touches the network: an
//! unreachable Event Hub is the background task's business, never the start's.

use std::path::PathBuf;
use std::time::Duration;

use azure_core::credentials::Secret;
use tracing::level_filters::LevelFilter;

use crate::config::ConfigError;
use crate::eventhub::{qualify_namespace, valid_eventhub_name, ConnectionString, CredentialKind, Destination};

pub const CONNECTION_STRING: &str = "HUB2LAKE_LOG_EVENTHUB_CONNECTION_STRING";
pub const NAMESPACE: &str = "HUB2LAKE_LOG_EVENTHUB_NAMESPACE";
pub const NAME: &str = "HUB2LAKE_LOG_EVENTHUB_NAME";
pub const ENABLED: &str = "HUB2LAKE_LOG_EVENTHUB_ENABLED";
pub const TRANSPORT: &str = "HUB2LAKE_LOG_EVENTHUB_TRANSPORT";
pub const FILE: &str = "HUB2LAKE_LOG_STREAM_FILE";
pub const LEVEL: &str = "HUB2LAKE_LOG_STREAM_LEVEL";
pub const BATCH_SIZE: &str = "HUB2LAKE_LOG_STREAM_BATCH_SIZE";
pub const BATCH_TIMEOUT_MS: &str = "HUB2LAKE_LOG_STREAM_BATCH_TIMEOUT_MS";
pub const QUEUE_SIZE: &str = "HUB2LAKE_LOG_STREAM_QUEUE_SIZE";
pub const CIRCUIT_THRESHOLD: &str = "HUB2LAKE_LOG_STREAM_CIRCUIT_THRESHOLD";
pub const CIRCUIT_OPEN_SECS: &str = "HUB2LAKE_LOG_STREAM_CIRCUIT_OPEN_SECS";
pub const FLUSH_MS: &str = "HUB2LAKE_LOG_STREAM_FLUSH_MS";
pub const STATS_SECS: &str = "HUB2LAKE_LOG_STREAM_STATS_SECS";
pub const STDOUT: &str = "HUB2LAKE_LOG_STDOUT";

/// The Event Hub the operators' ADX data connection reads (infra/modules/event-hubs.bicep).
pub const DEFAULT_EVENTHUB: &str = "application-logs";

/// Every log-stream setting with its default, for README and `hub2lake settings`.
pub const LOG_SETTINGS_DOC: &[(&str, &str, &str)] = &[
    ("HUB2LAKE_LOG_EVENTHUB_CONNECTION_STRING", "(unset: no Event Hub target)", "stream logs to the Event Hub of this connection string (Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…]); its EntityPath wins over HUB2LAKE_LOG_EVENTHUB_NAME"),
    ("HUB2LAKE_LOG_EVENTHUB_NAMESPACE", "(unset: no Event Hub target)", "stream logs to this namespace (contoso or contoso.servicebus.windows.net) with the Azure identity (AZURE_CLIENT_ID, managed identity in Azure); needs Azure Event Hubs Data Sender"),
    ("HUB2LAKE_LOG_EVENTHUB_NAME", DEFAULT_EVENTHUB, "the Event Hub logs go to"),
    ("HUB2LAKE_LOG_EVENTHUB_ENABLED", "true when a target is set", "false turns the Event Hub target off (the rollback switch); the file target and console logs are unaffected"),
    ("HUB2LAKE_LOG_EVENTHUB_TRANSPORT", "amqp", "amqp (port 5671) or websockets (AMQP over WebSockets, port 443)"),
    ("HUB2LAKE_LOG_STREAM_FILE", "(unset: no file target)", "also append the stream's JSON lines to this file (development and tests)"),
    ("HUB2LAKE_LOG_STREAM_LEVEL", "info", "lowest level streamed: trace, debug, info, warn or error (RUST_LOG sets the console's)"),
    ("HUB2LAKE_LOG_STREAM_BATCH_SIZE", "100", "log events per batch sent (1-1000)"),
    ("HUB2LAKE_LOG_STREAM_BATCH_TIMEOUT_MS", "1000", "longest wait before a partial batch is sent (1-60000)"),
    ("HUB2LAKE_LOG_STREAM_QUEUE_SIZE", "10000", "log events held for sending (10-1000000); beyond it events are dropped and counted, never waited for"),
    ("HUB2LAKE_LOG_STREAM_CIRCUIT_THRESHOLD", "5", "consecutive failed batches that open the circuit (1-1000)"),
    ("HUB2LAKE_LOG_STREAM_CIRCUIT_OPEN_SECS", "30", "seconds the circuit stays open before one half-open probe (1-3600)"),
    ("HUB2LAKE_LOG_STREAM_FLUSH_MS", "2000", "at shutdown, time given to send what is queued (0-30000)"),
    ("HUB2LAKE_LOG_STREAM_STATS_SECS", "60", "period of the `log stream stats` line (0 = never; 1-3600)"),
    ("HUB2LAKE_LOG_STDOUT", "true", "console logs (stderr, collected by the Functions host); false = stream only (kept on when no stream target is set)"),
];

/// Where the Event Hub target sends and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubTarget {
    pub destination: Destination,
    /// AMQP over WebSockets (443) instead of AMQP (5671).
    pub websockets: bool,
}

/// The log stream's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStreamSettings {
    /// `None` when no target is set or `HUB2LAKE_LOG_EVENTHUB_ENABLED=false`.
    pub eventhub: Option<EventHubTarget>,
    /// A target was set but switched off (the rollback switch is in use).
    pub eventhub_switched_off: bool,
    pub file: Option<PathBuf>,
    pub level: LevelFilter,
    pub batch_size: usize,
    pub batch_timeout: Duration,
    pub queue_size: usize,
    pub circuit_threshold: u32,
    pub circuit_open: Duration,
    pub flush_budget: Duration,
    /// `None`: no periodic stats line.
    pub stats_period: Option<Duration>,
    /// Console logs (`HUB2LAKE_LOG_STDOUT`).
    pub console: bool,
}

impl Default for LogStreamSettings {
    /// No target; every other value at its default.
    fn default() -> Self {
        Self::from_lookup(|_| None).expect("the defaults are valid")
    }
}

impl LogStreamSettings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings from any key → value lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let enabled = boolean(&get, ENABLED, true)?;
        let target = eventhub_target(&get)?;
        let file = get(FILE).map(PathBuf::from);
        if let Some(path) = &file {
            if path.file_name().is_none() || path.is_dir() {
                return Err(invalid(
                    FILE,
                    &path.display().to_string(),
                    "must name a file, not a folder",
                ));
            }
        }
        let console = boolean(&get, STDOUT, true)?;
        let stats_secs = number(&get, STATS_SECS, 60, 0..=3600)?;
        Ok(Self {
            eventhub_switched_off: target.is_some() && !enabled,
            eventhub: target.filter(|_| enabled),
            file,
            level: level(&get)?,
            batch_size: number(&get, BATCH_SIZE, 100, 1..=1000)? as usize,
            batch_timeout: Duration::from_millis(number(&get, BATCH_TIMEOUT_MS, 1000, 1..=60_000)?),
            queue_size: number(&get, QUEUE_SIZE, 10_000, 10..=1_000_000)? as usize,
            circuit_threshold: number(&get, CIRCUIT_THRESHOLD, 5, 1..=1000)? as u32,
            circuit_open: Duration::from_secs(number(&get, CIRCUIT_OPEN_SECS, 30, 1..=3600)?),
            flush_budget: Duration::from_millis(number(&get, FLUSH_MS, 2000, 0..=30_000)?),
            stats_period: (stats_secs > 0).then(|| Duration::from_secs(stats_secs)),
            console,
        })
    }

    /// Whether any stream target runs.
    pub fn streams(&self) -> bool {
        self.eventhub.is_some() || self.file.is_some()
    }

    /// Whether console logs are written: `HUB2LAKE_LOG_STDOUT=false` only takes effect
    /// when a stream target runs, so that the rollback switch never silences the process.
    pub fn console_effective(&self) -> bool {
        self.console || !self.streams()
    }
}

fn invalid(setting: &'static str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        value: value.to_string(),
        problem: problem.into(),
    }
}

fn boolean(get: &dyn Fn(&str) -> Option<String>, key: &'static str, default: bool) -> Result<bool, ConfigError> {
    match get(key) {
        None => Ok(default),
        Some(raw) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(key, &raw, "allowed: true, false")),
        },
    }
}

fn number(
    get: &dyn Fn(&str) -> Option<String>,
    key: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(raw) = get(key) else {
        return Ok(default);
    };
    let allowed = || format!("must be a whole number from {} to {}", range.start(), range.end());
    match raw.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(invalid(key, &raw, allowed())),
    }
}

fn level(get: &dyn Fn(&str) -> Option<String>) -> Result<LevelFilter, ConfigError> {
    let raw = get(LEVEL).unwrap_or_else(|| "info".into());
    match raw.to_ascii_lowercase().as_str() {
        "trace" => Ok(LevelFilter::TRACE),
        "debug" => Ok(LevelFilter::DEBUG),
        "info" => Ok(LevelFilter::INFO),
        "warn" | "warning" => Ok(LevelFilter::WARN),
        "error" => Ok(LevelFilter::ERROR),
        _ => Err(invalid(LEVEL, &raw, "allowed: trace, debug, info, warn, error")),
    }
}

/// The Event Hub target, when a connection string or a namespace is set.
fn eventhub_target(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<EventHubTarget>, ConfigError> {
    let name = get(NAME);
    if let Some(n) = &name {
        if !valid_eventhub_name(n) {
            return Err(invalid(
                NAME,
                n,
                "not an Event Hub name (letters, digits, '.', '-', '_'; 1-256 characters)",
            ));
        }
    }
    let websockets = match get(TRANSPORT).map(|t| t.to_ascii_lowercase()).as_deref() {
        None | Some("amqp") => false,
        Some("websockets" | "websocket" | "ws") => true,
        Some(other) => return Err(invalid(TRANSPORT, other, "allowed: amqp, websockets")),
    };
    let destination = match (get(CONNECTION_STRING), get(NAMESPACE)) {
        (None, None) => return Ok(None),
        (Some(_), Some(ns)) => {
            return Err(invalid(
                NAMESPACE,
                &ns,
                format!("set either {CONNECTION_STRING} or {NAMESPACE} (with the Azure identity), not both"),
            ))
        }
        (Some(raw), None) => {
            // The value holds a key: the message names the problem, never the value.
            let parsed =
                ConnectionString::parse(&raw).map_err(|e| invalid(CONNECTION_STRING, "<redacted>", e.to_string()))?;
            let eventhub = parsed
                .entity_path
                .clone()
                .or(name)
                .unwrap_or_else(|| DEFAULT_EVENTHUB.to_string());
            Destination::ConnectionString {
                parsed,
                raw: Secret::new(raw),
                eventhub,
            }
        }
        (None, Some(ns)) => Destination::Identity {
            namespace: qualify_namespace(&ns).map_err(|e| invalid(NAMESPACE, &ns, e.to_string()))?,
            eventhub: name.unwrap_or_else(|| DEFAULT_EVENTHUB.to_string()),
            credential: CredentialKind::Auto,
        },
    };
    Ok(Some(EventHubTarget {
        destination,
        websockets,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<LogStreamSettings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LogStreamSettings::from_lookup(|k| map.get(k).cloned())
    }

    const CS: &str =
        "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=TOPSECRET=";

    #[test]
    fn defaults_match_the_documented_table() {
        let s = parse(&[]).unwrap();
        assert!(s.eventhub.is_none() && s.file.is_none() && !s.streams());
        assert!(!s.eventhub_switched_off);
        assert_eq!(s.level, LevelFilter::INFO);
        assert_eq!(s.batch_size, 100);
        assert_eq!(s.batch_timeout, Duration::from_millis(1000));
        assert_eq!(s.queue_size, 10_000);
        assert_eq!(s.circuit_threshold, 5);
        assert_eq!(s.circuit_open, Duration::from_secs(30));
        assert_eq!(s.flush_budget, Duration::from_secs(2));
        assert_eq!(s.stats_period, Some(Duration::from_secs(60)));
        assert!(s.console);
        for (name, default, _) in LOG_SETTINGS_DOC {
            let documented = match *name {
                BATCH_SIZE => "100",
                BATCH_TIMEOUT_MS => "1000",
                QUEUE_SIZE => "10000",
                CIRCUIT_THRESHOLD => "5",
                CIRCUIT_OPEN_SECS => "30",
                LEVEL => "info",
                STDOUT => "true",
                NAME => "application-logs",
                FLUSH_MS => "2000",
                _ => continue,
            };
            assert_eq!(*default, documented, "{name}");
        }
    }

    #[test]
    fn a_connection_string_without_entity_path_sends_to_the_named_or_default_hub() {
        let s = parse(&[(CONNECTION_STRING, CS)]).unwrap();
        let target = s.eventhub.unwrap();
        assert_eq!(
            target.destination.describe(),
            "eventhub://contoso.servicebus.windows.net/application-logs"
        );
        assert!(!target.websockets);
        let s = parse(&[(CONNECTION_STRING, CS), (NAME, "logs2"), (TRANSPORT, "websockets")]).unwrap();
        let target = s.eventhub.unwrap();
        assert!(target.destination.describe().ends_with("/logs2"));
        assert!(target.websockets);
    }

    #[test]
    fn entity_path_wins_over_the_name_setting() {
        let cs = format!("{CS};EntityPath=from-string");
        let s = parse(&[(CONNECTION_STRING, &cs), (NAME, "from-setting")]).unwrap();
        assert!(s.eventhub.unwrap().destination.describe().ends_with("/from-string"));
    }

    #[test]
    fn a_namespace_uses_the_azure_identity() {
        let s = parse(&[(NAMESPACE, "contoso")]).unwrap();
        match s.eventhub.unwrap().destination {
            Destination::Identity {
                namespace,
                eventhub,
                credential,
            } => {
                assert_eq!(namespace, "contoso.servicebus.windows.net");
                assert_eq!(eventhub, DEFAULT_EVENTHUB);
                assert_eq!(credential, CredentialKind::Auto);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_rollback_switch_turns_the_event_hub_off_but_not_the_file() {
        let s = parse(&[(NAMESPACE, "contoso"), (ENABLED, "false"), (FILE, "/tmp/x.jsonl")]).unwrap();
        assert!(s.eventhub.is_none());
        assert!(s.eventhub_switched_off);
        assert!(s.file.is_some() && s.streams());
    }

    #[test]
    fn stdout_off_takes_effect_only_with_a_stream_target() {
        let s = parse(&[(STDOUT, "false")]).unwrap();
        assert!(!s.console && s.console_effective());
        let s = parse(&[(STDOUT, "false"), (FILE, "/tmp/x.jsonl")]).unwrap();
        assert!(!s.console_effective());
        let s = parse(&[(STDOUT, "false"), (NAMESPACE, "contoso"), (ENABLED, "false")]).unwrap();
        assert!(
            s.console_effective(),
            "the rollback switch must never silence the process"
        );
    }

    fn refused(pairs: &[(&str, &str)], setting: &str) -> ConfigError {
        let e = parse(pairs).unwrap_err();
        assert_eq!(e.setting, setting, "{pairs:?}: {e}");
        assert!(e.to_string().contains(setting), "{e}");
        e
    }

    #[test]
    fn malformed_values_stop_the_start_naming_the_setting() {
        refused(&[(BATCH_SIZE, "lots")], BATCH_SIZE);
        refused(&[(BATCH_SIZE, "0")], BATCH_SIZE);
        refused(&[(BATCH_TIMEOUT_MS, "-5")], BATCH_TIMEOUT_MS);
        refused(&[(QUEUE_SIZE, "1e4")], QUEUE_SIZE);
        refused(&[(CIRCUIT_THRESHOLD, "five")], CIRCUIT_THRESHOLD);
        refused(&[(CIRCUIT_OPEN_SECS, "0")], CIRCUIT_OPEN_SECS);
        refused(&[(FLUSH_MS, "2s")], FLUSH_MS);
        refused(&[(STATS_SECS, "x")], STATS_SECS);
        refused(&[(ENABLED, "maybe")], ENABLED);
        refused(&[(STDOUT, "nope")], STDOUT);
        refused(&[(LEVEL, "verbose")], LEVEL);
        refused(&[(TRANSPORT, "http")], TRANSPORT);
        refused(&[(NAME, "a/b")], NAME);
        refused(&[(NAMESPACE, "a b")], NAMESPACE);
        refused(&[(NAMESPACE, "contoso"), (CONNECTION_STRING, CS)], NAMESPACE);
        refused(&[(FILE, "/tmp/")], FILE);
        let e = refused(
            &[(CONNECTION_STRING, "SharedAccessKeyName=a;SharedAccessKey=TOPSECRET")],
            CONNECTION_STRING,
        );
        assert!(e.to_string().contains("Endpoint"), "{e}");
        let e = refused(
            &[(CONNECTION_STRING, "Endpoint=sb://a.b/;SharedAccessKeyName=TOPSECRET")],
            CONNECTION_STRING,
        );
        assert!(e.to_string().contains("SharedAccessKey"), "{e}");
        assert!(!e.to_string().contains("TOPSECRET"), "a key is never echoed: {e}");
    }

    #[test]
    fn a_malformed_value_is_refused_even_when_the_switch_is_off() {
        // Rolling back must not hide a typo that would bite on the way forward.
        refused(&[(CONNECTION_STRING, "garbage"), (ENABLED, "false")], CONNECTION_STRING);
    }

    #[test]
    fn every_documented_setting_is_read() {
        let source = include_str!("settings.rs");
        for (name, _, _) in LOG_SETTINGS_DOC {
            let constant = format!("= \"{name}\";");
            assert!(source.contains(&constant), "{name} is documented but has no constant");
        }
        assert_eq!(LOG_SETTINGS_DOC.len(), 15);
    }

    #[test]
    fn hub2lake_settings_lists_the_log_stream_settings_after_the_others() {
        let names: Vec<&str> = crate::config::all_settings_doc().map(|(n, _, _)| *n).collect();
        let lake = names.iter().position(|n| *n == "HUB2LAKE_LAKE_URL").unwrap();
        for (name, _, _) in LOG_SETTINGS_DOC {
            let at = names
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("{name} not listed"));
            assert!(at > lake);
        }
    }
}
