//! `handler`: the executable the Functions host starts (host.json `defaultExecutablePath`).

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before the runtime starts its threads.
    let allocator = hub2lake::memory::tune_allocator();
    let settings = match hub2lake::config::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hub2lake handler: refusing to start: {e}");
            return ExitCode::from(2);
        }
    };
    hub2lake::telemetry::init(&settings);
    tracing::debug!(?allocator, "allocator settings");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hub2lake handler: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(hub2lake::server::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("hub2lake handler stopped: {e:#}");
            eprintln!("hub2lake handler: {e:#}");
            ExitCode::from(1)
        }
    };
    // Queued log records get HUB2LAKE_LOG_STREAM_FLUSH_MS (default 2 s), then we go.
    hub2lake::telemetry::flush();
    code
}
