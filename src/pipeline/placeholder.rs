//! What a page paints before an image loads, computed from the smallest rendition's pixels (so it
//! costs well under a millisecond): a ThumbHash (the `thumbhash` crate of ThumbHash's author), a
//! BlurHash (woltapp's reference algorithm, written out below: the `blurhash` crate rounds
//! linear→sRGB twice and lands a level off the reference), the average and the dominant colour.
//!
//! Dominant colour: pixels (alpha-weighted) are counted in 4,096 boxes of 4 bits per channel; the
//! answer is the mean colour of the fullest box, so a large plain area wins over a mix of
//! shades, which is what a background fill wants. Average colour: the alpha-weighted mean.

use crate::bitmap::{Bitmap, Channels};

/// Longest side fed to ThumbHash (its limit is 100; its few low-frequency terms need far less:
/// 64 costs 2.4× less than 100 for the same hash size).
const THUMBHASH_SIDE: u32 = 64;
/// Longest side fed to BlurHash (it blurs anyway; its cost grows with the pixels).
const BLURHASH_SIDE: u32 = 32;

/// The placeholders of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// ThumbHash bytes, base64 (standard alphabet, padded), as its reference decoders take it.
    pub thumbhash: String,
    /// BlurHash with 4×3 components (3×4 for portrait images).
    pub blurhash: String,
    pub average: [u8; 3],
    pub dominant: [u8; 3],
}

impl Placeholder {
    /// Computes the placeholders of `bitmap` (RGB or RGBA, any size; copies of at most 64×64
    /// and 32×32 are made first). `None` for an empty bitmap.
    pub fn of(bitmap: &Bitmap) -> Option<Placeholder> {
        if bitmap.width == 0 || bitmap.height == 0 {
            return None;
        }
        let (tw, th, small) = box_downsample_rgba(bitmap, THUMBHASH_SIDE);
        let thumbhash = base64(&thumbhash::rgba_to_thumb_hash(
            tw as usize,
            th as usize,
            &small,
        ));
        let (bw, bh, tiny) = box_downsample_rgba(bitmap, BLURHASH_SIDE);
        let (cx, cy) = if bw >= bh { (4, 3) } else { (3, 4) };
        let blurhash = blurhash(cx, cy, bw as usize, bh as usize, &tiny);
        let (average, dominant) = colours(&small);
        Some(Placeholder {
            thumbhash,
            blurhash,
            average,
            dominant,
        })
    }
}

/// BlurHash of `w`×`h` RGBA pixels with `nx`×`ny` components (1..=9), as woltapp's reference
/// encoder computes it (alpha ignored, as there).
fn blurhash(nx: usize, ny: usize, w: usize, h: usize, rgba: &[u8]) -> String {
    let linear: Vec<[f64; 3]> = rgba
        .chunks_exact(4)
        .map(|p| {
            [
                srgb_to_linear(p[0]),
                srgb_to_linear(p[1]),
                srgb_to_linear(p[2]),
            ]
        })
        .collect();
    let mut factors = Vec::with_capacity(nx * ny);
    for j in 0..ny {
        for i in 0..nx {
            let norm = if i == 0 && j == 0 { 1.0 } else { 2.0 };
            let mut f = [0.0f64; 3];
            for y in 0..h {
                let by = (std::f64::consts::PI * j as f64 * y as f64 / h as f64).cos();
                for x in 0..w {
                    let basis =
                        norm * (std::f64::consts::PI * i as f64 * x as f64 / w as f64).cos() * by;
                    let p = linear[y * w + x];
                    for c in 0..3 {
                        f[c] += basis * p[c];
                    }
                }
            }
            let scale = 1.0 / (w * h) as f64;
            factors.push(f.map(|v| v * scale));
        }
    }
    let mut out = String::with_capacity(4 + 2 * nx * ny);
    base83(((nx - 1) + (ny - 1) * 9) as u32, 1, &mut out);
    let ac = &factors[1..];
    let max = if ac.is_empty() {
        base83(0, 1, &mut out);
        1.0
    } else {
        let actual = ac.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        let quantised = (actual * 166.0 - 0.5).floor().clamp(0.0, 82.0);
        base83(quantised as u32, 1, &mut out);
        (quantised + 1.0) / 166.0
    };
    let dc = factors[0];
    let dc_value = (u32::from(linear_to_srgb(dc[0])) << 16)
        | (u32::from(linear_to_srgb(dc[1])) << 8)
        | u32::from(linear_to_srgb(dc[2]));
    base83(dc_value, 4, &mut out);
    for f in ac {
        let q = f.map(|v| {
            let signed = v / max;
            let pow = signed.signum() * signed.abs().powf(0.5);
            (pow * 9.0 + 9.5).floor().clamp(0.0, 18.0) as u32
        });
        base83(q[0] * 19 * 19 + q[1] * 19 + q[2], 2, &mut out);
    }
    out
}

