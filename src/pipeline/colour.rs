//! Colour: convert embedded ICC profiles (and CMYK) to sRGB with moxcms.
//!
//! moxcms is pure Rust with SIMD paths (AVX2/SSE/NEON), handles matrix-shaper and LUT-based
//! profiles including CMYK, and is 3–5× faster than lcms2 in its own benchmarks; qcms (Firefox)
//! has no CMYK support. Transforms are built once per distinct profile and cached, since a
//! fleet of uploads tends to share a handful of camera and phone profiles. sRGB profiles are
//! detected and skipped: most uploads pay nothing here.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use moxcms::{ColorProfile, DataColorSpace, Layout, Transform8BitExecutor, TransformOptions};

use crate::bitmap::{Bitmap, Channels};
use crate::pipeline::decode::Pixels;

type Transform = Arc<Transform8BitExecutor>;

/// Built transforms keyed by (profile hash, source layout, destination layout): one profile can
/// serve several layouts (RGB and RGBA, gray and gray+alpha). Bounded; cleared when full.
#[derive(Default)]
pub struct TransformCache {
    map: Mutex<HashMap<(u64, u8, u8), Option<Transform>>>,
}

const CACHE_CAPACITY: usize = 32;

/// The result of the colour stage.
pub struct Converted {
    pub bitmap: Bitmap,
    /// Set when an embedded profile was present but could not be used.
    pub note: Option<String>,
    /// Whether a profile transform ran.
    pub converted: bool,
}

impl TransformCache {
    fn get(
        &self,
        icc: &[u8],
        src_layout: Layout,
        dst_layout: Layout,
    ) -> Result<Option<Transform>, String> {
        let mut h = DefaultHasher::new();
        icc.hash(&mut h);
        let key = (h.finish(), src_layout as u8, dst_layout as u8);
        if let Ok(map) = self.map.lock()
            && let Some(t) = map.get(&key)
        {
            return Ok(t.clone());
        }
        let built = build(icc, src_layout, dst_layout)?;
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CACHE_CAPACITY {
                map.clear();
            }
            map.insert(key, built.clone());
        }
        Ok(built)
    }
}

/// `Ok(None)` when the profile is sRGB already (nothing to do).
fn build(icc: &[u8], src_layout: Layout, dst_layout: Layout) -> Result<Option<Transform>, String> {
    let profile =
        ColorProfile::new_from_slice(icc).map_err(|e| format!("unreadable ICC profile: {e:?}"))?;
    let srgb = ColorProfile::new_srgb();
    let transform = profile
        .create_transform_8bit(src_layout, &srgb, dst_layout, TransformOptions::default())
        .map_err(|e| format!("ICC profile cannot be converted to sRGB: {e:?}"))?;
    if is_identity(&profile, &transform, src_layout) {
        return Ok(None);
    }
    Ok(Some(transform))
}

/// Whether a transform leaves RGB pixels as they are (within one level): an sRGB profile, or
/// one equal to it in effect, whatever its description says. Decided by what it does to a set
/// of probe colours (greys, primaries, secondaries, mid-tones), so a profile named "sRGB" with
/// other curves or primaries is converted, and a renamed sRGB is skipped.
fn is_identity(profile: &ColorProfile, transform: &Transform, layout: Layout) -> bool {
    if profile.color_space != DataColorSpace::Rgb || layout != Layout::Rgb {
        return false;
    }
    let mut probe = Vec::with_capacity(3 * 40);
    for v in [0u8, 16, 32, 64, 96, 128, 160, 192, 224, 255] {
        probe.extend_from_slice(&[v, v, v]);
    }
    for (a, b) in [(255u8, 0u8), (200, 40), (128, 0), (90, 30)] {
        for p in [
            [a, b, b],
            [b, a, b],
            [b, b, a],
            [a, a, b],
            [a, b, a],
            [b, a, a],
        ] {
            probe.extend_from_slice(&p);
        }
    }
    let mut out = vec![0u8; probe.len()];
    transform.transform(&probe, &mut out).is_ok()
        && probe
            .iter()
            .zip(&out)
            .all(|(&a, &b)| (i16::from(a) - i16::from(b)).abs() <= 1)
}

