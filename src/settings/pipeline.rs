//! What to make: rendition boxes, output format, watermark, encoder settings, and
//! [`PipelineConfig::from_settings`], which reads them by setting name (the same names for the
//! Lambda environment and the CLI flags; see [`super::SETTINGS`]).

use std::fmt;
use std::sync::Arc;

use super::ConfigError;
use super::parse::{parse_bool, parse_colour, parse_fraction, parse_u64};
use crate::pipeline::Limits;

/// How a rendition fills its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Fit inside the box, aspect kept.
    Inside,
    /// Centre-crop to fill the box exactly.
    Cover,
}

/// One named output size, e.g. `large:1600`, `card:600x400:cover`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RenditionSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub fit: Fit,
}

/// The default renditions: `large:1600,medium:800,thumb:320`.
pub const DEFAULT_RENDITIONS: &str = "large:1600,medium:800,thumb:320";

/// Largest box side we accept (the JPEG format's own limit).
pub const MAX_BOX_SIDE: u32 = 65_500;

impl RenditionSpec {
    /// Parses a comma-separated list: `NAME:SIDE`, `NAME:WxH` or `NAME:WxH:cover` (or `:inside`).
    pub fn parse_list(setting: &str, spec: &str) -> Result<Vec<RenditionSpec>, ConfigError> {
        let err = |p: String| ConfigError::new(setting, p);
        let mut out: Vec<RenditionSpec> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut parts = item.split(':');
            let name = parts.next().unwrap_or_default().trim();
            let size = parts.next().ok_or_else(|| {
                err(format!(
                    "`{item}` has no size; expected NAME:SIDE or NAME:WxH[:cover]"
                ))
            })?;
            let fit = match parts.next().map(str::trim) {
                None | Some("inside") | Some("fit") => Fit::Inside,
                Some("cover") | Some("crop") => Fit::Cover,
                Some(other) => {
                    return Err(err(format!(
                        "`{item}`: unknown fit `{other}` (use inside or cover)"
                    )));
                }
            };
            if parts.next().is_some() {
                return Err(err(format!("`{item}` has too many `:` parts")));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(format!(
                    "`{item}`: rendition names use letters, digits, `-` and `_` (they become key prefixes)"
                )));
            }
            let side = |s: &str| -> Result<u32, ConfigError> {
                let v: u32 = s
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("`{item}`: `{s}` is not a whole number of pixels")))?;
                if v == 0 || v > MAX_BOX_SIDE {
                    return Err(err(format!("`{item}`: sizes must be 1..={MAX_BOX_SIDE}")));
                }
                Ok(v)
            };
            let (width, height) = match size.split_once(['x', 'X']) {
                Some((w, h)) => (side(w)?, side(h)?),
                None => {
                    let s = side(size)?;
                    (s, s)
                }
            };
            if out.iter().any(|r| r.name == name) {
                return Err(err(format!("rendition name `{name}` appears twice")));
            }
            out.push(RenditionSpec {
                name: name.to_string(),
                width,
                height,
                fit,
            });
        }
        if out.is_empty() {
            return Err(err("no renditions given".into()));
        }
        Ok(out)
    }
}

impl fmt::Display for RenditionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.width == self.height, self.fit) {
            (true, Fit::Inside) => write!(f, "{}:{}", self.name, self.width),
            (false, Fit::Inside) => write!(f, "{}:{}x{}", self.name, self.width, self.height),
            (_, Fit::Cover) => write!(f, "{}:{}x{}:cover", self.name, self.width, self.height),
        }
    }
}

/// Requested output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// JPEG for opaque sources, PNG when the source has real transparency.
    Auto,
    Jpeg,
    Png,
    Webp,
    Avif,
}

