//! Rendition geometry: output sizes and source crops for fit-inside and cover boxes.
//!
//! All maths happens in the *stored* pixel space (before EXIF orientation is applied), so that
//! resizing can run on the decoded buffer as is and only the small renditions get rotated.
//! Boxes are given in display space and transposed here for orientations 5–8. Nothing is ever
//! upscaled.

use crate::codec::exif::Orientation;
use crate::settings::{Fit, RenditionSpec};

/// A source rectangle in full-resolution stored-pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Where one rendition comes from and how big it is, in stored space.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub width: u32,
    pub height: u32,
    pub crop: Crop,
}

impl Target {
    /// Output pixels per source pixel (≤ 1), the larger of the two axes.
    pub fn scale(&self) -> f64 {
        (f64::from(self.width) / self.crop.width).max(f64::from(self.height) / self.crop.height)
    }
}

/// Plans one rendition of a `width`×`height` (stored) image.
pub fn target(width: u32, height: u32, orientation: Orientation, spec: &RenditionSpec) -> Target {
    let (bw, bh) = if orientation.swaps_axes() {
        (spec.height, spec.width)
    } else {
        (spec.width, spec.height)
    };
    let (w, h) = (f64::from(width), f64::from(height));
    let (fbw, fbh) = (f64::from(bw), f64::from(bh));
    let full = Crop {
        x: 0.0,
        y: 0.0,
        width: w,
        height: h,
    };
    match spec.fit {
        Fit::Inside => {
            let f = (fbw / w).min(fbh / h).min(1.0);
            let out_w = ((w * f).round() as u32).clamp(1, bw.min(width));
            let out_h = ((h * f).round() as u32).clamp(1, bh.min(height));
            Target {
                width: out_w,
                height: out_h,
                crop: full,
            }
        }
        Fit::Cover => {
            let f = (fbw / w).max(fbh / h);
            let (out_w, out_h) = if f <= 1.0 {
                (bw, bh)
            } else {
                // The source is smaller than the box on some axis: keep the box's aspect at
                // the source's own resolution instead of upscaling.
                let g = (w / fbw).min(h / fbh);
                (
                    ((fbw * g).floor() as u32).max(1),
                    ((fbh * g).floor() as u32).max(1),
                )
            };
            let f = f.min(1.0);
            let (cw, ch) = if f < 1.0 {
                ((f64::from(out_w) / f).min(w), (f64::from(out_h) / f).min(h))
            } else {
                (f64::from(out_w), f64::from(out_h))
            };
            Target {
                width: out_w,
                height: out_h,
                crop: Crop {
                    x: (w - cw) / 2.0,
                    y: (h - ch) / 2.0,
                    width: cw,
                    height: ch,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(w: u32, h: u32, fit: Fit) -> RenditionSpec {
        RenditionSpec {
            name: "r".into(),
            width: w,
            height: h,
            fit,
        }
    }
    const N: Orientation = Orientation::NORMAL;

    #[test]
    fn fit_inside_keeps_aspect() {
        let t = target(6000, 4000, N, &spec(1600, 1600, Fit::Inside));
        assert_eq!((t.width, t.height), (1600, 1067));
        let t = target(4000, 6000, N, &spec(1600, 1600, Fit::Inside));
        assert_eq!((t.width, t.height), (1067, 1600));
        let t = target(6000, 4000, N, &spec(1200, 300, Fit::Inside));
        assert_eq!((t.width, t.height), (450, 300));
    }

    #[test]
    fn never_upscales() {
        let t = target(300, 200, N, &spec(1600, 1600, Fit::Inside));
        assert_eq!((t.width, t.height), (300, 200));
        // Cover with a box bigger than the source: the box aspect at source resolution.
        let t = target(300, 200, N, &spec(400, 400, Fit::Cover));
        assert_eq!((t.width, t.height), (200, 200));
        assert_eq!(
            (t.crop.x, t.crop.width, t.crop.height),
            (50.0, 200.0, 200.0)
        );
    }

    #[test]
    fn cover_centre_crops() {
        let t = target(6000, 4000, N, &spec(600, 600, Fit::Cover));
        assert_eq!((t.width, t.height), (600, 600));
        assert_eq!(t.crop.width, 4000.0);
        assert_eq!(t.crop.x, 1000.0);
        assert_eq!(t.crop.y, 0.0);
        assert!((t.scale() - 0.15).abs() < 1e-9);
    }

    #[test]
    fn orientation_transposes_the_box() {
        // Stored 6000x4000 landscape that displays as portrait (orientation 6).
        let o = Orientation::from_exif(6).unwrap();
        let t = target(6000, 4000, o, &spec(1600, 1600, Fit::Inside));
        assert_eq!((t.width, t.height), (1600, 1067));
        let t = target(6000, 4000, o, &spec(300, 600, Fit::Inside));
        // Display box 300 wide x 600 high; stored box 600 x 300.
        assert_eq!((t.width, t.height), (450, 300));
    }

    #[test]
    fn tiny_and_extreme_aspects_stay_at_least_one_pixel() {
        let t = target(10000, 1, N, &spec(100, 100, Fit::Inside));
        assert_eq!((t.width, t.height), (100, 1));
        let t = target(1, 1, N, &spec(320, 320, Fit::Inside));
        assert_eq!((t.width, t.height), (1, 1));
    }
}
