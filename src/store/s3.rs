//! [`ObjectStore`] over aws-sdk-s3: bounded retries and timeouts, a byte cap on downloads,
//! CRC32 checksums on uploads (computed by the SDK), error classification (permanent vs transient), and one
//! `S3` X-Ray subsegment per call with the request id and HTTP status.
//!
//! The same client works against AWS, LocalStack, moto or the embedded s3s server: endpoint,
//! region and credentials come from the standard variables (`AWS_ENDPOINT_URL[_S3]`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …) through aws-config.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::{RequestId, RequestIdExt};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use super::{Fetched, GetRequest, Head, ListPage, Listed, ObjectStore, PutRequest, StoreError};
use crate::settings::S3Settings;

/// The SDK's retry and timeout configuration for `settings`.
pub fn sdk_retry_timeouts(settings: &S3Settings) -> (RetryConfig, TimeoutConfig) {
    (
        RetryConfig::standard().with_max_attempts(settings.max_attempts),
        TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_attempt_timeout(settings.attempt_timeout)
            .operation_timeout(settings.operation_timeout)
            .build(),
    )
}

/// Loads the SDK configuration from the environment with these retries and timeouts.
pub async fn load_sdk_config(settings: &S3Settings) -> SdkConfig {
    let (retry, timeout) = sdk_retry_timeouts(settings);
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeout)
        .load()
        .await
}

/// S3-backed object store.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    region: String,
    /// Download attempts when a body breaks off (the SDK retries only up to the headers).
    max_attempts: u32,
    /// Longest silence allowed while a body streams.
    body_timeout: Duration,
}

