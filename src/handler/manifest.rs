//! Writing the manifest of a rendered source to `MANIFEST_KEY_TEMPLATE` (default
//! `_manifest/{key}.json`) in the destination bucket; the document itself is built by
//! [`crate::manifest`].

use serde_json::Value;
use tracing::Instrument;

use super::Handler;
use super::outcome::Written;
use crate::event::ObjectRef;
use crate::manifest::{ManifestRendition, ManifestSource};
use crate::pipeline::RenderOutput;
use crate::store::{ObjectStore, PutRequest, StoreError};

/// The manifest of one rendered source.
pub(super) fn manifest(
    object: &ObjectRef,
    etag: Option<&str>,
    out: &RenderOutput,
    written: &[Written],
    bytes_in: u64,
    digest: &str,
) -> Value {
    let source = ManifestSource {
        bucket: Some(&object.bucket),
        key: &object.key,
        etag,
        version_id: object.version_id.as_deref(),
        bytes: bytes_in,
    };
    let renditions: Vec<ManifestRendition<'_>> = written
        .iter()
        .map(|w| ManifestRendition {
            name: &w.rendition,
            key: &w.key,
            width: w.width,
            height: w.height,
            bytes: w.bytes,
            content_type: w.content_type,
        })
        .collect();
    crate::manifest::document(&source, out, &renditions, digest)
}

impl<S: ObjectStore> Handler<S> {
    /// Writes the manifest (unless `MANIFEST_KEY_TEMPLATE=none`); its key, if written.
    pub(super) async fn write_manifest(
        &self,
        object: &ObjectRef,
        etag: Option<&str>,
        document: &Value,
    ) -> Result<Option<String>, StoreError> {
        let Some(key) = self.settings.manifest_key(&object.key) else {
            return Ok(None);
        };
        let put = PutRequest {
            bucket: self.settings.dest_bucket.clone(),
            key: key.clone(),
            body: bytes::Bytes::from(serde_json::to_vec_pretty(document).unwrap_or_default()),
            content_type: "application/json".into(),
            // Not CACHE_CONTROL: renditions of one source version never change, its manifest
            // does when the configuration does.
            cache_control: None,
            metadata: self.source_metadata(object, etag),
        };
        let span = tracing::info_span!(target: "renditions::xray", "manifest");
        self.store.put(put).instrument(span).await?;
        Ok(Some(key))
    }
}
