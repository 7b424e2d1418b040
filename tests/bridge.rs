//! `hub2lake bridge` against a real redis-server (started here on a free port without
//! persistence, stopped by its process id) and the real binary: delivery, crashes and
//! restarts, claims, dead letters, graceful stops, shared groups, Redis restarts, and
//! the message when Redis cannot be reached.
//!
//! redis-server must be on PATH (`.ci/run` installs it: `apt-get install -y redis-server`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::Value;

const HUB2LAKE: &str = env!("CARGO_BIN_EXE_hub2lake");
/// Generous: the machine running the tests may be busy.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------
// A redis-server of our own.

struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Self {
        Self::start_on(hub2lake_testkit::free_port())
    }

    fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need it on PATH; `.ci/run` installs it \
                     (apt-get update && apt-get install -y redis-server)"
                )
            });
        let server = Self { child, port, _dir: dir };
        wait_for("redis-server to answer PING", Duration::from_secs(20), || {
            server
                .try_conn()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
                .is_some()
        });
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn try_conn(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        client.get_connection_with_timeout(Duration::from_secs(2)).ok()
    }

    fn conn(&self) -> redis::Connection {
        self.try_conn().expect("a connection to the test's redis-server")
    }

    /// Stops the server by its process id (SIGTERM, then wait).
    fn stop(mut self) -> u16 {
        signal(&self.child, libc::SIGTERM);
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        signal(&self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; failure (already gone) is harmless.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------
// The bridge process.

struct Bridge {
    child: Child,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Bridge {
    fn spawn(redis_url: &str, stream: &str, out: &Path, consumer: &str, extra: &[&str]) -> Self {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("bridge.log");
        let child = Command::new(HUB2LAKE)
            .args(["bridge", "--redis-url", redis_url, "--stream", stream, "--group", "hub"])
            .args(["--consumer", consumer, "--block-ms", "200"])
            .arg("--to-file")
            .arg(out)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            log,
            _log_dir: log_dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_started(&self) {
        wait_for("the bridge to start", WAIT, || self.log().contains("bridge started"));
    }

    /// SIGTERM, and the exit status (within `WAIT`).
    fn terminate(mut self) -> (ExitStatus, String) {
        signal(&self.child, libc::SIGTERM);
        let status = wait_exit(&mut self.child, WAIT);
        (status, self.log())
    }

    fn kill(mut self) {
        signal(&self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        signal(&self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let until = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "the process did not exit within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn publish(redis_url: &str, stream: &str, count: u64, extra: &[&str]) -> String {
    let out = Command::new(HUB2LAKE)
        .args(["bridge", "publish", "--redis-url", redis_url, "--stream", stream])
        .args(["--count", &count.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------
// What arrived in the file sink.

/// The parsed lines of every `*.jsonl` under `dir`, and how many lines did not parse
/// (a crash may cut off the last line of a file; nothing else may be broken).
fn sink_lines(dir: &Path) -> (Vec<Value>, usize) {
    let mut lines = Vec::new();
    let mut broken = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (lines, 0);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => lines.push(v),
                Err(_) => broken += 1,
            }
        }
    }
    (lines, broken)
}

/// How many times each entry id arrived.
fn delivered_ids(dirs: &[&Path]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for dir in dirs {
        for line in sink_lines(dir).0 {
            let id = line["properties"]["redis_id"].as_str().unwrap_or_default().to_string();
            *ids.entry(id).or_default() += 1;
        }
    }
    ids
}

fn stream_ids(conn: &mut redis::Connection, stream: &str) -> BTreeSet<String> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stream).unwrap();
    reply.ids.into_iter().map(|e| e.id).collect()
}

fn pending(conn: &mut redis::Connection, stream: &str) -> u64 {
    let reply: redis::Value = redis::cmd("XPENDING").arg(stream).arg("hub").query(conn).unwrap();
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

fn wait_all_delivered(dirs: &[&Path], expected: &BTreeSet<String>) {
    wait_for("every entry in the sink", WAIT, || {
        let got = delivered_ids(dirs);
        expected.iter().all(|id| got.contains_key(id))
    });
}

fn xadd(conn: &mut redis::Connection, stream: &str, fields: &[(&str, &[u8])]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query(conn).unwrap()
}

/// Reads `count` new entries as `consumer` and never acknowledges them: what a consumer
/// that crashed between reading and sending leaves behind.
fn read_and_abandon(conn: &mut redis::Connection, stream: &str, consumer: &str, count: usize) -> Vec<String> {
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("hub")
        .arg("0")
        .arg("MKSTREAM")
        .query(conn);
    let opts = redis::streams::StreamReadOptions::default()
        .group("hub", consumer)
        .count(count);
    let reply: redis::streams::StreamReadReply = conn.xread_options(&[stream], &[">"], &opts).unwrap();
    reply.keys.into_iter().flat_map(|k| k.ids).map(|e| e.id).collect()
}

// ---------------------------------------------------------------------------------

#[test]
fn entries_arrive_with_body_key_and_properties_and_are_acknowledged() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let json = xadd(
        &mut conn,
        "changes",
        &[("key", b"doc-1"), ("data", br#"{"op":"insert","n":1}"#)],
    );
    let empty = xadd(&mut conn, "changes", &[("data", b""), ("key", b"doc-2")]);
    let binary = xadd(&mut conn, "changes", &[("data", &[0xff, 0x00, 0xfe])]);
    let out = tempfile::tempdir().unwrap();
    let bridge = Bridge::spawn(
        &redis.url(),
        "changes",
        out.path(),
        "c1",
        &["--body-field", "data", "--partition-key-field", "key"],
    );
    wait_all_delivered(&[out.path()], &[json.clone(), empty.clone(), binary.clone()].into());
    wait_for("every entry acknowledged", WAIT, || pending(&mut conn, "changes") == 0);
    let (status, log) = bridge.terminate();
    assert!(status.success(), "{status:?}\n{log}");

    let (lines, broken) = sink_lines(out.path());
    assert_eq!(broken, 0);
    let by_id: HashMap<&str, &Value> = lines
        .iter()
        .map(|l| (l["properties"]["redis_id"].as_str().unwrap(), l))
        .collect();
    assert_eq!(by_id.len(), 3, "each entry once: {lines:?}");
    let first = by_id[json.as_str()];
    assert_eq!(first["body"], r#"{"op":"insert","n":1}"#);
    assert_eq!(first["partition_key"], "doc-1");
    assert_eq!(first["properties"]["redis_stream"], "changes");
    assert!(first.get("body_base64").is_none());
    let second = by_id[empty.as_str()];
    assert_eq!(
        (&second["body"], &second["partition_key"]),
        (&Value::from(""), &Value::from("doc-2"))
    );
    let third = by_id[binary.as_str()];
    assert_eq!(third["body_base64"], "/wD+");
    assert!(third.get("body").is_none());
    assert_eq!(third["partition_key"], Value::Null);
    assert!(std::fs::read_dir(out.path()).unwrap().all(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "jsonl")));
}

#[test]
fn every_flag_comes_from_the_environment_and_fields_become_a_json_object() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let id = xadd(&mut conn, "orders", &[("b", b"2"), ("a", b"one")]);
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(HUB2LAKE)
        .arg("bridge")
        .env("HUB2LAKE_BRIDGE_REDIS_URL", redis.url())
        .env("HUB2LAKE_BRIDGE_STREAM", "orders")
        .env("HUB2LAKE_BRIDGE_GROUP", "hub")
        .env("HUB2LAKE_BRIDGE_BLOCK_MS", "100")
        .env("HUB2LAKE_BRIDGE_TO_FILE", out.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_all_delivered(&[out.path()], &[id.clone()].into());
    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child, WAIT).success());
    let (lines, _) = sink_lines(out.path());
    let body: Value = serde_json::from_str(lines[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({"a": "one", "b": "2"}));
    // The group was created by the bridge, with its own consumer name (<host>-<pid>).
    let consumers: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("orders")
        .arg("hub")
        .query(&mut conn)
        .unwrap();
    assert!(
        format!("{consumers:?}").contains(&format!("-{}", child.id())),
        "{consumers:?}"
    );
}

#[test]
fn entries_that_cannot_be_events_go_to_the_dead_letter_stream_and_nothing_waits() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let before = xadd(&mut conn, "changes", &[("data", b"ok-1")]);
    let no_body = xadd(
        &mut conn,
        "changes",
        &[("payload", b"x"), ("note", b"from the old format")],
    );
    let huge = vec![b'x'; 1_100_000];
    let too_big = xadd(&mut conn, "changes", &[("data", &huge)]);
    let after = xadd(&mut conn, "changes", &[("data", b"ok-2")]);
    let out = tempfile::tempdir().unwrap();
    let bridge = Bridge::spawn(&redis.url(), "changes", out.path(), "c1", &["--body-field", "data"]);
    wait_all_delivered(&[out.path()], &[before.clone(), after.clone()].into());
    wait_for("dead letters and acknowledgements", WAIT, || {
        conn.xlen::<_, u64>("changes:deadletter").unwrap() == 2 && pending(&mut conn, "changes") == 0
    });
    let (status, log) = bridge.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("dead-lettered 2"),
        "the final progress line counts them: {log}"
    );

    let delivered = delivered_ids(&[out.path()]);
    assert_eq!(
        delivered.keys().cloned().collect::<BTreeSet<_>>(),
        [before, after].into()
    );
    let dead: redis::Value = redis::cmd("XRANGE")
        .arg("changes:deadletter")
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let dead = flat_entries(dead);
    assert_eq!(dead.len(), 2);
    let (fields, _) = &dead[0];
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["original_id", "original_stream", "reason", "payload", "note"]);
    assert_eq!(fields[0].1, no_body.as_bytes());
    assert_eq!(fields[1].1, b"changes");
    assert!(String::from_utf8_lossy(&fields[2].1).contains("\"data\""));
    assert_eq!(fields[4].1, b"from the old format");
    let (fields, _) = &dead[1];
    assert_eq!(fields[0].1, too_big.as_bytes());
    assert!(String::from_utf8_lossy(&fields[2].1).contains("bytes"));
    assert_eq!(fields[3], ("data".to_string(), huge));
}

/// An entry's fields in order.
type Fields = Vec<(String, Vec<u8>)>;

/// XRANGE entries as (fields in order, id).
fn flat_entries(reply: redis::Value) -> Vec<(Fields, String)> {
    let redis::Value::Array(entries) = reply else {
        panic!("not an array: {reply:?}")
    };
    entries
        .into_iter()
        .map(|e| {
            let redis::Value::Array(mut parts) = e else { panic!() };
            let redis::Value::Array(flat) = parts.pop().unwrap() else {
                panic!()
            };
            let id: String = redis::from_redis_value(parts.pop().unwrap()).unwrap();
            let fields = flat
                .chunks(2)
                .map(|kv| {
                    let k: String = redis::from_redis_value(kv[0].clone()).unwrap();
                    let v: Vec<u8> = redis::from_redis_value(kv[1].clone()).unwrap();
                    (k, v)
                })
                .collect();
            (fields, id)
        })
        .collect()
}

#[test]
fn a_killed_consumer_restarted_under_its_name_sends_its_pending_entries_first() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    publish(&redis.url(), "changes", 3000, &[]);
    let out = tempfile::tempdir().unwrap();
    let bridge = Bridge::spawn(
        &redis.url(),
        "changes",
        out.path(),
        "c1",
        &["--body-field", "data", "--batch-size", "20"],
    );
    wait_for("some entries delivered", WAIT, || {
        delivered_ids(&[out.path()]).len() >= 200
    });
    bridge.kill();
    // Whatever the kill interrupted, and entries c1 read but never sent (what a crash
    // between reading and sending leaves): only c1's own pending list holds them.
    let abandoned = read_and_abandon(&mut conn, "changes", "c1", 5);
    assert_eq!(abandoned.len(), 5);
    assert!(pending(&mut conn, "changes") >= 5);

    let started = Instant::now();
    let bridge = Bridge::spawn(&redis.url(), "changes", out.path(), "c1", &["--body-field", "data"]);
    wait_all_delivered(&[out.path()], &stream_ids(&mut conn, "changes"));
    // Well before any claim could (default --claim-min-idle-ms 60 s): re-sent as its own.
    assert!(started.elapsed() < Duration::from_secs(55));
    wait_for("nothing pending", WAIT, || pending(&mut conn, "changes") == 0);
    let (status, log) = bridge.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("sending this consumer's pending entries again"), "{log}");
    let (_, broken) = sink_lines(out.path());
    assert!(broken <= 1, "only the line the kill cut off may be broken: {broken}");
}

#[test]
fn a_second_consumer_claims_the_entries_a_dead_one_left_pending() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    publish(&redis.url(), "changes", 50, &[]);
    let abandoned = read_and_abandon(&mut conn, "changes", "dead", 10);
    assert_eq!(abandoned.len(), 10);
    let out = tempfile::tempdir().unwrap();
    let bridge = Bridge::spawn(
        &redis.url(),
        "changes",
        out.path(),
        "alive",
        &[
            "--body-field",
            "data",
            "--claim-interval-ms",
            "300",
            "--claim-min-idle-ms",
            "700",
        ],
    );
    wait_all_delivered(&[out.path()], &stream_ids(&mut conn, "changes"));
    wait_for("nothing pending", WAIT, || pending(&mut conn, "changes") == 0);
    let (status, log) = bridge.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("claimed entries"), "{log}");
    let delivered = delivered_ids(&[out.path()]);
    assert!(abandoned.iter().all(|id| delivered[id] == 1));
}