fn srgb_to_linear(v: u8) -> f64 {
    let v = f64::from(v) / 255.0;
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// The reference's `linearTosRGB`: `trunc(x * 255 + 0.5)` of the sRGB curve, clamped.
fn linear_to_srgb(v: f64) -> u8 {
    let v = v.clamp(0.0, 1.0);
    let s = if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    };
    (s * 255.0 + 0.5).trunc().clamp(0.0, 255.0) as u8
}

fn base83(value: u32, digits: u32, out: &mut String) {
    const ALPHABET: &[u8; 83] =
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
    for i in 1..=digits {
        let digit = (value / 83u32.pow(digits - i)) % 83;
        out.push(char::from(ALPHABET[digit as usize]));
    }
}

/// `#rrggbb`.
pub fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// RGBA copy fitting `max_side`, each output pixel the mean of its box of source pixels.
fn box_downsample_rgba(b: &Bitmap, max_side: u32) -> (u32, u32, Vec<u8>) {
    let scale = f64::from(max_side) / f64::from(b.width.max(b.height));
    let (w, h) = if scale >= 1.0 {
        (b.width, b.height)
    } else {
        (
            ((f64::from(b.width) * scale).round() as u32).clamp(1, max_side),
            ((f64::from(b.height) * scale).round() as u32).clamp(1, max_side),
        )
    };
    let channels = b.channels.count();
    let mut out = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        let (y0, y1) = span(y, h, b.height);
        for x in 0..w {
            let (x0, x1) = span(x, w, b.width);
            let mut sum = [0u64; 4];
            for sy in y0..y1 {
                let row = sy as usize * b.stride();
                for sx in x0..x1 {
                    let p = &b.data[row + sx as usize * channels..][..channels];
                    let a = if b.channels == Channels::Rgba {
                        u64::from(p[3])
                    } else {
                        255
                    };
                    for c in 0..3 {
                        sum[c] += u64::from(p[c]);
                    }
                    sum[3] += a;
                }
            }
            let n = u64::from((x1 - x0) * (y1 - y0)).max(1);
            out.extend(sum.iter().map(|s| ((s + n / 2) / n) as u8));
        }
    }
    (w, h, out)
}

/// Source range `[start, end)` covered by output index `i` of `n` over `len` source pixels.
fn span(i: u32, n: u32, len: u32) -> (u32, u32) {
    let start = (u64::from(i) * u64::from(len) / u64::from(n)) as u32;
    let end = ((u64::from(i + 1) * u64::from(len)).div_ceil(u64::from(n)) as u32).min(len);
    (start, end.max(start + 1).min(len.max(1)))
}

