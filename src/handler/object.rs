//! One object, in three steps: [`Handler::download`] it (if it is still the object the event
//! announced), [`Handler::render`] it on the blocking pool, [`Handler::upload`] the renditions.
//! Each step returns the [`Outcome`] that ends the object early (rejected, unreadable, skipped,
//! failed) as its error, so [`Handler::object_work`] reads as the data flow.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{Instrument, Span, error, info, warn};

use super::Handler;
use super::freshness::{Freshness, META_CONFIG_DIGEST, META_SOURCE_ETAG};
use super::manifest;
use super::outcome::{Outcome, Rendered, Written};
use crate::cancel::Cancel;
use crate::event::ObjectRef;
use crate::event::keys;
use crate::pipeline::{RenderError, RenderOutput};
use crate::reject::Rejection;
use crate::store::{Fetched, GetRequest, ObjectStore, PutRequest, StoreError};
use crate::telemetry::{Metrics, xray};

/// A step's result: its value, or the outcome that ends the object here.
type Step<T> = Result<T, Outcome>;

impl<S: ObjectStore> Handler<S> {
    /// Download, render, upload (or report) one object, inside its `object` span.
    pub(super) async fn object_work(
        &self,
        object: &ObjectRef,
        check_fresh: bool,
        metrics: &Metrics,
        span: Span,
        cancel: Cancel,
    ) -> Outcome {
        let result = async {
            if let Some(reason) = keys::unsafe_segment(&object.key) {
                let etag = object.etag.as_deref();
                return Err(self
                    .reject(object, etag, "unsafe-key", reason, metrics)
                    .await);
            }
            if check_fresh {
                self.skip_if_unchanged(object, metrics).await?;
            }
            let (fetched, download) = self.download(object, metrics).await?;
            let bytes_in = fetched.bytes.len() as u64;
            let etag = fetched.etag.clone().or_else(|| object.etag.clone());
            let out = self
                .render(object, etag.as_deref(), fetched, metrics, &span, cancel)
                .await?;
            span.record("bytes_in", bytes_in);
            let (out, written, upload) = self.upload(object, etag.as_deref(), out, metrics).await?;
            let document = manifest::manifest(
                object,
                etag.as_deref(),
                &out,
                &written,
                bytes_in,
                &self.digest,
            );
            if let Err(e) = self.write_manifest(object, etag.as_deref(), &document).await {
                error!(bucket = %object.bucket, key = %object.key, reason = %e, "manifest upload failed (transient)");
                return Err(Outcome::Failed(format!("manifest: {e}")));
            }
            Ok(self.rendered(
                object, out, written, bytes_in, download, upload, metrics, &span,
            ))
        }
        .await;
        result.unwrap_or_else(|ended| ended)
    }

    /// Ends the object here when it was already rendered (or refused) from this source version
    /// with this configuration; a failed check only costs the skip (the render goes ahead).
    async fn skip_if_unchanged(&self, object: &ObjectRef, metrics: &Metrics) -> Step<()> {
        let span = tracing::info_span!(target: "renditions::xray", "freshness");
        match self.freshness(object).instrument(span).await {
            Ok(Freshness::Stale) => Ok(()),
            Ok(Freshness::Current) => {
                metrics.image_unchanged();
                Err(Outcome::Unchanged(format!(
                    "renditions up to date (same source ETag, config digest {})",
                    self.digest
                )))
            }
            Ok(Freshness::RejectedBefore(kind)) => {
                let report = self.settings.rejection_key(&object.key);
                info!(bucket = %object.bucket, key = %object.key, kind = %kind, "refused before with this configuration: skipping");
                Err(Outcome::Rejected {
                    reason: format!(
                        "refused before, same source and configuration: see the report at {report}"
                    ),
                    kind,
                    report: Some(report),
                })
            }
            Err(e) => {
                warn!(bucket = %object.bucket, key = %object.key, reason = %e, "could not check for up-to-date renditions; rendering");
                Ok(())
            }
        }
    }

    /// The current object, provided it is still the one the event announced (If-Match on its
    /// ETag; see docs/lambda.md for why not the versionId), and how long that took.
    async fn download(&self, object: &ObjectRef, metrics: &Metrics) -> Step<(Fetched, Duration)> {
        let t = Instant::now();
        let request = GetRequest {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: None,
            if_match: object.etag.clone(),
            max_bytes: self.pipeline.config().limits.max_input_bytes,
        };
        let download_span = tracing::info_span!(target: "renditions::xray", "download");
        let fetched = self.store.get(request).instrument(download_span).await;
        let download = t.elapsed();
        metrics.record_stage("download", download);
        match fetched {
            Ok(f) => {
                metrics.add_input_bytes(f.bytes.len() as u64);
                Ok((f, download))
            }
            Err(StoreError::TooLarge(reason)) => {
                let rejection = Rejection::too_large(reason);
                let kind = rejection.kind.as_str();
                Err(self
                    .reject(object, None, kind, rejection.reason, metrics)
                    .await)
            }
            Err(e @ (StoreError::NotFound(_) | StoreError::AccessDenied(_))) => {
                Err(self.unreadable(object, &e, metrics).await)
            }
            Err(StoreError::Changed(reason)) => {
                // WARN: this is also what a hand-made or stock test event with a made-up eTag
                // gets (README: "Invoking it by hand" builds a real one).
                let reason = format!(
                    "the object changed since the event ({reason}): its ETag is no longer the \
                     event's eTag; the newer version has its own event"
                );
                warn!(bucket = %object.bucket, key = %object.key, etag = object.etag.as_deref(), reason = %reason, "skipping object");
                Err(Outcome::Skipped(reason))
            }
            Err(StoreError::Transient(reason)) => {
                error!(bucket = %object.bucket, key = %object.key, reason = %reason, "download failed (transient)");
                Err(Outcome::Failed(format!("download: {reason}")))
            }
        }
    }

