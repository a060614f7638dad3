//! The manifest: one JSON document per source image, next to its renditions, so a front end learns
//! which renditions exist with their keys and sizes (for `srcset` without probing), what to paint
//! before they load (ThumbHash, BlurHash, colours) and what the source was. The function, the demo
//! and `renditions render --manifest` write the same document. Schema: `docs/manifest.schema.json`
//! (version 1; a breaking change bumps it).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::pipeline::{Placeholder, RenderOutput, hex_colour};

/// The manifest format's version (`version` in the document).
pub const MANIFEST_VERSION: u32 = 1;

/// Where the source came from: an S3 object (the function), or a file (`bucket: None`).
#[derive(Debug, Clone, Copy)]
pub struct ManifestSource<'a> {
    pub bucket: Option<&'a str>,
    pub key: &'a str,
    pub etag: Option<&'a str>,
    pub version_id: Option<&'a str>,
    pub bytes: u64,
}

/// One written rendition.
#[derive(Debug, Clone, Copy)]
pub struct ManifestRendition<'a> {
    pub name: &'a str,
    /// Its key in the destination bucket, or its path for the CLI.
    pub key: &'a str,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
    pub content_type: &'a str,
}

/// The manifest of one rendered source.
pub fn document(
    source: &ManifestSource<'_>,
    out: &RenderOutput,
    renditions: &[ManifestRendition<'_>],
    digest: &str,
) -> Value {
    let (display_width, display_height) = if out.orientation >= 5 {
        (out.height, out.width)
    } else {
        (out.width, out.height)
    };
    let renditions: Vec<Value> = renditions
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "key": r.key,
                "width": r.width,
                "height": r.height,
                "bytes": r.bytes,
                "content_type": r.content_type,
                "format": r.content_type.trim_start_matches("image/"),
            })
        })
        .collect();
    json!({
        "version": MANIFEST_VERSION,
        "source": {
            "bucket": source.bucket,
            "key": source.key,
            "etag": source.etag,
            "version_id": source.version_id,
            "format": out.format.as_str(),
            "width": out.width,
            "height": out.height,
            "display_width": display_width,
            "display_height": display_height,
            "orientation": out.orientation,
            "bytes": source.bytes,
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
