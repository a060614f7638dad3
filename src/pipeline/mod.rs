//! The rendition pipeline: bytes in → renditions out, or a typed [`Rejection`].
//!
//! ```text
//! sniff → probe header (limits) → decode (shrink-on-load) → colour → resize (cascade)
//!       → orient → watermark → encode
//! ```
//! Pure and synchronous: no I/O, no AWS types. Build a [`Pipeline`] once from a
//! [`PipelineConfig`] (this decodes the watermark and prepares caches) and call
//! [`Pipeline::render`] per image, from as many threads as you like.

// Stages (and their helpers) are modules of their own; those that benches and tests drive one
// at a time are public.
mod colour;
mod decode;
mod encode;
pub mod geometry;
mod limits;
pub mod orient;
mod placeholder;
mod repair;
pub mod resize;
mod sniff;
mod stage;
pub mod watermark;

use std::time::{Duration, Instant};

use crate::bitmap::{Bitmap, Channels};
use crate::cancel::Cancel;
use crate::codec::CodecError;
use crate::reject::Rejection;
use crate::settings::{ConfigError, Encoding, Fit, OutputFormat, PipelineConfig};
use geometry::{Crop, Target};
pub use limits::Limits;
pub use placeholder::{Placeholder, hex as hex_colour};
pub use sniff::Format;
use stage::StageClock;
pub use stage::{Stage, StageSpan, StageTimings};

/// Why [`Pipeline::render`] made no renditions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The upload is bad or too large: permanent, reported, never retried.
    #[error("{0}")]
    Rejected(Rejection),
    /// A fault of ours (or of a codec library) on an image we accepted: the upload is not to
    /// blame, so the function retries it and writes no rejection report.
    #[error("internal error in the {} stage: {reason}", stage.as_str())]
    Internal { stage: Stage, reason: String },
    /// The render was cancelled (its deadline passed); it stopped in or after `stage`.
    #[error("cancelled in the {} stage (the deadline passed)", stage.as_str())]
    Cancelled { stage: Stage },
}

impl RenderError {
    /// The rejection, when the upload was refused.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            RenderError::Rejected(r) => Some(r),
            RenderError::Internal { .. } | RenderError::Cancelled { .. } => None,
        }
    }

    /// [`RenderError::rejection`], by value.
    pub fn into_rejection(self) -> Option<Rejection> {
        match self {
            RenderError::Rejected(r) => Some(r),
            RenderError::Internal { .. } | RenderError::Cancelled { .. } => None,
        }
    }

    /// Names the rendition in an internal error's reason.
    fn for_rendition(self, name: &str) -> Self {
        match self {
            RenderError::Internal { stage, reason } => {
                RenderError::internal(stage, format!("rendition {name}: {reason}"))
            }
            rejected => rejected,
        }
    }

    fn internal(stage: Stage, reason: impl Into<String>) -> Self {
        RenderError::Internal {
            stage,
            reason: reason.into(),
        }
    }

    /// A codec's error, blamed on the input or on `stage`.
    fn from_codec(stage: Stage, e: CodecError) -> Self {
        match e {
            CodecError::Input(r) => RenderError::Rejected(r),
            CodecError::Internal { codec, reason } => {
                RenderError::internal(stage, format!("{codec}: {reason}"))
            }
            CodecError::Cancelled => RenderError::Cancelled { stage },
        }
    }
}

impl From<Rejection> for RenderError {
    fn from(r: Rejection) -> Self {
        RenderError::Rejected(r)
    }
}

/// One encoded output.
#[derive(Debug, Clone)]
pub struct Rendition {
    /// The rendition's configured name (`large`, `thumb`, …).
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
    pub watermarked: bool,
    /// Time spent resizing this rendition (its share of [`StageTimings::resize`]).
    pub resize_time: Duration,
    pub encode_time: Duration,
}

