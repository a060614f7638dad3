//! The function's work, independent of the Lambda runtime: payload → objects → download →
//! render (blocking pool) → upload, with each record's outcome classified so the invocation
//! can answer correctly (success, SQS partial batch failure, or an error Lambda retries).
//!
//! Lambda (`lambda::App`) and the local demo call [`Handler::process`] the same way; the
//! store is generic so unit tests run it against the in-memory fake.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tracing::field::Empty;
use tracing::{Instrument, Span, error, info, warn};

use super::config::LambdaSettings;
use super::event::{self, Entry, EventError, ObjectRef, ParsedEvent, Trigger};
use super::keys;
use super::store::{GetRequest, ObjectStore, PutRequest, StoreError};
use crate::pipeline::{RenderOutput, StageTimings};
use crate::telemetry::Metrics;
use crate::{Pipeline, Rejection};

/// Time kept back from the deadline so the answer (and batch failures) still gets out when
/// in-flight records are cut off.
const ANSWER_RESERVE: Duration = Duration::from_millis(500);
/// Longest URL-encoded source key carried in `x-amz-meta-source-key` (S3 caps all user metadata
/// of an object at 2 KB).
const MAX_META_KEY_BYTES: usize = 1024;

/// One rendition as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub rendition: String,
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
    pub content_type: &'static str,
}

/// What a rendered object produced, and how long each part took.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Source format (`jpeg`, `png`, …) and stored size.
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub orientation: u8,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub renditions: Vec<Written>,
    pub download: Duration,
    pub timings: StageTimings,
    pub upload: Duration,
}

/// The outcome of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Renditions written.
    Rendered(Rendered),
    /// The image was refused (bad or too large): permanent, reported, not retried.
    Rejected {
        kind: String,
        reason: String,
        /// Key of the rejection report, when one was written.
        report: Option<String>,
    },
    /// The object could not be read (404/403): permanent for the event, reported; an SQS
    /// message is still handed back so it reaches the dead-letter queue for a redrive.
    Unreadable {
        kind: String,
        reason: String,
        report: Option<String>,
    },
    /// Deliberately not processed (recursion guard, object changed since the event, …).
    Skipped(String),
    /// Transient failure (S3 5xx, throttling, timeouts, deadline): retry.
    Failed(String),
}

impl Outcome {
    /// Short name for logs and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Rendered(_) => "rendered",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Unreadable { .. } => "unreadable",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// One object of the invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectReport {
    /// Index of the message (SQS) the object came from; 0 otherwise.
    pub message: usize,
    pub object: ObjectRef,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// Everything one invocation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub trigger: Trigger,
    /// SQS message ids, by message index (`None` for other triggers).
    pub message_ids: Vec<Option<String>>,
    pub objects: Vec<ObjectReport>,
    /// Records that could not be understood, by message index.
    pub malformed: Vec<(usize, String)>,
    /// Records acknowledged without work (test events, deletions, …).
    pub ignored: usize,
}

impl Report {
    /// Whether message `i` must be retried.
    fn message_failed(&self, i: usize) -> bool {
        self.malformed.iter().any(|(m, _)| *m == i)
            || self.objects.iter().any(|o| {
                o.message == i
                    && match &o.outcome {
                        Outcome::Failed(_) => true,
                        Outcome::Unreadable { .. } => self.trigger == Trigger::Sqs,
                        _ => false,
                    }
            })
    }

    /// The SQS `itemIdentifier`s of the messages to retry.
    pub fn batch_item_failures(&self) -> Vec<String> {
        (0..self.message_ids.len())
            .filter(|&i| self.message_failed(i))
            .filter_map(|i| self.message_ids[i].clone())
            .collect()
    }

