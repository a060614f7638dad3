//! Delete sync (`ON_SOURCE_DELETE=delete`): when a source is deleted, its renditions and its
//! rejection report go too. Only keys the key template computes for that source key are touched
//! (every possible extension, the report), never a listing or a prefix; and nothing is deleted
//! while the source key still exists (a newer upload after the delete, or the deletion of an old
//! version in a versioned bucket), so a late or replayed event cannot take live renditions away.

use tracing::{Instrument, info, warn};

use super::Handler;
use super::outcome::Outcome;
use crate::event::ObjectRef;
use crate::event::keys;
use crate::store::ObjectStore;
use crate::telemetry::Metrics;

impl<S: ObjectStore> Handler<S> {
    /// Deletes the renditions and report of a deleted source.
    pub(super) async fn remove(&self, object: &ObjectRef, metrics: &Metrics) -> Outcome {
        if let Some(reason) = keys::unsafe_segment(&object.key) {
            return Outcome::Skipped(reason);
        }
        let span = tracing::info_span!(
            target: "renditions::xray",
            "delete",
            aws.s3.bucket = %object.bucket,
            aws.s3.key = %object.key
        );
        async {
            match self.store.head(&object.bucket, &object.key, None).await {
                Ok(Some(_)) => {
                    let reason = "the source key exists again (re-uploaded, or only an old \
                                  version was deleted): its renditions stay"
                        .to_owned();
                    info!(bucket = %object.bucket, key = %object.key, reason = %reason, "not deleting renditions");
                    return Outcome::Skipped(reason);
                }
                Ok(None) => {}
                Err(e) => return Outcome::Failed(format!("checking the source: {e}")),
            }
            let dest = self.settings.dest_bucket.as_str();
            let mut targets: Vec<String> = self
                .rendition_keys(&object.key)
                .into_iter()
                .flat_map(|(_, keys)| keys)
                .collect();
            if self.settings.rejection_reports {
                targets.push(self.settings.rejection_key(&object.key));
            }
            targets.extend(self.settings.manifest_key(&object.key));
            let results = futures_util::future::join_all(
                targets.iter().map(|k| self.store.delete(dest, k)),
            )
            .await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                warn!(bucket = %object.bucket, key = %object.key, reason = %e, "deleting renditions failed (transient)");
                return Outcome::Failed(format!("delete: {e}"));
            }
            metrics.renditions_deleted(targets.len() as u64);
            info!(bucket = %object.bucket, key = %object.key, deleted = targets.len(), "source deleted: renditions and report deleted");
            Outcome::Removed(targets)
        }
        .instrument(span)
        .await
    }
}
