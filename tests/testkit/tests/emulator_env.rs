//! object_store's emulator mode, configured exactly as the handler will be:
//! from the variables of `Azurite::env_for_object_store` plus the lake URL.
//!
//! Emulator mode reads `AZURITE_BLOB_STORAGE_URL` from the process
//! environment, so this file holds a single test (its own process) that sets it.

use hub2lake_testkit::azurite::Azurite;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

#[tokio::test]
async fn env_for_object_store_drives_emulator_mode() {
    let azurite = Azurite::start().await.expect("start azurite");
    azurite.create_container("lake").await.unwrap();
    let env = azurite.env_for_object_store("lake");
    assert_eq!(env.lake_url, "az://lake");
    for (k, v) in &env.vars {
        // Single test in this binary: no other thread reads the environment.
        std::env::set_var(k, v);
    }

    let store = MicrosoftAzureBuilder::from_env()
        .with_url(&env.lake_url)
        // Ignored in emulator mode: the URL comes from AZURITE_BLOB_STORAGE_URL.
        .with_endpoint("http://127.0.0.1:9/not-used".to_string())
        .build()
        .expect("build from env");
    let p = Path::from("from/env.jsonl");
    store.put(&p, PutPayload::from_static(b"env\n")).await.unwrap();

    // Visible through the endpoint-mode builder too (same Azurite, same container).
    let other = azurite.object_store_builder("lake").build().unwrap();
    let got = other.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"env\n");
}