#[test]
fn sigterm_finishes_the_batch_in_flight_and_a_restart_loses_and_repeats_nothing() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let printed = publish(&redis.url(), "changes", 20_000, &["--event-size", "300"]);
    assert!(printed.contains("published 20000 entries to changes"), "{printed}");
    let out = tempfile::tempdir().unwrap();
    let args = [
        "--body-field",
        "data",
        "--partition-key-field",
        "key",
        "--batch-size",
        "50",
    ];
    let bridge = Bridge::spawn(&redis.url(), "changes", out.path(), "c1", &args);
    wait_for("some entries delivered", WAIT, || {
        delivered_ids(&[out.path()]).len() >= 500
    });
    let asked = Instant::now();
    let (status, log) = bridge.terminate();
    assert!(status.success(), "exit 0 after a stop: {status:?}\n{log}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "stopped within the grace period"
    );
    assert_eq!(pending(&mut conn, "changes"), 0, "the batch in flight was acknowledged");
    let first_run = delivered_ids(&[out.path()]).len();
    assert!(first_run < 20_000, "stopped mid-stream");

    let bridge = Bridge::spawn(&redis.url(), "changes", out.path(), "c1", &args);
    let ids = stream_ids(&mut conn, "changes");
    wait_all_delivered(&[out.path()], &ids);
    let (status, _) = bridge.terminate();
    assert!(status.success());
    let delivered = delivered_ids(&[out.path()]);
    assert_eq!(delivered.len(), 20_000);
    assert!(delivered.values().all(|n| *n == 1), "a graceful stop repeats nothing");

    // The publisher's entries, bridged with --body-field data --partition-key-field key,
    // are the simulator's change events keyed by document.
    let (lines, broken) = sink_lines(out.path());
    assert_eq!(broken, 0);
    for line in lines.iter().take(200) {
        let body: Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
        assert!(body["operationType"].is_string(), "{body}");
        let key = line["partition_key"].as_str().unwrap_or_default();
        match body["documentKey"]["_id"]["$oid"].as_str() {
            Some(document) => assert_eq!(key, document, "the key is the document's id"),
            None => assert!(!key.is_empty(), "{line}"),
        }
    }
}