impl OutputFormat {
    /// The encodings a rendition may get (`auto`: JPEG, or PNG for real transparency).
    pub fn encodings(self) -> &'static [Encoding] {
        match self {
            OutputFormat::Auto => &[Encoding::Jpeg, Encoding::Png],
            OutputFormat::Jpeg => &[Encoding::Jpeg],
            OutputFormat::Png => &[Encoding::Png],
            OutputFormat::Webp => &[Encoding::Webp],
            OutputFormat::Avif => &[Encoding::Avif],
        }
    }

    pub fn parse(setting: &str, s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(OutputFormat::Auto),
            "jpeg" | "jpg" => Ok(OutputFormat::Jpeg),
            "png" => Ok(OutputFormat::Png),
            "webp" => Ok(OutputFormat::Webp),
            "avif" => {
                if cfg!(feature = "avif") {
                    Ok(OutputFormat::Avif)
                } else {
                    Err(ConfigError::new(
                        setting,
                        "avif output needs a build with the `avif` cargo feature",
                    ))
                }
            }
            other => Err(ConfigError::new(
                setting,
                format!("`{other}` is not one of auto, jpeg, png, webp, avif"),
            )),
        }
    }
}

/// A concrete encoding, as chosen per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Jpeg,
    Png,
    Webp,
    Avif,
}

impl Encoding {
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Jpeg => "jpg",
            Encoding::Png => "png",
            Encoding::Webp => "webp",
            Encoding::Avif => "avif",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Jpeg => "image/jpeg",
            Encoding::Png => "image/png",
            Encoding::Webp => "image/webp",
            Encoding::Avif => "image/avif",
        }
    }
}

/// Where the watermark sits on a rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    TopLeft,
    Top,
    TopRight,
    Left,
    Center,
    Right,
    BottomLeft,
    Bottom,
    BottomRight,
}

impl Anchor {
    pub fn parse(setting: &str, s: &str) -> Result<Self, ConfigError> {
        let norm = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        Ok(match norm.as_str() {
            "top-left" | "northwest" | "nw" => Anchor::TopLeft,
            "top" | "north" | "n" => Anchor::Top,
            "top-right" | "northeast" | "ne" => Anchor::TopRight,
            "left" | "west" | "w" => Anchor::Left,
            "center" | "centre" | "c" => Anchor::Center,
            "right" | "east" | "e" => Anchor::Right,
            "bottom-left" | "southwest" | "sw" => Anchor::BottomLeft,
            "bottom" | "south" | "s" => Anchor::Bottom,
            "bottom-right" | "southeast" | "se" => Anchor::BottomRight,
            _ => {
                return Err(ConfigError::new(
                    setting,
                    format!(
                        "`{s}` is not one of top-left, top, top-right, left, center, right, bottom-left, bottom, bottom-right"
                    ),
                ));
            }
        })
    }

    /// Horizontal and vertical placement as fractions 0, ½, 1.
    pub(crate) fn fractions(self) -> (u32, u32) {
        // (x, y) in halves: 0 = start, 1 = middle, 2 = end.
        match self {
            Anchor::TopLeft => (0, 0),
            Anchor::Top => (1, 0),
            Anchor::TopRight => (2, 0),
            Anchor::Left => (0, 1),
            Anchor::Center => (1, 1),
            Anchor::Right => (2, 1),
            Anchor::BottomLeft => (0, 2),
            Anchor::Bottom => (1, 2),
            Anchor::BottomRight => (2, 2),
        }
    }
}

/// The watermark image source.
#[derive(Clone, PartialEq, Eq)]
pub enum WatermarkSource {
    /// No watermark.
    None,
    /// The compiled-in `assets/watermark.png`.
    Default,
    /// PNG (or any decodable image) bytes, e.g. read from a file or an S3 object.
    Image(Arc<Vec<u8>>),
    /// Text drawn with the bundled DejaVu Sans Bold font.
    Text(String),
}

impl fmt::Debug for WatermarkSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatermarkSource::None => f.write_str("None"),
            WatermarkSource::Default => f.write_str("Default"),
            WatermarkSource::Image(b) => write!(f, "Image({} bytes)", b.len()),
            WatermarkSource::Text(t) => write!(f, "Text({t:?})"),
        }
    }
}

