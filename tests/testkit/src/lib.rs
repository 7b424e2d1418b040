//! Test support for hub2lake: a real Azurite blob service per test, container
//! creation with Shared Key, object_store configuration for Azurite on a
//! non-default port, and an HTTP fault-injection proxy.
//!
//! # Prerequisite
//!
//! The pinned Azurite comes from the workspace's `package.json` /
//! `package-lock.json`: run `npm ci` in the workspace root once, which puts
//! `node_modules/.bin/azurite-blob` there (`npm ci && cargo test --workspace`).
//! `HUB2LAKE_AZURITE_BIN` may point at another `azurite-blob` executable.
//! [`azurite::Azurite::start`] fails with a message saying so when it is missing.
//!
//! # Usage
//!
//! ```no_run
//! use hub2lake_testkit::azurite::Azurite;
//! use hub2lake_testkit::fault_proxy::{FaultProxy, Rule};
//! use object_store::{ObjectStoreExt, PutPayload, RetryConfig, path::Path};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Azurite on a free 127.0.0.1 port, telemetry off, data in a temp dir.
//! let mut azurite = Azurite::start().await?;
//! azurite.create_container("lake").await?;
//!
//! // In process: an explicit endpoint (no process environment needed).
//! let store = azurite.object_store_builder("lake").build()?;
//! store.put(&Path::from("a/b.jsonl"), PutPayload::from_static(b"{}\n")).await?;
//!
//! // For the handler as a child process: object_store's emulator mode.
//! let env = azurite.env_for_object_store("lake");
//! let mut cmd = std::process::Command::new("path/to/handler");
//! cmd.envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
//! // ... and hand it env.lake_url ("az://lake") as its lake URL.
//!
//! // Faults: put a proxy between the client and Azurite.
//! let proxy = FaultProxy::start(azurite.addr(), 42).await?;
//! let failing = hub2lake_testkit::azurite::object_store_builder(&proxy.base_url(), "lake")
//!     .with_retry(RetryConfig { max_retries: 0, ..Default::default() })
//!     .build()?;
//! proxy.add_rule(Rule::status(503).method("PUT").path_contains("/_receipts/").first(1));
//! assert!(failing.put(&Path::from("_receipts/x"), PutPayload::from_static(b"r")).await.is_err());
//! assert_eq!(proxy.stats().injected_status, 1);
//!
//! // Outage and recovery with the data intact, on the same port.
//! azurite.stop().await?;
//! azurite.restart().await?;
//! # Ok(()) }
//! ```
//!
//! # object_store and Azurite on a non-default port (object_store 0.14)
//!
//! `MicrosoftAzureBuilder::build()` has two ways to reach Azurite:
//!
//! * **Emulator mode** — `with_use_emulator(true)` or
//!   `AZURE_STORAGE_USE_EMULATOR=true` (via `from_env()`/`with_config`). The
//!   service URL is then taken **only** from the process environment variable
//!   `AZURITE_BLOB_STORAGE_URL` (read with `std::env::var` inside `build()`,
//!   default `http://127.0.0.1:10000`); `with_endpoint` / `AZURE_STORAGE_ENDPOINT`
//!   are ignored in this mode. Requests go to `<url>/<account>/<container>/<path>`,
//!   HTTP is allowed automatically, the account defaults to `devstoreaccount1`
//!   and the key to the well-known one unless `AZURE_STORAGE_ACCOUNT_NAME` /
//!   `AZURE_STORAGE_ACCOUNT_KEY` are given. This is what
//!   [`azurite::Azurite::env_for_object_store`] returns, for the handler run as a
//!   child process: `AZURE_STORAGE_USE_EMULATOR=true`,
//!   `AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:<port>`,
//!   `AZURE_STORAGE_ACCOUNT_NAME=devstoreaccount1`,
//!   `AZURE_STORAGE_ACCOUNT_KEY=<well-known key>`, and the lake URL `az://<container>`.
//!   Because the URL is process-global, one test process cannot talk to two
//!   Azurites (or an Azurite and a proxy) this way at the same time.
//! * **Endpoint mode** — `with_endpoint("http://127.0.0.1:<port>/devstoreaccount1")`,
//!   `with_allow_http(true)`, `with_account("devstoreaccount1")`,
//!   `with_access_key(<key>)`, `with_container_name(..)` (config keys
//!   `AZURE_STORAGE_ENDPOINT`, `AZURE_ALLOW_HTTP`, `AZURE_STORAGE_ACCOUNT_NAME`,
//!   `AZURE_STORAGE_ACCOUNT_KEY`). Requests go to `<endpoint>/<container>/<path>`,
//!   the same path-style URLs, and need no process environment:
//!   [`azurite::object_store_builder`] / [`azurite::Azurite::object_store_builder`].
//!
//! Facts checked by this crate's tests against Azurite 3.35.0: `PutMode::Create`
//! (`If-None-Match: *`) on an existing blob is answered 409 and surfaces as
//! `object_store::Error::AlreadyExists`; `Content-Type`, `Content-Encoding` and
//! user metadata round-trip through `put_opts`/`get` attributes (the body comes
//! back as stored, no transparent decoding); listing with a prefix works; data
//! survives [`azurite::Azurite::stop`] + `restart`.
//!
//! Gotchas: `with_client_options(ClientOptions::new()...)` *replaces* the
//! builder's client options, so call `.with_allow_http(true)` on the
//! `ClientOptions` too (otherwise reqwest fails with "builder error: BadScheme"
//! in endpoint mode; emulator mode forces allow_http itself). The development
//! account key ends in `...K1SZFPTOtr/KBHBeksoGMGw==` ([`azurite::DEV_ACCOUNT_KEY`]).
//!
//! # Fault injection
//!
//! [`fault_proxy::FaultProxy`] sits between a client and Azurite and applies
//! [`fault_proxy::Rule`]s per HTTP request: injected status (500/503/429 with
//! `Retry-After`), connection reset, close, added latency, a slow response
//! (the server acts, the client times out), a lost response (the server acts,
//! the client sees a reset), and a full outage (`set_outage`: connections
//! refused). Rules can match a method and a path substring, fire with a
//! probability (seeded, deterministic for a given request order) and be
//! limited to the first N matches or N faults. Point the handler at it with
//! `azurite::object_store_env(&proxy.base_url(), "lake")`.
//!
//! All `async` functions need a tokio runtime (`#[tokio::test]` is enough).
//!
//! # Processes
//!
//! Azurite is always started with `--disableTelemetry` (without it, it tries to
//! reach an outside address and hangs on stop), `--location <temp dir>`,
//! `--blobHost 127.0.0.1 --blobPort <free port>`, `--skipApiVersionCheck`,
//! `--loose` and `--silent`. It runs in its own process group, killed on drop
//! (also while a test panics), and a supervisor kills it if the test process
//! dies without running destructors. Do not keep an [`azurite::Azurite`] in a
//! `static`: statics are never dropped (the supervisor still cleans up when the
//! test binary exits).

pub mod azurite;
pub mod fault_proxy;
mod handler;
mod http1;
pub mod shared_key;

pub use azurite::{Azurite, ObjectStoreEnv};
pub use fault_proxy::{Fault, FaultProxy, ProxyHandle, Rule};
pub use handler::{handler_command, wait_until_listening};

/// Error of the Azurite helpers: a message meant for the test log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result of the Azurite helpers.
pub type Result<T> = std::result::Result<T, Error>;

/// A free TCP port on 127.0.0.1 (bound, then released: good enough for tests that
/// start a server on it at once).
pub fn free_port() -> u16 {
    azurite::free_port().unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// The workspace's `handler` binary, built by the same `cargo test` run.
///
/// Integration tests run from `target/<profile>/deps/`; cargo puts the binaries of
/// every package under test one folder up. Tests of the operator package (which do
/// not own the `handler` target, so have no `CARGO_BIN_EXE_handler`) find it there:
/// `cargo test --workspace` builds it with the handler package's own tests.
pub fn handler_exe() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable under target/<profile>/deps");
    let handler = profile_dir.join(format!("handler{}", std::env::consts::EXE_SUFFIX));
    assert!(
        handler.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p hub2lake-handler` first)",
        handler.display()
    );
    handler
}