/// Everything [`Pipeline::render`] produced for one input.
#[derive(Debug, Clone)]
pub struct RenderOutput {
    pub format: Format,
    /// Stored (pre-orientation) dimensions from the header.
    pub width: u32,
    pub height: u32,
    /// EXIF orientation applied (1–8).
    pub orientation: u8,
    /// What the header says about the encoding, e.g. "progressive 4:2:0".
    pub detail: String,
    /// Size actually decoded (smaller than the stored size after shrink-on-load).
    pub decoded_width: u32,
    pub decoded_height: u32,
    pub icc_converted: bool,
    pub has_alpha: bool,
    pub renditions: Vec<Rendition>,
    /// ThumbHash, BlurHash and colours of the smallest rendition (before the watermark).
    pub placeholder: Option<Placeholder>,
    pub timings: StageTimings,
    /// Every stage with its start and length, in the order they ran.
    pub stages: Vec<StageSpan>,
    /// Non-fatal observations (e.g. an unusable ICC profile was ignored).
    pub notes: Vec<String>,
}

/// A configured, reusable pipeline. `Send + Sync`.
pub struct Pipeline {
    config: PipelineConfig,
    /// See [`Pipeline::digest`].
    digest: String,
    watermark: Option<watermark::Watermark>,
    transforms: colour::TransformCache,
    /// Unit tests make a render fail in this stage as a fault of ours would.
    #[cfg(test)]
    fault: Option<Stage>,
}

/// WebP's largest width or height (libwebp refuses to encode anything larger).
const WEBP_MAX_SIDE: u32 = 16_383;

impl Pipeline {
    /// Validates the configuration and prepares the watermark.
    pub fn new(config: PipelineConfig) -> Result<Pipeline, ConfigError> {
        if config.renditions.is_empty() {
            return Err(ConfigError::new("RENDITIONS", "no renditions configured"));
        }
        if !(1..=100).contains(&config.jpeg.quality) {
            return Err(ConfigError::new("JPEG_QUALITY", "must be 1..=100"));
        }
        if config.format == OutputFormat::Avif && !cfg!(feature = "avif") {
            return Err(ConfigError::new(
                "OUTPUT_FORMAT",
                "avif output needs the `avif` cargo feature",
            ));
        }
        if config.format == OutputFormat::Webp
            && let Some(r) = config
                .renditions
                .iter()
                .find(|r| r.width.max(r.height) > WEBP_MAX_SIDE)
        {
            return Err(ConfigError::new(
                "RENDITIONS",
                format!(
                    "rendition `{r}` is larger than WebP's limit of {WEBP_MAX_SIDE} pixels a side \
                     (OUTPUT_FORMAT=webp): use a smaller box or another format"
                ),
            ));
        }
        let watermark = watermark::Watermark::new(&config.watermark)?;
        Ok(Pipeline {
            digest: output_digest(&config),
            config,
            watermark,
            transforms: colour::TransformCache::default(),
            #[cfg(test)]
            fault: None,
        })
    }

