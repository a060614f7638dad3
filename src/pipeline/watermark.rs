//! Watermark: stamp a mark (a PNG, or text drawn with imageproc and the bundled DejaVu font)
//! onto each rendition, composited in premultiplied space.
//!
//! The mark is decoded or rendered once when the pipeline is built, and scaled once per distinct
//! target width (cached), not once per image: most renditions of a fleet share a few widths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ab_glyph::{FontRef, PxScale};

use crate::bitmap::{Bitmap, Channels};
use crate::pipeline::geometry::Crop;
use crate::pipeline::resize;
use crate::settings::{ConfigError, WatermarkSource, WatermarkSpec};

/// The default mark, compiled in (`assets/watermark.png`, made by `cargo run --example
/// make_watermark`).
pub const DEFAULT_WATERMARK_PNG: &[u8] = include_bytes!("../../assets/watermark.png");
/// DejaVu Sans Mono Bold (free licence, see assets/fonts/LICENSE-DejaVu.txt) for text marks.
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono-Bold.ttf");

/// A mark scaled for one width: premultiplied RGBA with the opacity already applied.
struct ScaledMark {
    width: u32,
    height: u32,
    premultiplied: Vec<u8>,
}

/// A ready-to-stamp watermark.
pub struct Watermark {
    spec: WatermarkSpec,
    mark: Bitmap,
    scaled: Mutex<HashMap<(u32, u32), Arc<ScaledMark>>>,
}

const SCALED_CACHE_CAPACITY: usize = 64;

impl Watermark {
    /// Prepares the mark; `Ok(None)` when the spec says no watermark.
    pub fn new(spec: &WatermarkSpec) -> Result<Option<Watermark>, ConfigError> {
        let mark = match &spec.source {
            WatermarkSource::None => return Ok(None),
            WatermarkSource::Default => decode_mark(DEFAULT_WATERMARK_PNG)?,
            WatermarkSource::Image(bytes) => decode_mark(bytes)?,
            WatermarkSource::Text(text) => render_text(text, 96.0)?,
        };
        Ok(Some(Watermark {
            spec: spec.clone(),
            mark,
            scaled: Mutex::new(HashMap::new()),
        }))
    }

    /// Stamps the mark on `dst`; returns false when the rendition is below the minimum width.
    pub fn stamp(&self, dst: &mut Bitmap) -> bool {
        if dst.width < self.spec.min_rendition_width || dst.width < 8 || dst.height < 8 {
            return false;
        }
        let margin = (self.spec.margin_fraction * dst.width as f32).round() as u32;
        let mut mw = ((self.spec.width_fraction * dst.width as f32).round() as u32).max(1);
        let aspect = f64::from(self.mark.height) / f64::from(self.mark.width);
        let mut mh = ((f64::from(mw) * aspect).round() as u32).max(1);
        // Keep the mark inside the rendition (very wide panoramas or very flat marks).
        let max_h = dst.height.saturating_sub(2 * margin).max(1);
        if mh > max_h {
            mh = max_h;
            mw = ((f64::from(mh) / aspect).round() as u32).max(1);
        }
        let max_w = dst.width.saturating_sub(2 * margin).max(1);
        mw = mw.min(max_w);
        let Some(mark) = self.scaled(mw, mh) else {
            return false;
        };
        let (fx, fy) = self.spec.anchor.fractions();
        let place = |space: u32, size: u32, f: u32| -> u32 {
            match f {
                0 => margin.min(space.saturating_sub(size)),
                1 => space.saturating_sub(size) / 2,
                _ => space.saturating_sub(size).saturating_sub(margin),
            }
        };
        let x0 = place(dst.width, mark.width, fx);
        let y0 = place(dst.height, mark.height, fy);
        composite(dst, &mark, x0, y0);
        true
    }

    fn scaled(&self, w: u32, h: u32) -> Option<Arc<ScaledMark>> {
        if let Ok(cache) = self.scaled.lock()
            && let Some(m) = cache.get(&(w, h))
        {
            return Some(m.clone());
        }
        let full = Crop {
            x: 0.0,
            y: 0.0,
            width: f64::from(self.mark.width),
            height: f64::from(self.mark.height),
        };
        let resized = resize::resize(&self.mark, full, w, h).ok()?;
        let opacity = (self.spec.opacity.clamp(0.0, 1.0) * 255.0).round() as u32;
        let mut premultiplied = resized.data;
        for p in premultiplied.chunks_exact_mut(4) {
            let a = (u32::from(p[3]) * opacity + 127) / 255;
            for c in &mut p[..3] {
                *c = ((u32::from(*c) * a + 127) / 255) as u8;
            }
            p[3] = a as u8;
        }
        let m = Arc::new(ScaledMark {
            width: w,
            height: h,
            premultiplied,
        });
        if let Ok(mut cache) = self.scaled.lock() {
            if cache.len() >= SCALED_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert((w, h), m.clone());
        }
        Some(m)
    }
}

