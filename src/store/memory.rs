//! An in-memory [`ObjectStore`] for unit tests: objects in a map, with failures and delays
//! injected per key.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::{Fetched, GetRequest, Head, ListPage, Listed, ObjectStore, PutRequest, StoreError};

/// A stored object of [`MemoryStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub bytes: bytes::Bytes,
    pub content_type: String,
    pub cache_control: Option<String>,
    pub metadata: Vec<(String, String)>,
}

/// In-memory [`ObjectStore`] with failure injection, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<(String, String), Stored>>,
    get_failures: Mutex<HashMap<String, StoreError>>,
    put_failures: Mutex<Vec<(String, StoreError)>>,
    get_delay: Mutex<HashMap<String, Duration>>,
    gets: Mutex<Vec<GetRequest>>,
    /// Every call by operation name (`get`, `put`, `head`, `delete`, `list`).
    calls: Mutex<Vec<&'static str>>,
}

/// The fake's ETag of some bytes: FNV-1a, as 16 hex digits (S3's are MD5; only equality matters).
pub fn etag_of(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores an object directly (no call recorded).
    pub fn insert(&self, bucket: &str, key: &str, bytes: impl Into<bytes::Bytes>) {
        Self::lock(&self.objects).insert(
            (bucket.to_owned(), key.to_owned()),
            Stored {
                bytes: bytes.into(),
                content_type: "application/octet-stream".into(),
                cache_control: None,
                metadata: Vec::new(),
            },
        );
    }

    /// Makes every `get` of `key` fail with `error`.
    pub fn fail_get(&self, key: &str, error: StoreError) {
        Self::lock(&self.get_failures).insert(key.to_owned(), error);
    }

    /// Makes every `put` of a key starting with `prefix` fail with `error`.
    pub fn fail_put(&self, prefix: &str, error: StoreError) {
        Self::lock(&self.put_failures).push((prefix.to_owned(), error));
    }

    /// Makes every `get` of `key` take `delay`.
    pub fn delay_get(&self, key: &str, delay: Duration) {
        Self::lock(&self.get_delay).insert(key.to_owned(), delay);
    }

    /// One stored object.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Stored> {
        Self::lock(&self.objects)
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    /// The sorted keys of one bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys: Vec<String> = Self::lock(&self.objects)
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Every `get` so far.
    pub fn gets(&self) -> Vec<GetRequest> {
        Self::lock(&self.gets).clone()
    }

    /// How many calls of `operation` (`get`, `put`, `head`, `delete`, `list`) were made.
    pub fn calls(&self, operation: &str) -> usize {
        Self::lock(&self.calls)
            .iter()
            .filter(|c| **c == operation)
            .count()
    }

    fn record(&self, operation: &'static str) {
        Self::lock(&self.calls).push(operation);
    }
}

impl ObjectStore for MemoryStore {
    async fn get(&self, req: GetRequest) -> Result<Fetched, StoreError> {
        self.record("get");
        Self::lock(&self.gets).push(req.clone());
        let delay = Self::lock(&self.get_delay).get(&req.key).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(e) = Self::lock(&self.get_failures).get(&req.key) {
            return Err(e.clone());
        }
        let stored = self
            .object(&req.bucket, &req.key)
            .ok_or_else(|| StoreError::NotFound(format!("s3://{}/{}", req.bucket, req.key)))?;
        if stored.bytes.len() as u64 > req.max_bytes {
            return Err(StoreError::TooLarge(format!(
                "{} bytes is over the input limit of {} bytes",
                stored.bytes.len(),
                req.max_bytes
            )));
        }
        let etag = etag_of(&stored.bytes);
        if let Some(wanted) = &req.if_match
            && *wanted != etag
        {
            return Err(StoreError::Changed(format!(
                "s3://{}/{}: ETag {etag}, not {wanted}",
                req.bucket, req.key
            )));
        }
        Ok(Fetched {
            bytes: stored.bytes.to_vec(),
            etag: Some(etag),
            version_id: None,
        })
    }

    async fn put(&self, req: PutRequest) -> Result<(), StoreError> {
        self.record("put");
        let failure = Self::lock(&self.put_failures)
            .iter()
            .find(|(prefix, _)| req.key.starts_with(prefix.as_str()))
            .map(|(_, e)| e.clone());
        if let Some(e) = failure {
            return Err(e);
        }
        Self::lock(&self.objects).insert(
            (req.bucket, req.key),
            Stored {
                bytes: req.body,
                content_type: req.content_type,
                cache_control: req.cache_control,
                metadata: req.metadata,
            },
        );
        Ok(())
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        _version_id: Option<&str>,
    ) -> Result<Option<Head>, StoreError> {
        self.record("head");
        if let Some(e) = Self::lock(&self.get_failures).get(key) {
            return Err(e.clone());
        }
        Ok(self.object(bucket, key).map(|o| Head {
            etag: Some(etag_of(&o.bytes)),
            version_id: None,
            metadata: o.metadata,
        }))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.record("delete");
        Self::lock(&self.objects).remove(&(bucket.to_owned(), key.to_owned()));
        Ok(())
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        self.record("list");
        let objects = Self::lock(&self.objects);
        let mut keys: Vec<(&String, &Stored)> = objects
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), o)| (k, o))
            .filter(|(k, _)| token.is_none_or(|t| k.as_str() > t))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        let max = max_keys.max(1) as usize;
        let next = (keys.len() > max).then(|| keys[max - 1].0.clone());
        Ok(ListPage {
            objects: keys
                .into_iter()
                .take(max)
                .map(|(k, o)| Listed {
                    key: k.clone(),
                    etag: Some(etag_of(&o.bytes)),
                    size: o.bytes.len() as u64,
                })
                .collect(),
            next,
        })
    }
}
