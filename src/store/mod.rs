//! The object store as the handler sees it: get one object (with a byte cap), put, head and
//! delete one object, and list a prefix (the backfill). S3 implements it in `s3.rs`; `memory.rs` is the in-memory fake the handler's unit
//! tests use to inject missing objects, transient failures and slow calls (test builds only).
//!
//! Errors are classified here, once, into what the handler needs to decide between "write a
//! rejection report and move on" and "fail so that Lambda or SQS retries".

#[cfg(test)]
mod memory;
mod s3;

use std::future::Future;

#[cfg(test)]
pub(crate) use memory::MemoryStore;
pub use s3::{S3Store, load_sdk_config, sdk_retry_timeouts};

/// Which object to fetch, and how much of it we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    pub bucket: String,
    pub key: String,
    /// Fetch exactly this version (versioned buckets).
    pub version_id: Option<String>,
    /// Fetch only if the current ETag is still this one (unquoted).
    pub if_match: Option<String>,
    /// Objects larger than this are refused without buffering them.
    pub max_bytes: u64,
}

/// A fetched object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The object's ETag, unquoted.
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

/// One object to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRequest {
    pub bucket: String,
    pub key: String,
    pub body: bytes::Bytes,
    pub content_type: String,
    pub cache_control: Option<String>,
    /// User metadata (`x-amz-meta-*`), ASCII values.
    pub metadata: Vec<(String, String)>,
}

/// What a HEAD tells about an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// The ETag, unquoted.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// User metadata (`x-amz-meta-*`, names lower-case without the prefix).
    pub metadata: Vec<(String, String)>,
}

impl Head {
    /// The user metadata value called `name`.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// The ETag, unquoted.
    pub etag: Option<String>,
    pub size: u64,
}

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub objects: Vec<Listed>,
    /// The continuation token of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Why a store call failed, classified for retry decisions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// 404: no such bucket, key or version.
    #[error("not found: {0}")]
    NotFound(String),
    /// 403: the function may not read it.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Over the byte cap (from Content-Length, or counted while reading).
    #[error("{0}")]
    TooLarge(String),
    /// 412: the object changed since the event (If-Match failed).
    #[error("changed since the event: {0}")]
    Changed(String),
    /// Anything worth retrying later: 5xx, throttling, timeouts, connection errors.
    #[error("{0}")]
    Transient(String),
}

impl StoreError {
    /// Stable name for logs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not-found",
            StoreError::AccessDenied(_) => "access-denied",
            StoreError::TooLarge(_) => "too-large",
            StoreError::Changed(_) => "changed",
            StoreError::Transient(_) => "transient",
        }
    }
}

/// Object storage for the handler. Implementations are shared between concurrent records.
pub trait ObjectStore: Send + Sync + 'static {
    /// Fetches one object whole, refusing it if it is larger than `req.max_bytes`.
    fn get(&self, req: GetRequest) -> impl Future<Output = Result<Fetched, StoreError>> + Send;
    /// Writes one object (overwriting).
    fn put(&self, req: PutRequest) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The object's ETag, version and metadata; `Ok(None)` when there is no such key.
    fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<Option<Head>, StoreError>> + Send;
    /// Deletes one object; deleting a key that does not exist is success (as in S3).
    fn delete(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One page (at most `max_keys`) of the keys under `prefix`, in S3's order, from `token`.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;
}
