//! Azurite lifecycle + object_store 0.14 behaviour against Azurite.

use std::time::Duration;

use futures::TryStreamExt;
use hub2lake_testkit::azurite::{Azurite, DEV_ACCOUNT};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

fn no_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        retry_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// `node` processes whose command line mentions `--blobPort <port>`.
fn azurite_pids_on(port: u16) -> Vec<u32> {
    let needle = format!("--blobPort\0{port}\0");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains(&needle) && !cmd.starts_with("sh\0") {
                pids.push(pid);
            }
        }
    }
    pids
}

#[tokio::test]
async fn object_store_against_azurite() {
    let azurite = Azurite::start().await.expect("start azurite");
    assert_eq!(
        azurite.blob_endpoint(),
        format!("http://127.0.0.1:{}/{DEV_ACCOUNT}", azurite.port())
    );
    assert!(azurite.create_container("lake").await.unwrap(), "created");
    assert!(!azurite.create_container("lake").await.unwrap(), "409 is success");

    let store = azurite
        .object_store_builder("lake")
        .with_retry(no_retry())
        .build()
        .unwrap();

    // put / get
    let p = Path::from("events/2025/11/23/12/part-0001.jsonl");
    store.put(&p, PutPayload::from_static(b"{\"a\":1}\n")).await.unwrap();
    let got = store.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"{\"a\":1}\n");

    // PutMode::Create twice -> AlreadyExists (Azurite answers If-None-Match:* with 409).
    let r = Path::from("_receipts/batch-1");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&r, PutPayload::from_static(b"one"), create())
        .await
        .unwrap();
    let err = store
        .put_opts(&r, PutPayload::from_static(b"two"), create())
        .await
        .unwrap_err();
    assert!(matches!(err, object_store::Error::AlreadyExists { .. }), "{err:?}");
    let kept = store.get(&r).await.unwrap().bytes().await.unwrap();
    assert_eq!(&kept[..], b"one");

    // Attributes round-trip.
    let mut attrs = Attributes::new();
    attrs.insert(Attribute::ContentType, AttributeValue::from("application/x-ndjson"));
    attrs.insert(Attribute::ContentEncoding, AttributeValue::from("gzip"));
    attrs.insert(Attribute::Metadata("batchid".into()), AttributeValue::from("abc-123"));
    let a = Path::from("events/with-attrs.jsonl.gz");
    store
        .put_opts(
            &a,
            PutPayload::from_static(b"\x1f\x8bnot-really-gzip"),
            PutOptions {
                attributes: attrs.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let res = store.get(&a).await.unwrap();
    let back = res.attributes.clone();
    assert_eq!(
        back.get(&Attribute::ContentType).map(|v| v.as_ref()),
        Some("application/x-ndjson")
    );
    assert_eq!(back.get(&Attribute::ContentEncoding).map(|v| v.as_ref()), Some("gzip"));
    assert_eq!(
        back.get(&Attribute::Metadata("batchid".into())).map(|v| v.as_ref()),
        Some("abc-123")
    );
    // The body comes back as stored (no transparent decoding).
    assert_eq!(&res.bytes().await.unwrap()[..], b"\x1f\x8bnot-really-gzip");

    // List with a prefix.
    store
        .put(
            &Path::from("events/2025/11/23/13/part-0001.jsonl"),
            PutPayload::from_static(b"x\n"),
        )
        .await
        .unwrap();
    let mut listed: Vec<String> = store
        .list(Some(&Path::from("events/2025")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "events/2025/11/23/12/part-0001.jsonl".to_string(),
            "events/2025/11/23/13/part-0001.jsonl".to_string(),
        ]
    );
    let receipts: Vec<_> = store.list(Some(&Path::from("_receipts"))).try_collect().await.unwrap();
    assert_eq!(receipts.len(), 1);

    // Missing blob -> NotFound.
    let err = store.get(&Path::from("nope")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn restart_keeps_data_on_the_same_port() {
    let mut azurite = Azurite::start().await.expect("start azurite");
    azurite.create_container("lake").await.unwrap();
    let port = azurite.port();
    let store = azurite
        .object_store_builder("lake")
        .with_retry(no_retry())
        .build()
        .unwrap();
    let p = Path::from("before/outage.jsonl");
    store.put(&p, PutPayload::from_static(b"kept\n")).await.unwrap();

    azurite.stop().await.unwrap();
    assert!(!azurite.is_running());
    let out = azurite.output();
    assert!(out.contains("successfully listens on"), "{out}");
    assert!(out.contains("successfully closed"), "graceful stop: {out}");
    assert!(azurite_pids_on(port).is_empty(), "azurite still running");
    let err = store
        .put(&Path::from("during/outage"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(!matches!(err, object_store::Error::AlreadyExists { .. }));

    azurite.restart().await.unwrap();
    assert_eq!(azurite.port(), port);
    assert!(azurite.is_running());
    let got = store.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"kept\n");
    // The container survived too.
    assert!(!azurite.create_container("lake").await.unwrap());

    // A crash (SIGKILL) followed by a restart also works.
    azurite.kill();
    assert!(!azurite.is_running());
    azurite.restart().await.unwrap();
    store
        .put(&Path::from("after/crash"), PutPayload::from_static(b"y"))
        .await
        .unwrap();
}

#[tokio::test]
async fn drop_kills_azurite() {
    let azurite = Azurite::start().await.expect("start azurite");
    let port = azurite.port();
    let location = azurite.location().to_path_buf();
    let pids = azurite_pids_on(port);
    assert_eq!(pids.len(), 1, "{pids:?}");
    drop(azurite);
    assert!(azurite_pids_on(port).is_empty(), "orphaned azurite");
    assert!(!location.exists(), "temp dir removed");
    if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let ss = std::process::Command::new("ss").args(["-ltnp"]).output().unwrap();
        panic!(
            "connected after drop: {:?} -> {:?}\n{}",
            s.local_addr(),
            s.peer_addr(),
            String::from_utf8_lossy(&ss.stdout)
        );
    }
}

#[tokio::test]
async fn panic_in_test_still_kills_azurite() {
    let azurite = Azurite::start().await.expect("start azurite");
    let port = azurite.port();
    let outcome = tokio::spawn(async move {
        let _az = azurite;
        panic!("simulated test failure");
    })
    .await;
    assert!(outcome.unwrap_err().is_panic());
    assert!(azurite_pids_on(port).is_empty(), "orphaned azurite");
}

#[tokio::test]
async fn missing_binary_tells_to_run_npm_ci() {
    let err = Azurite::builder()
        .bin("/nonexistent/node_modules/.bin/azurite-blob")
        .start()
        .await
        .unwrap_err();
    assert!(err.message().contains("npm ci"), "{err}");
    assert!(err.message().contains("HUB2LAKE_AZURITE_BIN"), "{err}");
}

#[tokio::test]
async fn failing_azurite_reports_its_stderr() {
    // An executable that is not Azurite: exits at once with a message.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("azurite-blob");
    std::fs::write(&fake, "#!/bin/sh\necho 'boom: bad flag' >&2\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Azurite::builder()
        .bin(&fake)
        .startup_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap_err();
    assert!(err.message().contains("boom: bad flag"), "{err}");
}

#[tokio::test]
async fn invalid_container_name_is_rejected_locally() {
    let azurite = Azurite::start().await.expect("start azurite");
    let err = azurite.create_container("Bad_Name").await.unwrap_err();
    assert!(err.message().contains("invalid container name"), "{err}");
}