    /// Renders on the blocking pool, at most `concurrency.renders` at once; a refused image is
    /// rejected (and reported) here. Emits the stages' X-Ray subsegments. The render stops when
    /// `cancel` fires (at the record's cut-off), even after this future was dropped.
    async fn render(
        &self,
        object: &ObjectRef,
        etag: Option<&str>,
        fetched: Fetched,
        metrics: &Metrics,
        span: &Span,
        cancel: Cancel,
    ) -> Step<RenderOutput> {
        let permit = match Arc::clone(&self.renders).acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Err(Outcome::Failed("render slots closed".into())),
        };
        let pipeline = Arc::clone(&self.pipeline);
        let render_span = span.clone();
        let data = fetched.bytes;
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _entered = render_span.enter();
            let start = SystemTime::now();
            let rendered = pipeline.render_until(&data, &cancel);
            if let Err(RenderError::Cancelled { stage }) = &rendered {
                // Logged from the render itself: the record's future may be gone by now.
                let late_ms = cancel.deadline().map_or(0, |d| {
                    Instant::now().saturating_duration_since(d).as_millis()
                });
                warn!(
                    stage = stage.as_str(),
                    stopped_after_deadline_ms = late_ms as u64,
                    "render cancelled at the deadline; its slot and memory are free"
                );
            }
            (start, rendered)
        })
        .await;
        let (render_start, rendered) = match joined {
            Ok(r) => r,
            Err(e) => {
                return Err(internal(
                    object,
                    format!("the renderer panicked: {e}"),
                    metrics,
                ));
            }
        };
        match rendered {
            Ok(out) => {
                xray::emit_stage_spans(render_start, &out);
                span.record("format", out.format.as_str());
                span.record("width", out.width);
                span.record("height", out.height);
                span.record("renditions", out.renditions.len());
                Ok(out)
            }
            Err(RenderError::Rejected(rejection)) => {
                let kind = rejection.kind.as_str();
                Err(self
                    .reject(object, etag, kind, rejection.reason, metrics)
                    .await)
            }
            Err(e @ RenderError::Internal { .. }) => Err(internal(object, e.to_string(), metrics)),
            Err(e @ RenderError::Cancelled { .. }) => Err(Outcome::Failed(format!(
                "cut off: {e}; the record will be retried"
            ))),
        }
    }

    /// Writes every rendition concurrently, each at its key from the template, with the source
    /// named in its metadata. Returns the render (renditions' bytes moved out), what was
    /// written and how long it took.
    async fn upload(
        &self,
        object: &ObjectRef,
        etag: Option<&str>,
        mut out: RenderOutput,
        metrics: &Metrics,
    ) -> Step<(RenderOutput, Vec<Written>, Duration)> {
        let t = Instant::now();
        let base_meta = self.source_metadata(object, etag);
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
            return Err(Outcome::Failed(format!("upload: {e}")));
        }
        Ok((out, written, upload))
    }

    /// Counts, logs and returns a rendered object.
    #[allow(clippy::too_many_arguments)]
    fn rendered(
        &self,
        object: &ObjectRef,
        out: RenderOutput,
        written: Vec<Written>,
        bytes_in: u64,
        download: Duration,
        upload: Duration,
        metrics: &Metrics,
        span: &Span,
    ) -> Outcome {
        let bytes_out: u64 = written.iter().map(|w| w.bytes as u64).sum();
        span.record("bytes_out", bytes_out);
        metrics.add_output_bytes(bytes_out);
        metrics.image_processed();
        for (stage, ms) in out.timings.as_millis() {
            metrics.record_stage_ms(stage.as_str(), ms);
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

    /// `source-bucket`, `source-key` (or its digest) and `source-etag`: the metadata that ties
    /// every written object to its source.
    pub(super) fn source_metadata(
        &self,
        object: &ObjectRef,
        etag: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut meta = vec![
            ("source-bucket".to_owned(), object.bucket.clone()),
            keys::source_key_metadata(&object.key),
            (META_CONFIG_DIGEST.to_owned(), self.digest.to_string()),
        ];
        if let Some(etag) = etag {
            meta.push((META_SOURCE_ETAG.to_owned(), etag.to_owned()));
        }
        meta
    }
}

/// A fault of ours: logged at ERROR as such, counted under `InternalErrors`, retried (no
/// rejection report: the upload is not to blame).
fn internal(object: &ObjectRef, reason: String, metrics: &Metrics) -> Outcome {
    error!(
        bucket = %object.bucket,
        key = %object.key,
        reason = %reason,
        "internal error: not the upload's fault; the record will be retried"
    );
    metrics.internal_error();
    Outcome::Internal(reason)
}