/// (average, dominant) of RGBA pixels, alpha-weighted.
fn colours(rgba: &[u8]) -> ([u8; 3], [u8; 3]) {
    let mut total = [0u64; 4];
    let mut boxes = vec![[0u64; 4]; 4096];
    for p in rgba.chunks_exact(4) {
        let a = u64::from(p[3]);
        let bin =
            (usize::from(p[0] >> 4) << 8) | (usize::from(p[1] >> 4) << 4) | usize::from(p[2] >> 4);
        for c in 0..3 {
            total[c] += u64::from(p[c]) * a;
            boxes[bin][c] += u64::from(p[c]) * a;
        }
        total[3] += a;
        boxes[bin][3] += a;
    }
    let mean = |s: &[u64; 4]| -> [u8; 3] {
        if s[3] == 0 {
            return [0, 0, 0];
        }
        [0, 1, 2].map(|c| ((s[c] + s[3] / 2) / s[3]) as u8)
    };
    let fullest = boxes
        .iter()
        .max_by_key(|b| b[3])
        .copied()
        .unwrap_or_default();
    (mean(&total), mean(&fullest))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Bitmap {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                data.extend(f(x, y));
            }
        }
        Bitmap::from_raw(w, h, Channels::Rgb, data).unwrap()
    }

    fn decode_thumbhash(b64: &str) -> Vec<u8> {
        let mut bits = Vec::new();
        let (mut acc, mut n) = (0u32, 0);
        for c in b64.bytes().filter(|c| *c != b'=') {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                _ => 63,
            };
            acc = (acc << 6) | u32::from(v);
            n += 6;
            if n >= 8 {
                n -= 8;
                bits.push((acc >> n) as u8);
            }
        }
        bits
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn decoded_thumbhash_keeps_the_thumbnails_colour_and_shape() {
        let bitmap = image(320, 200, |x, _| {
            if x < 160 {
                [200, 40, 30]
            } else {
                [30, 60, 210]
            }
        });
        let p = Placeholder::of(&bitmap).unwrap();
        let bytes = decode_thumbhash(&p.thumbhash);
        let (w, h, rgba) = thumbhash::thumb_hash_to_rgba(&bytes).unwrap();
        assert!(w > h, "landscape stays landscape: {w}x{h}");
        let n = (w * h) as u64;
        let mean: Vec<u64> = (0..3)
            .map(|c| rgba.chunks_exact(4).map(|p| u64::from(p[c])).sum::<u64>() / n)
            .collect();
        for (c, want) in mean.iter().zip([115u64, 50, 120]) {
            assert!(c.abs_diff(want) <= 8, "mean {mean:?}");
        }
        // Left red, right blue, in the decoded placeholder too.
        let px = |x: usize, y: usize| &rgba[(y * w + x) * 4..][..3];
        assert!(px(1, h / 2)[0] > px(1, h / 2)[2] && px(w - 2, h / 2)[2] > px(w - 2, h / 2)[0]);
        assert_eq!(p.average, [115, 50, 120]);
        // A two-colour tie: the dominant colour is one of them, exactly.
        assert!(
            p.dominant == [200, 40, 30] || p.dominant == [30, 60, 210],
            "{:?}",
            p.dominant
        );
    }

    #[test]
    fn blurhash_is_the_reference_encoding() {
        // Black: every term 0 (AC quantised to 9,9,9 → "fQ", max AC "0"), what woltapp's
        // encoders give a black image.
        let black = Placeholder::of(&image(64, 48, |_, _| [0, 0, 0])).unwrap();
        assert_eq!(black.blurhash, "L00000fQfQfQfQfQfQfQfQfQfQfQ");
        // The DC term is the average colour in sRGB, base83: #ff0000 → "TI:j". (The AC terms of
        // a flat image are not 0: the cosine basis of odd orders does not sum to 0 on a grid.)
        let red = Placeholder::of(&image(64, 48, |_, _| [255, 0, 0])).unwrap();
        assert_eq!(&red.blurhash[2..6], "TI:j");
        // Structure: size flag (4×3 → "L", 3×4 → "T"), then 4 + 2 per component.
        let portrait = Placeholder::of(&image(30, 60, |_, y| [0, (y * 4) as u8, 0])).unwrap();
        assert_eq!(&portrait.blurhash[..1], "T");
        assert_eq!(portrait.blurhash.len(), 4 + 2 * 12);
        // A vertical gradient puts more energy in the first vertical AC term than in the first
        // horizontal one (green channel: value % 19, 9 = zero).
        let green = |hash: &str, k: usize| {
            let pair = &hash[6 + 2 * (k - 1)..][..2];
            let digit = |c: u8| {
                let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
                alphabet.iter().position(|a| *a == c).unwrap() as i32
            };
            let v = digit(pair.as_bytes()[0]) * 83 + digit(pair.as_bytes()[1]);
            (v / 19 % 19 - 9).abs()
        };
        assert!(
            green(&portrait.blurhash, 3) > green(&portrait.blurhash, 1),
            "{}",
            portrait.blurhash
        );
        assert_eq!(hex([255, 8, 0]), "#ff0800");
        assert_eq!(linear_to_srgb(0.0), 0, "no double rounding");
        assert_eq!(linear_to_srgb(1.0), 255);
    }

    #[test]
    fn dominant_colour_is_the_largest_area_not_the_mean() {
        // 70% grey background, 30% saturated orange subject.
        let bitmap = image(100, 100, |x, _| {
            if x < 70 {
                [128, 128, 128]
            } else {
                [250, 120, 10]
            }
        });
        let p = Placeholder::of(&bitmap).unwrap();
        assert_eq!(p.dominant, [128, 128, 128]);
        // 0.7 × grey + 0.3 × orange = (165.4, 125.6, 92.6), to within the box filter's rounding.
        for (got, want) in p.average.iter().zip([165u8, 126, 93]) {
            assert!(got.abs_diff(want) <= 1, "{:?}", p.average);
        }
        let rgba =
            Bitmap::from_raw(2, 1, Channels::Rgba, vec![255, 0, 0, 0, 0, 0, 255, 255]).unwrap();
        let p = Placeholder::of(&rgba).unwrap();
        assert_eq!(p.average, [0, 0, 255], "transparent pixels weigh nothing");
    }
}
