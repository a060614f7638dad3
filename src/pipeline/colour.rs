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

/// Built transforms keyed by (profile hash, source layout). Bounded; cleared when full.
#[derive(Default)]
pub struct TransformCache {
    map: Mutex<HashMap<(u64, u8), Option<Transform>>>,
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
        let key = (h.finish(), src_layout as u8);
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
    if is_srgb(&profile) {
        return Ok(None);
    }
    let srgb = ColorProfile::new_srgb();
    profile
        .create_transform_8bit(src_layout, &srgb, dst_layout, TransformOptions::default())
        .map(Some)
        .map_err(|e| format!("ICC profile cannot be converted to sRGB: {e:?}"))
}

fn is_srgb(p: &ColorProfile) -> bool {
    if p.color_space != DataColorSpace::Rgb {
        return false;
    }
    let s = ColorProfile::new_srgb();
    let close = |a: moxcms::Xyzd, b: moxcms::Xyzd| {
        (a.x - b.x).abs() < 0.003 && (a.y - b.y).abs() < 0.003 && (a.z - b.z).abs() < 0.003
    };
    let named_srgb = format!("{:?}", p.description)
        .to_ascii_lowercase()
        .contains("srgb");
    named_srgb
        && close(p.red_colorant, s.red_colorant)
        && close(p.green_colorant, s.green_colorant)
        && close(p.blue_colorant, s.blue_colorant)
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
        Pixels::Bitmap(bitmap) => {
            let Some(icc) = icc else {
                return Converted {
                    bitmap,
                    note: None,
                    converted: false,
                };
            };
            let layout = match bitmap.channels {
                Channels::Rgb => Layout::Rgb,
                Channels::Rgba => Layout::Rgba,
            };
            match cache.get(icc, layout, layout) {
                Ok(Some(t)) => {
                    let mut out = vec![0u8; bitmap.data.len()];
                    match t.transform(&bitmap.data, &mut out) {
                        Ok(()) => Converted {
                            bitmap: Bitmap {
                                data: out,
                                ..bitmap
                            },
                            note: None,
                            converted: true,
                        },
                        Err(e) => Converted {
                            bitmap,
                            note: Some(format!("ICC transform failed: {e:?}")),
                            converted: false,
                        },
                    }
                }
                Ok(None) => Converted {
                    bitmap,
                    note: None,
                    converted: false,
                },
                Err(e) => Converted {
                    bitmap,
                    note: Some(e),
                    converted: false,
                },
            }
        }
    }
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
}