    /// Reasons the invocation (or a message) must be retried.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .malformed
            .iter()
            .map(|(_, r)| format!("malformed record: {r}"))
            .collect();
        out.extend(self.objects.iter().filter_map(|o| match &o.outcome {
            Outcome::Failed(r) => Some(format!("s3://{}/{}: {r}", o.object.bucket, o.object.key)),
            _ => None,
        }));
        out
    }

    /// How many objects ended in each outcome.
    pub fn count(&self, outcome: &str) -> usize {
        self.objects
            .iter()
            .filter(|o| o.outcome.name() == outcome)
            .count()
    }

    /// A short JSON summary (the answer for non-SQS triggers).
    pub fn summary(&self) -> Value {
        json!({
            "trigger": self.trigger.as_str(),
            "rendered": self.count("rendered"),
            "rejected": self.count("rejected"),
            "unreadable": self.count("unreadable"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "ignored": self.ignored,
        })
    }

    /// The invocation's answer: the partial batch response for SQS; for the other triggers
    /// the summary, or an error (so Lambda retries the event) if anything must be retried.
    pub fn response(&self) -> Result<Value, InvocationError> {
        if self.trigger == Trigger::Sqs {
            let failures: Vec<Value> = self
                .batch_item_failures()
                .into_iter()
                .map(|id| json!({ "itemIdentifier": id }))
                .collect();
            return Ok(json!({ "batchItemFailures": failures }));
        }
        let failures = self.failures();
        if failures.is_empty() {
            Ok(self.summary())
        } else {
            Err(InvocationError::retryable(format!(
                "{} record(s) must be retried: {}",
                failures.len(),
                failures.join("; ")
            )))
        }
    }
}

/// An invocation that failed as a whole (Lambda retries asynchronous events).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvocationError {
    /// `errorType` reported to Lambda.
    pub error_type: &'static str,
    pub message: String,
}

impl InvocationError {
    pub fn retryable(message: String) -> Self {
        InvocationError {
            error_type: "Renditions.RetryableFailure",
            message,
        }
    }
}

impl From<EventError> for InvocationError {
    fn from(e: EventError) -> Self {
        InvocationError {
            error_type: "Renditions.UnrecognisedEvent",
            message: e.to_string(),
        }
    }
}

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(e: InvocationError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type.to_owned(),
            error_message: e.message,
        }
    }
}

/// The shared, cheap-to-clone handler: store, pipeline, settings and the render slots.
pub struct Handler<S> {
    store: Arc<S>,
    pipeline: Arc<Pipeline>,
    settings: Arc<LambdaSettings>,
    renders: Arc<Semaphore>,
}

impl<S> Clone for Handler<S> {
    fn clone(&self) -> Self {
        Handler {
            store: Arc::clone(&self.store),
            pipeline: Arc::clone(&self.pipeline),
            settings: Arc::clone(&self.settings),
            renders: Arc::clone(&self.renders),
        }
    }
}

impl<S: ObjectStore> Handler<S> {
    pub fn new(store: Arc<S>, pipeline: Arc<Pipeline>, settings: Arc<LambdaSettings>) -> Self {
        let renders = Arc::new(Semaphore::new(settings.concurrency.renders.max(1)));
        Handler {
            store,
            pipeline,
            settings,
            renders,
        }
    }

