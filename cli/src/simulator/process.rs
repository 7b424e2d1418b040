//! The handler process, started the way the Functions host starts a custom handler: a
//! free port in `FUNCTIONS_CUSTOMHANDLER_PORT`, the app settings as environment, the
//! app root as working directory, then `GET /` every 25 ms until anything answers.
//! The simulator and the benchmark both start the handler here.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use super::client;
use super::SimError;

/// Lines of handler output kept for error messages.
const TAIL_LINES: usize = 40;

/// How to start the handler.
#[derive(Debug, Clone)]
pub struct Launch {
    pub executable: PathBuf,
    pub app_root: PathBuf,
    /// App settings (become environment variables, as in Azure).
    pub settings: BTreeMap<String, String>,
    /// Pass this process's environment on too (the host does).
    pub inherit_env: bool,
    /// The host's readiness budget (30 s in the host's code).
    pub ready_timeout: Duration,
    /// How often `GET /` is tried until it answers (the host: [`HOST_PROBE_INTERVAL`]).
    pub probe_interval: Duration,
    /// Append the handler's output to this file.
    pub log_file: Option<PathBuf>,
    /// Also send every line of the handler's output here (the benchmark reads its
    /// timings from them). The channel closes when the process's output does.
    pub lines: Option<mpsc::UnboundedSender<String>>,
}

/// How often the Functions host tries `GET /` while a custom handler starts.
pub const HOST_PROBE_INTERVAL: Duration = Duration::from_millis(25);

/// A running handler. Dropping it kills the process.
#[derive(Debug)]
pub struct HandlerProcess {
    pub port: u16,
    pub pid: Option<u32>,
    pub generation: u32,
    pub ready_after: Duration,
    kill: watch::Sender<bool>,
    exit: watch::Receiver<Option<String>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl HandlerProcess {
    /// Starts the handler and waits until it answers `GET /`.
    pub async fn start(launch: &Launch, generation: u32) -> Result<Self, SimError> {
        let port = free_port().map_err(|e| SimError::Config(format!("cannot find a free local port: {e}")))?;
        let worker_id = guid();
        let mut cmd = Command::new(&launch.executable);
        if !launch.inherit_env {
            cmd.env_clear();
            if let Ok(path) = std::env::var("PATH") {
                cmd.env("PATH", path);
            }
        }
        cmd.envs(&launch.settings)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id)
            .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
            .env("FUNCTIONS_HTTPWORKER_ID", &worker_id)
            .env("FUNCTIONS_APP_ROOT_PATH", &launch.app_root)
            .current_dir(&launch.app_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| SimError::Spawn {
            path: launch.executable.clone(),
            reason: e.to_string(),
        })?;
        let pid = child.id();
        tracing::info!(generation, port, pid, "handler started");

        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let log = match &launch.log_file {
            Some(p) => Some(Arc::new(Mutex::new(open_log(p)?))),
            None => None,
        };
        if let Some(out) = child.stdout.take() {
            let sinks = OutputSinks::new(&tail, &log, launch, generation);
            tokio::spawn(collect(out, sinks));
        }
        if let Some(err) = child.stderr.take() {
            let sinks = OutputSinks::new(&tail, &log, launch, generation);
            tokio::spawn(collect(err, sinks));
        }

        let (kill_tx, mut kill_rx) = watch::channel(false);
        let (exit_tx, exit_rx) = watch::channel(None);
        tokio::spawn(async move {
            let status: std::io::Result<ExitStatus> = tokio::select! {
                s = child.wait() => s,
                _ = async { let _ = kill_rx.wait_for(|k| *k).await; } => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let text = match status {
                Ok(s) => describe(s),
                Err(e) => format!("could not be waited for: {e}"),
            };
            let _ = exit_tx.send(Some(text));
        });

        let mut handler = Self {
            port,
            pid,
            generation,
            ready_after: Duration::ZERO,
            kill: kill_tx,
            exit: exit_rx,
            tail,
        };
        // On error the handler is dropped, which kills the process.
        handler.ready_after = handler.wait_ready(launch.ready_timeout, launch.probe_interval).await?;
        Ok(handler)
    }

    /// The host's readiness probe: `GET /` every `interval`; any HTTP answer means ready.
    async fn wait_ready(&self, budget: Duration, interval: Duration) -> Result<Duration, SimError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Err(SimError::ExitedBeforeReady {
                    status,
                    output: self.output_tail(),
                });
            }
            if client::get(self.port, "/", Duration::from_secs(2)).await.is_ok() {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= budget {
                self.kill();
                return Err(SimError::NotReady {
                    port: self.port,
                    budget,
                    output: self.output_tail(),
                });
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Sends SIGKILL (as a crash would); returns at once.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
    }

    /// Kills the process and waits until it is gone.
    pub async fn kill_and_wait(&self) {
        self.kill();
        let mut exit = self.exit.clone();
        let _ = exit.wait_for(Option::is_some).await.map(|_| ());
    }

    /// How the process ended, if it has.
    pub fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Waits up to `grace` for the process to end; `Some` if it has.
    pub async fn exited_within(&self, grace: Duration) -> Option<String> {
        let mut exit = self.exit.clone();
        let waited =
            tokio::time::timeout(grace, async { exit.wait_for(Option::is_some).await.map(|v| v.clone()) }).await;
        match waited {
            Ok(Ok(v)) => v,
            _ => self.exit_status(),
        }
    }

    /// Resolves when the process ends.
    pub async fn exited(&self) -> String {
        let mut exit = self.exit.clone();
        let status = exit.wait_for(Option::is_some).await.map(|v| v.clone());
        match status {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => "gone".into(),
        }
    }

    /// The last lines the handler printed.
    pub fn output_tail(&self) -> String {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where each line of the handler's output goes.
struct OutputSinks {
    tail: Arc<Mutex<VecDeque<String>>>,
    log: Option<Arc<Mutex<std::fs::File>>>,
    lines: Option<mpsc::UnboundedSender<String>>,
    generation: u32,
}

impl OutputSinks {
    fn new(
        tail: &Arc<Mutex<VecDeque<String>>>,
        log: &Option<Arc<Mutex<std::fs::File>>>,
        launch: &Launch,
        generation: u32,
    ) -> Self {
        Self {
            tail: tail.clone(),
            log: log.clone(),
            lines: launch.lines.clone(),
            generation,
        }
    }
}

async fn collect(stream: impl AsyncRead + Unpin, sinks: OutputSinks) {
    let OutputSinks {
        tail,
        log,
        lines: line_tx,
        generation,
    } = sinks;
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(log) = &log {
            if let Ok(mut f) = log.lock() {
                let _ = writeln!(f, "[handler #{generation}] {line}");
            }
        }
        if let Some(tx) = &line_tx {
            let _ = tx.send(line.clone());
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

fn open_log(path: &Path) -> Result<std::fs::File, SimError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| SimError::Config(format!("cannot open the handler log {}: {e}", path.display())))
}

/// A port nothing listens on right now (as the host picks one).
pub fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// A random GUID-shaped id (worker and invocation ids).
pub fn guid() -> String {
    let a = fastrand::u128(..);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                9 => " (SIGKILL)",
                15 => " (SIGTERM)",
                6 => " (SIGABRT)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("killed by signal {sig}{name}");
        }
    }
    match status.code() {
        Some(c) => format!("exited with code {c}"),
        None => "exited".into(),
    }
}
