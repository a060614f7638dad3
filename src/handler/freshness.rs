//! Skip-unchanged: every object the function writes carries, in its metadata, the source's ETag
//! and a digest of the rendering configuration. Before rendering a Batch task (or an SQS message
//! delivered before), HEADs of the renditions (and of the rejection report) tell whether that
//! exact source was already rendered (or refused) with this exact configuration; then nothing is
//! downloaded and nothing written. A new source version or a configuration change (renditions,
//! format, quality, watermark bytes and placement, …) changes one of the two and re-renders.

use tracing::info;

use super::Handler;
use crate::event::ObjectRef;
use crate::store::{Head, ObjectStore, StoreError};

/// Metadata names (`x-amz-meta-…`) on everything written.
pub(super) const META_SOURCE_ETAG: &str = "source-etag";
pub(super) const META_CONFIG_DIGEST: &str = "config-digest";
pub(super) const META_REJECTION_KIND: &str = "rejection-kind";

/// What the existing objects say about a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Freshness {
    /// Every rendition is there, from this source version and this configuration.
    Current,
    /// Refused before, this source version with this configuration (the report's kind).
    RejectedBefore(String),
    /// Something is missing or out of date: render.
    Stale,
}

impl<S: ObjectStore> Handler<S> {
    /// Every key a rendition of `key` may have: one per possible encoding when the template has
    /// `{ext}` (with `OUTPUT_FORMAT=auto`, `.jpg` or `.png`), else one. Deduplicated, by
    /// rendition.
    pub(super) fn rendition_keys(&self, key: &str) -> Vec<(String, Vec<String>)> {
        let format = self.pipeline.config().format;
        self.pipeline
            .config()
            .renditions
            .iter()
            .map(|r| {
                let mut keys: Vec<String> = format
                    .encodings()
                    .iter()
                    .map(|e| {
                        self.settings
                            .key_template
                            .render(&r.name, key, e.extension())
                    })
                    .collect();
                keys.dedup();
                (r.name.clone(), keys)
            })
            .collect()
    }

    /// Whether `object` needs rendering (see the module docs). The source's ETag comes from the
    /// event, else from a HEAD of the source (Batch tasks name only the key and version).
    pub(super) async fn freshness(&self, object: &ObjectRef) -> Result<Freshness, StoreError> {
        let etag = match &object.etag {
            Some(etag) => etag.clone(),
            None => {
                let head = self
                    .store
                    .head(&object.bucket, &object.key, object.version_id.as_deref())
                    .await?;
                match head.and_then(|h| h.etag) {
                    Some(etag) => etag,
                    // Gone, or no ETag: the download says what is wrong.
                    None => return Ok(Freshness::Stale),
                }
            }
        };
        let matches = |head: &Option<Head>| {
            head.as_ref().is_some_and(|h| {
                h.meta(META_SOURCE_ETAG) == Some(etag.as_str())
                    && h.meta(META_CONFIG_DIGEST) == Some(&*self.digest)
            })
        };
        let dest = self.settings.dest_bucket.as_str();
        let renditions = self.rendition_keys(&object.key);
        let heads = futures_util::future::join_all(renditions.iter().map(|(_, keys)| {
            futures_util::future::join_all(keys.iter().map(|k| self.store.head(dest, k, None)))
        }))
        .await;
        let mut all_current = true;
        for per_rendition in heads {
            let mut current = false;
            for head in per_rendition {
                current |= matches(&head?);
            }
            all_current &= current;
        }
        if all_current {
            info!(bucket = %object.bucket, key = %object.key, etag = %etag, digest = %&*self.digest, "renditions up to date: skipping");
            return Ok(Freshness::Current);
        }
        if self.settings.rejection_reports {
            let report = self
                .store
                .head(dest, &self.settings.rejection_key(&object.key), None)
                .await?;
            let kind = report
                .as_ref()
                .and_then(|h| h.meta(META_REJECTION_KIND))
                .unwrap_or("rejected")
                .to_owned();
            // `too-large` depends on the limits, which are not in the digest (they decide what
            // is refused, not the bytes): raised limits must get another try.
            if matches(&report) && kind != "too-large" {
                return Ok(Freshness::RejectedBefore(kind));
            }
        }
        Ok(Freshness::Stale)
    }
}

#[cfg(test)]
mod tests {
    use crate::pipeline::output_digest as config_digest;
    use crate::settings::{PipelineConfig, WatermarkSource, WatermarkSpec};
    use std::sync::Arc;

    #[test]
    fn digest_follows_what_changes_the_output_and_nothing_else() {
        let base = PipelineConfig::default();
        let d = config_digest(&base);
        assert_eq!(d.len(), 16);
        assert_eq!(d, config_digest(&base.clone()), "stable");
        let mut limits = base.clone();
        limits.limits.max_input_pixels /= 2;
        assert_eq!(
            d,
            config_digest(&limits),
            "limits decide refusals, not bytes"
        );
        let mut quality = base.clone();
        quality.jpeg.quality = 90;
        assert_ne!(d, config_digest(&quality));
        let mut sizes = base.clone();
        sizes.renditions.pop();
        assert_ne!(d, config_digest(&sizes));
        let mut opacity = base.clone();
        opacity.watermark.opacity = base.watermark.opacity / 2.0;
        assert_ne!(d, config_digest(&opacity));
        // Two watermark images of the same length differ by their bytes.
        let image = |b: u8| WatermarkSpec {
            source: WatermarkSource::Image(Arc::new(vec![b; 64])),
            ..base.watermark.clone()
        };
        let (mut a, mut b) = (base.clone(), base.clone());
        a.watermark = image(1);
        b.watermark = image(2);
        assert_ne!(config_digest(&a), config_digest(&b));
    }
}