/// Source-over compositing of a premultiplied mark onto `dst` at (x0, y0).
fn composite(dst: &mut Bitmap, mark: &ScaledMark, x0: u32, y0: u32) {
    let n = dst.channels.count();
    let w = mark.width.min(dst.width - x0) as usize;
    let h = mark.height.min(dst.height - y0) as usize;
    let stride = dst.stride();
    for y in 0..h {
        let drow = (y0 as usize + y) * stride + x0 as usize * n;
        let mrow = y * mark.width as usize * 4;
        for x in 0..w {
            let m = &mark.premultiplied[mrow + x * 4..mrow + x * 4 + 4];
            let a = u32::from(m[3]);
            if a == 0 {
                continue;
            }
            let inv = 255 - a;
            let d = &mut dst.data[drow + x * n..drow + x * n + n];
            match dst.channels {
                Channels::Rgb => {
                    for c in 0..3 {
                        d[c] =
                            (u32::from(m[c]) + (u32::from(d[c]) * inv + 127) / 255).min(255) as u8;
                    }
                }
                Channels::Rgba => {
                    let da = u32::from(d[3]);
                    let out_a = a + (da * inv + 127) / 255;
                    if out_a == 0 {
                        continue;
                    }
                    for c in 0..3 {
                        let premul = u32::from(m[c]) * 255 + u32::from(d[c]) * da * inv / 255;
                        d[c] = ((premul + out_a / 2) / out_a).min(255) as u8;
                    }
                    d[3] = out_a.min(255) as u8;
                }
            }
        }
    }
}

fn decode_mark(bytes: &[u8]) -> Result<Bitmap, ConfigError> {
    let err = |p: String| ConfigError::new("WATERMARK", p);
    let img = image::load_from_memory(bytes)
        .map_err(|e| err(format!("watermark image does not decode: {e}")))?;
    if img.width() == 0
        || img.height() == 0
        || u64::from(img.width()) * u64::from(img.height()) > 16_000_000
    {
        return Err(err(format!(
            "watermark is {}x{}; use up to 16 megapixels",
            img.width(),
            img.height()
        )));
    }
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    Bitmap::from_raw(w, h, Channels::Rgba, rgba.into_raw())
        .ok_or_else(|| err("watermark buffer size mismatch".into()))
}

/// Renders `text` as white glyphs with a soft dark outline on transparency, `px` pixels high.
pub fn render_text(text: &str, px: f32) -> Result<Bitmap, ConfigError> {
    let err = |p: &str| ConfigError::new("WATERMARK", p);
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 200 {
        return Err(err("text watermarks need 1 to 200 characters"));
    }
    let font = FontRef::try_from_slice(FONT).map_err(|_| err("bundled font is unreadable"))?;
    let scale = PxScale::from(px);
    let (tw, th) = imageproc::drawing::text_size(scale, &font, text);
    let pad = (px / 8.0).ceil() as u32;
    let (w, h) = (tw + 2 * pad, th + 2 * pad);
    let mut canvas = image::RgbaImage::new(w, h);
    // Outline: the text in dark grey, offset around the centre; then white on top.
    let outline = image::Rgba([20, 20, 20, 200]);
    let o = (px / 24.0).ceil() as i32;
    for (dx, dy) in [
        (-o, 0),
        (o, 0),
        (0, -o),
        (0, o),
        (-o, -o),
        (o, o),
        (-o, o),
        (o, -o),
    ] {
        imageproc::drawing::draw_text_mut(
            &mut canvas,
            outline,
            pad as i32 + dx,
            pad as i32 + dy,
            scale,
            &font,
            text,
        );
    }
    imageproc::drawing::draw_text_mut(
        &mut canvas,
        image::Rgba([255, 255, 255, 255]),
        pad as i32,
        pad as i32,
        scale,
        &font,
        text,
    );
    Bitmap::from_raw(w, h, Channels::Rgba, canvas.into_raw())
        .ok_or_else(|| err("text canvas size mismatch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Anchor;

    fn grey(w: u32, h: u32) -> Bitmap {
        Bitmap::from_raw(w, h, Channels::Rgb, vec![128; (w * h * 3) as usize]).unwrap()
    }

    #[test]
    fn stamps_bottom_right_and_leaves_top_left_alone() {
        let wm = Watermark::new(&WatermarkSpec::default()).unwrap().unwrap();
        let mut b = grey(800, 600);
        assert!(wm.stamp(&mut b));
        let before = grey(800, 600);
        // Top-left quadrant untouched.
        for y in 0..300 {
            let row = (y * 800 * 3) as usize;
            assert_eq!(
                &b.data[row..row + 400 * 3],
                &before.data[row..row + 400 * 3]
            );
        }
        // Something changed in the bottom-right quadrant.
        let changed = (300..600).any(|y| (400..800).any(|x| b.pixel(x, y) != before.pixel(x, y)));
        assert!(changed);
    }

    #[test]
    fn small_renditions_are_not_stamped() {
        let wm = Watermark::new(&WatermarkSpec::default()).unwrap().unwrap();
        let mut b = grey(199, 199);
        assert!(!wm.stamp(&mut b));
        assert_eq!(b, grey(199, 199));
    }

    #[test]
    fn anchors_place_the_mark() {
        let spec = WatermarkSpec {
            source: WatermarkSource::Text("TOP".into()),
            anchor: Anchor::TopLeft,
            opacity: 1.0,
            ..WatermarkSpec::default()
        };
        let wm = Watermark::new(&spec).unwrap().unwrap();
        let mut b = grey(400, 400);
        wm.stamp(&mut b);
        let changed_top = (0..200).any(|y| (0..200).any(|x| b.pixel(x, y) != [128, 128, 128, 255]));
        let changed_bottom =
            (200..400).any(|y| (200..400).any(|x| b.pixel(x, y) != [128, 128, 128, 255]));
        assert!(changed_top && !changed_bottom);
    }

    #[test]
    fn bad_marks_are_config_errors() {
        let spec = WatermarkSpec {
            source: WatermarkSource::Image(Arc::new(b"nope".to_vec())),
            ..WatermarkSpec::default()
        };
        assert_eq!(Watermark::new(&spec).err().unwrap().setting, "WATERMARK");
        assert!(render_text("", 10.0).is_err());
    }
}
