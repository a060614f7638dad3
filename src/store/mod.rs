//! The object store as the handler sees it: get one object (with a byte cap) and put one
//! object. S3 implements it in `s3.rs`; `memory.rs` is the in-memory fake the handler's unit
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
}
