//! The pipeline's stages as X-Ray subsegments. The render runs on a blocking thread and records
//! when each stage ran ([`StageSpan`]); this replays them as child spans of the object's span,
//! at their real offsets, so X-Ray shows exactly when each ran.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(doc)]
use crate::pipeline::StageSpan;
use crate::pipeline::{RenderOutput, Stage};

/// Emits the pipeline's stages as child subsegments of the current (object) span, each at the
/// offset from the render's start the pipeline recorded ([`StageSpan`]), so
/// X-Ray shows exactly when each ran: decode, colour, resize per rendition, then orient,
/// watermark and encode per rendition.
pub(crate) fn emit_stage_spans(start: SystemTime, out: &RenderOutput) {
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
            Stage::Decode => {
                tracing::info_span!(target: "renditions::xray", "decode", xray.start_time = a, xray.end_time = b, format = out.format.as_str(), detail = %out.detail, decoded_width = out.decoded_width, decoded_height = out.decoded_height)
            }
            Stage::Colour => {
                tracing::info_span!(target: "renditions::xray", "colour", xray.start_time = a, xray.end_time = b, icc_converted = out.icc_converted)
            }
            Stage::Resize => {
                tracing::info_span!(target: "renditions::xray", "resize", xray.start_time = a, xray.end_time = b, rendition = name, width = r.map_or(0, |r| r.width), height = r.map_or(0, |r| r.height))
            }
            Stage::Orient => {
                tracing::info_span!(target: "renditions::xray", "orient", xray.start_time = a, xray.end_time = b, rendition = name, orientation = out.orientation)
            }
            Stage::Watermark => {
                tracing::info_span!(target: "renditions::xray", "watermark", xray.start_time = a, xray.end_time = b, rendition = name, stamped = r.is_some_and(|r| r.watermarked))
            }
            Stage::Encode => {
                tracing::info_span!(target: "renditions::xray", "encode", xray.start_time = a, xray.end_time = b, rendition = name, encoding = r.map_or("", |r| r.encoding.extension()), bytes = r.map_or(0, |r| r.bytes.len()))
            }
        };
        drop(span);
    }
}
