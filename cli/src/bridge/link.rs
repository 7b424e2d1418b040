//! The connection to Redis: opening it (with a deadline at start), losing it, and getting
//! it back with backoff; which failures are worth a reconnect; the URL as it may be
//! printed (without its password).

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, ServerErrorKind, Value};

use super::{BridgeError, Stop};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First pause between reconnection attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A Redis server and the one connection to it (commands are sent one after the other
/// by the bridge's loop, pipelined where it helps).
pub struct RedisLink {
    client: redis::Client,
    url: String,
    config: AsyncConnectionConfig,
    conn: Option<MultiplexedConnection>,
}

impl RedisLink {
    /// Parses the URL (`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS).
    /// `response_timeout` must exceed the longest blocking read.
    pub fn open(raw_url: &str, response_timeout: Duration) -> Result<Self, BridgeError> {
        let url = redact(raw_url);
        let client = redis::Client::open(raw_url)
            .map_err(|e| BridgeError::Config(format!("--redis-url {url} is not a Redis URL: {e}")))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        Ok(Self {
            client,
            url,
            config,
            conn: None,
        })
    }

    /// The URL without its password, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connects, trying again until `deadline` has passed: at start, Redis may be coming
    /// up beside us, but a wrong URL must end the process soon with a clear message.
    pub async fn connect_within(&mut self, deadline: Duration) -> Result<(), BridgeError> {
        let until = Instant::now() + deadline;
        let mut backoff = Backoff::new();
        loop {
            let error = match self
                .client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
            {
                Ok(conn) => {
                    self.conn = Some(conn);
                    return Ok(());
                }
                Err(e) => e,
            };
            if !is_transient(&error) || Instant::now() + backoff.peek() >= until {
                return Err(BridgeError::Unreachable {
                    url: self.url.clone(),
                    reason: describe(&error),
                });
            }
            tracing::debug!(url = %self.url, error = %describe(&error), "Redis not reachable yet");
            tokio::time::sleep(backoff.next_pause()).await;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Connects again after a loss, with growing pauses, until it works or a stop is
    /// asked for (`false`).
    pub async fn reconnect(&mut self, stop: &Stop) -> bool {
        self.conn = None;
        let mut backoff = Backoff::new();
        let mut attempts = 0u32;
        while !stop.is_set() {
            stop.sleep(backoff.next_pause()).await;
            if stop.is_set() {
                break;
            }
            attempts += 1;
            match self
                .client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
            {
                Ok(conn) => {
                    tracing::info!(url = %self.url, attempts, "reconnected to Redis");
                    self.conn = Some(conn);
                    return true;
                }
                Err(e) if attempts == 1 || attempts.is_multiple_of(10) => {
                    tracing::warn!(url = %self.url, attempts, error = %describe(&e), "Redis still unreachable");
                }
                Err(_) => {}
            }
        }
        false
    }

    /// Runs one command or pipeline; without a connection, fails as a lost connection does.
    pub async fn run<T: redis::FromRedisValue>(&mut self, request: &Request) -> redis::RedisResult<T> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(not_connected());
        };
        let reply: Value = match request {
            Request::Cmd(cmd) => cmd.query_async(conn).await?,
            Request::Pipe(pipe) => pipe.query_async(conn).await?,
        };
        redis::from_redis_value(reply).map_err(RedisError::from)
    }
}

/// A command or a pipeline.
pub enum Request {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
}

fn not_connected() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "not connected to Redis",
    ))
}

/// Failures that a new connection (after a pause) can cure: the network, a restarting or
/// failing-over server.
pub fn is_transient(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Io | ErrorKind::Parse => true,
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
        ),
        _ => e.is_timeout() || e.is_connection_dropped(),
    }
}

/// Whether Redis says the consumer group (or the stream) does not exist: it was deleted,
/// or the server restarted without persistence.
pub fn is_missing_group(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

/// An error as one line, with the server's detail when there is one.
pub fn describe(e: &RedisError) -> String {
    e.to_string()
}

/// The URL with `***` in place of a password, for messages and logs.
pub fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => raw.to_string(),
        // Not a URL: print nothing after a possible password separator.
        Err(_) => match raw.rfind('@') {
            Some(at) => format!("<redacted>{}", &raw[at..]),
            None => raw.to_string(),
        },
    }
}

/// Pauses that double from 100 ms up to 5 s, with jitter so that instances sharing a
/// group do not reconnect in step.
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Self { next: FIRST_BACKOFF }
    }

    /// The next pause without taking it.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The pause to take now.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next.mul_f64(0.75 + fastrand::f64() * 0.5);
        self.next = (self.next * 2).min(MAX_BACKOFF);
        pause
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("redis://:s3cret@cache:6380/2"), "redis://:***@cache:6380/2");
        assert_eq!(redact("rediss://app:s3cret@cache:6380"), "rediss://app:***@cache:6380");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert!(!redact("not a url:pw@host").contains("pw"));
    }

    #[test]
    fn urls_redis_refuses_are_configuration_errors() {
        let e = RedisLink::open("http://x", Duration::from_secs(1)).err().unwrap();
        assert!(
            matches!(e, BridgeError::Config(ref m) if m.contains("--redis-url http://x")),
            "{e}"
        );
        assert!(RedisLink::open("rediss://user:pw@example.com:6380/0", Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn backoff_grows_to_a_ceiling() {
        let mut b = Backoff::new();
        let pauses: Vec<Duration> = (0..12).map(|_| b.next_pause()).collect();
        assert!(pauses[0] <= Duration::from_millis(125));
        assert!(pauses.iter().all(|p| *p <= MAX_BACKOFF.mul_f64(1.25)));
        assert_eq!(b.peek(), MAX_BACKOFF);
    }

    #[test]
    fn lost_and_refused_connections_are_transient_and_type_errors_are_not() {
        assert!(is_transient(&not_connected()));
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_transient(&refused));
        let wrongtype: RedisError = (ErrorKind::UnexpectedReturnType, "x").into();
        assert!(!is_transient(&wrongtype));
    }
}
