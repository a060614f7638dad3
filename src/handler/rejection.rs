//! Permanent refusals: an image that is bad or too large, or an object the function may not read.
//! Each is logged, counted and, unless `REJECTION_REPORTS=false`, written as a JSON report next to
//! the renditions, so the uploader can see why. Never retried.

use std::time::SystemTime;

use serde_json::json;
use tracing::{Instrument, error};

use super::Handler;
use super::freshness::META_REJECTION_KIND;
use super::outcome::Outcome;
use crate::event::ObjectRef;
use crate::manifest::rfc3339;
use crate::store::{ObjectStore, PutRequest, StoreError};
use crate::telemetry::Metrics;

impl<S: ObjectStore> Handler<S> {
    /// A permanent refusal of `kind` (a [`Rejection`] kind, or `unsafe-key`): logged, counted
    /// and reported, never retried.
    pub(super) async fn reject(
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

    pub(super) async fn unreadable(
        &self,
        object: &ObjectRef,
        err: &StoreError,
        metrics: &Metrics,
    ) -> Outcome {
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
            metadata: {
                let mut meta = self.source_metadata(object, etag);
                meta.push((META_REJECTION_KIND.to_owned(), kind.to_owned()));
                meta
            },
        };
        let span = tracing::info_span!(target: "renditions::xray", "report");
        self.store.put(put).instrument(span).await?;
        Ok(Some(key))
    }
}