    pub fn settings(&self) -> &LambdaSettings {
        &self.settings
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Processes one invocation payload. Records run concurrently (up to
    /// `concurrency.records`); none is started with less than `deadline_margin` left, and
    /// records still running `ANSWER_RESERVE` before the deadline are cut off as failed.
    pub async fn process(
        &self,
        payload: &Value,
        deadline: Option<Instant>,
        metrics: &Metrics,
    ) -> Result<Report, EventError> {
        let parsed = event::parse(payload)?;
        Ok(self.process_parsed(parsed, deadline, metrics).await)
    }

    /// [`Handler::process`] for an already parsed event.
    pub async fn process_parsed(
        &self,
        parsed: ParsedEvent,
        deadline: Option<Instant>,
        metrics: &Metrics,
    ) -> Report {
        let mut report = Report {
            trigger: parsed.trigger,
            message_ids: parsed.messages.iter().map(|m| m.id.clone()).collect(),
            objects: Vec::new(),
            malformed: Vec::new(),
            ignored: 0,
        };
        let mut jobs = Vec::new();
        for (i, message) in parsed.messages.into_iter().enumerate() {
            for entry in message.entries {
                match entry {
                    Entry::Object(o) => jobs.push((i, o)),
                    Entry::Ignored(reason) => {
                        info!(trigger = parsed.trigger.as_str(), message_id = message.id.as_deref(), reason = %reason, "ignoring record");
                        report.ignored += 1;
                    }
                    Entry::Malformed(reason) => {
                        error!(trigger = parsed.trigger.as_str(), message_id = message.id.as_deref(), reason = %reason, "malformed record");
                        report.malformed.push((i, reason));
                    }
                }
            }
        }
        let limit = self.settings.concurrency.records.max(1);
        let mut done: Vec<(usize, ObjectReport)> =
            futures_util::stream::iter(jobs.into_iter().enumerate())
                .map(|(order, (message, object))| async move {
                    (
                        order,
                        self.process_record(message, object, deadline, metrics)
                            .await,
                    )
                })
                .buffer_unordered(limit)
                .collect()
                .await;
        done.sort_by_key(|(order, _)| *order);
        report.objects = done.into_iter().map(|(_, r)| r).collect();
        report
    }

    async fn process_record(
        &self,
        message: usize,
        object: ObjectRef,
        deadline: Option<Instant>,
        metrics: &Metrics,
    ) -> ObjectReport {
        let started = Instant::now();
        let outcome = self.record_outcome(&object, deadline, metrics).await;
        ObjectReport {
            message,
            object,
            outcome,
            elapsed: started.elapsed(),
        }
    }

    async fn record_outcome(
        &self,
        object: &ObjectRef,
        deadline: Option<Instant>,
        metrics: &Metrics,
    ) -> Outcome {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < self.settings.deadline_margin {
                let reason = format!(
                    "not started: {} ms left before the deadline (margin {} ms)",
                    left.as_millis(),
                    self.settings.deadline_margin.as_millis()
                );
                warn!(bucket = %object.bucket, key = %object.key, reason = %reason, "record failed as transient");
                return Outcome::Failed(reason);
            }
        }
        if let Some(reason) = self.settings.recursion_skip(&object.bucket, &object.key) {
            info!(bucket = %object.bucket, key = %object.key, reason = %reason, "skipping object");
            return Outcome::Skipped(reason);
        }
        if object.key.ends_with('/') {
            let reason = "a folder marker, not an image".to_owned();
            info!(bucket = %object.bucket, key = %object.key, reason = %reason, "skipping object");
            return Outcome::Skipped(reason);
        }
        let span = tracing::info_span!(
            target: "renditions::xray",
            "object",
            aws.s3.bucket = %object.bucket,
            aws.s3.key = %object.key,
            outcome = Empty,
            format = Empty,
            width = Empty,
            height = Empty,
            renditions = Empty,
            bytes_in = Empty,
            bytes_out = Empty,
            error = Empty,
            fault = Empty,
            exception.message = Empty,
        );
        let work = self
            .object_work(object, metrics, span.clone())
            .instrument(span.clone());
        let outcome = match deadline {
            Some(deadline) => {
                let cutoff = deadline.checked_sub(ANSWER_RESERVE).unwrap_or(deadline);
                match tokio::time::timeout_at(tokio::time::Instant::from_std(cutoff), work).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        let reason =
                            "cut off: did not finish before the invocation deadline".to_owned();
                        let _g = span.enter();
                        warn!(bucket = %object.bucket, key = %object.key, reason = %reason, "record failed as transient");
                        Outcome::Failed(reason)
                    }
                }
            }
            None => work.await,
        };
        span.record("outcome", outcome.name());
        match &outcome {
            Outcome::Failed(reason) => {
                span.record("fault", true);
                span.record("exception.message", reason.as_str());
            }
            Outcome::Rejected { reason, .. } | Outcome::Unreadable { reason, .. } => {
                span.record("error", true);
                span.record("exception.message", reason.as_str());
            }
            _ => {}
        }
        outcome
    }

    /// Download, render, upload (or report) one object, inside its `object` span.
    async fn object_work(&self, object: &ObjectRef, metrics: &Metrics, span: Span) -> Outcome {
        if let Some(reason) = keys::unsafe_segment(&object.key) {
            return self
                .reject(
                    object,
                    object.etag.as_deref(),
                    "unsafe-key",
                    reason,
                    metrics,
                )
                .await;
        }
        let max_bytes = self.pipeline.config().limits.max_input_bytes;
        // Download: the current object, provided it is still the one the event announced
        // (If-Match on its ETag; see docs/lambda.md for why not the versionId).
        let t = Instant::now();
        let request = GetRequest {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: None,
            if_match: object.etag.clone(),
            max_bytes,
        };
        let download_span = tracing::info_span!(target: "renditions::xray", "download");
        let fetched = self.store.get(request).instrument(download_span).await;
        let download = t.elapsed();
        metrics.record_stage("download", download);
        let fetched = match fetched {
            Ok(f) => f,
            Err(StoreError::TooLarge(reason)) => {
                let rejection = Rejection::too_large(reason);
                return self
                    .reject(
                        object,
                        None,
                        rejection.kind.as_str(),
                        rejection.reason,
                        metrics,
                    )
                    .await;
            }
            Err(e @ (StoreError::NotFound(_) | StoreError::AccessDenied(_))) => {
                return self.unreadable(object, &e, metrics).await;
            }
            Err(StoreError::Changed(reason)) => {
                let reason = format!(
                    "the object changed since the event ({reason}); the newer version has its own event"
                );
                info!(bucket = %object.bucket, key = %object.key, reason = %reason, "skipping object");
                return Outcome::Skipped(reason);
            }
            Err(StoreError::Transient(reason)) => {
                error!(bucket = %object.bucket, key = %object.key, reason = %reason, "download failed (transient)");
                return Outcome::Failed(format!("download: {reason}"));
            }
        };
        let bytes_in = fetched.bytes.len() as u64;
        metrics.add_input_bytes(bytes_in);
        let etag = fetched.etag.clone().or_else(|| object.etag.clone());

        // Render on the blocking pool, at most `concurrency.renders` at once.
        let permit = match Arc::clone(&self.renders).acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Outcome::Failed("render slots closed".into()),
        };
        let pipeline = Arc::clone(&self.pipeline);
        let render_span = span.clone();
        let data = fetched.bytes;
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _entered = render_span.enter();
            let start = SystemTime::now();
            (start, pipeline.render(&data))
        })
        .await;
        let (render_start, rendered) = match joined {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("the renderer panicked: {e}");
                error!(bucket = %object.bucket, key = %object.key, reason = %reason, "render failed");
                return Outcome::Failed(reason);
            }
        };
        let mut out = match rendered {
            Ok(out) => out,
            Err(rejection) => {
                let kind = rejection.kind.as_str();
                return self
                    .reject(object, etag.as_deref(), kind, rejection.reason, metrics)
                    .await;
            }
        };
        emit_stage_spans(render_start, &out);
        span.record("format", out.format.as_str());
        span.record("width", out.width);
        span.record("height", out.height);
        span.record("renditions", out.renditions.len());
        span.record("bytes_in", bytes_in);

        // Upload every rendition concurrently.
        let t = Instant::now();
        let base_meta = self.source_metadata(object, etag.as_deref());
        let renditions = std::mem::take(&mut out.renditions);
        let mut puts = Vec::with_capacity(renditions.len());
        let mut written = Vec::with_capacity(renditions.len());
        for r in renditions {
            let key =
                self.settings
                    .key_template
                    .render(&r.name, &object.key, r.encoding.extension());
            let mut metadata = base_meta.clone();
            metadata.push(("rendition".into(), r.name.clone()));
            metadata.push(("width".into(), r.width.to_string()));
            metadata.push(("height".into(), r.height.to_string()));
            written.push(Written {
                rendition: r.name,
                key: key.clone(),
                width: r.width,
                height: r.height,
                bytes: r.bytes.len(),
                content_type: r.encoding.content_type(),
            });
            puts.push(self.store.put(PutRequest {
                bucket: self.settings.dest_bucket.clone(),
                key,
                body: bytes::Bytes::from(r.bytes),
                content_type: r.encoding.content_type().to_owned(),
                cache_control: self.settings.cache_control.clone(),
                metadata,
            }));
        }
        let upload_span =
            tracing::info_span!(target: "renditions::xray", "upload", objects = puts.len());
        let results = futures_util::future::join_all(puts)
            .instrument(upload_span)
            .await;
        let upload = t.elapsed();
        metrics.record_stage("upload", upload);
        if let Some(e) = results.into_iter().find_map(Result::err) {
            error!(bucket = %object.bucket, key = %object.key, reason = %e, "upload failed (transient)");
            return Outcome::Failed(format!("upload: {e}"));
        }
        let bytes_out: u64 = written.iter().map(|w| w.bytes as u64).sum();
        span.record("bytes_out", bytes_out);
        metrics.add_output_bytes(bytes_out);
        metrics.image_processed();
        for (stage, ms) in out.timings.as_millis() {
            metrics.record_stage_ms(stage, ms);
        }
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let t = out.timings;
        info!(
            bucket = %object.bucket,
            key = %object.key,
            format = out.format.as_str(),
            width = out.width,
            height = out.height,
            orientation = out.orientation,
            renditions = written.len(),
            bytes_in,
            bytes_out,
            download_ms = ms(download),
            decode_ms = ms(t.decode),
            colour_ms = ms(t.colour),
            resize_ms = ms(t.resize),
            orient_ms = ms(t.orient),
            watermark_ms = ms(t.watermark),
            encode_ms = ms(t.encode),
            upload_ms = ms(upload),
            "object rendered"
        );
        Outcome::Rendered(Rendered {
            format: out.format.as_str().to_owned(),
            width: out.width,
            height: out.height,
            orientation: out.orientation,
            bytes_in,
            bytes_out,
            renditions: written,
            download,
            timings: out.timings,
            upload,
        })
    }

    fn source_metadata(&self, object: &ObjectRef, etag: Option<&str>) -> Vec<(String, String)> {
        // Metadata travels in HTTP headers: ASCII only, so the key is URL-encoded. S3 allows
        // 2 KB of user metadata in all: a key too long for that is named by its digest instead.
        let encoded = event::encode_key(&object.key);
        let source_key = if encoded.len() <= MAX_META_KEY_BYTES {
            ("source-key".to_owned(), encoded)
        } else {
            (
                "source-key-sha256".to_owned(),
                keys::digest_hex(&object.key),
            )
        };
        let mut meta = vec![
            ("source-bucket".to_owned(), object.bucket.clone()),
            source_key,
        ];
        if let Some(etag) = etag {
            meta.push(("source-etag".to_owned(), etag.to_owned()));
        }
        meta
    }

    /// A permanent refusal of `kind` (a [`Rejection`] kind, or `unsafe-key`): logged, counted
    /// and reported, never retried.
    async fn reject(
        &self,
        object: &ObjectRef,
        etag: Option<&str>,
        kind: &str,
        reason: String,
        metrics: &Metrics,
    ) -> Outcome {
        error!(
            bucket = %object.bucket,
            key = %object.key,
            kind,
            reason = %reason,
            "image rejected"
        );
        metrics.image_rejected(kind);
        match self.write_report(object, etag, kind, &reason).await {
            Ok(report) => Outcome::Rejected {
                kind: kind.to_owned(),
                reason,
                report,
            },
            Err(e) => Outcome::Failed(format!(
                "rejected ({kind}), but the report could not be written: {e}"
            )),
        }
    }

    async fn unreadable(&self, object: &ObjectRef, err: &StoreError, metrics: &Metrics) -> Outcome {
        let kind = err.kind();
        let reason = err.to_string();
        error!(bucket = %object.bucket, key = %object.key, kind, reason = %reason, "object unreadable");
        metrics.image_rejected(kind);
        match self
            .write_report(object, object.etag.as_deref(), kind, &reason)
            .await
        {
            Ok(report) => Outcome::Unreadable {
                kind: kind.to_owned(),
                reason,
                report,
            },
            Err(e) => Outcome::Failed(format!(
                "unreadable ({kind}), and the report could not be written: {e}"
            )),
        }
    }

    /// Writes `{REJECTION_PREFIX}{key}.json` unless reports are off.
    async fn write_report(
        &self,
        object: &ObjectRef,
        etag: Option<&str>,
        kind: &str,
        reason: &str,
    ) -> Result<Option<String>, StoreError> {
        if !self.settings.rejection_reports {
            return Ok(None);
        }
        let key = self.settings.rejection_key(&object.key);
        let body = json!({
            "bucket": object.bucket,
            "key": object.key,
            "etag": etag,
            "kind": kind,
            "reason": reason,
            "time": rfc3339(SystemTime::now()),
        });
        let put = PutRequest {
            bucket: self.settings.dest_bucket.clone(),
            key: key.clone(),
            body: bytes::Bytes::from(serde_json::to_vec_pretty(&body).unwrap_or_default()),
            content_type: "application/json".into(),
            cache_control: None,
            metadata: self.source_metadata(object, etag),
        };
        let span = tracing::info_span!(target: "renditions::xray", "report");
        self.store.put(put).instrument(span).await?;
        Ok(Some(key))
    }
}

