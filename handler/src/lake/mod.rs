//! The lake: object naming ([`layout`]), encoding ([`encode`]), receipts ([`receipt`]),
//! create-only writes through `object_store`, and the one classification of storage
//! failures ([`StorageFailure`]).
//!
//! Everything written goes through [`Lake::put_new`]: create-only, so a re-delivered
//! batch finds its objects already there instead of overwriting or duplicating them.

pub mod codec;
mod digest;
pub mod encode;
pub mod layout;
pub mod receipt;

pub use digest::digest_hex;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig,
};

use crate::config::{LakeLocation, Settings};

/// A storage failure, classified so the caller can tell the host to retry.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("storage call for {path} failed: {source}")]
    Storage {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path} already exists but does not hold this batch's events: {reason}")]
    Conflict { path: String, reason: String },
    #[error("cannot open the lake {location}: {reason}")]
    Open { location: String, reason: String },
}

impl LakeError {
    /// What kind of failure this is; see [`StorageFailure`].
    pub fn failure(&self) -> StorageFailure {
        match self {
            Self::Storage { source, .. } => classify(source),
            Self::Conflict { .. } => StorageFailure::Conflict,
            Self::Open { .. } => StorageFailure::Refused,
        }
    }

    /// Whether trying again later may succeed (outages, throttling, timeouts), as
    /// opposed to failures that need an operator (permissions, conflicts, bad config).
    pub fn is_retryable(&self) -> bool {
        self.failure().is_retryable()
    }
}

/// The one classification of storage failures: the handler decides from it whether the
/// host should retry, and the operator tools which exit code to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFailure {
    /// Outages, throttling, timeouts, server errors: trying again later may succeed.
    Transient,
    /// Credentials, permissions, an invalid path, an operation or setting the store
    /// does not support: an operator must change something first.
    Refused,
    /// The object is not there.
    NotFound,
    /// A create-only write found an object in place, or an object holds other
    /// content than it must: the same call fails the same way again.
    Conflict,
    /// A conditional request lost to another writer: reading again and retrying sees
    /// the other writer's result.
    Precondition,
}

impl StorageFailure {
    /// Whether the same work, tried again later, may succeed. A missing object may be
    /// one another delivery is about to write, and a lost precondition is a race.
    pub fn is_retryable(self) -> bool {
        match self {
            Self::Transient | Self::NotFound | Self::Precondition => true,
            Self::Refused | Self::Conflict => false,
        }
    }
}

/// Classifies an `object_store` error (see [`StorageFailure`]).
pub fn classify(e: &object_store::Error) -> StorageFailure {
    use object_store::Error as E;
    match e {
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => StorageFailure::Refused,
        E::NotFound { .. } => StorageFailure::NotFound,
        E::AlreadyExists { .. } => StorageFailure::Conflict,
        E::Precondition { .. } | E::NotModified { .. } => StorageFailure::Precondition,
        _ => StorageFailure::Transient,
    }
}

/// Object attributes we write: content type/encoding and lowercase string metadata.
#[derive(Debug, Clone, Default)]
pub struct ObjectAttributes {
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
    pub metadata: Vec<(&'static str, String)>,
}

/// Bytes a metadata value keeps as they are: visible ASCII except `%`.
const METADATA_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');

/// Longest metadata value we send, in bytes. Azure allows 8 KiB of metadata per
/// object in all; a hostile 10 KB partition id must not make every write fail.
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;

/// A metadata value as an HTTP header can carry it. Values come from outside (a
/// partition id); Azure sends metadata as `x-ms-meta-*` headers and its request
/// signer refuses control characters and non-ASCII. Anything else is percent-encoded
/// as UTF-8, so the value stays readable and `percent-decode` gives it back exactly.
/// A value longer than [`MAX_METADATA_VALUE_BYTES`] is cut and ends in `...`: the
/// metadata is a convenience, the record and the receipt keep the value whole.
pub fn metadata_value(value: &str) -> String {
    let out = percent_encoding::utf8_percent_encode(value, METADATA_ESCAPED).to_string();
    if out.len() <= MAX_METADATA_VALUE_BYTES {
        return out;
    }
    // Cut whole characters, so neither an escape nor a UTF-8 sequence is split.
    let mut cut = String::with_capacity(MAX_METADATA_VALUE_BYTES);
    let mut buf = [0u8; 4];
    for c in value.chars() {
        let piece = percent_encoding::utf8_percent_encode(c.encode_utf8(&mut buf), METADATA_ESCAPED);
        let piece = piece.to_string();
        if cut.len() + piece.len() > MAX_METADATA_VALUE_BYTES - 3 {
            break;
        }
        cut.push_str(&piece);
    }
    cut.push_str("...");
    cut
}

/// Result of a create-only put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// The object was already there (a re-delivery); the caller verifies it.
    AlreadyExists,
}

