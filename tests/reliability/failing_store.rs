//! An object store that fails chosen writes, for the property test: around the local
//! filesystem store, it makes the n-th put of an armed attempt fail either *before*
//! it reaches the disk (an error answer) or *after* (the write is applied but the
//! answer is lost). Everything else is passed through.
//!
//! `ObjectStore` is an `async_trait` trait; the methods are written out as the macro
//! would expand them, because this crate has no direct `async-trait` dependency.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

/// How an armed put fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// The write never happens; the caller gets an error.
    Before,
    /// The write happens; the caller gets an error anyway (lost acknowledgement).
    After,
}

#[derive(Debug, Default)]
struct Plan {
    /// Fail the put with this 0-based index since arming.
    fail_at: Option<(usize, FailMode)>,
    puts: usize,
    fired: bool,
}

/// Handle shared by the test and the store.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<Plan>>);

impl Faults {
    /// The `index`-th put from now fails in `mode`.
    pub fn arm(&self, index: usize, mode: FailMode) {
        *self.0.lock().unwrap() = Plan {
            fail_at: Some((index, mode)),
            puts: 0,
            fired: false,
        };
    }

    pub fn disarm(&self) {
        *self.0.lock().unwrap() = Plan::default();
    }

    /// Whether the armed failure happened.
    pub fn fired(&self) -> bool {
        self.0.lock().unwrap().fired
    }

    fn on_put(&self) -> Option<FailMode> {
        let mut plan = self.0.lock().unwrap();
        let n = plan.puts;
        plan.puts += 1;
        match plan.fail_at {
            Some((i, mode)) if i == n => {
                plan.fired = true;
                Some(mode)
            }
            _ => None,
        }
    }
}

pub struct FailingStore {
    pub inner: Arc<dyn ObjectStore>,
    pub faults: Faults,
}

impl fmt::Debug for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingStore({})", self.inner)
    }
}

impl fmt::Display for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingStore({})", self.inner)
    }
}

fn injected(location: &Path, mode: FailMode) -> object_store::Error {
    object_store::Error::Generic {
        store: "FailingStore",
        source: format!("injected failure ({mode:?}) writing {location}").into(),
    }
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl ObjectStore for FailingStore {
    fn put_opts<'l0, 'l1, 'a>(
        &'l0 self,
        location: &'l1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Fut<'a, Result<PutResult>>
    where
        'l0: 'a,
        'l1: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            match self.faults.on_put() {
                Some(FailMode::Before) => Err(injected(location, FailMode::Before)),
                Some(FailMode::After) => {
                    self.inner.put_opts(location, payload, opts).await?;
                    Err(injected(location, FailMode::After))
                }
                None => self.inner.put_opts(location, payload, opts).await,
            }
        })
    }

    fn put_multipart_opts<'l0, 'l1, 'a>(
        &'l0 self,
        location: &'l1 Path,
        opts: PutMultipartOptions,
    ) -> Fut<'a, Result<Box<dyn MultipartUpload>>>
    where
        'l0: 'a,
        'l1: 'a,
        Self: 'a,
    {
        Box::pin(async move { self.inner.put_multipart_opts(location, opts).await })
    }

    fn get_opts<'l0, 'l1, 'a>(&'l0 self, location: &'l1 Path, options: GetOptions) -> Fut<'a, Result<GetResult>>
    where
        'l0: 'a,
        'l1: 'a,
        Self: 'a,
    {
        Box::pin(async move { self.inner.get_opts(location, options).await })
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_delimiter<'l0, 'l1, 'a>(&'l0 self, prefix: Option<&'l1 Path>) -> Fut<'a, Result<ListResult>>
    where
        'l0: 'a,
        'l1: 'a,
        Self: 'a,
    {
        Box::pin(async move { self.inner.list_with_delimiter(prefix).await })
    }

    fn copy_opts<'l0, 'l1, 'l2, 'a>(
        &'l0 self,
        from: &'l1 Path,
        to: &'l2 Path,
        options: CopyOptions,
    ) -> Fut<'a, Result<()>>
    where
        'l0: 'a,
        'l1: 'a,
        'l2: 'a,
        Self: 'a,
    {
        Box::pin(async move { self.inner.copy_opts(from, to, options).await })
    }
}
