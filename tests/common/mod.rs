//! Shared test support: the real `handler` binary on a free port over a real socket.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use hub2lake_testkit::{free_port, handler_command, wait_until_listening};

/// A running handler process, killed on drop.
pub struct Handler {
    pub port: u16,
    pub lake: PathBuf,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Handler {
    /// Starts the handler on a fresh local lake with extra settings.
    pub fn start(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let mut h = Self::start_with_lake(&lake, extra);
        h._dir = Some(dir);
        h
    }

    pub fn start_with_lake(lake: &Path, extra: &[(&str, &str)]) -> Self {
        let mut h = Self::start_with_url(&format!("file://{}", lake.display()), extra);
        h.lake = lake.to_path_buf();
        h
    }

    /// Starts the handler on any lake URL (Azure lakes pass their credentials in `extra`).
    pub fn start_with_url(lake_url: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut cmd = handler_command(Path::new(env!("CARGO_BIN_EXE_handler")), port);
        cmd.env("HUB2LAKE_LAKE_URL", lake_url)
            .env("HUB2LAKE_LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn handler");
        if let Err(why) = wait_until_listening(port, &mut child, Duration::from_secs(20)) {
            let _ = child.kill();
            panic!("{why}");
        }
        Self {
            port,
            lake: PathBuf::new(),
            child,
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// POSTs a body the way the host does and returns (status, body).
    pub async fn post(&self, function: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let resp = reqwest::Client::new()
            .post(self.url(&format!("/{function}")))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-InvocationId", "00000000-0000-0000-0000-000000000001")
            .body(body)
            .send()
            .await
            .expect("request reaches the handler");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Stops the handler the way the Functions host does (SIGTERM) and waits for it.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid; it has not been waited for yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.child.wait().expect("wait for the handler")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(self.url(path)).await.expect("request reaches the handler");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fixture's bytes, compacted as the real host sends them.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value.to_string()
}

/// Every file below `root` as (relative path, bytes), sorted.
pub fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            out.push((rel, std::fs::read(&p).unwrap()));
        }
    }
}

/// Data objects (not receipts, not dead letters) with their decoded JSON lines.
pub fn data_records(root: &Path) -> Vec<(String, Vec<serde_json::Value>)> {
    files(root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("_receipts/") && !p.starts_with("_deadletter/"))
        .filter(|(p, _)| p.ends_with(".jsonl.gz") || p.ends_with(".jsonl"))
        .map(|(p, bytes)| (p, json_lines(&bytes)))
        .collect()
}

/// Decodes a (possibly gzip) JSON Lines object, asserting every line parses.
pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    // gzip, zstd or plain, as the first bytes say.
    let decoded = hub2lake::lake::codec::decode_object(bytes).expect("the object decompresses");
    let text = String::from_utf8(decoded).expect("JSON Lines are UTF-8");
    assert!(text.is_empty() || text.ends_with('\n'), "JSON Lines end with a newline");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l}")))
        .collect()
}
