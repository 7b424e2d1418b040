//! The Functions app files the host reads: `host.json`, `<function>/function.json`
//! (ingest: Event Hub trigger and retry policy; seal: timer schedule) and the `Values`
//! of a `local.settings.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use hub2lake::host::wire::WireDataType;

use super::SimError;

/// The copies of the repository's app files built into the binary, used when the
/// simulator runs somewhere without `host.json` and `functions/`.
pub const BUNDLED_HOST_JSON: &str = include_str!("../../../host.json");
pub const BUNDLED_INGEST_FUNCTION: &str = include_str!("../../../functions/ingest/function.json");
pub const BUNDLED_SEAL_FUNCTION: &str = include_str!("../../../functions/seal/function.json");

/// `extensions.eventHubs` and the other host.json values the simulator honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostJson {
    /// `extensions.eventHubs.maxEventBatchSize` (host default 100).
    pub max_event_batch_size: usize,
    /// `extensions.eventHubs.batchCheckpointFrequency` (host default 1).
    pub batch_checkpoint_frequency: u32,
    /// `functionTimeout`; `None` when unset or `-1` (unbounded).
    pub function_timeout: Option<Duration>,
}

impl Default for HostJson {
    fn default() -> Self {
        Self {
            max_event_batch_size: 100,
            batch_checkpoint_frequency: 1,
            function_timeout: None,
        }
    }
}

impl HostJson {
    /// Parses host.json text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SimError> {
        let v: Value = serde_json::from_str(text).map_err(|e| SimError::app(origin, format!("not valid JSON: {e}")))?;
        let eh = &v["extensions"]["eventHubs"];
        let mut out = Self::default();
        if let Some(n) = number(
            &eh["maxEventBatchSize"],
            origin,
            "extensions.eventHubs.maxEventBatchSize",
        )? {
            if n < 1 {
                return Err(SimError::app(
                    origin,
                    "extensions.eventHubs.maxEventBatchSize must be at least 1",
                ));
            }
            out.max_event_batch_size = n as usize;
        }
        if let Some(n) = number(
            &eh["batchCheckpointFrequency"],
            origin,
            "extensions.eventHubs.batchCheckpointFrequency",
        )? {
            if n < 1 {
                return Err(SimError::app(
                    origin,
                    "extensions.eventHubs.batchCheckpointFrequency must be at least 1",
                ));
            }
            out.batch_checkpoint_frequency = n as u32;
        }
        if let Some(t) = v["functionTimeout"].as_str() {
            out.function_timeout = if t.trim() == "-1" {
                None
            } else {
                Some(parse_timespan(t).map_err(|p| SimError::app(origin, format!("functionTimeout: {p}")))?)
            };
        }
        Ok(out)
    }

    /// How long the host's HTTP client waits for an invocation: `functionTimeout` + 1 min.
    pub fn invocation_timeout(&self) -> Duration {
        match self.function_timeout {
            Some(t) => t + Duration::from_secs(60),
            None => Duration::from_secs(24 * 3600),
        }
    }
}

fn number(v: &Value, origin: &str, key: &str) -> Result<Option<i64>, SimError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| SimError::app(origin, format!("{key} must be a whole number"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| SimError::app(origin, format!("{key} must be a whole number, found {s:?}"))),
        other => Err(SimError::app(origin, format!("{key} must be a number, found {other}"))),
    }
}

/// A function's retry strategy (function.json `retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStrategy {
    /// `fixedDelay` with `delayInterval`.
    FixedDelay { delay: Duration },
    /// `exponentialBackoff` with `minimumInterval` and `maximumInterval`.
    ExponentialBackoff { minimum: Duration, maximum: Duration },
}

/// function.json `retry`: how often and how fast the host re-invokes a failed batch
/// before it checkpoints past it anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub strategy: RetryStrategy,
    /// Retries after the first attempt; `-1` retries forever.
    pub max_retry_count: i64,
}

impl RetryPolicy {
    pub fn fixed(max_retry_count: i64, delay: Duration) -> Self {
        Self {
            strategy: RetryStrategy::FixedDelay { delay },
            max_retry_count,
        }
    }

    pub fn exponential(max_retry_count: i64, minimum: Duration, maximum: Duration) -> Self {
        Self {
            strategy: RetryStrategy::ExponentialBackoff { minimum, maximum },
            max_retry_count,
        }
    }