#[test]
fn two_bridges_in_one_group_share_the_entries_each_once() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let (out1, out2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--body-field", "data", "--batch-size", "20"];
    let b1 = Bridge::spawn(&redis.url(), "changes", out1.path(), "one", &args);
    let b2 = Bridge::spawn(&redis.url(), "changes", out2.path(), "two", &args);
    b1.wait_started();
    b2.wait_started();
    publish(&redis.url(), "changes", 4000, &["--rate", "4000"]);
    let ids = stream_ids(&mut conn, "changes");
    wait_all_delivered(&[out1.path(), out2.path()], &ids);
    wait_for("nothing pending", WAIT, || pending(&mut conn, "changes") == 0);
    assert!(b1.terminate().0.success());
    assert!(b2.terminate().0.success());
    let (one, two) = (delivered_ids(&[out1.path()]), delivered_ids(&[out2.path()]));
    assert!(
        !one.is_empty() && !two.is_empty(),
        "both took a share: {} and {}",
        one.len(),
        two.len()
    );
    assert!(one.keys().all(|id| !two.contains_key(id)), "no entry went to both");
    assert_eq!(one.len() + two.len(), 4000);
    assert!(one.values().chain(two.values()).all(|n| *n == 1));
}

#[test]
fn lost_connections_and_a_redis_restart_lose_nothing() {
    let redis = RedisServer::start();
    let port = redis.port;
    let url = redis.url();
    let mut conn = redis.conn();
    let out = tempfile::tempdir().unwrap();
    let bridge = Bridge::spawn(
        &url,
        "changes",
        out.path(),
        "c1",
        &["--body-field", "data", "--batch-size", "20"],
    );
    bridge.wait_started();
    // Connections cut while entries flow (the test's own connection is spared).
    for round in 0..5 {
        let mut pipe = redis::pipe();
        for n in 0..600 {
            pipe.cmd("XADD")
                .arg("changes")
                .arg("*")
                .arg("data")
                .arg(format!("{round}-{n}"))
                .ignore();
        }
        let _: () = pipe.query(&mut conn).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let _: redis::RedisResult<redis::Value> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut conn);
    }
    let first = stream_ids(&mut conn, "changes");
    assert_eq!(first.len(), 3000);
    wait_all_delivered(&[out.path()], &first);
    wait_for("nothing pending", WAIT, || pending(&mut conn, "changes") == 0);

    // The server goes away (without persistence: it comes back empty) and returns.
    drop(conn);
    redis.stop();
    std::thread::sleep(Duration::from_millis(800));
    let redis = RedisServer::start_on(port);
    let mut conn = redis.conn();
    publish(&url, "changes", 100, &[]);
    let second = stream_ids(&mut conn, "changes");
    wait_all_delivered(&[out.path()], &second);
    wait_for("nothing pending after the restart", WAIT, || {
        pending(&mut conn, "changes") == 0
    });
    let (status, log) = bridge.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("reconnected to Redis"), "{log}");
    let (_, broken) = sink_lines(out.path());
    assert_eq!(broken, 0);
}

