//! An Azurite blob service (`azurite-blob`) owned by a test.
//!
//! See the crate documentation for usage. Process model:
//!
//! * Azurite runs under a tiny `sh` supervisor in its own process group. The
//!   supervisor forwards `SIGTERM` to Azurite (graceful stop, which flushes
//!   Azurite's metadata database to `--location`) and watches its own stdin, a
//!   pipe held by this process: if the test process dies without running
//!   destructors (`SIGKILL`, `abort`, Ctrl-C), the pipe closes and the
//!   supervisor kills Azurite, so no `node` process is left behind.
//! * [`Drop`] kills the whole process group with `SIGKILL` and reaps it; it
//!   also runs while a panicking test unwinds.
//! * Data lives in a temporary `--location` directory owned by the
//!   [`Azurite`] value (removed on drop), so [`Azurite::restart`] brings the
//!   same data back on the same port.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use object_store::azure::MicrosoftAzureBuilder;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::http1;
use crate::shared_key;
use crate::{Error, Result};

/// The well-known development storage account served by Azurite.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The well-known key of [`DEV_ACCOUNT`] (public, documented by Microsoft); the
/// same value as Azurite's `EMULATOR_ACCOUNT_KEY` and object_store's built-in
/// emulator key. Note the tail `...K1SZFPTOtr/KBHBeksoGMGw==`.
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Environment variable that overrides the path of the `azurite-blob` executable.
pub const AZURITE_BIN_ENV: &str = "HUB2LAKE_AZURITE_BIN";
/// `x-ms-version` sent by this crate's own requests.
pub const X_MS_VERSION: &str = "2023-11-03";

/// Default time allowed for Azurite to start answering HTTP.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Time allowed for a graceful stop before the process group is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Line Azurite prints on stdout once its blob server listens.
const LISTENING_MARKER: &str = "successfully listens on";
/// Bound on the captured stdout/stderr text of one Azurite process.
const MAX_CAPTURE: usize = 64 * 1024;

/// Supervisor run as `sh -c SUPERVISOR azurite-supervisor <bin> <args>...`.
/// fd 3 keeps the supervisor's stdin (a pipe from the test process) for the
/// watcher; Azurite itself gets /dev/null.
const SUPERVISOR: &str = r#"
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
echo "azurite-supervisor: child=$child"
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
( while read -r _line; do :; done; kill -KILL "$child" 2>/dev/null ) <&3 >/dev/null 2>&1 &
exec 3<&-
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
exit "$status"
"#;

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

/// The `azurite-blob` executable to run: `$HUB2LAKE_AZURITE_BIN` if set,
/// else `<workspace root>/node_modules/.bin/azurite-blob` (installed by `npm ci`).
pub fn default_azurite_bin() -> PathBuf {
    match std::env::var_os(AZURITE_BIN_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("node_modules/.bin/azurite-blob"),
    }
}

/// Environment for a process (the hub2lake handler) that builds its store with
/// `MicrosoftAzureBuilder::from_env()` + `with_url(lake_url)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreEnv {
    /// `AZURE_STORAGE_USE_EMULATOR`, `AZURITE_BLOB_STORAGE_URL`,
    /// `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`.
    pub vars: Vec<(String, String)>,
    /// `az://<container>`.
    pub lake_url: String,
}

