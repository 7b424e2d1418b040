//! The host's side of the local HTTP hop: one HTTP/1.1 request per invocation to
//! `http://127.0.0.1:<port>/<function>`, with the host's headers.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use hub2lake::telemetry::error_chain;

/// The host version the simulator claims to be (headers and `User-Agent`).
pub const HOST_VERSION: &str = "4.1040.300.0";

/// Why no HTTP answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Nothing listens on the port (or the connection was refused).
    Refused(String),
    /// The connection broke before a complete answer arrived.
    Dropped(String),
    /// No answer within the host's HTTP timeout.
    TimedOut,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "connection refused: {e}"),
            Self::Dropped(e) => write!(f, "connection dropped: {e}"),
            Self::TimedOut => f.write_str("no answer within the host's HTTP timeout"),
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// `GET path`, as the readiness probe sends it.
pub async fn get(port: u16, path: &str, timeout: Duration) -> Result<Answer, CallError> {
    let req = Request::get(path)
        .header("Host", format!("127.0.0.1:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| CallError::Dropped(e.to_string()))?;
    send(port, req, timeout).await
}

/// `POST /<function>` with an invocation body. `sent` fires once the whole body has
/// been handed to the connection (the fault hook kills the handler after that).
pub async fn invoke(
    port: u16,
    function: &str,
    body: Bytes,
    invocation_id: &str,
    timeout: Duration,
    sent: Option<oneshot::Sender<()>>,
) -> Result<Answer, CallError> {
    let len = body.len();
    let mut sent = sent;
    let frames =
        futures::stream::iter([Ok::<_, Infallible>(Frame::data(body))]).chain(futures::stream::poll_fn(move |_| {
            if let Some(tx) = sent.take() {
                let _ = tx.send(());
            }
            std::task::Poll::Ready(None)
        }));
    let req = Request::post(format!("/{function}"))
        .header("Host", format!("127.0.0.1:{port}"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Content-Length", len)
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
        .body(StreamBody::new(frames))
        .map_err(|e| CallError::Dropped(e.to_string()))?;
    send(port, req, timeout).await
}

use futures::StreamExt as _;

async fn send<B>(port: u16, req: Request<B>, timeout: Duration) -> Result<Answer, CallError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let call = async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| CallError::Refused(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| CallError::Dropped(e.to_string()))?;
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| CallError::Dropped(error_chain(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::Dropped(error_chain(&e)))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        // Drive the connection and the exchange together, so nothing outlives a
        // cancelled call.
        tokio::pin!(conn);
        tokio::pin!(exchange);
        tokio::select! {
            answer = &mut exchange => answer,
            ended = &mut conn => match ended {
                Err(e) => Err(CallError::Dropped(error_chain(&e))),
                Ok(()) => exchange.await,
            },
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(CallError::TimedOut))
}
