//! An HTTP/1.1 fault-injection proxy between a client (the handler) and a
//! server (Azurite).
//!
//! The proxy parses every request on a client connection (request line,
//! headers, `Content-Length` or chunked body), so keep-alive connections are
//! handled per request: each request is matched against the rules, then
//! either answered/broken by the proxy or forwarded on an upstream connection
//! that belongs to that client connection (opened lazily, reused while both
//! sides keep it alive, and re-opened once if a reused one turns out to be
//! closed before any response byte). Responses are streamed back with their
//! framing preserved (`Content-Length`, chunked, or until close; none for
//! `HEAD`, 1xx, 204 and 304).
//!
//! Rules are checked in the order they were added; the first rule that
//! matches the request (method, path substring), still has budget
//! ([`Rule::first`], [`Rule::max_faults`]) and wins its probability roll
//! decides the request; otherwise the request is forwarded unchanged.
//! Probability rolls come from one `fastrand::Rng` seeded at start, so a
//! given sequence of requests sees the same faults on every run.
//!
//! Request bodies are buffered in memory (up to 256 MiB) before forwarding.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http1::{self, BodyKind, Head};

/// What the proxy does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward unchanged.
    PassThrough,
    /// Answer with this status without forwarding (the request body is read
    /// and discarded, the connection stays usable). `retry_after` adds a
    /// `Retry-After: <seconds>` header.
    Status {
        /// HTTP status code, e.g. 500, 503, 429.
        status: u16,
        /// Seconds for a `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// Abort the client connection with a TCP reset (RST), no response.
    Reset,
    /// Close the client connection (FIN) without a response.
    Close,
    /// Wait this long, then forward.
    Latency(Duration),
    /// Forward, then hold the response this long before relaying it (the
    /// server has already acted on the request when the client times out).
    SlowResponse(Duration),
    /// Forward (the server acts on the request), read the response, then
    /// reset the client connection instead of relaying it: "the write
    /// succeeded but the acknowledgement was lost".
    LoseResponse,
}

impl Fault {
    /// Short name of the fault kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::PassThrough => "pass-through",
            Fault::Status { .. } => "status",
            Fault::Reset => "reset",
            Fault::Close => "close",
            Fault::Latency(_) => "latency",
            Fault::SlowResponse(_) => "slow-response",
            Fault::LoseResponse => "lose-response",
        }
    }
}

/// A fault-injection rule. Built with a constructor plus chained options:
///
/// ```
/// use hub2lake_testkit::fault_proxy::Rule;
/// let rule = Rule::status(503).method("PUT").path_contains("/_receipts/").first(2);
/// let flaky = Rule::reset().probability(0.3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    fault: Fault,
    probability: f64,
    method: Option<String>,
    path_contains: Option<String>,
    first: Option<u64>,
    max_faults: Option<u64>,
}

impl Rule {
    /// A rule applying `fault` to every request (probability 1).
    pub fn new(fault: Fault) -> Self {
        Rule {
            fault,
            probability: 1.0,
            method: None,
            path_contains: None,
            first: None,
            max_faults: None,
        }
    }

    /// Answer with `status` (500, 503, ...) without forwarding.
    pub fn status(status: u16) -> Self {
        Self::new(Fault::Status {
            status,
            retry_after: None,
        })
    }

    /// Answer `429 Too Many Requests` with `Retry-After: <retry_after_secs>`.
    pub fn throttle(retry_after_secs: u64) -> Self {
        Self::new(Fault::Status {
            status: 429,
            retry_after: Some(retry_after_secs),
        })
    }

    /// Reset the client connection (RST).
    pub fn reset() -> Self {
        Self::new(Fault::Reset)
    }

    /// Close the client connection without answering.
    pub fn close() -> Self {
        Self::new(Fault::Close)
    }

    /// Delay the request by `delay`, then forward it.
    pub fn latency(delay: Duration) -> Self {
        Self::new(Fault::Latency(delay))
    }

    /// Forward, then hold the response for `delay`.
    pub fn slow_response(delay: Duration) -> Self {
        Self::new(Fault::SlowResponse(delay))
    }

    /// Forward, then drop the response and reset the client connection.
    pub fn lose_response() -> Self {
        Self::new(Fault::LoseResponse)
    }

    /// Forward matching requests unchanged (shields them from later rules).
    pub fn pass_through() -> Self {
        Self::new(Fault::PassThrough)
    }