/// A listed object, with its path relative to the lake root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeObject {
    pub path: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// The lake: an object store plus the root prefix everything lives under.
#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: String,
    keeps_attributes: bool,
    description: String,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("location", &self.description).finish()
    }
}

impl Lake {
    /// Opens the lake the settings name. A local lake's directory is created.
    pub fn open(settings: &Settings) -> Result<Self, LakeError> {
        let description = settings.lake.to_string();
        let open_err = |reason: String| LakeError::Open {
            location: description.clone(),
            reason,
        };
        match &settings.lake {
            LakeLocation::Local { root } => {
                std::fs::create_dir_all(root)
                    .map_err(|e| open_err(format!("cannot create {}: {e}", root.display())))?;
                let store = LocalFileSystem::new_with_prefix(root).map_err(|e| open_err(e.to_string()))?;
                Ok(Self::from_store(Arc::new(store), "", false, description))
            }
            LakeLocation::Azure {
                account,
                container,
                prefix,
            } => {
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .with_retry(RetryConfig {
                        max_retries: settings.storage_max_retries,
                        retry_timeout: settings.storage_retry_budget,
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_timeout(settings.storage_request_timeout)
                            .with_connect_timeout(std::time::Duration::from_secs(5)),
                    );
                if let Some(account) = account {
                    builder = builder.with_account(account);
                }
                let store = builder.build().map_err(|e| open_err(e.to_string()))?;
                Ok(Self::from_store(Arc::new(store), prefix, true, description))
            }
        }
    }

    /// Wraps any object store (tests use `InMemory`). `keeps_attributes` is false for
    /// stores that refuse content-type and metadata (the local filesystem).
    pub fn from_store(store: Arc<dyn ObjectStore>, root: &str, keeps_attributes: bool, description: String) -> Self {
        Self {
            store,
            root: root.trim_matches('/').to_string(),
            keeps_attributes,
            description,
        }
    }

    /// Where the lake is, for logs and `/healthz`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether objects carry content type, encoding and metadata.
    pub fn keeps_attributes(&self) -> bool {
        self.keeps_attributes
    }

    fn full(&self, rel: &str) -> Result<Path, LakeError> {
        let rel = rel.trim_matches('/');
        let joined = if rel.is_empty() {
            self.root.clone()
        } else if self.root.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.root)
        };
        Path::parse(&joined).map_err(|e| LakeError::Storage {
            path: joined.clone(),
            source: e.into(),
        })
    }

    fn relative(&self, full: &Path) -> String {
        let s = full.as_ref();
        if self.root.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(&self.root)
                .unwrap_or(s)
                .trim_start_matches('/')
                .to_string()
        }
    }

    /// One put with our attributes (only to stores that keep them).
    async fn put(
        &self,
        rel: &str,
        bytes: Bytes,
        attrs: &ObjectAttributes,
        mode: PutMode,
    ) -> Result<object_store::PutResult, object_store::Error> {
        let path = self.full(rel).map_err(|e| match e {
            LakeError::Storage { source, .. } => source,
            other => object_store::Error::Generic {
                store: "lake",
                source: other.to_string().into(),
            },
        })?;
        let mut attributes = Attributes::new();
        if self.keeps_attributes {
            attributes.insert(Attribute::ContentType, attrs.content_type.into());
            if let Some(enc) = attrs.content_encoding {
                attributes.insert(Attribute::ContentEncoding, enc.into());
            }
            for (k, v) in &attrs.metadata {
                attributes.insert(Attribute::Metadata((*k).into()), metadata_value(v).into());
            }
        }
        let opts = PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        };
        self.store.put_opts(&path, bytes.into(), opts).await
    }

    /// Writes `bytes` at `rel` only if nothing is there yet (`If-None-Match: *`).
    pub async fn put_new(&self, rel: &str, bytes: Bytes, attrs: &ObjectAttributes) -> Result<PutOutcome, LakeError> {
        match self.put(rel, bytes, attrs, PutMode::Create).await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if classify(&e) == StorageFailure::Conflict => Ok(PutOutcome::AlreadyExists),
            Err(source) => Err(LakeError::Storage {
                path: rel.to_string(),
                source,
            }),
        }
    }

    /// Writes `bytes` at `rel`, replacing what is there. Only for commit records that
    /// are rewritten on purpose (a seal manifest of a newer generation) and objects no
    /// commit record lists yet; everything else goes through [`Lake::put_new`].
    pub async fn put_overwrite(&self, rel: &str, bytes: Bytes, attrs: &ObjectAttributes) -> Result<(), LakeError> {
        self.put(rel, bytes, attrs, PutMode::Overwrite)
            .await
            .map(|_| ())
            .map_err(|source| LakeError::Storage {
                path: rel.to_string(),
                source,
            })
    }

    /// Reads a whole object.
    pub async fn get(&self, rel: &str) -> Result<Bytes, LakeError> {
        let path = self.full(rel)?;
        let storage = |source| LakeError::Storage {
            path: rel.to_string(),
            source,
        };
        self.store
            .get(&path)
            .await
            .map_err(storage)?
            .bytes()
            .await
            .map_err(storage)
    }

    /// Reads an object if it exists.
    pub async fn get_if_exists(&self, rel: &str) -> Result<Option<Bytes>, LakeError> {
        match self.get(rel).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.failure() == StorageFailure::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists every object below `rel_prefix` (recursively), sorted by path.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<LakeObject>, LakeError> {
        let prefix = if rel_prefix.is_empty() && self.root.is_empty() {
            None
        } else {
            Some(self.full(rel_prefix.trim_end_matches('/'))?)
        };
        let mut out: Vec<LakeObject> = self
            .store
            .list(prefix.as_ref())
            .map_ok(|meta| LakeObject {
                path: self.relative(&meta.location),
                size: meta.size,
                last_modified: meta.last_modified,
            })
            .try_collect()
            .await
            .map_err(|source| LakeError::Storage {
                path: rel_prefix.to_string(),
                source,
            })?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, rel: &str) -> Result<(), LakeError> {
        let path = self.full(rel)?;
        match self.store.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) if classify(&e) == StorageFailure::NotFound => Ok(()),
            Err(source) => Err(LakeError::Storage {
                path: rel.to_string(),
                source,
            }),
        }
    }

    /// Writes and removes a probe object, to tell at start whether the lake is usable.
    /// It sits at the lake's root: a folder for it would stay behind, empty, on the
    /// local filesystem and on ADLS Gen2 (whose directories are real).
    pub async fn probe_writable(&self) -> Result<(), LakeError> {
        let rel = format!(
            "{}-probe-{}-{}",
            layout::INTERNAL_PREFIX,
            std::process::id(),
            fastrand::u64(..)
        );
        let attrs = ObjectAttributes {
            content_type: "text/plain",
            ..ObjectAttributes::default()
        };
        self.put_new(&rel, Bytes::from_static(b"ok"), &attrs).await?;
        self.delete(&rel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn lake() -> Lake {
        Lake::from_store(Arc::new(InMemory::new()), "base/dir", true, "memory".into())
    }

    #[tokio::test]
    async fn the_start_up_probe_leaves_nothing_behind_in_a_local_lake() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&crate::config::Settings::local(dir.path())).unwrap();
        lake.probe_writable().await.unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn storage_failures_are_classified_once_for_retries_and_exit_codes() {
        use object_store::Error as E;
        let cases = [
            (
                E::Generic {
                    store: "s",
                    source: "503 Server Busy".into(),
                },
                StorageFailure::Transient,
            ),
            (
                E::PermissionDenied {
                    path: "p".into(),
                    source: "403".into(),
                },
                StorageFailure::Refused,
            ),
            (
                E::Unauthenticated {
                    path: "p".into(),
                    source: "401".into(),
                },
                StorageFailure::Refused,
            ),
            (
                E::UnknownConfigurationKey {
                    store: "s",
                    key: "k".into(),
                },
                StorageFailure::Refused,
            ),
            (
                E::NotFound {
                    path: "p".into(),
                    source: "404".into(),
                },
                StorageFailure::NotFound,
            ),
            (
                E::AlreadyExists {
                    path: "p".into(),
                    source: "409".into(),
                },
                StorageFailure::Conflict,
            ),
            (
                E::Precondition {
                    path: "p".into(),
                    source: "412".into(),
                },
                StorageFailure::Precondition,
            ),
        ];
        for (error, want) in cases {
            assert_eq!(classify(&error), want, "{error}");
            let lake_error = LakeError::Storage {
                path: "p".into(),
                source: error,
            };
            assert_eq!(lake_error.is_retryable(), want.is_retryable(), "{lake_error}");
        }
        let conflict = LakeError::Conflict {
            path: "p".into(),
            reason: "other events".into(),
        };
        assert_eq!(conflict.failure(), StorageFailure::Conflict);
        assert!(!conflict.is_retryable());
        assert!(StorageFailure::Transient.is_retryable() && !StorageFailure::Refused.is_retryable());
    }

    #[test]
    fn metadata_values_are_visible_ascii_and_decode_back() {
        for raw in ["0", "x\u{0}y", "p\u{e9}", " a%b ", "\u{1F980}\r\n", "~!*()'"] {
            let v = metadata_value(raw);
            assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)), "{raw:?} -> {v:?}");
            assert_eq!(percent_encoding::percent_decode_str(&v).decode_utf8().unwrap(), raw);
        }
        assert_eq!(metadata_value("12"), "12");
    }

    #[test]
    fn long_metadata_values_are_cut_without_splitting_an_escape() {
        for raw in [
            "a".repeat(10_000),
            "\u{FF0E}".repeat(4000),
            format!("ab{}", "\u{e9}".repeat(2000)),
        ] {
            let v = metadata_value(&raw);
            assert!(v.len() <= MAX_METADATA_VALUE_BYTES && v.ends_with("..."), "{}", v.len());
            let kept = v.trim_end_matches("...");
            assert!(raw.starts_with(&*percent_encoding::percent_decode_str(kept).decode_utf8().unwrap()));
        }
    }

    #[tokio::test]
    async fn second_create_reports_already_exists_and_keeps_the_first() {
        let lake = lake();
        let attrs = ObjectAttributes::default();
        assert_eq!(
            lake.put_new("a/b.json", Bytes::from_static(b"1"), &attrs)
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            lake.put_new("a/b.json", Bytes::from_static(b"2"), &attrs)
                .await
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(&lake.get("a/b.json").await.unwrap()[..], b"1");
    }

    #[tokio::test]
    async fn listing_is_relative_to_the_root_and_sorted() {
        let lake = lake();
        let attrs = ObjectAttributes::default();
        for p in ["x/2.json", "x/1.json", "y/1.json"] {
            lake.put_new(p, Bytes::from_static(b"{}"), &attrs).await.unwrap();
        }
        let listed: Vec<_> = lake.list("x").await.unwrap().into_iter().map(|o| o.path).collect();
        assert_eq!(listed, ["x/1.json", "x/2.json"]);
        assert_eq!(lake.list("").await.unwrap().len(), 3);
        assert!(lake.get_if_exists("nope").await.unwrap().is_none());
    }
}