/// Emits the pipeline's stages as child subsegments of the current (object) span, each at the
/// offset from the render's start the pipeline recorded ([`crate::pipeline::StageSpan`]), so
/// X-Ray shows exactly when each ran: decode, colour, resize per rendition, then orient,
/// watermark and encode per rendition.
fn emit_stage_spans(start: SystemTime, out: &RenderOutput) {
    let secs = |offset: Duration| {
        (start + offset)
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    for stage in &out.stages {
        let (a, b) = (secs(stage.start), secs(stage.start + stage.duration));
        let r = stage.rendition.and_then(|i| out.renditions.get(i));
        let name = r.map_or("", |r| r.name.as_str());
        // One span per stage kind: `tracing` span names are static.
        let span = match stage.stage {
            "decode" => {
                tracing::info_span!(target: "renditions::xray", "decode", xray.start_time = a, xray.end_time = b, format = out.format.as_str(), detail = %out.detail, decoded_width = out.decoded_width, decoded_height = out.decoded_height)
            }
            "colour" => {
                tracing::info_span!(target: "renditions::xray", "colour", xray.start_time = a, xray.end_time = b, icc_converted = out.icc_converted)
            }
            "resize" => {
                tracing::info_span!(target: "renditions::xray", "resize", xray.start_time = a, xray.end_time = b, rendition = name, width = r.map_or(0, |r| r.width), height = r.map_or(0, |r| r.height))
            }
            "orient" => {
                tracing::info_span!(target: "renditions::xray", "orient", xray.start_time = a, xray.end_time = b, rendition = name, orientation = out.orientation)
            }
            "watermark" => {
                tracing::info_span!(target: "renditions::xray", "watermark", xray.start_time = a, xray.end_time = b, rendition = name, stamped = r.is_some_and(|r| r.watermarked))
            }
            "encode" => {
                tracing::info_span!(target: "renditions::xray", "encode", xray.start_time = a, xray.end_time = b, rendition = name, encoding = r.map_or("", |r| r.encoding.extension()), bytes = r.map_or(0, |r| r.bytes.len()))
            }
            _ => continue,
        };
        drop(span);
    }
}

/// `2026-01-02T03:04:05Z` (UTC, whole seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