/// How and where to stamp the watermark.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkSpec {
    pub source: WatermarkSource,
    pub anchor: Anchor,
    /// Watermark width as a fraction of the rendition width (0 < f ≤ 1).
    pub width_fraction: f32,
    /// Margin from the anchored edges as a fraction of the rendition width.
    pub margin_fraction: f32,
    /// 0..=1 multiplier on the mark's own alpha.
    pub opacity: f32,
    /// Renditions narrower than this are not stamped.
    pub min_rendition_width: u32,
}

impl Default for WatermarkSpec {
    fn default() -> Self {
        WatermarkSpec {
            source: WatermarkSource::Default,
            anchor: Anchor::BottomRight,
            width_fraction: 0.25,
            margin_fraction: 0.02,
            opacity: 0.5,
            min_rendition_width: 200,
        }
    }
}

/// JPEG encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegSettings {
    pub quality: u8,
    pub progressive: bool,
}

/// Everything a [`crate::Pipeline`] needs; build it once, then render many images.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub renditions: Vec<RenditionSpec>,
    pub format: OutputFormat,
    pub jpeg: JpegSettings,
    /// Quality for lossy WebP and AVIF (0..=100).
    pub lossy_quality: u8,
    pub watermark: WatermarkSpec,
    /// Background for flattening transparent sources into JPEG.
    pub background: [u8; 3],
    pub limits: Limits,
    /// Make smaller renditions from larger ones when the remaining reduction is at least this
    /// ratio (≥ 1); `None` resizes every rendition from the decoded source.
    pub cascade_min_ratio: Option<f32>,
    /// Decode JPEG/WebP at a reduced scale when the largest rendition allows it.
    pub shrink_on_load: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            renditions: RenditionSpec::parse_list("renditions", DEFAULT_RENDITIONS)
                .unwrap_or_default(),
            format: OutputFormat::Auto,
            jpeg: JpegSettings {
                quality: 82,
                progressive: false,
            },
            lossy_quality: 80,
            watermark: WatermarkSpec::default(),
            background: [255, 255, 255],
            limits: Limits::default(),
            cascade_min_ratio: Some(2.0),
            shrink_on_load: true,
        }
    }
}

