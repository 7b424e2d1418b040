//! What the lake commands write to the terminal besides their report: logs on stderr,
//! progress only when a person watches, and `--json` output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget};

use crate::ops::OpsError;

/// Warnings and errors on stderr; `RUST_LOG` overrides.
pub(super) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Progress output only when a person watches: stdout is a terminal.
pub(super) fn draw_target() -> ProgressDrawTarget {
    if std::io::stdout().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

pub(super) fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target());
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub(super) fn print_json(value: &impl serde::Serialize) -> Result<(), OpsError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| OpsError::Internal(e.to_string()))?;
    println!("{text}");
    Ok(())
}