    /// The digest of everything that decides the renditions' bytes (see [`output_digest`]):
    /// written on every object, so a re-render with the same configuration can be skipped.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Makes every render fail in `stage` with an internal error (unit tests of the callers).
    #[cfg(test)]
    pub(crate) fn with_internal_fault(mut self, stage: Stage) -> Self {
        self.fault = Some(stage);
        self
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The encoding used for a source with or without real transparency.
    pub fn encoding_for(&self, has_alpha: bool) -> Encoding {
        match self.config.format {
            OutputFormat::Auto if has_alpha => Encoding::Png,
            OutputFormat::Auto | OutputFormat::Jpeg => Encoding::Jpeg,
            OutputFormat::Png => Encoding::Png,
            OutputFormat::Webp => Encoding::Webp,
            OutputFormat::Avif => Encoding::Avif,
        }
    }

    /// Renders one image.
    pub fn render(&self, data: &[u8]) -> Result<RenderOutput, RenderError> {
        self.render_until(data, &Cancel::never())
    }

    /// Renders one image unless `cancel` fires first: checked after every stage, before every
    /// rendition's resize and encode, and inside JPEG decoding; a cancelled render returns
    /// [`RenderError::Cancelled`] and frees its buffers.
    pub fn render_until(&self, data: &[u8], cancel: &Cancel) -> Result<RenderOutput, RenderError> {
        let check = |stage: Stage| {
            if cancel.is_cancelled() {
                Err(RenderError::Cancelled { stage })
            } else {
                Ok(())
            }
        };
        let limits = &self.config.limits;
        limits.check_input(data.len())?;
        #[cfg(test)]
        if let Some(stage) = self.fault {
            return Err(RenderError::internal(stage, "injected by a test"));
        }
        let mut timings = StageTimings::default();
        let mut clock = StageClock::new();
        let mut notes = Vec::new();

        let t = Instant::now();
        let format = sniff::sniff(data)?;
        let (data, repaired) = repair::repair(format, data);
        notes.extend(repaired.map(str::to_owned));
        let probe = decode::probe(format, &data, limits.max_working_bytes)?;
        let (width, height) = (probe.width, probe.height);
        limits.check_declared(format, width, height)?;
        let orientation = probe.orientation;
        let targets: Vec<Target> = self
            .config
            .renditions
            .iter()
            .map(|spec| geometry::target(width, height, orientation, spec))
            .collect();
        let min_scale = if self.config.shrink_on_load {
            targets.iter().map(Target::scale).fold(0.0, f64::max)
        } else {
            1.0
        };
        let detail = probe.detail.clone();
        let icc = probe.icc.clone();
        limits.check_working(format, width, height, probe.working_bytes(min_scale))?;
        let decoded = probe
            .decode(min_scale, limits.max_working_bytes, cancel)
            .map_err(|e| RenderError::from_codec(Stage::Decode, e))?;
        timings.decode = clock.record(Stage::Decode, None, t);
        check(Stage::Decode)?;

        let t = Instant::now();
        let converted = colour::to_srgb(decoded, icc.as_deref(), &self.transforms);
        notes.extend(converted.note);
        let mut source = converted.bitmap;
        let has_alpha = source.has_transparency();
        let encoding = self.encoding_for(has_alpha);
        if source.channels == Channels::Rgba && (!has_alpha || encoding == Encoding::Jpeg) {
            // Opaque RGBA is resized as RGB (cheaper); JPEG output is flattened once here, which
            // equals flattening each rendition because the resize filter is linear.
            source = if has_alpha {
                source.flatten(self.config.background)
            } else {
                source.into_rgb()
            };
        }
        timings.colour = clock.record(Stage::Colour, None, t);
        check(Stage::Colour)?;

        let resized = self.resize_all(&source, width, height, &targets, &mut clock, cancel)?;
        let (decoded_width, decoded_height) = (source.width, source.height);
        drop(source);

        let mut renditions = Vec::with_capacity(targets.len());
        let smallest = resized
            .iter()
            .enumerate()
            .min_by_key(|(_, (b, _))| b.pixels())
            .map(|(i, _)| i);
        let mut placeholder = None;
        for (i, (spec, (bitmap, resize_time))) in
            self.config.renditions.iter().zip(resized).enumerate()
        {
            timings.resize += resize_time;
            let t = Instant::now();
            let mut bitmap = orient::apply(bitmap, orientation);
            timings.orient += clock.record(Stage::Orient, Some(i), t);
            if Some(i) == smallest {
                // Before the watermark; not part of any stage's time (about 0.45 ms).
                placeholder = Placeholder::of(&bitmap);
            }

            let t = Instant::now();
            let watermarked = self
                .watermark
                .as_ref()
                .is_some_and(|w| w.stamp(&mut bitmap));
            timings.watermark += clock.record(Stage::Watermark, Some(i), t);
            check(Stage::Watermark)?;

            let t = Instant::now();
            let bytes = encode::encode(&bitmap, encoding, &self.config)
                .map_err(|e| RenderError::from_codec(Stage::Encode, e).for_rendition(&spec.name))?;
            let encode_time = clock.record(Stage::Encode, Some(i), t);
            timings.encode += encode_time;
            renditions.push(Rendition {
                name: spec.name.clone(),
                width: bitmap.width,
                height: bitmap.height,
                encoding,
                bytes,
                watermarked,
                resize_time,
                encode_time,
            });
        }
        Ok(RenderOutput {
            format,
            width,
            height,
            orientation: orientation.value(),
            detail,
            decoded_width,
            decoded_height,
            icc_converted: converted.converted,
            has_alpha,
            renditions,
            placeholder,
            timings,
            stages: clock.spans,
            notes,
        })
    }

    /// Resizes every target, largest first, each from the smallest already-made rendition that
    /// still leaves at least `cascade_min_ratio` of reduction (else from the decoded source).
    /// Returns bitmaps in target order.
    fn resize_all(
        &self,
        source: &Bitmap,
        full_w: u32,
        full_h: u32,
        targets: &[Target],
        clock: &mut StageClock,
        cancel: &Cancel,
    ) -> Result<Vec<(Bitmap, Duration)>, RenderError> {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by_key(|&i| {
            std::cmp::Reverse(u64::from(targets[i].width) * u64::from(targets[i].height))
        });
        let mut made: Vec<Option<(Bitmap, Duration)>> = vec![None; targets.len()];
        for &i in &order {
            if cancel.is_cancelled() {
                return Err(RenderError::Cancelled {
                    stage: Stage::Resize,
                });
            }
            let t = &targets[i];
            let start = Instant::now();
            // Candidate sources: fit-inside renditions already made (they show the full frame).
            let from = self.config.cascade_min_ratio.and_then(|ratio| {
                order
                    .iter()
                    .filter(|&&j| self.config.renditions[j].fit == Fit::Inside)
                    .filter_map(|&j| made[j].as_ref().map(|(b, _)| b))
                    .filter(|b| {
                        f64::from(b.width) / f64::from(full_w) >= t.scale() * f64::from(ratio)
                    })
                    .min_by_key(|b| b.pixels())
            });
            let src = from.unwrap_or(source);
            let (sx, sy) = (
                f64::from(src.width) / f64::from(full_w),
                f64::from(src.height) / f64::from(full_h),
            );
            let crop = Crop {
                x: t.crop.x * sx,
                y: t.crop.y * sy,
                width: (t.crop.width * sx).min(f64::from(src.width)),
                height: (t.crop.height * sy).min(f64::from(src.height)),
            };
            let out = resize::resize(src, crop, t.width, t.height).map_err(|e| {
                RenderError::internal(
                    Stage::Resize,
                    format!(
                        "rendition {}: resize to {}x{} failed: {e}",
                        self.config.renditions[i].name, t.width, t.height
                    ),
                )
            })?;
            let took = clock.record(Stage::Resize, Some(i), start);
            made[i] = Some((out, took));
        }
        Ok(made.into_iter().flatten().collect())
    }
}

/// 16 hex digits of SHA-256 over [`PipelineConfig::output_fingerprint`] and the watermark image's
/// bytes: what decides the renditions' pixels and bytes, not the limits (they decide what is
/// refused).
pub fn output_digest(config: &PipelineConfig) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(config.output_fingerprint().as_bytes());
    match &config.watermark.source {
        crate::settings::WatermarkSource::Image(bytes) => hasher.update(bytes.as_slice()),
        crate::settings::WatermarkSource::Default => {
            hasher.update(watermark::DEFAULT_WATERMARK_PNG)
        }
        crate::settings::WatermarkSource::None | crate::settings::WatermarkSource::Text(_) => {}
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
