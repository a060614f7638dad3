//! What to make: rendition boxes, output format, watermark and limits.
//!
//! One configuration means the same thing everywhere: the CLI options and the Lambda environment
//! variables are parsed by the same functions here (`RENDITIONS` ⇔ `--renditions`, …), and a bad
//! value becomes a [`ConfigError`] that names the setting and the problem.

use std::fmt;
use std::sync::Arc;

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The option or variable name, e.g. `RENDITIONS` or `--quality`.
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

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

/// Parses a fraction in `0 < x ≤ 1` (also accepts a percentage like `25%`).
pub fn parse_fraction(setting: &str, s: &str, allow_zero: bool) -> Result<f32, ConfigError> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f32>().map(|v| v / 100.0),
        None => t.parse::<f32>(),
    }
    .map_err(|_| ConfigError::new(setting, format!("`{s}` is not a number")))?;
    let ok = v.is_finite() && v <= 1.0 && (v > 0.0 || (allow_zero && v == 0.0));
    if !ok {
        let range = if allow_zero { "0..=1" } else { "0 < x ≤ 1" };
        return Err(ConfigError::new(
            setting,
            format!("`{s}` must be in {range}"),
        ));
    }
    Ok(v)
}

/// Parses an unsigned integer within bounds; accepts `_` separators.
pub fn parse_u64(setting: &str, s: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let v: u64 = s
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| ConfigError::new(setting, format!("`{s}` is not a whole number")))?;
    if v < min || v > max {
        return Err(ConfigError::new(
            setting,
            format!("`{s}` must be in {min}..={max}"),
        ));
    }
    Ok(v)
}

/// Parses `#rrggbb` / `rrggbb`, or `white`/`black`.
pub fn parse_colour(setting: &str, s: &str) -> Result<[u8; 3], ConfigError> {
    let t = s.trim().trim_start_matches('#').to_ascii_lowercase();
    match t.as_str() {
        "white" => return Ok([255, 255, 255]),
        "black" => return Ok([0, 0, 0]),
        _ => {}
    }
    let bad = || ConfigError::new(setting, format!("`{s}` is not a colour like #ffffff"));
    if t.len() != 6 {
        return Err(bad());
    }
    let byte = |i: usize| u8::from_str_radix(&t[i..i + 2], 16).map_err(|_| bad());
    Ok([byte(0)?, byte(2)?, byte(4)?])
}

/// Input limits, checked from the header before any pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_input_bytes: u64,
    pub max_input_pixels: u64,
    /// Budget for pixel buffers held at once for one image (decode buffer plus renditions), in
    /// bytes. Larger images are decoded at a reduced scale when that fits, else rejected.
    pub max_working_bytes: u64,
}

impl Limits {
    /// The per-image working budget for a function with `memory_mb` of memory that renders
    /// `concurrent` images at once: what is left after a fixed reserve for the runtime, the
    /// binary, S3 buffers (input object and outputs) and allocator slack, shared equally.
    pub fn working_bytes_for_memory(memory_mb: u64, concurrent: u64, max_input_bytes: u64) -> u64 {
        const RESERVE: u64 = 96 << 20;
        let total = memory_mb << 20;
        let per_image_io = max_input_bytes.min(64 << 20);
        let usable = total
            .saturating_sub(RESERVE)
            .saturating_sub(per_image_io * concurrent.max(1));
        (usable / concurrent.max(1)).max(16 << 20)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 50 * 1024 * 1024,
            max_input_pixels: 100_000_000,
            max_working_bytes: 1024 * 1024 * 1024,
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

/// The settings that configure a pipeline, by their environment-variable names. The CLI's
/// options map onto the same names (`--watermark-opacity` ⇔ `WATERMARK_OPACITY`).
pub const PIPELINE_SETTINGS: &[&str] = &[
    "RENDITIONS",
    "OUTPUT_FORMAT",
    "JPEG_QUALITY",
    "JPEG_PROGRESSIVE",
    "LOSSY_QUALITY",
    "WATERMARK",
    "WATERMARK_POSITION",
    "WATERMARK_OPACITY",
    "WATERMARK_WIDTH",
    "WATERMARK_MARGIN",
    "WATERMARK_MIN_WIDTH",
    "BACKGROUND",
    "MAX_INPUT_BYTES",
    "MAX_INPUT_PIXELS",
    "CASCADE",
    "SHRINK_ON_LOAD",
];

/// Parses a boolean setting (`true/false`, `1/0`, `yes/no`, `on/off`).
pub fn parse_bool(setting: &str, s: &str) -> Result<bool, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            setting,
            format!("`{s}` is not true or false"),
        )),
    }
}

impl PipelineConfig {
    /// Builds a configuration from named settings (see [`PIPELINE_SETTINGS`]); unset names keep
    /// their defaults. `load_watermark` turns a `WATERMARK` value that is not a keyword (`none`,
    /// `default`, `text:…`) into image bytes, e.g. by reading a file or an S3 object.
    pub fn from_settings(
        get: impl Fn(&str) -> Option<String>,
        load_watermark: &dyn Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<PipelineConfig, ConfigError> {
        let mut c = PipelineConfig::default();
        let val = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
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
    fn memory_budget_shrinks_with_memory_and_concurrency() {
        let big = Limits::working_bytes_for_memory(1769, 1, 50 << 20);
        let small = Limits::working_bytes_for_memory(512, 1, 50 << 20);
        let shared = Limits::working_bytes_for_memory(1769, 3, 50 << 20);
        assert!(big > small && big > shared);
        assert!((16 << 20..512 << 20).contains(&small));
        assert_eq!(Limits::working_bytes_for_memory(128, 8, 50 << 20), 16 << 20);
    }

    #[test]
    fn parses_scalars() {
        assert_eq!(parse_fraction("X", "25%", false).unwrap(), 0.25);
        assert!(parse_fraction("X", "0", false).is_err());
        assert_eq!(parse_fraction("X", "0", true).unwrap(), 0.0);
        assert!(parse_fraction("X", "1.5", false).is_err());
        assert_eq!(parse_u64("Q", "82", 1, 100).unwrap(), 82);
        assert!(parse_u64("Q", "101", 1, 100).is_err());
        assert_eq!(parse_colour("BG", "#ff8000").unwrap(), [255, 128, 0]);
        assert!(parse_colour("BG", "#ff80").is_err());
        assert_eq!(
            Anchor::parse("P", "bottom_right").unwrap(),
            Anchor::BottomRight
        );
        assert!(Anchor::parse("P", "middle-earth").is_err());
        assert_eq!(OutputFormat::parse("F", "JPG").unwrap(), OutputFormat::Jpeg);
    }
}