#[test]
fn unreachable_redis_ends_the_process_soon_with_a_message_naming_the_url() {
    let port = hub2lake_testkit::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(HUB2LAKE)
        .args([
            "bridge",
            "--redis-url",
            &url,
            "--stream",
            "s",
            "--group",
            "g",
            "--to-file",
        ])
        .arg(out.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(stderr.contains(&url), "{stderr}");

    // A password in the URL is not printed.
    let with_password = format!("redis://:s3cret@127.0.0.1:{port}");
    let out2 = Command::new(HUB2LAKE)
        .args(["bridge", "publish", "--redis-url", &with_password, "--stream", "s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out2.stderr);
    assert!(!out2.status.success());
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && !stderr.contains("s3cret"),
        "{stderr}"
    );
}

#[test]
fn settings_that_cannot_work_are_refused_before_connecting() {
    let out = Command::new(HUB2LAKE)
        .args([
            "bridge",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--stream",
            "s",
            "--group",
            "g",
        ])
        .args(["--dead-letter-stream", "s", "--to-file", "/tmp/unused-bridge-out"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dead-letter-stream"));
    let out = Command::new(HUB2LAKE)
        .args([
            "bridge",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--stream",
            "s",
            "--group",
            "g",
            "--to-eventhub",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HUB2LAKE_BRIDGE_CONNECTION_STRING"));
    let out = Command::new(HUB2LAKE)
        .args([
            "bridge",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--stream",
            "s",
            "--group",
            "g",
        ])
        .args(["--to-eventhub", "--to-file", "/tmp/unused-bridge-out"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one destination"));
    // A switch turned off in the environment names no destination.
    let out = Command::new(HUB2LAKE)
        .args([
            "bridge",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--stream",
            "s",
            "--group",
            "g",
        ])
        .env("HUB2LAKE_BRIDGE_TO_EVENTHUB", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no destination"));
}

/// A certificate authority and a server certificate for localhost/127.0.0.1, made with
/// the openssl command (installed by `.ci/run` with redis-server).
fn tls_files(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl ({e}): `.ci/run` installs it (apt-get install -y openssl)"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    run(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
    ]
    .iter()
    .chain(&["-days", "2", "-subj", "/CN=hub2lake test CA"])
    .copied()
    .collect::<Vec<_>>());
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]
    .iter()
    .chain(&["-subj", "/CN=localhost"])
    .copied()
    .collect::<Vec<_>>());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
    ]
    .iter()
    .chain(&["-out", "server.pem", "-days", "2", "-extfile", "san.ext"])
    .copied()
    .collect::<Vec<_>>());
}

#[test]
fn rediss_and_user_password_urls_work() {
    let dir = tempfile::tempdir().unwrap();
    tls_files(dir.path());
    let port = hub2lake_testkit::free_port();
    let mut server = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.pem",
        ])
        .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
        // Only the user `bridge` with its password gets in.
        .args([
            "--user", "default", "off", "--user", "bridge", "on", ">s3cret", "~*", "&*", "+@all",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (`.ci/run` installs it)");
    wait_for("the TLS port", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let ca = dir.path().join("ca.pem");
    let url = format!("rediss://bridge:s3cret@localhost:{port}");
    let published = Command::new(HUB2LAKE)
        .args([
            "bridge",
            "publish",
            "--redis-url",
            &url,
            "--stream",
            "changes",
            "--count",
            "20",
        ])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );

    let out = tempfile::tempdir().unwrap();
    let mut bridge = Command::new(HUB2LAKE)
        .args([
            "bridge",
            "--redis-url",
            &url,
            "--stream",
            "changes",
            "--group",
            "hub",
            "--block-ms",
            "100",
        ])
        .args(["--body-field", "data", "--to-file"])
        .arg(out.path())
        .env("SSL_CERT_FILE", &ca)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("20 entries over TLS", WAIT, || delivered_ids(&[out.path()]).len() == 20);
    signal(&bridge, libc::SIGTERM);
    assert!(wait_exit(&mut bridge, WAIT).success());

    // A wrong password is refused at once, by name of the URL and without the password.
    let wrong = format!("rediss://bridge:wrong@localhost:{port}");
    let refused = Command::new(HUB2LAKE)
        .args(["bridge", "publish", "--redis-url", &wrong, "--stream", "changes"])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&format!("localhost:{port}")) && !stderr.contains("wrong@"),
        "{stderr}"
    );
    signal(&server, libc::SIGKILL);
    let _ = server.wait();
}

/// A sink that refuses its first calls as the hub does when it is briefly unavailable,
/// and refuses one body as too large, as the hub does when the estimate was low.
struct FlakySink {
    inner: hub2lake::eventhub::FileSink,
    failures_left: std::sync::atomic::AtomicUsize,
    too_large: Vec<u8>,
}

impl hub2lake::eventhub::EventSink for FlakySink {
    async fn send_batch(
        &self,
        target: &hub2lake::eventhub::Target,
        events: &[hub2lake::eventhub::OutEvent],
    ) -> Result<(), hub2lake::eventhub::SinkError> {
        use hub2lake::eventhub::SinkError;
        use std::sync::atomic::Ordering;
        let fail = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(SinkError::Send {
                target: target.to_string(),
                message: "injected: the hub is busy".into(),
            });
        }
        if let Some(e) = events.iter().find(|e| e.body == self.too_large) {
            return Err(SinkError::TooLarge {
                partition: e.source_partition.clone(),
                sequence_number: e.source_sequence_number,
                bytes: e.body.len() as u64,
                limit: 1,
            });
        }
        self.inner.send_batch(target, events).await
    }

    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sends_are_retried_and_what_the_hub_calls_too_large_is_dead_lettered() {
    use hub2lake_cli::bridge::{self, BridgeConfig};
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let mut ids = BTreeSet::new();
    for n in 0..50 {
        let body = if n == 17 {
            "refused".to_string()
        } else {
            format!("event-{n}")
        };
        ids.insert(xadd(&mut conn, "changes", &[("data", body.as_bytes())]));
    }
    let out = tempfile::tempdir().unwrap();
    let sink = FlakySink {
        inner: hub2lake::eventhub::FileSink::new(out.path()).unwrap(),
        failures_left: 3.into(),
        too_large: b"refused".to_vec(),
    };
    let config = BridgeConfig {
        redis_url: redis.url(),
        stream: "changes".into(),
        group: "hub".into(),
        consumer: "c1".into(),
        body_field: Some("data".into()),
        partition_key_field: None,
        batch_size: 10,
        block: Duration::from_millis(100),
        claim_interval: Duration::from_secs(30),
        claim_min_idle: Duration::from_secs(60),
        dead_letter_stream: "changes:deadletter".into(),
        group_start: "0".into(),
        progress_interval: Duration::from_secs(10),
    };
    let (switch, stop) = bridge::stop_switch();
    let out_dir = out.path().to_path_buf();
    let run = async {
        let counters = bridge::run(&config, &sink, stop).await;
        counters.expect("the bridge ran to its stop")
    };
    let watch = async {
        let until = Instant::now() + WAIT;
        while delivered_ids(&[&out_dir]).len() < 49 {
            assert!(Instant::now() < until, "not everything arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        switch.stop();
    };
    let (counters, ()) = tokio::join!(run, watch);
    assert_eq!((counters.delivered, counters.dead_lettered), (49, 1));
    let delivered = delivered_ids(&[out.path()]);
    assert!(delivered.values().all(|n| *n == 1), "retries sent only what had failed");
    assert_eq!(pending(&mut conn, "changes"), 0);
    let dead = flat_entries(
        redis::cmd("XRANGE")
            .arg("changes:deadletter")
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .unwrap(),
    );
    assert_eq!(dead.len(), 1);
    let reason = String::from_utf8_lossy(&dead[0].0[2].1).into_owned();
    assert!(reason.contains("too large"), "{reason}");
    assert_eq!(dead[0].0[3], ("data".to_string(), b"refused".to_vec()));
    assert!(ids.contains(&String::from_utf8_lossy(&dead[0].0[0].1).into_owned()));
}

/// The chain of the issue on one machine: publisher → Redis → bridge → files → the real
/// handler (under `hub2lake simulate`) → lake → `verify`.
#[test]
fn published_entries_reach_a_verified_lake_through_the_bridge() {
    let handler = hub2lake_testkit::handler_exe();
    assert!(handler.is_file());
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    publish(&redis.url(), "changes", 300, &["--event-size", "400"]);
    let out = tempfile::tempdir().unwrap();
    let bridge = Bridge::spawn(
        &redis.url(),
        "changes",
        out.path(),
        "c1",
        &["--body-field", "data", "--partition-key-field", "key"],
    );
    wait_all_delivered(&[out.path()], &stream_ids(&mut conn, "changes"));
    assert!(bridge.terminate().0.success());

    let (lines, _) = sink_lines(out.path());
    let bodies: String = lines
        .iter()
        .map(|l| format!("{}\n", l["body"].as_str().expect("a UTF-8 body")))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("events.jsonl");
    std::fs::write(&input, bodies).unwrap();
    let lake = work.path().join("lake");
    let simulated = Command::new(HUB2LAKE)
        .args(["simulate", "--lake"])
        .arg(&lake)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        simulated.status.success(),
        "{}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    let verified = Command::new(HUB2LAKE)
        .args([
            "verify",
            "--lake",
            &format!("file://{}", lake.display()),
            "--from",
            "now-2d",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(report.contains("(300 records"), "{report}");
}
