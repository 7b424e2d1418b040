//! The real `handler` binary started as the Functions host starts a custom handler (a
//! clean environment, the port in `FUNCTIONS_CUSTOMHANDLER_PORT`), for the tests of
//! both packages: each passes its own path to the binary (`CARGO_BIN_EXE_handler` in
//! the handler package, [`crate::handler_exe`] elsewhere).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The command that starts the handler at `exe` on `port`: no inherited environment
/// but `PATH`, no stdin. Add settings, output and working directory, then spawn it.
pub fn handler_command(exe: &Path, port: u16) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdin(Stdio::null());
    cmd
}

/// Waits until the handler accepts connections on `port` (it binds once it is ready to
/// serve), checking every 25 ms. `Err` says why not: the process ended first, or
/// `limit` passed. Blocking: async tests call it from `spawn_blocking`.
pub fn wait_until_listening(port: u16, child: &mut Child, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the handler exited ({status}) before it was ready"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the handler is not ready on port {port} after {} s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
