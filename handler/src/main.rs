//! `handler`: the executable the Functions host starts (host.json `defaultExecutablePath`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match hub2lake::config::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hub2lake handler: refusing to start: {e}");
            return ExitCode::from(2);
        }
    };
    hub2lake::telemetry::init(settings.log_format);
    match hub2lake::server::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("hub2lake handler stopped: {e:#}");
            eprintln!("hub2lake handler: {e:#}");
            ExitCode::from(1)
        }
    }
}
