//! The Redis Streams → Event Hubs bridge (`hub2lake bridge`): a consumer-group reader
//! that sends each stream entry as one event and acknowledges it only once the sink (the
//! hub, or files) accepted it.
//!
//! One loop, one Redis connection, in this order each turn:
//! 1. one pipelined round trip: XACK what the sink accepted last turn, then read the
//!    next entries: this consumer's own pending list first (after a start or a
//!    reconnect), else XAUTOCLAIM when the claim interval is due, else XREADGROUP `>`
//!    blocking at most `--block-ms` (so a stop or a due claim waits no longer);
//! 2. entries → events ([`entry`]), events → batches ([`batcher`]), batches → sink
//!    (retried with backoff); entries that cannot be events go to the dead-letter stream
//!    (XADD confirmed before their XACK);
//! 3. now and then a progress line ([`progress`]).
//!
//! Nothing is lost: an entry leaves the pending list only by an XACK that follows its
//! acceptance (or its dead letter). A crash re-sends (at-least-once), never drops.

pub mod batcher;
pub mod entry;
pub mod link;
pub mod progress;
pub mod publisher;

use std::time::{Duration, Instant};

use redis::{RedisError, Value};
use tokio::sync::watch;

use hub2lake::eventhub::{EventSink, OutEvent, SinkError, Target};

use self::batcher::MAX_BATCH_BYTES;
use self::entry::{parse_autoclaim_reply, parse_read_reply, EventShape, StreamEntry};
pub use self::link::RedisLink;
use self::link::{describe, is_missing_group, is_transient, Backoff, Request};
pub use self::progress::Counters;
use self::progress::{parse_group_info, Progress};

/// How long the first connection may take before the bridge gives up.
pub const START_DEADLINE: Duration = Duration::from_secs(10);
/// Added to `--block-ms` for the reply timeout of one round trip.
const REPLY_MARGIN: Duration = Duration::from_secs(10);
/// After a stop, how long a failing sink is retried before the bridge gives up (the
/// entries stay pending and are sent again by the next run).
const STOP_SEND_GRACE: Duration = Duration::from_secs(10);
/// After a stop, how long acknowledging may take.
const STOP_ACK_GRACE: Duration = Duration::from_secs(5);

/// The bridge's settings (the `hub2lake bridge` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub redis_url: String,
    pub stream: String,
    pub group: String,
    pub consumer: String,
    pub body_field: Option<String>,
    pub partition_key_field: Option<String>,
    pub batch_size: usize,
    pub block: Duration,
    pub claim_interval: Duration,
    pub claim_min_idle: Duration,
    pub dead_letter_stream: String,
    pub group_start: String,
    pub progress_interval: Duration,
}

impl BridgeConfig {
    pub const DEFAULT_BATCH_SIZE: usize = 100;
    pub const DEFAULT_BLOCK_MS: u64 = 1000;
    pub const DEFAULT_CLAIM_INTERVAL_MS: u64 = 30_000;
    pub const DEFAULT_CLAIM_MIN_IDLE_MS: u64 = 60_000;
    pub const DEFAULT_PROGRESS_INTERVAL_MS: u64 = 10_000;

    /// `<stream>:deadletter`, the default dead-letter stream.
    pub fn default_dead_letter_stream(stream: &str) -> String {
        format!("{stream}:deadletter")
    }