/// Converts decoded pixels to sRGB RGB/RGBA using the embedded profile when there is one.
pub fn to_srgb(pixels: Pixels, icc: Option<&[u8]>, cache: &TransformCache) -> Converted {
    match pixels {
        Pixels::Cmyk {
            width,
            height,
            mut data,
            inverted,
        } => {
            if inverted {
                data.iter_mut().for_each(|v| *v = 255 - *v);
            }
            if let Some(icc) = icc {
                match cache.get(icc, Layout::Rgba, Layout::Rgb) {
                    Ok(Some(t)) => {
                        let mut out = vec![0u8; width as usize * height as usize * 3];
                        if t.transform(&data, &mut out).is_ok() {
                            return Converted {
                                bitmap: Bitmap {
                                    width,
                                    height,
                                    channels: Channels::Rgb,
                                    data: out,
                                },
                                note: None,
                                converted: true,
                            };
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Converted {
                            bitmap: naive_cmyk(width, height, &data),
                            note: Some(e),
                            converted: false,
                        };
                    }
                }
            }
            Converted {
                bitmap: naive_cmyk(width, height, &data),
                note: None,
                converted: false,
            }
        }
        Pixels::Bitmap(mut bitmap) => {
            let Some(icc) = icc else {
                return Converted::unchanged(bitmap, None);
            };
            if is_gray_profile(icc) {
                return gray_to_srgb(bitmap, icc, cache);
            }
            let layout = match bitmap.channels {
                Channels::Rgb => Layout::Rgb,
                Channels::Rgba => Layout::Rgba,
            };
            match cache.get(icc, layout, layout) {
                Ok(Some(t)) => {
                    let src = std::mem::take(&mut bitmap.data);
                    apply(&t, bitmap, src)
                }
                Ok(None) => Converted::unchanged(bitmap, None),
                Err(e) => Converted::unchanged(bitmap, Some(e)),
            }
        }
    }
}

impl Converted {
    fn unchanged(bitmap: Bitmap, note: Option<String>) -> Self {
        Converted {
            bitmap,
            note,
            converted: false,
        }
    }
}

/// Runs `t` over `src` (the pixels in the transform's source layout) into a buffer shaped like
/// `bitmap` (whose own data may be empty, moved into `src`). On failure the source pixels are
/// kept: a bitmap of the source layout when it matches, as the colour stage never fails an image.
fn apply(t: &Transform, bitmap: Bitmap, src: Vec<u8>) -> Converted {
    let len = bitmap.width as usize * bitmap.height as usize * bitmap.channels.count();
    let mut out = vec![0u8; len];
    match t.transform(&src, &mut out) {
        Ok(()) => Converted {
            bitmap: Bitmap {
                data: out,
                ..bitmap
            },
            note: None,
            converted: true,
        },
        Err(e) => {
            let data = if src.len() == len { src } else { bitmap.data };
            Converted::unchanged(
                Bitmap { data, ..bitmap },
                Some(format!("ICC transform failed: {e:?}")),
            )
        }
    }
}

/// Whether `icc` describes a greyscale colour space (a "Gray Gamma 2.2" or "Dot Gain" profile).
fn is_gray_profile(icc: &[u8]) -> bool {
    // The header's data colour space field, bytes 16..20.
    icc.get(16..20) == Some(b"GRAY")
}

/// A greyscale image (decoded as R = G = B, with or without alpha) under a Gray profile: the
/// profile converts the grey channel, then it is expanded again. A Gray profile on an image that
/// is not grey is unusable and ignored with a note.
fn gray_to_srgb(bitmap: Bitmap, icc: &[u8], cache: &TransformCache) -> Converted {
    let n = bitmap.channels.count();
    let is_grey = bitmap
        .data
        .chunks_exact(n)
        .all(|p| p[0] == p[1] && p[1] == p[2]);
    if !is_grey {
        let note = "a Gray ICC profile on a colour image was ignored";
        return Converted::unchanged(bitmap, Some(note.into()));
    }
    let (src, dst) = match bitmap.channels {
        Channels::Rgb => (Layout::Gray, Layout::Rgb),
        Channels::Rgba => (Layout::GrayAlpha, Layout::Rgba),
    };
    let transform = match cache.get(icc, src, dst) {
        Ok(Some(t)) => t,
        Ok(None) => return Converted::unchanged(bitmap, None),
        Err(e) => return Converted::unchanged(bitmap, Some(e)),
    };
    let grey: Vec<u8> = match bitmap.channels {
        Channels::Rgb => bitmap.data.chunks_exact(3).map(|p| p[0]).collect(),
        Channels::Rgba => bitmap
            .data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[3]])
            .collect(),
    };
    apply(&transform, bitmap, grey)
}

