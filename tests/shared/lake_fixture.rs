//! One test fixture for the tests that build a lake through the library, as the handler
//! does (the seal tests of the handler package, the operator tests of the cli package):
//! a lake with the library's [`Ingestor`] on it, by default a fresh local lake in a
//! temporary folder. Included with `#[path = "shared/lake_fixture.rs"] mod lake_fixture;`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use hub2lake::config::Settings;
use hub2lake::ingest::Ingestor;
use hub2lake::lake::Lake;

/// A lake and the ingestor writing to it. The temporary folder lives as long as it.
pub struct LakeFixture {
    _dir: tempfile::TempDir,
    /// The local lake's root folder (unused on other lakes).
    pub root: PathBuf,
    pub settings: Settings,
    pub lake: Lake,
    pub ingestor: Ingestor,
}

impl LakeFixture {
    /// A fresh local lake with the default settings.
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// A fresh local lake with adjusted settings.
    pub fn with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let mut settings = Settings::local(&root);
        adjust(&mut settings);
        let lake = Lake::open(&settings).unwrap();
        Self::on(lake, settings, dir, root)
    }

    /// Any lake (Azurite, say) with these settings; `dir` is kept alive with it.
    pub fn on(lake: Lake, settings: Settings, dir: tempfile::TempDir, root: PathBuf) -> Self {
        let ingestor = Ingestor::new(Arc::new(settings.clone()), lake.clone());
        Self {
            _dir: dir,
            root,
            settings,
            lake,
            ingestor,
        }
    }
}
