//! Logging: JSON lines under the Functions host (App Insights / log streams parse
//! them), readable text on a terminal.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Whether the Functions host started this process (it sets these variables).
pub fn under_functions_host() -> bool {
    std::env::var_os("FUNCTIONS_CUSTOMHANDLER_WORKER_ID").is_some() || std::env::var_os("WEBSITE_SITE_NAME").is_some()
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => under_functions_host(),
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}