impl ObjectStoreEnv {
    /// Value of one variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Environment pointing object_store's emulator mode at `base_url`
/// (`http://127.0.0.1:<port>`, Azurite's or a [`crate::fault_proxy::FaultProxy`]'s).
///
/// Note: object_store reads `AZURITE_BLOB_STORAGE_URL` with `std::env::var`
/// inside `build()`, so these variables are meant for a *child process*; in
/// process, prefer [`object_store_builder`].
pub fn object_store_env(base_url: &str, container: &str) -> ObjectStoreEnv {
    let pairs = [
        ("AZURE_STORAGE_USE_EMULATOR", "true".to_string()),
        ("AZURITE_BLOB_STORAGE_URL", base_url.trim_end_matches('/').to_string()),
        ("AZURE_STORAGE_ACCOUNT_NAME", DEV_ACCOUNT.to_string()),
        ("AZURE_STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY.to_string()),
    ];
    ObjectStoreEnv {
        vars: pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        lake_url: format!("az://{container}"),
    }
}

/// An object_store builder for the development account behind `base_url`
/// (`http://127.0.0.1:<port>`), using an explicit endpoint rather than
/// emulator mode, so it needs no process environment and several Azurites on
/// different ports can be used from one test process.
///
/// Equivalent configuration keys: `AZURE_STORAGE_ENDPOINT=<base_url>/devstoreaccount1`,
/// `AZURE_ALLOW_HTTP=true`, `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`.
pub fn object_store_builder(base_url: &str, container: &str) -> MicrosoftAzureBuilder {
    MicrosoftAzureBuilder::new()
        .with_endpoint(format!("{}/{DEV_ACCOUNT}", base_url.trim_end_matches('/')))
        .with_allow_http(true)
        .with_account(DEV_ACCOUNT)
        .with_access_key(DEV_ACCOUNT_KEY)
        .with_container_name(container)
}

/// Binds `127.0.0.1:0`, reads the port the kernel chose and releases it.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::new(format!("cannot bind 127.0.0.1:0 to find a free port: {e}")))?;
    let port = l
        .local_addr()
        .map_err(|e| Error::new(format!("local_addr: {e}")))?
        .port();
    Ok(port)
}

/// Options for starting Azurite. Obtain with [`Azurite::builder`].
#[derive(Debug, Clone)]
pub struct AzuriteBuilder {
    bin: Option<PathBuf>,
    startup_timeout: Duration,
    extra_args: Vec<String>,
}

impl AzuriteBuilder {
    /// Run this executable instead of [`default_azurite_bin`].
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// How long to wait for Azurite to answer HTTP (default 20 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// An extra command-line argument, e.g. `--blobKeepAliveTimeout`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Starts Azurite on a free port and waits until it serves HTTP.
    pub async fn start(self) -> Result<Azurite> {
        let bin = self.bin.unwrap_or_else(default_azurite_bin);
        let location = tempfile::Builder::new()
            .prefix("hub2lake-azurite-")
            .tempdir()
            .map_err(|e| Error::new(format!("cannot create Azurite's --location dir: {e}")))?;
        let mut az = Azurite {
            bin,
            extra_args: self.extra_args,
            startup_timeout: self.startup_timeout,
            location,
            port: 0,
            proc: None,
            last_out: None,
        };
        let mut last = None;
        for _ in 0..5 {
            az.port = free_port()?;
            match az.spawn_ready().await {
                Ok(()) => return Ok(az),
                Err(SpawnError::AddrInUse(e)) => last = Some(e),
                Err(SpawnError::Fatal(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new("could not start Azurite")))
    }
}

/// A running (or stopped) Azurite blob service. Dropping it kills Azurite and
/// removes its data directory.
#[derive(Debug)]
pub struct Azurite {
    bin: PathBuf,
    extra_args: Vec<String>,
    startup_timeout: Duration,
    location: tempfile::TempDir,
    port: u16,
    proc: Option<Proc>,
    /// Output of the current or most recent process.
    last_out: Option<Arc<Captured>>,
}

#[derive(Debug)]
struct Proc {
    child: Child,
    /// Held open so the supervisor's watcher does not kill Azurite.
    stdin: Option<ChildStdin>,
    pgid: libc::pid_t,
    out: Arc<Captured>,
}

/// Azurite's own pid, as announced by the supervisor on stdout.
fn announced_child(out: &Captured) -> Option<libc::pid_t> {
    let text = out.stdout.lock().ok()?.clone();
    let rest = text.split("azurite-supervisor: child=").nth(1)?;
    rest.lines().next()?.trim().parse().ok()
}

/// Has `pid` released its sockets? True once it is gone, or a zombie whose
/// other threads have finished exiting too (a multi-threaded process's files
/// are closed only when its last thread exits; the leader can be a zombie
/// before that).
fn process_gone(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Format: "pid (comm) STATE ..."; comm may contain spaces/parens.
    let zombie = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_none_or(|state| state == 'Z' || state == 'X');
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    zombie && threads <= 1
}

#[derive(Debug, Default)]
struct Captured {
    stdout: Mutex<String>,
    stderr: Mutex<String>,
}

impl Captured {
    fn text(&self) -> String {
        let get = |m: &Mutex<String>| m.lock().map(|s| s.clone()).unwrap_or_default();
        let (o, e) = (get(&self.stdout), get(&self.stderr));
        format!("--- azurite stdout ---\n{o}--- azurite stderr ---\n{e}")
    }
}

enum SpawnError {
    AddrInUse(Error),
    Fatal(Error),
}

fn spawn_reader(mut pipe: impl Read + Send + 'static, out: Arc<Captured>, stderr: bool) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let slot = if stderr { &out.stderr } else { &out.stdout };
                    if let Ok(mut s) = slot.lock() {
                        if s.len() < MAX_CAPTURE {
                            s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                }
            }
        }
    });
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: plain syscall; a negative pid addresses the process group we
        // created for Azurite (its leader is our direct child).
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

fn signal_pid(pid: libc::pid_t, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: plain syscall on our own (not yet reaped) child.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Proc {
    /// SIGKILL the whole group and reap the supervisor.
    /// Returns once Azurite itself has exited (its sockets are closed), so
    /// the port refuses connections and can be bound again.
    fn kill_now(mut self) {
        let azurite_pid = announced_child(&self.out);
        signal_group(self.pgid, libc::SIGKILL);
        let _ = self.child.wait();
        drop(self.stdin.take());
        if let Some(pid) = azurite_pid {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !process_gone(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Azurite {
    /// Options for starting Azurite.
    pub fn builder() -> AzuriteBuilder {
        AzuriteBuilder {
            bin: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            extra_args: Vec::new(),
        }
    }

    /// Starts Azurite with default options (see [`AzuriteBuilder::start`]).
    pub async fn start() -> Result<Azurite> {
        Self::builder().start().await
    }

    /// The TCP port Azurite listens on (kept across [`Azurite::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// `http://127.0.0.1:<port>` (the value for `AZURITE_BLOB_STORAGE_URL`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1` (path-style account endpoint).
    pub fn blob_endpoint(&self) -> String {
        format!("{}/{DEV_ACCOUNT}", self.base_url())
    }

    /// Azurite's `--location` directory.
    pub fn location(&self) -> &Path {
        self.location.path()
    }

    /// Whether the Azurite process is (still) running.
    pub fn is_running(&mut self) -> bool {
        match self.proc.as_mut() {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Captured stdout and stderr of the current (or last) Azurite process.
    pub fn output(&self) -> String {
        self.last_out.as_ref().map(|o| o.text()).unwrap_or_default()
    }

    /// Environment for a child process using object_store's emulator mode.
    /// See [`object_store_env`].
    pub fn env_for_object_store(&self, container: &str) -> ObjectStoreEnv {
        object_store_env(&self.base_url(), container)
    }

    /// An object_store builder for `container` on this Azurite.
    /// See [`object_store_builder`].
    pub fn object_store_builder(&self, container: &str) -> MicrosoftAzureBuilder {
        object_store_builder(&self.base_url(), container)
    }

    /// Creates a container with a Shared-Key-signed `PUT ?restype=container`.
    /// Returns `true` if it was created, `false` if it already existed.
    pub async fn create_container(&self, name: &str) -> Result<bool> {
        create_container_at(self.addr(), name).await
    }

    /// Stops Azurite gracefully (SIGTERM, so its metadata is flushed to disk),
    /// killing it after 10 s. Connections are refused until [`Azurite::restart`].
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut p) = self.proc.take() else {
            return Ok(());
        };
        signal_pid(p.pgid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => break,
            }
        }
        // Also removes the supervisor's watcher subshell.
        p.kill_now();
        Ok(())
    }

    /// Kills Azurite at once with SIGKILL (a crash). Unlike [`Azurite::stop`],
    /// metadata written in the last ~5 s (Azurite's autosave interval) may be
    /// lost on restart.
    pub fn kill(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill_now();
        }
    }

    /// Starts Azurite again on the same port with the same data directory
    /// (stopping it first if it is running).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_ready().await {
                Ok(()) => return Ok(()),
                Err(SpawnError::AddrInUse(e)) => {
                    if Instant::now() > deadline {
                        return Err(Error::new(format!(
                            "port {} stayed in use after stopping Azurite: {e}",
                            self.port
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(SpawnError::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn spawn_ready(&mut self) -> std::result::Result<(), SpawnError> {
        if !self.bin.exists() {
            return Err(SpawnError::Fatal(Error::new(format!(
                "Azurite executable not found at {}. Run `npm ci` in the workspace root \
                 ({}) to install the pinned Azurite, or set {AZURITE_BIN_ENV} to an \
                 `azurite-blob` executable.",
                self.bin.display(),
                workspace_root().display()
            ))));
        }
        let port = self.port.to_string();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SUPERVISOR)
            .arg("azurite-supervisor")
            .arg(&self.bin)
            .arg("--disableTelemetry")
            .arg("--location")
            .arg(self.location.path())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port])
            .args(["--skipApiVersionCheck", "--loose", "--silent"])
            .args(&self.extra_args)
            .current_dir(self.location.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            SpawnError::Fatal(Error::new(format!(
                "cannot spawn `sh` to run {}: {e}",
                self.bin.display()
            )))
        })?;
        let out = Arc::new(Captured::default());
        if let Some(s) = child.stdout.take() {
            spawn_reader(s, out.clone(), false);
        }
        if let Some(s) = child.stderr.take() {
            spawn_reader(s, out.clone(), true);
        }
        let stdin = child.stdin.take();
        self.last_out = Some(out.clone());
        let pgid = libc::pid_t::try_from(child.id()).unwrap_or(0);
        let mut proc = Proc {
            child,
            stdin,
            pgid,
            out,
        };

        let started = Instant::now();
        let marker = format!("{LISTENING_MARKER} http://127.0.0.1:{}", self.port);
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                // Give the reader threads a moment to drain the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let text = proc.out.text();
                proc.kill_now();
                let msg = format!(
                    "Azurite ({}) exited with {status} before serving on port {}\n{text}",
                    self.bin.display(),
                    self.port
                );
                return Err(if text.contains("EADDRINUSE") {
                    SpawnError::AddrInUse(Error::new(msg))
                } else {
                    SpawnError::Fatal(Error::new(msg))
                });
            }
            let listening = proc.out.stdout.lock().map(|s| s.contains(&marker)).unwrap_or(false);
            if listening && probe(self.addr()).await {
                self.proc = Some(proc);
                return Ok(());
            }
            if started.elapsed() > self.startup_timeout {
                let text = proc.out.text();
                proc.kill_now();
                return Err(SpawnError::Fatal(Error::new(format!(
                    "Azurite ({}) did not serve HTTP on port {} within {:?}\n{text}",
                    self.bin.display(),
                    self.port,
                    self.startup_timeout
                ))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill_now();
        }
    }
}

/// Does an Azurite blob service answer HTTP at `addr`?
async fn probe(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /{DEV_ACCOUNT}?comp=list HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut r = BufReader::new(s);
        let head = http1::read_head(&mut r).await.ok()??;
        head.status().ok()?;
        Some(head.header("server").is_some_and(|v| v.starts_with("Azurite")))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}

fn valid_container_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
}

/// Creates container `name` in the development account of the Azurite (or
/// proxy) at `addr`. `Ok(true)`: created (201); `Ok(false)`: existed (409).
pub async fn create_container_at(addr: SocketAddr, name: &str) -> Result<bool> {
    if !valid_container_name(name) {
        return Err(Error::new(format!(
            "invalid container name {name:?}: use 3-63 lowercase letters, digits and single hyphens"
        )));
    }
    let path = format!("/{DEV_ACCOUNT}/{name}");
    let date = httpdate::fmt_http_date(SystemTime::now());
    let host = addr.to_string();
    let headers = [
        ("Host", host.as_str()),
        ("x-ms-date", date.as_str()),
        ("x-ms-version", X_MS_VERSION),
        ("Content-Length", "0"),
    ];
    let auth = shared_key::authorization(
        DEV_ACCOUNT,
        DEV_ACCOUNT_KEY,
        "PUT",
        &path,
        &[("restype", "container")],
        &headers,
    )
    .map_err(Error::new)?;
    let mut req = format!("PUT {path}?restype=container HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Authorization: {auth}\r\nConnection: close\r\n\r\n"));

    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(req.as_bytes()).await?;
        let mut r = BufReader::new(s);
        let head = http1::read_head(&mut r)
            .await?
            .ok_or_else(|| http1::invalid("connection closed without a response"))?;
        let kind = head.response_body("PUT")?;
        let raw = http1::read_body_raw(&mut r, kind, 1024 * 1024).await?;
        let body = if kind == http1::BodyKind::Chunked {
            http1::dechunk(&raw)?
        } else {
            raw
        };
        Ok::<_, std::io::Error>((head, body))
    };
    let (head, body) = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| Error::new(format!("create container {name}: timed out talking to {addr}")))?
        .map_err(|e| Error::new(format!("create container {name} at {addr}: {e}")))?;
    match head.status().map_err(|e| Error::new(e.to_string()))? {
        201 => Ok(true),
        409 => Ok(false),
        other => Err(Error::new(format!(
            "create container {name}: HTTP {other} ({})\n{}",
            head.start_line,
            String::from_utf8_lossy(&body)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names() {
        assert!(valid_container_name("lake"));
        assert!(valid_container_name("a-1-b"));
        assert!(!valid_container_name("ab"));
        assert!(!valid_container_name("Lake"));
        assert!(!valid_container_name("-lake"));
        assert!(!valid_container_name("la--ke"));
        assert!(!valid_container_name("lake_1"));
    }

    #[test]
    fn env_pairs() {
        let env = object_store_env("http://127.0.0.1:1234/", "lake");
        assert_eq!(env.lake_url, "az://lake");
        assert_eq!(env.get("AZURE_STORAGE_USE_EMULATOR"), Some("true"));
        assert_eq!(env.get("AZURITE_BLOB_STORAGE_URL"), Some("http://127.0.0.1:1234"));
        assert_eq!(env.get("AZURE_STORAGE_ACCOUNT_NAME"), Some(DEV_ACCOUNT));
        assert_eq!(env.get("AZURE_STORAGE_ACCOUNT_KEY"), Some(DEV_ACCOUNT_KEY));
    }

    #[test]
    fn default_bin_is_under_workspace_root() {
        if std::env::var_os(AZURITE_BIN_ENV).is_none() {
            let bin = default_azurite_bin();
            assert!(bin.ends_with("node_modules/.bin/azurite-blob"), "{bin:?}");
            assert!(workspace_root().join("Cargo.toml").exists());
        }
    }
}