    /// Refuses settings that cannot work, naming the flag.
    pub fn validate(&self) -> Result<(), BridgeError> {
        let refuse = |m: String| Err(BridgeError::Config(m));
        for (flag, value) in [
            ("--stream", &self.stream),
            ("--group", &self.group),
            ("--consumer", &self.consumer),
            ("--dead-letter-stream", &self.dead_letter_stream),
        ] {
            if value.trim().is_empty() {
                return refuse(format!("{flag} is empty"));
            }
        }
        if self.dead_letter_stream == self.stream {
            return refuse(format!(
                "--dead-letter-stream {} is the stream being read: dead letters would be read again",
                self.stream
            ));
        }
        if self.batch_size == 0 {
            return refuse("--batch-size must be at least 1".into());
        }
        if self.block.is_zero() {
            return refuse("--block-ms must be at least 1 (Redis reads BLOCK 0 as: wait forever)".into());
        }
        if self.claim_interval.is_zero() {
            return refuse("--claim-interval-ms must be at least 1".into());
        }
        if !valid_group_start(&self.group_start) {
            return refuse(format!(
                "--group-start {:?} is not 0, $ or a stream entry id (<ms>[-<seq>])",
                self.group_start
            ));
        }
        if let (Some(b), Some(k)) = (&self.body_field, &self.partition_key_field) {
            if b.is_empty() || k.is_empty() {
                return refuse("--body-field and --partition-key-field must not be empty".into());
            }
        }
        Ok(())
    }

    fn shape(&self) -> EventShape {
        EventShape {
            stream: self.stream.clone(),
            body_field: self.body_field.clone(),
            partition_key_field: self.partition_key_field.clone(),
        }
    }
}

/// `0`, `$` or an entry id: what XGROUP CREATE takes.
fn valid_group_start(start: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    start == "$"
        || match start.split_once('-') {
            Some((ms, seq)) => number(ms) && number(seq),
            None => number(start),
        }
}

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A flag or setting that cannot work.
    #[error("{0}")]
    Config(String),
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Redis at {url} refused {what}: {message}")]
    Redis { url: String, what: String, message: String },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Reply(#[from] entry::ReplyError),
    /// Stopped before everything sent could be acknowledged: it will be sent again.
    #[error(
        "stopped with {entries} entries sent but not acknowledged ({reason}); they stay pending and are sent again \
         by the next run of consumer {consumer} (or claimed by another)"
    )]
    Unacknowledged {
        entries: usize,
        consumer: String,
        reason: String,
    },
}

impl BridgeError {
    /// 2: the operator must change a flag, a URL or credentials; 3: Redis or the hub
    /// failed (running again continues where this run stopped).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Sink(e) if e.is_configuration() => 2,
            _ => 3,
        }
    }
}

/// Asks a running bridge to stop (SIGTERM, Ctrl+C).
#[derive(Debug)]
pub struct StopSender(watch::Sender<bool>);

impl StopSender {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// Whether a stop was asked for.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

/// A stop switch and its receiver.
pub fn stop_switch() -> (StopSender, Stop) {
    let (tx, rx) = watch::channel(false);
    (StopSender(tx), Stop(rx))
}

impl Stop {
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Sleeps for `pause`, or less when a stop comes.
    pub async fn sleep(&self, pause: Duration) {
        let mut rx = self.0.clone();
        let stopped = async move {
            if rx.wait_for(|stop| *stop).await.is_err() {
                // The switch is gone: nobody can stop us any more.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stopped => {}
        }
    }
}

/// Bridges until `stop`; returns what it did.
pub async fn run<S: EventSink>(config: &BridgeConfig, sink: &S, stop: Stop) -> Result<Counters, BridgeError> {
    config.validate()?;
    let mut link = RedisLink::open(&config.redis_url, config.block + REPLY_MARGIN)?;
    link.connect_within(START_DEADLINE).await?;
    let mut bridge = Bridge {
        config,
        shape: config.shape(),
        sink,
        link,
        stop,
        progress: Progress::new(config.progress_interval),
        to_ack: Vec::new(),
        own_cursor: Some("0".into()),
        // The first claim right after the own pending entries: after a restart of the
        // whole fleet, what the old instances held is taken over at once.
        claim: ClaimState {
            due: Instant::now(),
            cursor: None,
        },
        numbering: 0,
    };
    if let Err(e) = bridge.ensure_group(&config.group_start).await {
        return Err(bridge.fatal("XGROUP CREATE", &e));
    }
    tracing::info!(
        stream = %config.stream,
        group = %config.group,
        consumer = %config.consumer,
        redis = %bridge.link.url(),
        sink = %sink.describe(),
        "bridge started"
    );
    let pumped = bridge.pump().await;
    let finished = bridge.finish().await;
    let info = bridge.group_info().await;
    bridge.progress.report(info);
    pumped?;
    finished?;
    tracing::info!(counters = ?bridge.progress.counters, "bridge stopped");
    Ok(bridge.progress.counters)
}

/// Which read a turn does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadKind {
    OwnPending,
    Claim,
    New,
}

#[derive(Debug)]
struct ClaimState {
    due: Instant,
    /// Where the running XAUTOCLAIM scan continues; `None` between scans.
    cursor: Option<String>,
}

struct Bridge<'a, S> {
    config: &'a BridgeConfig,
    shape: EventShape,
    sink: &'a S,
    link: RedisLink,
    stop: Stop,
    progress: Progress,
    /// Entries accepted by the sink (or dead-lettered) whose XACK is not confirmed.
    to_ack: Vec<String>,
    /// Where reading this consumer's own pending list continues; `None` once read.
    own_cursor: Option<String>,
    claim: ClaimState,
    /// Numbers events in this run (their `source_sequence_number`), to find the entry
    /// behind a sink's answer.
    numbering: i64,
}