impl PipelineConfig {
    /// Everything that decides the renditions' pixels and bytes (not the limits, which only
    /// decide what is refused), as text: the skip-unchanged digest is a hash of it.
    pub fn output_fingerprint(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}|{}",
            self.renditions,
            self.format,
            self.jpeg,
            self.lossy_quality,
            self.watermark,
            self.background,
            self.cascade_min_ratio,
            self.shrink_on_load
        )
    }

    /// Builds a configuration from named settings (see [`PIPELINE_SETTINGS`]); unset names keep
    /// their defaults. `load_watermark` turns a `WATERMARK` value that is not a keyword (`none`,
    /// `default`, `text:…`) into image bytes, e.g. by reading a file or an S3 object.
    pub fn from_settings(
        get: impl Fn(&str) -> Option<String>,
        load_watermark: &dyn Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<PipelineConfig, ConfigError> {
        let mut c = PipelineConfig::default();
        let val = |k: &str| super::non_empty(get(k));
        if let Some(v) = val("RENDITIONS") {
            c.renditions = RenditionSpec::parse_list("RENDITIONS", &v)?;
        }
        if let Some(v) = val("OUTPUT_FORMAT") {
            c.format = OutputFormat::parse("OUTPUT_FORMAT", &v)?;
        }
        if let Some(v) = val("JPEG_QUALITY") {
            c.jpeg.quality = parse_u64("JPEG_QUALITY", &v, 1, 100)? as u8;
        }
        if let Some(v) = val("JPEG_PROGRESSIVE") {
            c.jpeg.progressive = parse_bool("JPEG_PROGRESSIVE", &v)?;
        }
        if let Some(v) = val("LOSSY_QUALITY") {
            c.lossy_quality = parse_u64("LOSSY_QUALITY", &v, 0, 100)? as u8;
        }
        if let Some(v) = val("WATERMARK") {
            c.watermark.source = match v.as_str() {
                "none" | "off" | "false" => WatermarkSource::None,
                "default" | "builtin" => WatermarkSource::Default,
                t if t.starts_with("text:") => {
                    WatermarkSource::Text(t["text:".len()..].to_string())
                }
                other => WatermarkSource::Image(Arc::new(
                    load_watermark(other).map_err(|e| ConfigError::new("WATERMARK", e))?,
                )),
            };
        }
        if let Some(v) = val("WATERMARK_POSITION") {
            c.watermark.anchor = Anchor::parse("WATERMARK_POSITION", &v)?;
        }
        if let Some(v) = val("WATERMARK_OPACITY") {
            c.watermark.opacity = parse_fraction("WATERMARK_OPACITY", &v, true)?;
        }
        if let Some(v) = val("WATERMARK_WIDTH") {
            c.watermark.width_fraction = parse_fraction("WATERMARK_WIDTH", &v, false)?;
        }
        if let Some(v) = val("WATERMARK_MARGIN") {
            c.watermark.margin_fraction = parse_fraction("WATERMARK_MARGIN", &v, true)?;
            if c.watermark.margin_fraction > 0.25 {
                return Err(ConfigError::new("WATERMARK_MARGIN", "must be at most 0.25"));
            }
        }
        if let Some(v) = val("WATERMARK_MIN_WIDTH") {
            c.watermark.min_rendition_width =
                parse_u64("WATERMARK_MIN_WIDTH", &v, 0, u64::from(MAX_BOX_SIDE))? as u32;
        }
        if let Some(v) = val("BACKGROUND") {
            c.background = parse_colour("BACKGROUND", &v)?;
        }
        if let Some(v) = val("MAX_INPUT_BYTES") {
            c.limits.max_input_bytes = parse_u64("MAX_INPUT_BYTES", &v, 1, 5 << 30)?;
        }
        if let Some(v) = val("MAX_INPUT_PIXELS") {
            c.limits.max_input_pixels = parse_u64("MAX_INPUT_PIXELS", &v, 1, 1 << 32)?;
        }
        if let Some(v) = val("CASCADE") {
            c.cascade_min_ratio = if parse_bool("CASCADE", &v)? {
                Some(2.0)
            } else {
                None
            };
        }
        if let Some(v) = val("SHRINK_ON_LOAD") {
            c.shrink_on_load = parse_bool("SHRINK_ON_LOAD", &v)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_renditions() {
        let r = RenditionSpec::parse_list("RENDITIONS", DEFAULT_RENDITIONS).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].name.as_str(), r[0].width, r[0].height),
            ("large", 1600, 1600)
        );
        assert_eq!(r[2].fit, Fit::Inside);
        assert_eq!(
            r.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(","),
            DEFAULT_RENDITIONS
        );
    }

    #[test]
    fn parses_box_and_cover() {
        let r =
            RenditionSpec::parse_list("RENDITIONS", "card:600x400:cover, wide:1200x300").unwrap();
        assert_eq!((r[0].width, r[0].height, r[0].fit), (600, 400, Fit::Cover));
        assert_eq!(
            (r[1].width, r[1].height, r[1].fit),
            (1200, 300, Fit::Inside)
        );
    }

    #[test]
    fn rejects_bad_renditions_naming_the_setting() {
        for bad in [
            "",
            "large",
            "large:0",
            "large:abc",
            "a:10,a:20",
            "../x:10",
            "a:10:stretch",
            "a:10x",
        ] {
            let e = RenditionSpec::parse_list("RENDITIONS", bad).unwrap_err();
            assert_eq!(e.setting, "RENDITIONS", "{bad}");
            assert!(!e.problem.is_empty());
        }
    }

    #[test]
    fn parses_enums() {
        assert_eq!(
            Anchor::parse("P", "bottom_right").unwrap(),
            Anchor::BottomRight
        );
        assert!(Anchor::parse("P", "middle-earth").is_err());
        assert_eq!(OutputFormat::parse("F", "JPG").unwrap(), OutputFormat::Jpeg);
    }
}