    /// Parses the `retry` object of a function.json.
    pub fn from_json(v: &Value, origin: &str) -> Result<Self, SimError> {
        let err = |p: String| SimError::app(origin, format!("retry: {p}"));
        let max_retry_count = number(&v["maxRetryCount"], origin, "retry.maxRetryCount")?
            .ok_or_else(|| err("maxRetryCount is required".into()))?;
        if max_retry_count < -1 {
            return Err(err("maxRetryCount must be -1 (forever) or at least 0".into()));
        }
        let interval = |key: &str| -> Result<Duration, SimError> {
            let raw = v[key]
                .as_str()
                .ok_or_else(|| err(format!("{key} is required (hh:mm:ss)")))?;
            parse_timespan(raw).map_err(|p| err(format!("{key}: {p}")))
        };
        let strategy = match v["strategy"].as_str().unwrap_or_default() {
            s if s.eq_ignore_ascii_case("fixedDelay") => RetryStrategy::FixedDelay {
                delay: interval("delayInterval")?,
            },
            s if s.eq_ignore_ascii_case("exponentialBackoff") => {
                let minimum = interval("minimumInterval")?;
                let maximum = interval("maximumInterval")?;
                if minimum > maximum {
                    return Err(err("minimumInterval must not be greater than maximumInterval".into()));
                }
                RetryStrategy::ExponentialBackoff { minimum, maximum }
            }
            other => {
                return Err(err(format!(
                    "strategy {other:?} is not fixedDelay or exponentialBackoff"
                )))
            }
        };
        Ok(Self {
            strategy,
            max_retry_count,
        })
    }

    /// Whether another attempt follows after `retries_done` retries have failed.
    pub fn allows_retry(&self, retries_done: u32) -> bool {
        self.max_retry_count == -1 || i64::from(retries_done) < self.max_retry_count
    }

    /// A fresh delay sequence for one batch (the host keeps it in the RetryContext).
    pub fn backoff(&self, seed: u64) -> Backoff {
        Backoff {
            strategy: self.strategy,
            current: Duration::ZERO,
            exponent: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }
}

impl std::fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = if self.max_retry_count == -1 {
            "forever".to_string()
        } else {
            format!("up to {} times", self.max_retry_count)
        };
        match self.strategy {
            RetryStrategy::FixedDelay { delay } => write!(f, "fixedDelay {delay:?}, {count}"),
            RetryStrategy::ExponentialBackoff { minimum, maximum } => {
                write!(f, "exponentialBackoff {minimum:?}..{maximum:?}, {count}")
            }
        }
    }
}

/// The delays between attempts of one batch, as the WebJobs SDK computes them
/// (`RandomizedExponentialBackoffStrategy`: minimum, then minimum + ~2^(n-1) x minimum
/// with ±20 % jitter, capped at the maximum).
#[derive(Debug, Clone)]
pub struct Backoff {
    strategy: RetryStrategy,
    current: Duration,
    exponent: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        match self.strategy {
            RetryStrategy::FixedDelay { delay } => delay,
            RetryStrategy::ExponentialBackoff { minimum, maximum } => {
                if self.current != maximum {
                    let mut interval = minimum;
                    if self.exponent > 0 {
                        let factor = 0.8 + 0.4 * self.rng.f64();
                        let grow = 2f64.powi(self.exponent.min(62) as i32 - 1);
                        interval += Duration::from_secs_f64((factor * grow * minimum.as_secs_f64()).min(1e9));
                    }
                    if interval < maximum {
                        self.current = interval;
                        self.exponent += 1;
                    } else {
                        self.current = maximum;
                    }
                }
                self.current
            }
        }
    }
}

/// The Event Hub trigger function (`cardinality: many`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestFunction {
    /// Folder name = the path the host POSTs to.
    pub name: String,
    /// The binding `name`: the key under `Data`.
    pub binding: String,
    pub data_type: WireDataType,
    pub retry: Option<RetryPolicy>,
    /// `eventHubName` and `consumerGroup` as written (may hold `%SETTING%`).
    pub eventhub_name: Option<String>,
    pub consumer_group: Option<String>,
}

impl Default for IngestFunction {
    fn default() -> Self {
        Self {
            name: "ingest".into(),
            binding: "events".into(),
            data_type: WireDataType::String,
            retry: None,
            eventhub_name: None,
            consumer_group: None,
        }
    }
}

/// The timer trigger function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerFunction {
    pub name: String,
    pub binding: String,
    /// NCRONTAB as written (may be `%SETTING%`).
    pub schedule: String,
    pub use_monitor: bool,
}

/// Everything the simulator takes from the app files.
#[derive(Debug, Clone)]
pub struct AppFiles {
    /// Where they were read from (`None`: the bundled copies).
    pub root: Option<PathBuf>,
    pub host: HostJson,
    pub ingest: IngestFunction,
    pub seal: Option<TimerFunction>,
}