impl<S: EventSink> Bridge<'_, S> {
    async fn pump(&mut self) -> Result<(), BridgeError> {
        while !self.stop.is_set() {
            let kind = self.next_read();
            let reply = match self.ack_and_read(kind).await {
                Ok(reply) => reply,
                Err(e) => {
                    let what = if kind == ReadKind::Claim {
                        "XAUTOCLAIM"
                    } else {
                        "XREADGROUP"
                    };
                    self.recover(e, what).await?;
                    continue;
                }
            };
            let entries = self.take_entries(kind, reply)?;
            if !entries.is_empty() {
                self.deliver(entries).await?;
            }
            if self.progress.due() {
                let info = self.group_info().await;
                self.progress.report(info);
            }
        }
        Ok(())
    }

    fn next_read(&self) -> ReadKind {
        if self.own_cursor.is_some() {
            ReadKind::OwnPending
        } else if self.claim.cursor.is_some() || Instant::now() >= self.claim.due {
            ReadKind::Claim
        } else {
            ReadKind::New
        }
    }

    fn read_command(&self, kind: ReadKind) -> redis::Cmd {
        let c = self.config;
        let mut cmd;
        match kind {
            ReadKind::Claim => {
                cmd = redis::cmd("XAUTOCLAIM");
                cmd.arg(&c.stream)
                    .arg(&c.group)
                    .arg(&c.consumer)
                    .arg(millis(c.claim_min_idle))
                    .arg(self.claim.cursor.as_deref().unwrap_or("0-0"))
                    .arg("COUNT")
                    .arg(c.batch_size);
            }
            ReadKind::OwnPending | ReadKind::New => {
                cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(&c.group)
                    .arg(&c.consumer)
                    .arg("COUNT")
                    .arg(c.batch_size);
                if kind == ReadKind::New {
                    cmd.arg("BLOCK").arg(millis(c.block));
                }
                let from = match kind {
                    ReadKind::OwnPending => self.own_cursor.as_deref().unwrap_or("0"),
                    _ => ">",
                };
                cmd.arg("STREAMS").arg(&c.stream).arg(from);
            }
        }
        cmd
    }

    /// One round trip: the acknowledgements of the last turn, then the read.
    async fn ack_and_read(&mut self, kind: ReadKind) -> redis::RedisResult<Value> {
        let mut pipe = redis::pipe();
        if !self.to_ack.is_empty() {
            pipe.cmd("XACK")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.to_ack)
                .ignore();
        }
        pipe.add_command(self.read_command(kind));
        let mut replies: Vec<Value> = self.link.run(&Request::Pipe(pipe)).await?;
        self.to_ack.clear();
        Ok(replies.pop().unwrap_or(Value::Nil))
    }

    fn take_entries(&mut self, kind: ReadKind, reply: Value) -> Result<Vec<StreamEntry>, BridgeError> {
        let counters = &mut self.progress.counters;
        Ok(match kind {
            ReadKind::OwnPending => {
                let entries = parse_read_reply(reply)?;
                self.own_cursor = entries.last().map(|e| e.id.clone());
                if !entries.is_empty() {
                    tracing::info!(entries = entries.len(), "sending this consumer's pending entries again");
                }
                counters.resent += entries.len() as u64;
                entries
            }
            ReadKind::Claim => {
                let claimed = parse_autoclaim_reply(reply)?;
                if claimed.next == "0-0" {
                    self.claim.cursor = None;
                    self.claim.due = Instant::now() + self.config.claim_interval;
                } else {
                    self.claim.cursor = Some(claimed.next);
                }
                if !claimed.entries.is_empty() {
                    tracing::info!(
                        entries = claimed.entries.len(),
                        "claimed entries idle for at least --claim-min-idle-ms from other consumers"
                    );
                }
                counters.claimed += claimed.entries.len() as u64;
                claimed.entries
            }
            ReadKind::New => parse_read_reply(reply)?,
        })
    }

    /// Sends the entries' events, dead-letters what cannot be sent, and queues the
    /// acknowledgements for the next round trip.
    async fn deliver(&mut self, entries: Vec<StreamEntry>) -> Result<(), BridgeError> {
        let base = self.numbering;
        self.numbering += entries.len() as i64;
        let mut events = Vec::with_capacity(entries.len());
        let mut poison: Vec<(usize, String)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match &entry.fields {
                None => {
                    // Deleted while pending: nothing to send, only the pending list to clear.
                    self.to_ack.push(entry.id.clone());
                    self.progress.counters.vanished += 1;
                }
                Some(fields) => match self.shape.event(&entry.id, fields, base + i as i64) {
                    Ok(event) => events.push(event),
                    Err(reason) => poison.push((i, reason)),
                },
            }
        }
        let plan = batcher::plan(events, self.config.batch_size, MAX_BATCH_BYTES);
        for event in &plan.oversized {
            poison.push((
                index_of(event, base),
                format!(
                    "the event is about {} bytes, more than fits in one Event Hubs batch ({MAX_BATCH_BYTES} bytes)",
                    event.estimated_size()
                ),
            ));
        }
        for wave in batcher::waves(plan.batches) {
            let rejected = self.send(wave, base, &entries).await?;
            poison.extend(rejected);
        }
        if !poison.is_empty() {
            self.dead_letter(&entries, &poison).await?;
        }
        Ok(())
    }

    /// Sends the batches (at most one per target) until the sink accepted each, retrying
    /// what failed; returns the entries the sink refused as too large.
    async fn send(
        &mut self,
        mut batches: Vec<(Target, Vec<OutEvent>)>,
        base: i64,
        entries: &[StreamEntry],
    ) -> Result<Vec<(usize, String)>, BridgeError> {
        let mut rejected = Vec::new();
        let mut backoff = Backoff::new();
        let mut give_up_at: Option<Instant> = None;
        while !batches.is_empty() {
            let results = self.sink.send_batches(&batches).await;
            let mut retry = Vec::new();
            let mut failure = None;
            let mut results = results.into_iter();
            for (target, mut events) in batches {
                match results
                    .next()
                    .unwrap_or_else(|| Err(SinkError::Config("the sink lost a batch".into())))
                {
                    Ok(()) => {
                        self.progress.counters.delivered += events.len() as u64;
                        self.to_ack
                            .extend(events.iter().map(|e| entries[index_of(e, base)].id.clone()));
                    }
                    Err(SinkError::TooLarge {
                        sequence_number, bytes, ..
                    }) => {
                        events.retain(|e| {
                            let too_large = e.source_sequence_number == sequence_number;
                            if too_large {
                                rejected.push((
                                    index_of(e, base),
                                    format!("Event Hubs refused the event as too large for a batch ({bytes} bytes)"),
                                ));
                            }
                            !too_large
                        });
                        if !events.is_empty() {
                            retry.push((target, events));
                        }
                    }
                    Err(e) if e.is_configuration() => return Err(e.into()),
                    Err(e) => {
                        retry.push((target, events));
                        failure = Some(e);
                    }
                }
            }
            batches = retry;
            if let Some(e) = failure {
                if self.stop.is_set() {
                    let deadline = *give_up_at.get_or_insert_with(|| Instant::now() + STOP_SEND_GRACE);
                    if Instant::now() >= deadline {
                        return Err(e.into());
                    }
                }
                let pause = backoff.next_pause();
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "sending failed; retrying");
                tokio::time::sleep(pause).await;
            }
        }
        Ok(rejected)
    }

    /// Adds the entries to the dead-letter stream (`original_id`, `original_stream`,
    /// `reason`, then the entry's own fields), and queues their acknowledgement once
    /// Redis confirmed the copies.
    async fn dead_letter(&mut self, entries: &[StreamEntry], poison: &[(usize, String)]) -> Result<(), BridgeError> {
        let mut pipe = redis::pipe();
        for (i, reason) in poison {
            let entry = &entries[*i];
            let cmd = pipe
                .cmd("XADD")
                .arg(&self.config.dead_letter_stream)
                .arg("*")
                .arg("original_id")
                .arg(&entry.id)
                .arg("original_stream")
                .arg(&self.config.stream)
                .arg("reason")
                .arg(reason);
            for (name, value) in entry.fields.iter().flatten() {
                cmd.arg(name).arg(value);
            }
            cmd.ignore();
        }
        let request = Request::Pipe(pipe);
        loop {
            match self.link.run::<Value>(&request).await {
                Ok(_) => break,
                Err(e) => self.recover(e, "XADD to the dead-letter stream").await?,
            }
            if self.stop.is_set() && !self.link_is_up() {
                return Err(BridgeError::Unacknowledged {
                    entries: poison.len() + self.to_ack.len(),
                    consumer: self.config.consumer.clone(),
                    reason: "Redis was unreachable while adding dead letters".into(),
                });
            }
        }
        for (i, reason) in poison {
            tracing::warn!(
                id = %entries[*i].id,
                dead_letter_stream = %self.config.dead_letter_stream,
                reason = %reason,
                "entry dead-lettered"
            );
            self.to_ack.push(entries[*i].id.clone());
        }
        self.progress.counters.dead_lettered += poison.len() as u64;
        Ok(())
    }

    fn link_is_up(&self) -> bool {
        self.link.is_connected()
    }

    /// Creates the group (and the stream) when missing, starting at `start`.
    async fn ensure_group(&mut self, start: &str) -> redis::RedisResult<()> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(start)
            .arg("MKSTREAM");
        match self.link.run::<Value>(&Request::Cmd(cmd)).await {
            Ok(_) => {
                tracing::info!(
                    stream = %self.config.stream,
                    group = %self.config.group,
                    start,
                    "created the consumer group"
                );
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") || e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// After a failed round trip: reconnect (with backoff) or create the group again, then
    /// read this consumer's pending list again. Returns early (Ok) on a stop.
    async fn recover(&mut self, mut error: RedisError, what: &str) -> Result<(), BridgeError> {
        loop {
            if is_transient(&error) {
                tracing::warn!(url = %self.link.url(), error = %describe(&error), "lost Redis; reconnecting");
                if !self.link.reconnect(&self.stop).await {
                    return Ok(());
                }
            } else if is_missing_group(&error) {
                tracing::warn!(group = %self.config.group, "the consumer group is gone (Redis restarted?); creating it");
            } else {
                return Err(self.fatal(what, &error));
            }
            // A group lost while running (Redis came back empty) is created at the start
            // of the stream, whatever --group-start says: every entry in it arrived after
            // the loss, and none of them may be skipped.
            match self.ensure_group("0").await {
                Ok(()) => {
                    self.own_cursor = Some("0".into());
                    return Ok(());
                }
                Err(e) => error = e,
            }
        }
    }

    fn fatal(&self, what: &str, error: &RedisError) -> BridgeError {
        let message = describe(error);
        if message.contains("WRONGTYPE") {
            return BridgeError::Config(format!(
                "{what}: a key the bridge uses (--stream {} or --dead-letter-stream {}) is not a stream: {message}",
                self.config.stream, self.config.dead_letter_stream
            ));
        }
        if is_transient(error) {
            return BridgeError::Unreachable {
                url: self.link.url().to_string(),
                reason: message,
            };
        }
        BridgeError::Redis {
            url: self.link.url().to_string(),
            what: what.to_string(),
            message,
        }
    }

    /// Acknowledges what is left after a stop.
    async fn finish(&mut self) -> Result<(), BridgeError> {
        if self.to_ack.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.config.stream).arg(&self.config.group).arg(&self.to_ack);
        let request = Request::Cmd(cmd);
        let until = Instant::now() + STOP_ACK_GRACE;
        let mut backoff = Backoff::new();
        loop {
            let error = match self.link.run::<Value>(&request).await {
                Ok(_) => {
                    self.to_ack.clear();
                    return Ok(());
                }
                Err(e) => e,
            };
            if !is_transient(&error) || Instant::now() >= until {
                return Err(BridgeError::Unacknowledged {
                    entries: self.to_ack.len(),
                    consumer: self.config.consumer.clone(),
                    reason: describe(&error),
                });
            }
            tokio::time::sleep(backoff.next_pause()).await;
            let left = until.saturating_duration_since(Instant::now());
            let _ = self.link.connect_within(left).await;
        }
    }

    async fn group_info(&mut self) -> Option<progress::GroupInfo> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&self.config.stream);
        match self.link.run::<Value>(&Request::Cmd(cmd)).await {
            Ok(reply) => parse_group_info(&reply, &self.config.group),
            Err(e) => {
                tracing::debug!(error = %describe(&e), "XINFO GROUPS failed");
                None
            }
        }
    }
}

