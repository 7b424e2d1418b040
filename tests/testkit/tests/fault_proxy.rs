//! The fault proxy between object_store and a real Azurite.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use hub2lake_testkit::azurite::{object_store_builder, Azurite};
use hub2lake_testkit::fault_proxy::{Fault, FaultProxy, Rule};
use object_store::azure::MicrosoftAzure;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig};

fn retry(max_retries: usize) -> RetryConfig {
    RetryConfig {
        max_retries,
        retry_timeout: Duration::from_secs(10),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            base: 2.0,
        },
    }
}

fn store_via(proxy: &FaultProxy, max_retries: usize) -> MicrosoftAzure {
    object_store_builder(&proxy.base_url(), "lake")
        .with_retry(retry(max_retries))
        .build()
        .unwrap()
}

async fn azurite_with_lake() -> Azurite {
    let azurite = Azurite::start().await.expect("start azurite");
    azurite.create_container("lake").await.unwrap();
    azurite
}

#[tokio::test]
async fn pass_through_and_keep_alive() {
    let azurite = azurite_with_lake().await;
    let proxy = FaultProxy::start(azurite.addr(), 1).await.unwrap();
    let store = store_via(&proxy, 0);

    for i in 0..5 {
        let p = Path::from(format!("data/{i}.jsonl"));
        store
            .put(&p, PutPayload::from(format!("{i}\n").into_bytes()))
            .await
            .unwrap();
        let got = store.get(&p).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, format!("{i}\n").as_bytes());
        // HEAD: Content-Length without a body must not desync the connection.
        let meta = store.head(&p).await.unwrap();
        assert_eq!(meta.size, 2);
    }
    let listed: Vec<_> = store.list(Some(&Path::from("data"))).try_collect().await.unwrap();
    assert_eq!(listed.len(), 5);
    store.delete(&Path::from("data/0.jsonl")).await.unwrap();
    // What Azurite answers to PutMode::Create on an existing blob (If-None-Match: *).
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let r = Path::from("_receipts/once");
    store
        .put_opts(&r, PutPayload::from_static(b"1"), create())
        .await
        .unwrap();
    let err = store
        .put_opts(&r, PutPayload::from_static(b"2"), create())
        .await
        .unwrap_err();
    assert!(matches!(err, object_store::Error::AlreadyExists { .. }), "{err:?}");
    let log = proxy.requests();
    let last = log.last().unwrap();
    assert_eq!((last.method.as_str(), last.status), ("PUT", Some(409)));
    // Container creation through the proxy works as well.
    assert!(!hub2lake_testkit::azurite::create_container_at(proxy.addr(), "lake")
        .await
        .unwrap());

    let stats = proxy.stats();
    assert_eq!(stats.requests, 5 * 3 + 1 + 1 + 2 + 1, "{stats:?}");
    assert_eq!(stats.forwarded, stats.requests);
    assert_eq!(stats.faults(), 0);
    assert_eq!(stats.upstream_errors, 0);
    // object_store reuses its connection: far fewer connections than requests.
    assert!(stats.connections <= 3, "{stats:?}");
    assert!(proxy.requests().iter().all(|r| r.action == Fault::PassThrough));
}