    /// Apply with this probability (clamped to 0..=1), rolled per matching request.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self
    }

    /// Only requests with this method (case-insensitive).
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose target (path and query) contains `needle`.
    pub fn path_contains(mut self, needle: &str) -> Self {
        self.path_contains = Some(needle.to_string());
        self
    }

    /// Consider only the first `n` matching requests (whether or not the
    /// probability roll fires); later ones skip this rule.
    pub fn first(mut self, n: u64) -> Self {
        self.first = Some(n);
        self
    }

    /// Inject at most `n` faults, then skip this rule.
    pub fn max_faults(mut self, n: u64) -> Self {
        self.max_faults = Some(n);
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_contains.as_deref().is_none_or(|p| target.contains(p))
    }
}

/// Identifies a rule added with [`ProxyHandle::add_rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(u64);

/// Counters since the proxy started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Requests parsed from clients.
    pub requests: u64,
    /// Requests forwarded upstream (including delayed ones).
    pub forwarded: u64,
    /// Requests answered with an injected status.
    pub injected_status: u64,
    /// Injected statuses by code.
    pub by_status: BTreeMap<u16, u64>,
    /// Connections reset by a [`Fault::Reset`] rule.
    pub resets: u64,
    /// Connections closed by a [`Fault::Close`] rule.
    pub closes: u64,
    /// Requests delayed by a [`Fault::Latency`] or [`Fault::SlowResponse`] rule.
    pub delayed: u64,
    /// Responses dropped by a [`Fault::LoseResponse`] rule.
    pub lost_responses: u64,
    /// Requests that could not be forwarded (upstream refused or broke); the
    /// client connection is reset.
    pub upstream_errors: u64,
    /// Client connections closed because an outage began.
    pub outage_closes: u64,
}

impl ProxyStats {
    /// All injected faults: statuses + resets + closes + delays + lost responses.
    pub fn faults(&self) -> u64 {
        self.injected_status + self.resets + self.closes + self.delayed + self.lost_responses
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Request method.
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// What the proxy did ([`Fault::PassThrough`] when forwarded unchanged).
    pub action: Fault,
    /// Status the client received: the injected one, or Azurite's (`None`
    /// for resets/closes, upstream failures, or while the response is in flight).
    pub status: Option<u16>,
}

const MAX_LOG: usize = 100_000;

#[derive(Debug)]
struct RuleState {
    id: RuleId,
    rule: Rule,
    matched: u64,
    fired: u64,
}

#[derive(Debug)]
struct Shared {
    rules: Mutex<Vec<RuleState>>,
    rng: Mutex<fastrand::Rng>,
    stats: Mutex<ProxyStats>,
    log: Mutex<Vec<LoggedRequest>>,
    next_id: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Picks the action for a request and logs it; returns the log slot.
    fn decide(&self, method: &str, target: &str) -> (Fault, Option<usize>) {
        let mut rules = lock(&self.rules);
        let mut rng = lock(&self.rng);
        let mut action = Fault::PassThrough;
        for r in rules.iter_mut() {
            if !r.rule.matches(method, target)
                || r.rule.first.is_some_and(|n| r.matched >= n)
                || r.rule.max_faults.is_some_and(|n| r.fired >= n)
            {
                continue;
            }
            r.matched += 1;
            let p = r.rule.probability;
            let hit = if p >= 1.0 {
                true
            } else if p <= 0.0 {
                false
            } else {
                rng.f64() < p
            };
            if hit {
                r.fired += 1;
                action = r.rule.fault.clone();
                break;
            }
        }
        drop(rng);
        drop(rules);
        let mut log = lock(&self.log);
        let slot = (log.len() < MAX_LOG).then(|| {
            log.push(LoggedRequest {
                method: method.to_string(),
                target: target.to_string(),
                action: action.clone(),
                status: None,
            });
            log.len() - 1
        });
        (action, slot)
    }

    fn log_status(&self, slot: Option<usize>, status: u16) {
        if let Some(i) = slot {
            if let Some(entry) = lock(&self.log).get_mut(i) {
                entry.status = Some(status);
            }
        }
    }

