//! The real `handler` executable, started by the test with its output in a file (so a
//! panic is seen), driven with host-shaped requests over loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

use hub2lake_testkit::{free_port, handler_command, wait_until_listening};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hub2lake::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition, WireRetry};

/// A handler process. Killed on drop.
pub struct HandlerProc {
    pub port: u16,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    child: Option<Child>,
    client: reqwest::Client,
}

impl HandlerProc {
    /// Starts the handler with these settings (plus port, text logs at `info`), its
    /// output appended to `log`, and waits until `GET /` answers.
    pub async fn start(env: &[(&str, &str)], log: &Path, cwd: &Path) -> Self {
        let mut h = Self {
            port: 0,
            log: log.to_path_buf(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cwd: cwd.to_path_buf(),
            child: None,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        };
        h.spawn().await;
        h
    }

    async fn spawn(&mut self) {
        self.port = free_port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = handler_command(&hub2lake_testkit::handler_exe(), self.port);
        cmd.env("HUB2LAKE_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .current_dir(&self.cwd)
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the handler starts");
        let port = self.port;
        // Blocking wait on the blocking pool: the lake may be behind an in-process proxy.
        let (child, ready) = tokio::task::spawn_blocking(move || {
            let ready = wait_until_listening(port, &mut child, Duration::from_secs(20));
            (child, ready)
        })
        .await
        .expect("the readiness wait runs");
        self.child = Some(child);
        if let Err(why) = ready {
            self.kill();
            panic!("{why}:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends SIGTERM (what the host does to stop a worker).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM works");
    }

    /// Waits up to `limit` for the process to end.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a new process with the same settings (after a crash or a stop).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// POSTs an invocation body as the host does: (status, body), or `Err` when no
    /// answer came back (connection refused or broken).
    pub async fn post(&self, function: &str, body: impl Into<reqwest::Body>) -> Result<(u16, String), String> {
        let resp = self
            .client
            .post(self.url(&format!("/{function}")))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-InvocationId", "00000000-0000-4000-8000-000000000009")
            .body(body)
            .send()
            .await
            .map_err(|e| hub2lake::telemetry::error_chain(&e))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.unwrap_or_default()))
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("GET reaches the handler");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// `/healthz` as JSON.
    pub async fn health(&self) -> serde_json::Value {
        let (status, body) = self.get("/healthz").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("healthz is JSON")
    }
}

impl Drop for HandlerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The host-shaped request of one batch.
pub fn request(partition: &WirePartition, events: &[WireEvent], data_type: WireDataType, retry: i64) -> String {
    eventhub_request(
        "events",
        partition,
        events,
        data_type,
        Some(WireRetry {
            retry_count: retry,
            max_retry_count: -1,
        }),
        "ingest",
    )
}

/// Events with these sequence numbers, bodies and enqueued times.
pub fn wire_events(items: impl IntoIterator<Item = (i64, Vec<u8>, DateTime<Utc>)>) -> Vec<WireEvent> {
    items
        .into_iter()
        .map(|(seq, body, t)| WireEvent {
            body,
            sequence_number: seq,
            offset: seq * 1000,
            enqueued_time: t,
            partition_key: Some(format!("k{}", seq % 7)),
            properties: serde_json::json!({"test": "reliability"}),
        })
        .collect()
}

/// A MongoDB change event with a unique resume token.
pub fn change_event(db: &str, coll: &str, partition: &str, seq: i64) -> Vec<u8> {
    serde_json::json!({
        "_id": {"_data": format!("8267{:016X}{:08X}", seq, partition.len() as u32 ^ fnv(partition))},
        "operationType": "insert",
        "clusterTime": {"$timestamp": {"t": 1_736_937_173 + seq, "i": 1}},
        "ns": {"db": db, "coll": coll},
        "documentKey": {"_id": {"$oid": format!("{seq:024x}")}},
        "fullDocument": {"_id": {"$oid": format!("{seq:024x}")}, "n": seq, "p": partition},
    })
    .to_string()
    .into_bytes()
}

fn fnv(text: &str) -> u32 {
    text.bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}
