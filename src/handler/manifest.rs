//! The manifest: one JSON document per source image, written after its renditions
//! (`MANIFEST_KEY_TEMPLATE`, default `_manifest/{key}.json`), so a front end learns which
//! renditions exist with their keys and sizes (for `srcset` without probing), what to paint before
//! they load (ThumbHash, BlurHash, colours), and what the source was. Schema:
//! `docs/manifest.schema.json` (version 1; a breaking change bumps it).

use std::time::SystemTime;

use serde_json::{Value, json};
use tracing::Instrument;

use super::Handler;
use super::outcome::Written;
use super::rejection::rfc3339;
use crate::event::ObjectRef;
use crate::pipeline::{Placeholder, RenderOutput, hex_colour};
use crate::store::{ObjectStore, PutRequest, StoreError};

/// The manifest format's version (`version` in the document).
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest of one rendered source.
pub(super) fn manifest(
    object: &ObjectRef,
    etag: Option<&str>,
    out: &RenderOutput,
    written: &[Written],
    bytes_in: u64,
    digest: &str,
) -> Value {
    let (display_width, display_height) = if out.orientation >= 5 {
        (out.height, out.width)
    } else {
        (out.width, out.height)
    };
    let renditions: Vec<Value> = written
        .iter()
        .map(|w| {
            json!({
                "name": w.rendition,
                "key": w.key,
                "width": w.width,
                "height": w.height,
                "bytes": w.bytes,
                "content_type": w.content_type,
                "format": w.content_type.trim_start_matches("image/"),
            })
        })
        .collect();
    json!({
        "version": MANIFEST_VERSION,
        "source": {
            "bucket": object.bucket,
            "key": object.key,
            "etag": etag,
            "version_id": object.version_id,
            "format": out.format.as_str(),
            "width": out.width,
            "height": out.height,
            "display_width": display_width,
            "display_height": display_height,
            "orientation": out.orientation,
            "bytes": bytes_in,
            "has_alpha": out.has_alpha,
            "icc_converted": out.icc_converted,
        },
        "config_digest": digest,
        "renditions": renditions,
        "placeholders": out.placeholder.as_ref().map(placeholders),
        "created": rfc3339(SystemTime::now()),
    })
}

fn placeholders(p: &Placeholder) -> Value {
    json!({
        "thumbhash": p.thumbhash,
        "blurhash": p.blurhash,
        "average_colour": hex_colour(p.average),
        "dominant_colour": hex_colour(p.dominant),
    })
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