/// CMYK (0 = no ink) to RGB without a profile: the usual subtractive approximation.
fn naive_cmyk(width: u32, height: u32, cmyk: &[u8]) -> Bitmap {
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for p in cmyk.chunks_exact(4) {
        let k = 255 - u32::from(p[3]);
        for &c in &p[..3] {
            out.push((((255 - u32::from(c)) * k + 127) / 255) as u8);
        }
    }
    Bitmap {
        width,
        height,
        channels: Channels::Rgb,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_p3_red_maps_outside_srgb_red() {
        // Pure P3 red is more saturated than sRGB can show: it clips to (255, ~0, ~0) in sRGB,
        // while P3 (128,128,128) grey stays grey.
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        let cache = TransformCache::default();
        let b = Bitmap::from_raw(2, 1, Channels::Rgb, vec![255, 0, 0, 128, 128, 128]).unwrap();
        let c = to_srgb(Pixels::Bitmap(b), Some(&p3), &cache);
        assert!(c.converted);
        assert_eq!(c.bitmap.data[0], 255);
        assert!(
            c.bitmap.data[1] < 10 && c.bitmap.data[2] < 10,
            "{:?}",
            c.bitmap.data
        );
        for v in &c.bitmap.data[3..6] {
            assert!((*v as i32 - 128).abs() <= 2, "{:?}", c.bitmap.data);
        }
        // P3 green (0,255,0) is outside sRGB: clipped, still green-dominant.
        let b = Bitmap::from_raw(1, 1, Channels::Rgb, vec![0, 200, 0]).unwrap();
        let g = to_srgb(Pixels::Bitmap(b), Some(&p3), &cache).bitmap.data;
        assert!(g[1] > 200 && g[0] < 40, "{g:?}");
    }

    #[test]
    fn srgb_profile_is_skipped() {
        let srgb = ColorProfile::new_srgb().encode().unwrap();
        let b = Bitmap::from_raw(1, 1, Channels::Rgb, vec![10, 20, 30]).unwrap();
        let c = to_srgb(Pixels::Bitmap(b), Some(&srgb), &TransformCache::default());
        assert!(!c.converted || c.bitmap.data == vec![10, 20, 30]);
    }

    #[test]
    fn broken_profile_is_ignored_with_a_note() {
        let b = Bitmap::from_raw(1, 1, Channels::Rgb, vec![10, 20, 30]).unwrap();
        let c = to_srgb(
            Pixels::Bitmap(b),
            Some(b"not a profile"),
            &TransformCache::default(),
        );
        assert_eq!(c.bitmap.data, vec![10, 20, 30]);
        assert!(c.note.is_some());
    }

    #[test]
    fn naive_cmyk_handles_inversion() {
        // Adobe-inverted: 255 means no ink → white.
        let px = Pixels::Cmyk {
            width: 1,
            height: 1,
            data: vec![255, 255, 255, 255],
            inverted: true,
        };
        assert_eq!(
            to_srgb(px, None, &TransformCache::default()).bitmap.data,
            vec![255, 255, 255]
        );
        // Plain: full cyan, no black → (0, 255, 255).
        let px = Pixels::Cmyk {
            width: 1,
            height: 1,
            data: vec![255, 0, 0, 0],
            inverted: false,
        };
        assert_eq!(
            to_srgb(px, None, &TransformCache::default()).bitmap.data,
            vec![0, 255, 255]
        );
    }

    #[test]
    fn a_linear_profile_named_srgb_is_converted_and_a_renamed_srgb_is_skipped() {
        // sRGB primaries and its name, but linear tone curves: a grey of 128 is much lighter in sRGB.
        let mut linear = ColorProfile::new_srgb();
        // No CICP tag (it would override the curves, as ICC v4.4 says); editors write none.
        linear.cicp = None;
        for trc in [
            &mut linear.red_trc,
            &mut linear.green_trc,
            &mut linear.blue_trc,
        ] {
            *trc = Some(moxcms::ToneReprCurve::Parametric(vec![1.0]));
        }
        let icc = linear.encode().unwrap();
        let b = Bitmap::from_raw(1, 1, Channels::Rgb, vec![128, 128, 128]).unwrap();
        let c = to_srgb(Pixels::Bitmap(b), Some(&icc), &TransformCache::default());
        assert!(c.converted);
        assert!(
            (186..=189).contains(&c.bitmap.data[0]),
            "{:?}",
            c.bitmap.data
        );
        // Real sRGB under another name: no conversion at all (the pixels stay as they are).
        let mut renamed = ColorProfile::new_srgb();
        renamed.description = None;
        let icc = renamed.encode().unwrap();
        let b = Bitmap::from_raw(1, 1, Channels::Rgb, vec![10, 20, 30]).unwrap();
        let c = to_srgb(Pixels::Bitmap(b), Some(&icc), &TransformCache::default());
        assert!(!c.converted);
        assert_eq!(c.bitmap.data, vec![10, 20, 30]);
    }

    #[test]
    fn a_gray_profile_converts_grey_images() {
        // Gray gamma 2.2 vs sRGB's curve: mid-dark greys get darker (Pillow + lcms2 give 39 → 34,
        // 27 → 20 for the "Gray Gamma 2.2" profile of sharp's test file).
        let icc = ColorProfile::new_gray_with_gamma(2.2).encode().unwrap();
        let cache = TransformCache::default();
        let b = Bitmap::from_raw(2, 1, Channels::Rgb, vec![39, 39, 39, 27, 27, 27]).unwrap();
        let c = to_srgb(Pixels::Bitmap(b), Some(&icc), &cache);
        assert!(c.converted, "{:?}", c.note);
        assert!((33..=35).contains(&c.bitmap.data[0]), "{:?}", c.bitmap.data);
        assert!((19..=21).contains(&c.bitmap.data[3]), "{:?}", c.bitmap.data);
        assert_eq!(c.bitmap.data[0], c.bitmap.data[2]);
        // With alpha: the alpha is kept.
        let b = Bitmap::from_raw(1, 1, Channels::Rgba, vec![39, 39, 39, 77]).unwrap();
        let c = to_srgb(Pixels::Bitmap(b), Some(&icc), &cache);
        assert!(c.converted);
        assert_eq!(c.bitmap.data[3], 77);
        // A Gray profile on a colour image cannot apply: ignored with a note.
        let b = Bitmap::from_raw(1, 1, Channels::Rgb, vec![200, 10, 10]).unwrap();
        let c = to_srgb(Pixels::Bitmap(b), Some(&icc), &cache);
        assert!(!c.converted && c.note.is_some());
        assert_eq!(c.bitmap.data, vec![200, 10, 10]);
    }

    #[test]
    fn the_cache_keeps_transforms_apart_by_destination_layout() {
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        let cache = TransformCache::default();
        let to_rgb = cache.get(&p3, Layout::Rgba, Layout::Rgb).unwrap().unwrap();
        let to_rgba = cache.get(&p3, Layout::Rgba, Layout::Rgba).unwrap().unwrap();
        let src = [200u8, 100, 50, 255];
        let (mut rgb, mut rgba) = ([0u8; 3], [0u8; 4]);
        assert!(to_rgb.transform(&src, &mut rgb).is_ok());
        assert!(to_rgba.transform(&src, &mut rgba).is_ok());
        assert_eq!(rgb, rgba[..3]);
    }
}
