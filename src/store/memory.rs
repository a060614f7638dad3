//! An in-memory [`ObjectStore`] for unit tests: objects in a map, with failures and delays
//! injected per key.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::{Fetched, GetRequest, ObjectStore, PutRequest, StoreError};

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
}

impl ObjectStore for MemoryStore {
    async fn get(&self, req: GetRequest) -> Result<Fetched, StoreError> {
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
        Ok(Fetched {
            bytes: stored.bytes.to_vec(),
            etag: None,
            version_id: None,
        })
    }

    async fn put(&self, req: PutRequest) -> Result<(), StoreError> {
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
}