/// The entry behind an event of this turn.
fn index_of(event: &OutEvent, base: i64) -> usize {
    usize::try_from(event.source_sequence_number - base).unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BridgeConfig {
        BridgeConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            stream: "changes".into(),
            group: "hub".into(),
            consumer: "c1".into(),
            body_field: None,
            partition_key_field: None,
            batch_size: 100,
            block: Duration::from_millis(1000),
            claim_interval: Duration::from_secs(30),
            claim_min_idle: Duration::from_secs(60),
            dead_letter_stream: BridgeConfig::default_dead_letter_stream("changes"),
            group_start: "0".into(),
            progress_interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_flag() {
        assert!(config().validate().is_ok());
        let refused = |change: &dyn Fn(&mut BridgeConfig), flag: &str| {
            let mut c = config();
            change(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.to_string().contains(flag), "{e}");
            assert_eq!(e.exit_code(), 2);
        };
        refused(&|c| c.stream = String::new(), "--stream");
        refused(&|c| c.dead_letter_stream = "changes".into(), "--dead-letter-stream");
        refused(&|c| c.batch_size = 0, "--batch-size");
        refused(&|c| c.block = Duration::ZERO, "--block-ms");
        refused(&|c| c.group_start = "latest".into(), "--group-start");
    }

    #[test]
    fn group_starts_are_zero_dollar_or_ids() {
        for ok in ["0", "$", "1700000000000-0", "5"] {
            assert!(valid_group_start(ok), "{ok}");
        }
        for bad in ["", "-", "1-", "a-1", ">", "0-0-0"] {
            assert!(!valid_group_start(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_stop_cuts_a_sleep_short() {
        let (tx, stop) = stop_switch();
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.stop();
        });
        stop.sleep(Duration::from_secs(30)).await;
        assert!(stop.is_set());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