impl S3Store {
    /// A store from an SDK configuration (its retry and timeout settings also bound the
    /// re-downloads of broken bodies); `force_path_style` for emulators without
    /// virtual-hosted buckets.
    pub fn new(sdk: &SdkConfig, force_path_style: bool) -> S3Store {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(force_path_style)
            .build();
        S3Store {
            client: Client::from_conf(conf),
            region: sdk.region().map(ToString::to_string).unwrap_or_default(),
            max_attempts: sdk
                .retry_config()
                .map_or(
                    S3Settings::default().max_attempts,
                    RetryConfig::max_attempts,
                )
                .max(1),
            body_timeout: sdk
                .timeout_config()
                .and_then(TimeoutConfig::operation_attempt_timeout)
                .unwrap_or(S3Settings::default().attempt_timeout),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configured region.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn span(&self, operation: &'static str, bucket: &str, key: &str) -> Span {
        tracing::info_span!(
            target: "renditions::xray",
            "S3",
            namespace = "aws",
            aws.operation = operation,
            aws.region = %self.region,
            aws.s3.bucket = %bucket,
            aws.s3.key = %key,
            aws.request_id = Empty,
            aws.extended_request_id = Empty,
            http.response.status_code = Empty,
            error = Empty,
            throttle = Empty,
            fault = Empty,
            exception.message = Empty,
            exception.type = Empty,
        )
    }

    /// One GetObject and its body. `Err((error, true))` when the body broke off after the
    /// headers: the SDK has no retry left for that, so [`ObjectStore::get`] starts again.
    async fn get_once(&self, req: &GetRequest, span: &Span) -> Result<Fetched, (StoreError, bool)> {
        let mut op = self
            .client
            .get_object()
            .bucket(&req.bucket)
            .key(&req.key)
            .checksum_mode(ChecksumMode::Enabled);
        if let Some(v) = &req.version_id {
            op = op.version_id(v);
        }
        if let Some(etag) = &req.if_match {
            op = op.if_match(format!("\"{}\"", etag.trim_matches('"')));
        }
        let out = match op.send().await {
            Ok(out) => out,
            Err(e) => return Err((record_error(span, &e, &req.bucket, &req.key), false)),
        };
        span.record("http.response.status_code", 200u16);
        record_ids(span, out.request_id(), out.extended_request_id());
        let etag = out.e_tag().map(|e| e.trim_matches('"').to_owned());
        let version_id = out.version_id().map(str::to_owned);
        let declared = out.content_length().and_then(|n| u64::try_from(n).ok());
        if let Some(n) = declared
            && n > req.max_bytes
        {
            return Err((
                StoreError::TooLarge(format!(
                    "{n} bytes is over the input limit of {} bytes",
                    req.max_bytes
                )),
                false,
            ));
        }
        let capacity = usize::try_from(declared.unwrap_or(0).min(req.max_bytes)).unwrap_or(0);
        let mut bytes = Vec::with_capacity(capacity);
        let mut body = out.body;
        loop {
            let chunk = match tokio::time::timeout(self.body_timeout, body.try_next()).await {
                Err(_) => {
                    let msg = format!(
                        "s3://{}/{}: the body stalled for {:?} after {} bytes",
                        req.bucket,
                        req.key,
                        self.body_timeout,
                        bytes.len()
                    );
                    mark_fault(span, &msg, "Timeout");
                    return Err((StoreError::Transient(msg), true));
                }
                Ok(Err(e)) => {
                    let msg = format!(
                        "s3://{}/{}: the body broke off after {} bytes: {}",
                        req.bucket,
                        req.key,
                        bytes.len(),
                        DisplayErrorContext(&e)
                    );
                    mark_fault(span, &msg, "BodyError");
                    return Err((StoreError::Transient(msg), true));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            if (bytes.len() + chunk.len()) as u64 > req.max_bytes {
                return Err((
                    StoreError::TooLarge(format!(
                        "more than {} bytes (the input limit) while reading",
                        req.max_bytes
                    )),
                    false,
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes,
            etag,
            version_id,
        })
    }

    async fn put_inner(&self, req: PutRequest, span: &Span) -> Result<(), StoreError> {
        let metadata: HashMap<String, String> = req.metadata.into_iter().collect();
        let result = self
            .client
            .put_object()
            .bucket(&req.bucket)
            .key(&req.key)
            .content_type(req.content_type)
            .set_cache_control(req.cache_control)
            .set_metadata(Some(metadata))
            .content_length(i64::try_from(req.body.len()).unwrap_or(i64::MAX))
            // The SDK computes the CRC32 of the in-memory body and sends it; S3 refuses a
            // PUT whose bytes do not match.
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(req.body))
            .send()
            .await;
        match result {
            Ok(out) => {
                span.record("http.response.status_code", 200u16);
                record_ids(span, out.request_id(), out.extended_request_id());
                Ok(())
            }
            Err(e) => Err(record_error(span, &e, &req.bucket, &req.key)),
        }
    }
}

impl S3Store {
    async fn head_inner(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        span: &Span,
    ) -> Result<Option<Head>, StoreError> {
        let result = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(out) => {
                span.record("http.response.status_code", 200u16);
                record_ids(span, out.request_id(), out.extended_request_id());
                let mut metadata: Vec<(String, String)> = out
                    .metadata()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                metadata.sort();
                Ok(Some(Head {
                    etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
                    version_id: out.version_id().map(str::to_owned),
                    metadata,
                }))
            }
            Err(e) => match record_error(span, &e, bucket, key) {
                StoreError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete_inner(&self, bucket: &str, key: &str, span: &Span) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                span.record("http.response.status_code", 204u16);
                record_ids(span, out.request_id(), out.extended_request_id());
                Ok(())
            }
            Err(e) => match record_error(span, &e, bucket, key) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list_inner(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
        span: &Span,
    ) -> Result<ListPage, StoreError> {
        let result = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.map(str::to_owned))
            .max_keys(i32::try_from(max_keys).unwrap_or(1000))
            .send()
            .await;
        match result {
            Ok(out) => {
                span.record("http.response.status_code", 200u16);
                record_ids(span, out.request_id(), out.extended_request_id());
                let objects = out
                    .contents()
                    .iter()
                    .filter_map(|o| {
                        Some(Listed {
                            key: o.key()?.to_owned(),
                            etag: o.e_tag().map(|e| e.trim_matches('"').to_owned()),
                            size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        })
                    })
                    .collect();
                let next = if out.is_truncated() == Some(true) {
                    out.next_continuation_token().map(str::to_owned)
                } else {
                    None
                };
                Ok(ListPage { objects, next })
            }
            Err(e) => Err(record_error(span, &e, bucket, prefix)),
        }
    }
}

impl ObjectStore for S3Store {
    async fn get(&self, req: GetRequest) -> Result<Fetched, StoreError> {
        let mut attempt = 1;
        loop {
            // One subsegment per GetObject, so that X-Ray shows every re-download.
            let span = self.span("GetObject", &req.bucket, &req.key);
            match self.get_once(&req, &span).instrument(span.clone()).await {
                Ok(fetched) => return Ok(fetched),
                Err((e, true)) if attempt < self.max_attempts => {
                    tracing::warn!(
                        bucket = %req.bucket,
                        key = %req.key,
                        attempt,
                        reason = %e,
                        "download broke off; downloading again"
                    );
                    // Same shape as the SDK's backoff: 100 ms, 200 ms, 400 ms, ... (≤ 2 s).
                    let backoff = Duration::from_millis(100 << (attempt - 1).min(4));
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    async fn put(&self, req: PutRequest) -> Result<(), StoreError> {
        let span = self.span("PutObject", &req.bucket, &req.key);
        self.put_inner(req, &span).instrument(span.clone()).await
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<Head>, StoreError> {
        let span = self.span("HeadObject", bucket, key);
        self.head_inner(bucket, key, version_id, &span)
            .instrument(span.clone())
            .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let span = self.span("DeleteObject", bucket, key);
        self.delete_inner(bucket, key, &span)
            .instrument(span.clone())
            .await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let span = self.span("ListObjectsV2", bucket, prefix);
        self.list_inner(bucket, prefix, token, max_keys, &span)
            .instrument(span.clone())
            .await
    }
}

fn record_ids(span: &Span, request_id: Option<&str>, extended: Option<&str>) {
    if let Some(id) = request_id {
        span.record("aws.request_id", id);
    }
    if let Some(id) = extended {
        span.record("aws.extended_request_id", id);
    }
}

fn mark_fault(span: &Span, message: &str, kind: &str) {
    span.record("fault", true);
    span.record("exception.message", message);
    span.record("exception.type", kind);
}

/// Records a failed call on its span and classifies it: 404 → not found, 403 → access
/// denied, 412 → changed; everything else (5xx, throttling, other 4xx, timeouts, connection
/// errors) is transient.
fn record_error<E>(
    span: &Span,
    err: &SdkError<E, HttpResponse>,
    bucket: &str,
    key: &str,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    record_ids(span, err.request_id(), err.extended_request_id());
    let status = status_of(err);
    let code = err.code().map(str::to_owned);
    let message = match (&code, err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.clone(),
        _ => DisplayErrorContext(err).to_string(),
    };
    let what = format!("s3://{bucket}/{key}: {message}");
    span.record("exception.message", message.as_str());
    span.record(
        "exception.type",
        code.as_deref().unwrap_or(match err {
            SdkError::TimeoutError(_) => "Timeout",
            SdkError::DispatchFailure(_) => "DispatchFailure",
            SdkError::ResponseError(_) => "ResponseError",
            SdkError::ConstructionFailure(_) => "ConstructionFailure",
            _ => "ServiceError",
        }),
    );
    match status {
        Some(s) => {
            span.record("http.response.status_code", s);
            match s {
                429 => span.record("throttle", true),
                400..=499 => span.record("error", true),
                _ => span.record("fault", true),
            };
        }
        None => {
            span.record("fault", true);
        }
    }
    match status {
        Some(404) => StoreError::NotFound(what),
        Some(403) => StoreError::AccessDenied(what),
        Some(412) => StoreError::Changed(what),
        Some(s) => StoreError::Transient(format!("{what} (HTTP {s})")),
        None => StoreError::Transient(what),
    }
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(ctx) => Some(ctx.raw().status().as_u16()),
        SdkError::ResponseError(ctx) => Some(ctx.raw().status().as_u16()),
        _ => None,
    }
}