    fn stat(&self, f: impl FnOnce(&mut ProxyStats)) {
        f(&mut lock(&self.stats));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Control {
    outage: bool,
    shutdown: bool,
}

/// Thread-safe control of a running [`FaultProxy`]; cheap to clone and usable
/// from any thread or task.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    control: Arc<watch::Sender<Control>>,
}

impl ProxyHandle {
    /// The proxy's listening address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`: use it where Azurite's base URL would go
    /// (e.g. `AZURITE_BLOB_STORAGE_URL`, or
    /// [`crate::azurite::object_store_builder`]).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The upstream address requests are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Adds a rule after the existing ones.
    pub fn add_rule(&self, rule: Rule) -> RuleId {
        let id = {
            let mut n = lock(&self.shared.next_id);
            *n += 1;
            RuleId(*n)
        };
        lock(&self.shared.rules).push(RuleState {
            id,
            rule,
            matched: 0,
            fired: 0,
        });
        id
    }

    /// Removes a rule; `false` if it was not there.
    pub fn remove_rule(&self, id: RuleId) -> bool {
        let mut rules = lock(&self.shared.rules);
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() != before
    }

    /// Removes all rules (everything passes through).
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// How many times a rule's fault was applied.
    pub fn fired(&self, id: RuleId) -> u64 {
        lock(&self.shared.rules)
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.fired)
    }

    /// Re-seeds the probability generator.
    pub fn reseed(&self, seed: u64) {
        *lock(&self.shared.rng) = fastrand::Rng::with_seed(seed);
    }

    /// Full outage on/off. On: the listening socket is closed (new connections
    /// are refused) and open client connections are closed. Off: the proxy
    /// listens again on the same port.
    pub fn set_outage(&self, outage: bool) {
        self.control.send_modify(|c| c.outage = outage);
    }

    /// Counters since start.
    pub fn stats(&self) -> ProxyStats {
        lock(&self.shared.stats).clone()
    }

    /// Requests seen so far (at most the first 100 000).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }
}

/// A running fault-injection proxy. Dereferences to its [`ProxyHandle`];
/// dropping it stops the proxy and closes its connections.
#[derive(Debug)]
pub struct FaultProxy {
    handle: ProxyHandle,
    accept_task: JoinHandle<()>,
}

impl Deref for FaultProxy {
    type Target = ProxyHandle;
    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.handle.control.send_modify(|c| c.shutdown = true);
        self.accept_task.abort();
    }
}

fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `target`, with
    /// `seed` for the probability rolls. Must be called within a tokio runtime.
    pub async fn start(target: SocketAddr, seed: u64) -> io::Result<FaultProxy> {
        let listener = bind_listener(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            rules: Mutex::new(Vec::new()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            stats: Mutex::new(ProxyStats::default()),
            log: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
        });
        let (tx, rx) = watch::channel(Control::default());
        let accept_task = tokio::spawn(accept_loop(listener, addr, target, shared.clone(), rx));
        Ok(FaultProxy {
            handle: ProxyHandle {
                addr,
                target,
                shared,
                control: Arc::new(tx),
            },
            accept_task,
        })
    }

    /// A cloneable, thread-safe handle for controlling the proxy.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut rx: watch::Receiver<Control>,
) {
    let conn_rx = rx.clone();
    let mut listener = Some(listener);
    loop {
        let Some(l) = listener.take() else { return };
        loop {
            tokio::select! {
                accepted = l.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    shared.stat(|s| s.connections += 1);
                    let shared = shared.clone();
                    let mut conn_rx = conn_rx.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve_connection(stream, target, &shared) => {}
                            _ = conn_rx.wait_for(|c| c.outage || c.shutdown) => {
                                shared.stat(|s| s.outage_closes += 1);
                            }
                        }
                    });
                }
                changed = rx.wait_for(|c| c.outage || c.shutdown) => {
                    if changed.is_err() { return; }
                    break;
                }
            }
        }
        drop(l);
        match rx.wait_for(|c| !c.outage || c.shutdown).await {
            Ok(c) if !c.shutdown => {}
            _ => return,
        }
        // Listen again on the same port; retry briefly if it is still busy.
        for _ in 0..50 {
            match bind_listener(addr) {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

struct Upstream {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Upstream {
    async fn connect(target: SocketAddr) -> io::Result<Upstream> {
        let s = TcpStream::connect(target).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Upstream {
            r: BufReader::new(r),
            w,
        })
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

fn injected_response(status: u16, retry_after: Option<u64>, head_only: bool, close: bool) -> Vec<u8> {
    let code = match status {
        500 => "InternalError",
        503 => "ServerBusy",
        _ => "InjectedFault",
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code>\
         <Message>Injected by hub2lake FaultProxy</Message></Error>"
    );
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-ms-error-code: {code}\r\nx-hub2lake-fault: status\r\n",
        reason(status),
        body.len()
    );
    if let Some(s) = retry_after {
        out.push_str(&format!("Retry-After: {s}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&body);
    }
    out.into_bytes()
}

fn wants_close(head: &Head) -> bool {
    head.has_token("connection", "close") || (head.is_http10() && !head.has_token("connection", "keep-alive"))
}

fn reset(cr: BufReader<OwnedReadHalf>, cw: BufWriter<OwnedWriteHalf>) {
    if let Ok(s) = cr.into_inner().reunite(cw.into_inner()) {
        let _ = s.set_zero_linger();
        drop(s);
    }
}

async fn serve_connection(client: TcpStream, target: SocketAddr, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let (r, w) = client.into_split();
    let mut cr = BufReader::new(r);
    let mut cw = BufWriter::new(w);
    let mut upstream: Option<Upstream> = None;
    loop {
        let mut head = match http1::read_head(&mut cr).await {
            Ok(Some(h)) => h,
            _ => return,
        };
        let Ok((method, path)) = head.request_parts() else {
            return;
        };
        shared.stat(|s| s.requests += 1);
        let Ok(kind) = head.request_body() else {
            return;
        };
        if head.has_token("expect", "100-continue") {
            head.remove_header("expect");
            if kind != BodyKind::Empty
                && (cw.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() || cw.flush().await.is_err())
            {
                return;
            }
        }
        let Ok(body) = http1::read_body_raw(&mut cr, kind, http1::MAX_BUFFERED_BODY).await else {
            return;
        };
        let client_close = wants_close(&head);
        let (action, slot) = shared.decide(&method, &path);
        match action {
            Fault::Reset => {
                shared.stat(|s| s.resets += 1);
                reset(cr, cw);
                return;
            }
            Fault::Close => {
                shared.stat(|s| s.closes += 1);
                return;
            }
            Fault::Status { status, retry_after } => {
                shared.log_status(slot, status);
                shared.stat(|s| {
                    s.injected_status += 1;
                    *s.by_status.entry(status).or_default() += 1;
                });
                let resp = injected_response(status, retry_after, method.eq_ignore_ascii_case("HEAD"), client_close);
                if cw.write_all(&resp).await.is_err() || cw.flush().await.is_err() || client_close {
                    return;
                }
                continue;
            }
            Fault::Latency(d) => {
                shared.stat(|s| s.delayed += 1);
                tokio::time::sleep(d).await;
            }
            Fault::SlowResponse(_) => shared.stat(|s| s.delayed += 1),
            Fault::LoseResponse => shared.stat(|s| s.lost_responses += 1),
            Fault::PassThrough => {}
        }
        let mode = match action {
            Fault::SlowResponse(d) => Relay::After(d),
            Fault::LoseResponse => Relay::Drop,
            _ => Relay::Now,
        };
        shared.stat(|s| s.forwarded += 1);
        match forward(&mut upstream, target, &head, &body, &method, mode, &mut cw).await {
            Ok((status, _)) if mode == Relay::Drop => {
                shared.log_status(slot, status);
                reset(cr, cw);
                return;
            }
            Ok((status, close)) => {
                shared.log_status(slot, status);
                if client_close || close {
                    let _ = cw.shutdown().await;
                    return;
                }
            }
            Err(ForwardError::BeforeResponse(_)) => {
                shared.stat(|s| s.upstream_errors += 1);
                reset(cr, cw);
                return;
            }
            Err(ForwardError::MidResponse(_)) => {
                // Part of a response went out: the client can only see a
                // truncated message, so break the connection.
                shared.stat(|s| s.upstream_errors += 1);
                reset(cr, cw);
                return;
            }
        }
    }
}

#[derive(Debug)]
enum ForwardError {
    BeforeResponse(#[allow(dead_code)] io::Error),
    MidResponse(#[allow(dead_code)] io::Error),
}

/// What to do with the upstream response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    Now,
    After(Duration),
    /// Read it completely (keeping the upstream connection in sync) and discard it.
    Drop,
}

/// Forwards one request; returns the response status and whether the
/// connection must close after it.
async fn forward(
    upstream: &mut Option<Upstream>,
    target: SocketAddr,
    head: &Head,
    body: &[u8],
    method: &str,
    relay: Relay,
    cw: &mut BufWriter<OwnedWriteHalf>,
) -> Result<(u16, bool), ForwardError> {
    let mut request = head.to_bytes();
    request.extend_from_slice(body);

    let mut may_retry = upstream.is_some();
    let mut resp_head = loop {
        let up = match upstream {
            Some(u) => u,
            None => upstream.insert(Upstream::connect(target).await.map_err(ForwardError::BeforeResponse)?),
        };
        let sent = async {
            up.w.write_all(&request).await?;
            http1::read_head(&mut up.r).await
        }
        .await;
        match sent {
            Ok(Some(h)) => break h,
            Ok(None) | Err(_) if may_retry => {
                // A reused connection the server had already closed.
                *upstream = None;
                may_retry = false;
            }
            Ok(None) => {
                *upstream = None;
                return Err(ForwardError::BeforeResponse(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed without a response",
                )));
            }
            Err(e) => {
                *upstream = None;
                return Err(ForwardError::BeforeResponse(e));
            }
        }
    };
    let Some(up) = upstream.as_mut() else {
        return Err(ForwardError::BeforeResponse(io::Error::other(
            "upstream connection lost",
        )));
    };
    let result = async {
        // Relay interim responses (1xx other than 101) and read the final one.
        loop {
            let status = resp_head.status()?;
            if (100..200).contains(&status) && status != 101 {
                if relay != Relay::Drop {
                    cw.write_all(&resp_head.to_bytes()).await?;
                }
                resp_head = http1::read_head(&mut up.r)
                    .await?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF after 1xx"))?;
            } else {
                break;
            }
        }
        let kind = resp_head.response_body(method)?;
        if relay == Relay::Drop {
            http1::copy_body(&mut up.r, &mut tokio::io::sink(), kind).await?;
        } else {
            if let Relay::After(d) = relay {
                tokio::time::sleep(d).await;
            }
            cw.write_all(&resp_head.to_bytes()).await?;
            http1::copy_body(&mut up.r, cw, kind).await?;
            cw.flush().await?;
        }
        let close = kind == BodyKind::UntilClose || wants_close(&resp_head);
        Ok::<(u16, bool), io::Error>((resp_head.status()?, close))
    }
    .await;
    match result {
        Ok((status, close)) => {
            if close {
                *upstream = None;
            }
            Ok((status, close))
        }
        Err(e) => {
            *upstream = None;
            Err(ForwardError::MidResponse(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_matching() {
        let r = Rule::status(503).method("put").path_contains("/_receipts/");
        assert!(r.matches("PUT", "/devstoreaccount1/lake/_receipts/x"));
        assert!(!r.matches("GET", "/devstoreaccount1/lake/_receipts/x"));
        assert!(!r.matches("PUT", "/devstoreaccount1/lake/data/x"));
        assert!(Rule::reset().matches("HEAD", "/"));
        assert_eq!(Rule::close().probability(f64::NAN).probability, 0.0);
        assert_eq!(Rule::close().probability(7.0).probability, 1.0);
    }

    #[test]
    fn injected_response_shape() {
        let r = String::from_utf8(injected_response(429, Some(2), false, false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{r}");
        assert!(r.contains("Retry-After: 2\r\n"));
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let h = String::from_utf8(injected_response(503, None, true, true)).unwrap();
        assert!(h.ends_with("Connection: close\r\n\r\n"), "{h}");
    }

    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncReadExt;

    /// A scripted HTTP/1.1 upstream; returns its address and accepted-connection count.
    async fn scripted_upstream() -> (SocketAddr, Arc<AtomicU64>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    while let Ok(Some(h)) = http1::read_head(&mut r).await {
                        let (method, path) = h.request_parts().unwrap();
                        let kind = h.request_body().unwrap();
                        let raw = http1::read_body_raw(&mut r, kind, 1 << 20).await.unwrap();
                        let body = if kind == BodyKind::Chunked {
                            http1::dechunk(&raw).unwrap()
                        } else {
                            raw
                        };
                        let resp: Vec<u8> = match (method.as_str(), path.as_str()) {
                            ("GET", "/chunked") => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                                5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                                .to_vec(),
                            ("HEAD", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec(),
                            (_, "/nocontent") => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                            ("PUT", "/echo") => {
                                let mut v = format!(
                                    "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nX-Expect: {}\r\n\r\n",
                                    body.len(),
                                    h.header("expect").unwrap_or("none")
                                )
                                .into_bytes();
                                v.extend_from_slice(&body);
                                v
                            }
                            (_, "/close") => {
                                let _ = w.write_all(b"HTTP/1.1 200 OK\r\n\r\nbye").await;
                                return;
                            }
                            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                        };
                        if w.write_all(&resp).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn read_response(r: &mut BufReader<OwnedReadHalf>, method: &str) -> (u16, Head, Vec<u8>) {
        let h = http1::read_head(r).await.unwrap().unwrap();
        let kind = h.response_body(method).unwrap();
        let raw = http1::read_body_raw(r, kind, 1 << 20).await.unwrap();
        let body = if kind == BodyKind::Chunked {
            http1::dechunk(&raw).unwrap()
        } else {
            raw
        };
        (h.status().unwrap(), h, body)
    }

    #[tokio::test]
    async fn keep_alive_framing_through_the_proxy() {
        let (upstream, upstream_conns) = scripted_upstream().await;
        let proxy = FaultProxy::start(upstream, 9).await.unwrap();
        let s = TcpStream::connect(proxy.addr()).await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);

        // Pipelined: chunked response, HEAD with Content-Length, 204.
        w.write_all(
            b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        let (st, _, body) = read_response(&mut r, "GET").await;
        assert_eq!((st, body.as_slice()), (200, &b"hello world"[..]));
        let (st, h, body) = read_response(&mut r, "HEAD").await;
        assert_eq!((st, h.header("content-length"), body.len()), (200, Some("100"), 0));
        let (st, _, body) = read_response(&mut r, "GET").await;
        assert_eq!((st, body.len()), (204, 0));

        // Chunked request body.
        w.write_all(
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        let (st, _, body) = read_response(&mut r, "PUT").await;
        assert_eq!((st, body.as_slice()), (201, &b"abcde"[..]));

        // Expect: 100-continue is answered by the proxy and not forwarded.
        w.write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            .await
            .unwrap();
        let h = http1::read_head(&mut r).await.unwrap().unwrap();
        assert_eq!(h.status().unwrap(), 100);
        w.write_all(b"xyz").await.unwrap();
        let (st, h, body) = read_response(&mut r, "PUT").await;
        assert_eq!(
            (st, h.header("x-expect"), body.as_slice()),
            (201, Some("none"), &b"xyz"[..])
        );

        // An injected status keeps the connection usable (body drained).
        let id = proxy.add_rule(Rule::status(500).first(1));
        w.write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd")
            .await
            .unwrap();
        let (st, h, _) = read_response(&mut r, "PUT").await;
        assert_eq!((st, h.header("x-ms-error-code")), (500, Some("InternalError")));
        assert_eq!(proxy.fired(id), 1);

        // Until-close response: relayed, then the proxy closes the client side.
        w.write_all(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (st, _, body) = read_response(&mut r, "GET").await;
        assert_eq!((st, body.as_slice()), (200, &b"bye"[..]));
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());

        let stats = proxy.stats();
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.requests, 7);
        assert_eq!(stats.forwarded, 6);
        assert_eq!(
            upstream_conns.load(Ordering::SeqCst),
            1,
            "one upstream connection reused"
        );
        let log = proxy.requests();
        assert_eq!(log[0].method, "GET");
        assert_eq!(log[0].target, "/chunked");
        assert_eq!(
            log[5].action,
            Fault::Status {
                status: 500,
                retry_after: None
            }
        );
        let statuses: Vec<_> = log.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [200, 200, 204, 201, 201, 500, 200].map(Some).to_vec());
    }

    #[tokio::test]
    async fn reused_upstream_closed_by_server_is_retried_once() {
        // Upstream closes every connection after one response without saying so.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    if let Ok(Some(_)) = http1::read_head(&mut r).await {
                        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                    }
                });
            }
        });
        let proxy = FaultProxy::start(upstream, 1).await.unwrap();
        let s = TcpStream::connect(proxy.addr()).await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        for _ in 0..3 {
            w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let (st, _, body) = read_response(&mut r, "GET").await;
            assert_eq!((st, body.as_slice()), (200, &b"ok"[..]));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(proxy.stats().upstream_errors, 0);
    }
}