impl AppFiles {
    /// The repository's host.json and function.json files as built into this binary.
    pub fn bundled() -> Result<Self, SimError> {
        let host = HostJson::parse(BUNDLED_HOST_JSON, "bundled host.json")?;
        let ingest = parse_function(
            "ingest",
            BUNDLED_INGEST_FUNCTION,
            "bundled functions/ingest/function.json",
        )?;
        let seal = parse_function("seal", BUNDLED_SEAL_FUNCTION, "bundled functions/seal/function.json")?;
        Ok(Self {
            root: None,
            host,
            ingest: ingest.0.unwrap_or_default(),
            seal: seal.1,
        })
    }

    /// Reads an app folder: `host.json` (optional: host defaults without it) and the
    /// functions in `functions/<name>/function.json` (repository layout) or
    /// `<name>/function.json` (deployed layout). `host_json` overrides the host.json path.
    pub fn load(root: &Path, host_json: Option<&Path>) -> Result<Self, SimError> {
        let host_path = host_json
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.join("host.json"));
        let host = if host_path.is_file() {
            let text = std::fs::read_to_string(&host_path)
                .map_err(|e| SimError::app(&host_path.display().to_string(), format!("cannot read: {e}")))?;
            HostJson::parse(&text, &host_path.display().to_string())?
        } else if host_json.is_some() {
            return Err(SimError::app(&host_path.display().to_string(), "not found"));
        } else {
            HostJson::default()
        };
        let mut ingest = None;
        let mut seal = None;
        for dir in [root.join("functions"), root.to_path_buf()] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut names: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("function.json").is_file())
                .collect();
            names.sort();
            for folder in names {
                let name = folder
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let file = folder.join("function.json");
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| SimError::app(&file.display().to_string(), format!("cannot read: {e}")))?;
                let (i, s) = parse_function(&name, &text, &file.display().to_string())?;
                if ingest.is_none() {
                    ingest = i;
                }
                if seal.is_none() {
                    seal = s;
                }
            }
            if ingest.is_some() {
                break;
            }
        }
        Ok(Self {
            root: Some(root.to_path_buf()),
            host,
            ingest: ingest.unwrap_or_default(),
            seal,
        })
    }
}

/// Reads one function.json: an Event Hub trigger, a timer trigger, or neither.
fn parse_function(
    name: &str,
    text: &str,
    origin: &str,
) -> Result<(Option<IngestFunction>, Option<TimerFunction>), SimError> {
    let v: Value = serde_json::from_str(text).map_err(|e| SimError::app(origin, format!("not valid JSON: {e}")))?;
    let bindings = v["bindings"].as_array().cloned().unwrap_or_default();
    let trigger = |kind: &str| {
        bindings
            .iter()
            .find(|b| b["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(kind)))
            .cloned()
    };
    let text_of = |b: &Value, key: &str| b[key].as_str().map(str::to_string);
    let retry = match &v["retry"] {
        Value::Null => None,
        r => Some(RetryPolicy::from_json(r, origin)?),
    };
    if let Some(b) = trigger("eventHubTrigger") {
        let data_type = match b["dataType"].as_str() {
            Some(t) if t.eq_ignore_ascii_case("binary") => WireDataType::Binary,
            _ => WireDataType::String,
        };
        return Ok((
            Some(IngestFunction {
                name: name.to_string(),
                binding: text_of(&b, "name").unwrap_or_else(|| "events".into()),
                data_type,
                retry,
                eventhub_name: text_of(&b, "eventHubName"),
                consumer_group: text_of(&b, "consumerGroup"),
            }),
            None,
        ));
    }
    if let Some(b) = trigger("timerTrigger") {
        let schedule = text_of(&b, "schedule").ok_or_else(|| SimError::app(origin, "timerTrigger has no schedule"))?;
        return Ok((
            None,
            Some(TimerFunction {
                name: name.to_string(),
                binding: text_of(&b, "name").unwrap_or_else(|| "timer".into()),
                schedule,
                use_monitor: b["useMonitor"].as_bool().unwrap_or(true),
            }),
        ));
    }
    Ok((None, None))
}

/// The `Values` of a local.settings.json (non-string values are written as JSON).
pub fn load_local_settings(path: &Path) -> Result<BTreeMap<String, String>, SimError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SimError::app(&origin, format!("cannot read: {e}")))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| SimError::app(&origin, format!("not valid JSON: {e}")))?;
    let values = v
        .get("Values")
        .and_then(Value::as_object)
        .ok_or_else(|| SimError::app(&origin, "has no \"Values\" object"))?;
    Ok(values
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect())
}

