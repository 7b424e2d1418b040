//! Logging: JSON lines under the Functions host (App Insights / log streams parse
//! them), readable text on a terminal.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// An error with its sources, `outer: inner: …`, for one log line or message. A
/// source whose text the message already holds (many errors repeat their cause in
/// their own message) is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct E {
        text: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(text: &'static str, source: Option<E>) -> E {
        E {
            text,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn chains_sources_without_repeating_what_the_message_says() {
        let inner = e("connection reset", None);
        let middle = e("request failed: connection reset", Some(inner));
        let outer = e("put shop/x failed", Some(middle));
        assert_eq!(
            error_chain(&outer),
            "put shop/x failed: request failed: connection reset"
        );
        assert_eq!(error_chain(&e("alone", None)), "alone");
    }
}