#[tokio::test]
async fn status_503_fails_put_without_retries() {
    let azurite = azurite_with_lake().await;
    let proxy = FaultProxy::start(azurite.addr(), 2).await.unwrap();
    let store = store_via(&proxy, 0);
    let rule = proxy.add_rule(Rule::status(503).method("PUT").path_contains("/_receipts/"));

    let err = store
        .put(&Path::from("_receipts/r1"), PutPayload::from_static(b"r"))
        .await
        .unwrap_err();
    let msg = format!("{err}");
    assert!(msg.contains("503"), "{msg}");
    // Other paths and methods are untouched.
    store
        .put(&Path::from("data/d1"), PutPayload::from_static(b"d"))
        .await
        .unwrap();
    assert!(matches!(
        store.get(&Path::from("_receipts/r1")).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(proxy.fired(rule), 1);
    let stats = proxy.stats();
    assert_eq!(stats.injected_status, 1);
    assert_eq!(stats.by_status.get(&503), Some(&1));

    // Removing the rule lets the put through.
    assert!(proxy.remove_rule(rule));
    store
        .put(&Path::from("_receipts/r1"), PutPayload::from_static(b"r"))
        .await
        .unwrap();
}

#[tokio::test]
async fn throttle_first_two_then_retry_succeeds() {
    let azurite = azurite_with_lake().await;
    let proxy = FaultProxy::start(azurite.addr(), 3).await.unwrap();
    let store = store_via(&proxy, 5);
    let rule = proxy.add_rule(Rule::throttle(1).method("PUT").first(2));
    let started = Instant::now();
    store
        .put_opts(
            &Path::from("_receipts/r"),
            PutPayload::from_static(b"r"),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(proxy.fired(rule), 2);
    assert_eq!(proxy.stats().by_status.get(&429), Some(&2));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn reset_close_and_latency() {
    let azurite = azurite_with_lake().await;
    let proxy = FaultProxy::start(azurite.addr(), 4).await.unwrap();
    let store = store_via(&proxy, 0);
    let p = Path::from("data/x");
    store.put(&p, PutPayload::from_static(b"x")).await.unwrap();

    proxy.add_rule(Rule::reset().method("GET").first(1));
    assert!(store.get(&p).await.is_err(), "reset must fail the request");
    assert_eq!(proxy.stats().resets, 1);
    store.get(&p).await.unwrap(); // the rule is exhausted

    proxy.clear_rules();
    proxy.add_rule(Rule::close().max_faults(1));
    assert!(store.get(&p).await.is_err(), "close must fail the request");
    assert_eq!(proxy.stats().closes, 1);
    store.get(&p).await.unwrap();

    proxy.clear_rules();
    proxy.add_rule(Rule::latency(Duration::from_millis(300)).method("GET"));
    let t = Instant::now();
    store.get(&p).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(proxy.stats().delayed, 1);

    // With retries, a reset is recovered from.
    proxy.clear_rules();
    proxy.add_rule(Rule::reset().first(1));
    let retrying = store_via(&proxy, 3);
    retrying.get(&p).await.unwrap();
}

async fn run_probabilistic(seed: u64) -> (u64, Vec<bool>) {
    let azurite = azurite_with_lake().await;
    let proxy = FaultProxy::start(azurite.addr(), seed).await.unwrap();
    let store = store_via(&proxy, 0);
    proxy.add_rule(Rule::status(500).probability(0.5).method("PUT"));
    let mut failed = Vec::new();
    for i in 0..30 {
        let r = store
            .put(&Path::from(format!("p/{i}")), PutPayload::from_static(b"z"))
            .await;
        failed.push(r.is_err());
    }
    let injected = proxy.stats().injected_status;
    assert_eq!(injected, failed.iter().filter(|f| **f).count() as u64);
    (injected, failed)
}

#[tokio::test]
async fn probability_is_deterministic_by_seed() {
    let (a, seq_a) = run_probabilistic(7).await;
    let (b, seq_b) = run_probabilistic(7).await;
    assert_eq!(a, b);
    assert_eq!(seq_a, seq_b);
    assert!(a > 0 && a < 30, "p=0.5 over 30 requests injected {a}");
}

#[tokio::test]
async fn outage_refuses_then_recovers() {
    let mut azurite = azurite_with_lake().await;
    let proxy = FaultProxy::start(azurite.addr(), 5).await.unwrap();
    let store = store_via(&proxy, 0);
    let p = Path::from("data/o");
    store.put(&p, PutPayload::from_static(b"o")).await.unwrap();

    proxy.set_outage(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.get(&p).await.is_err());
    assert!(tokio::net::TcpStream::connect(proxy.addr()).await.is_err());
    proxy.set_outage(false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.get(&p).await.unwrap();

    // Azurite itself down behind the proxy: the client connection is reset.
    azurite.stop().await.unwrap();
    assert!(store.get(&p).await.is_err());
    assert!(proxy.stats().upstream_errors >= 1);
    azurite.restart().await.unwrap();
    let got = store.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"o");
}

#[tokio::test]
async fn handle_is_usable_from_another_thread() {
    let azurite = azurite_with_lake().await;
    let proxy = FaultProxy::start(azurite.addr(), 6).await.unwrap();
    let handle = proxy.handle();
    let id = std::thread::spawn(move || handle.add_rule(Rule::status(500).first(1)))
        .join()
        .unwrap();
    let store = store_via(&proxy, 0);
    assert!(store
        .put(&Path::from("t"), PutPayload::from_static(b"t"))
        .await
        .is_err());
    assert_eq!(proxy.fired(id), 1);
}

#[tokio::test]
async fn lost_and_slow_responses_reach_the_server() {
    let azurite = azurite_with_lake().await;
    let proxy = FaultProxy::start(azurite.addr(), 8).await.unwrap();
    let store = store_via(&proxy, 0);
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };

    // The write is applied, but the client never hears so...
    let lose = proxy.add_rule(Rule::lose_response().method("PUT").first(1));
    let r = Path::from("_receipts/lost-ack");
    assert!(store
        .put_opts(&r, PutPayload::from_static(b"1"), create())
        .await
        .is_err());
    assert_eq!(proxy.fired(lose), 1);
    assert_eq!(proxy.stats().lost_responses, 1);
    let entry = proxy.requests().last().cloned().unwrap();
    assert_eq!((entry.action, entry.status), (Fault::LoseResponse, Some(201)));
    // ...so its retry finds the blob already there.
    let err = store
        .put_opts(&r, PutPayload::from_static(b"1"), create())
        .await
        .unwrap_err();
    assert!(matches!(err, object_store::Error::AlreadyExists { .. }), "{err:?}");

    // A slow response: the server has acted long before the client hears back.
    let fast = object_store_builder(&proxy.base_url(), "lake")
        .with_retry(retry(0))
        // with_client_options replaces the builder's options, allow_http included.
        .with_client_options(
            object_store::ClientOptions::new()
                .with_allow_http(true)
                .with_timeout(Duration::from_millis(300)),
        )
        .build()
        .unwrap();
    proxy.add_rule(Rule::slow_response(Duration::from_secs(1)).method("PUT").first(1));
    let s = Path::from("data/slow");
    let t = Instant::now();
    let err = fast.put(&s, PutPayload::from_static(b"s")).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(900), "{err}");
    assert_eq!(proxy.stats().delayed, 1);
    assert_eq!(&store.get(&s).await.unwrap().bytes().await.unwrap()[..], b"s");
}