/// Expands `%SETTING%` references as the host does for binding expressions.
pub fn resolve_setting(text: &str, settings: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('%').ok_or_else(|| format!("unclosed '%' in {text:?}"))?;
        let key = &after[..end];
        let value = settings
            .get(key)
            .ok_or_else(|| format!("{text:?} names the app setting {key}, which is not set"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses a .NET TimeSpan as written in host.json/function.json: `hh:mm:ss`,
/// `d.hh:mm:ss` or `hh:mm:ss.fffffff`.
pub fn parse_timespan(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a TimeSpan (hh:mm:ss)");
    let t = text.trim();
    let (days, clock) = match t.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => (d.parse::<u64>().map_err(|_| bad())?, rest),
        _ => (0, t),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let h: u64 = parts[0].parse().map_err(|_| bad())?;
    let m: u64 = parts[1].parse().map_err(|_| bad())?;
    let s: f64 = parts[2].parse().map_err(|_| bad())?;
    if m > 59 || !(0.0..60.0).contains(&s) {
        return Err(bad());
    }
    Ok(Duration::from_secs(days * 86_400 + h * 3600 + m * 60) + Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_files_are_the_repository_ones() {
        let app = AppFiles::bundled().unwrap();
        assert_eq!(app.ingest.name, "ingest");
        assert_eq!(app.ingest.binding, "events");
        assert_eq!(app.ingest.data_type, WireDataType::String);
        assert!(
            app.ingest.retry.is_some(),
            "the ingest function must keep a retry policy"
        );
        let seal = app.seal.unwrap();
        assert_eq!(seal.name, "seal");
        assert_eq!(seal.schedule, "%HUB2LAKE_SEAL_SCHEDULE%");
        assert!(app.host.max_event_batch_size >= 1);
    }

    #[test]
    fn repository_folder_loads_like_the_host() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let app = AppFiles::load(root, None).unwrap();
        assert_eq!(app.ingest.name, "ingest");
        assert_eq!(app.seal.map(|s| s.name).as_deref(), Some("seal"));
        let empty = tempfile::tempdir().unwrap();
        let app = AppFiles::load(empty.path(), None).unwrap();
        assert_eq!(app.host, HostJson::default());
        assert_eq!(app.ingest.retry, None);
        assert!(app.seal.is_none());
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("00:00:05").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_timespan("00:05:00").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_timespan("1.02:00:00").unwrap(), Duration::from_secs(26 * 3600));
        assert_eq!(parse_timespan("00:00:00.5").unwrap(), Duration::from_millis(500));
        assert!(parse_timespan("5s").is_err());
        assert!(parse_timespan("00:61:00").is_err());
    }

    #[test]
    fn retry_policies_parse_and_back_off_like_the_sdk() {
        let v: Value = serde_json::json!({"strategy":"exponentialBackoff","maxRetryCount":5,"minimumInterval":"00:00:05","maximumInterval":"00:00:30"});
        let p = RetryPolicy::from_json(&v, "f").unwrap();
        assert!(p.allows_retry(4) && !p.allows_retry(5));
        let mut b = p.backoff(1);
        let delays: Vec<f64> = (0..6).map(|_| b.next_delay().as_secs_f64()).collect();
        assert_eq!(delays[0], 5.0);
        assert!((9.0..=11.0).contains(&delays[1]), "{delays:?}");
        assert!(delays.windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
        assert_eq!(delays[5], 30.0);
        let v: Value = serde_json::json!({"strategy":"fixedDelay","maxRetryCount":-1,"delayInterval":"00:00:10"});
        let p = RetryPolicy::from_json(&v, "f").unwrap();
        assert!(p.allows_retry(1_000_000));
        assert_eq!(p.backoff(0).next_delay(), Duration::from_secs(10));
        let v: Value = serde_json::json!({"strategy":"linear","maxRetryCount":1});
        assert!(RetryPolicy::from_json(&v, "f")
            .unwrap_err()
            .to_string()
            .contains("linear"));
    }

    #[test]
    fn settings_references_resolve() {
        let mut s = BTreeMap::new();
        s.insert("A".to_string(), "x".to_string());
        assert_eq!(resolve_setting("%A%", &s).unwrap(), "x");
        assert_eq!(resolve_setting("pre-%A%-post", &s).unwrap(), "pre-x-post");
        assert!(resolve_setting("%B%", &s).unwrap_err().contains("B"));
    }
}
