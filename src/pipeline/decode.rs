//! Decode: bytes → pixels, after the header has been checked against the limits.
//!
//! JPEG goes through libjpeg-turbo with DCT-domain scaling (shrink-on-load), WebP through libwebp
//! with its in-decoder rescaler; PNG, GIF, TIFF and BMP through the `image` crate's decoders. The
//! header is always read first and the pixel and memory limits are checked before any pixel
//! buffer is allocated (the `image` crate's `into_decoder()` path skips its own allocation check,
//! so we never rely on it).

use std::io::Cursor;

use image::{ColorType, ExtendedColorType, ImageDecoder, ImageError};

use crate::bitmap::{Bitmap, Channels};
use crate::cancel::Cancel;
use crate::codec::CodecError;
use crate::codec::exif::Orientation;
use crate::codec::{jpeg_markers, libjpeg, libwebp};
use crate::pipeline::sniff::Format;
use crate::reject::Rejection;

/// What the header says, before any pixels are decoded.
pub struct Probe<'a> {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
    pub icc: Option<Vec<u8>>,
    /// A short description of the encoding, e.g. "progressive 4:2:0".
    pub detail: String,
    source: Source<'a>,
}

enum Source<'a> {
    Jpeg {
        data: &'a [u8],
        header: jpeg_markers::JpegHeader,
    },
    Webp {
        data: &'a [u8],
        header: libwebp::WebpHeader,
    },
    Image(Box<dyn ImageDecoder + 'a>),
    /// A CMYK TIFF, read as CMYK so that its profile (or the naive formula) converts it.
    TiffCmyk(&'a [u8]),
}

/// Pixels as decoded, before colour management.
pub enum Pixels {
    Bitmap(Bitmap),
    /// CMYK from a JPEG; `inverted` when an Adobe APP14 marker says 255 means no ink.
    Cmyk {
        width: u32,
        height: u32,
        data: Vec<u8>,
        inverted: bool,
    },
}

fn image_error(format: Format, e: ImageError) -> Rejection {
    let name = format.as_str().to_uppercase();
    match e {
        ImageError::Limits(l) => Rejection::too_large(format!("{name}: {l}")),
        ImageError::Unsupported(u) => Rejection::unsupported(format!("{name}: {u}")),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Rejection::truncated(format!("{name} data ends before the image does"))
        }
        ImageError::IoError(io) => Rejection::corrupt(format!("{name}: {io}")),
        other => {
            let msg = other.to_string();
            let lower = msg.to_ascii_lowercase();
            // The decoders' own words, e.g. "Format error decoding Gif: Unexpected End of File".
            let detail = msg
                .split_once(": ")
                .filter(|(head, _)| head.starts_with("Format error"))
                .map_or(msg.as_str(), |(_, tail)| tail)
                .trim_end_matches('.');
            if lower.contains("end of") || lower.contains("eof") || lower.contains("truncated") {
                Rejection::truncated(format!("{name} data ends before the image does ({detail})"))
            } else {
                Rejection::corrupt(format!("{name} data is corrupt ({detail})"))
            }
        }
    }
}

/// Reads the header of `data` in `format`. Allocates nothing proportional to the image size.
pub fn probe(format: Format, data: &[u8], memory_budget: u64) -> Result<Probe<'_>, Rejection> {
    match format {
        Format::Jpeg => {
            let header = jpeg_markers::read_header(data)?;
            let detail = format!(
                "{} {}",
                if header.progressive {
                    "progressive"
                } else {
                    "baseline"
                },
                match header.components {
                    1 => "grayscale".to_string(),
                    4 => "CMYK".to_string(),
                    _ => chroma_name(&header.sampling),
                }
            );
            Ok(Probe {
                format,
                width: header.width,
                height: header.height,
                orientation: header.orientation,
                icc: header.icc.clone(),
                detail,
                source: Source::Jpeg { data, header },
            })
        }
        Format::Webp => {
            let header = libwebp::read_header(data)?;
            let detail = format!(
                "{}{}",
                if header.animated { "animated" } else { "still" },
                if header.has_alpha { " with alpha" } else { "" }
            );
            Ok(Probe {
                format,
                width: header.width,
                height: header.height,
                orientation: header.orientation,
                icc: header.icc.clone(),
                detail,
                source: Source::Webp { data, header },
            })
        }
        Format::Png | Format::Gif | Format::Tiff | Format::Bmp => {
            let cursor = Cursor::new(data);
            let err = |e| image_error(format, e);
            let mut decoder: Box<dyn ImageDecoder> = match format {
                Format::Png => Box::new(image::codecs::png::PngDecoder::new(cursor).map_err(err)?),
                Format::Gif => Box::new(image::codecs::gif::GifDecoder::new(cursor).map_err(err)?),
                Format::Tiff => {
                    Box::new(image::codecs::tiff::TiffDecoder::new(cursor).map_err(err)?)
                }
                _ => Box::new(image::codecs::bmp::BmpDecoder::new(cursor).map_err(err)?),
            };
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(memory_budget);
            decoder.set_limits(limits).map_err(err)?;
            let (width, height) = decoder.dimensions();
            let icc = decoder
                .icc_profile()
                .ok()
                .flatten()
                .or_else(|| match format {
                    Format::Bmp => bmp_icc(data),
                    Format::Tiff => tiff_icc(data),
                    _ => None,
                });
            let orientation = decoder
                .orientation()
                .ok()
                .and_then(|o| Orientation::from_exif(u16::from(o.to_exif())))
                .unwrap_or(Orientation::NORMAL);
            let original = decoder.original_color_type();
            let detail = format!("{original:?}");
            let source = if format == Format::Tiff && original == ExtendedColorType::Cmyk8 {
                Source::TiffCmyk(data)
            } else {
                Source::Image(decoder)
            };
            Ok(Probe {
                format,
                width,
                height,
                orientation,
                icc,
                detail,
                source,
            })
        }
    }
}

fn chroma_name(sampling: &[(u8, u8)]) -> String {
    match sampling {
        [(2, 2), (1, 1), (1, 1)] => "4:2:0".into(),
        [(2, 1), (1, 1), (1, 1)] => "4:2:2".into(),
        [(1, 1), (1, 1), (1, 1)] => "4:4:4".into(),
        [(1, 2), (1, 1), (1, 1)] => "4:4:0".into(),
        other => format!("sampling {other:?}"),
    }
}

impl Probe<'_> {
    /// Estimated peak bytes of pixel memory to decode at `min_scale` and carry the result
    /// through colour conversion (two buffers of the decoded size), plus what the decoder keeps
    /// internally: a progressive JPEG holds every DCT coefficient of the full-size image
    /// (2 bytes per sample) until its last scan.
    pub fn working_bytes(&self, min_scale: f64) -> u64 {
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        match &self.source {
            Source::Jpeg { header, .. } => {
                let n = u64::from(jpeg_scale_eighths(min_scale));
                let (ow, oh) = ((w * n).div_ceil(8), (h * n).div_ceil(8));
                let channels = if header.components == 4 { 4 } else { 3 };
                let out = ow * oh * channels;
                let coefficients = if header.progressive {
                    let hmax = header
                        .sampling
                        .iter()
                        .map(|s| u64::from(s.0.max(1)))
                        .max()
                        .unwrap_or(1);
                    let vmax = header
                        .sampling
                        .iter()
                        .map(|s| u64::from(s.1.max(1)))
                        .max()
                        .unwrap_or(1);
                    header
                        .sampling
                        .iter()
                        .map(|&(hs, vs)| {
                            let cw = (w * u64::from(hs.max(1)))
                                .div_ceil(hmax)
                                .next_multiple_of(8);
                            let ch = (h * u64::from(vs.max(1)))
                                .div_ceil(vmax)
                                .next_multiple_of(8);
                            cw * ch * 2
                        })
                        .sum()
                } else {
                    0
                };
                out * 2 + coefficients
            }
            // WebPAnimDecoder keeps two RGBA canvases (current and previous frame) and we copy
            // the first frame out of it: three canvases.
            Source::Webp { header, .. } if header.animated => w * h * 4 * 3,
            Source::Webp { header, .. } => {
                let k = if header.animated {
                    1
                } else {
                    u64::from(webp_shrink(min_scale))
                };
                // libwebp keeps YUV planes of the full frame (1.5 bytes per pixel) while scaling.
                w.div_ceil(k) * h.div_ceil(k) * 4 * 2 + w * h * 3 / 2
            }
            // 8-bit RGB(A) is decoded straight into the bitmap; other types (gray, 16-bit) are
            // converted into an RGB(A) bitmap while the decoder's buffer is still alive.
            Source::Image(d) if matches!(d.color_type(), ColorType::Rgb8 | ColorType::Rgba8) => {
                d.total_bytes().saturating_mul(2)
            }
            Source::Image(d) => {
                let out = w * h * if d.color_type().has_alpha() { 4 } else { 3 };
                d.total_bytes().saturating_add(out * 2)
            }
            // The CMYK samples, then the RGB bitmap the colour stage makes from them.
            Source::TiffCmyk(_) => w * h * 4 + w * h * 3 * 2,
        }
    }

    /// Decodes at a size of at least `min_scale` of the stored size (JPEG and WebP decode
    /// smaller when allowed; other formats always decode at full size). Returns the pixels.
    pub fn decode(
        self,
        min_scale: f64,
        memory_budget: u64,
        cancel: &Cancel,
    ) -> Result<Pixels, CodecError> {
        let format = self.format;
        match self.source {
            Source::Jpeg { data, header } => {
                let n = jpeg_scale_eighths(min_scale);
                let d = libjpeg::decode(data, n, memory_budget, cancel)?;
                Ok(match d.pixels {
                    libjpeg::JpegPixels::Rgb => Pixels::Bitmap(
                        Bitmap::from_raw(d.width, d.height, Channels::Rgb, d.data).ok_or_else(
                            || CodecError::internal("JPEG decoder", "returned a short buffer"),
                        )?,
                    ),
                    libjpeg::JpegPixels::Cmyk => Pixels::Cmyk {
                        width: d.width,
                        height: d.height,
                        data: d.data,
                        inverted: header.adobe_transform.is_some(),
                    },
                })
            }
            Source::Webp { data, header } => {
                if header.animated {
                    let (w, h, px) = libwebp::decode_first_frame(data)?;
                    return Bitmap::from_raw(w, h, Channels::Rgba, px)
                        .map(Pixels::Bitmap)
                        .ok_or_else(|| {
                            CodecError::internal(
                                "WebP decoder",
                                "returned a frame of the wrong size",
                            )
                        });
                }
                let k = webp_shrink(min_scale);
                let (w, h) = (header.width.div_ceil(k), header.height.div_ceil(k));
                let channels = if header.has_alpha {
                    Channels::Rgba
                } else {
                    Channels::Rgb
                };
                let bytes = u64::from(w) * u64::from(h) * channels.count() as u64;
                if bytes > memory_budget {
                    return Err(Rejection::too_large(format!(
                        "WebP decoded at {w}x{h} needs {bytes} bytes, over the budget of {memory_budget}"
                    ))
                    .into());
                }
                let px = libwebp::decode_still(data, header.has_alpha, w, h)?;
                Bitmap::from_raw(w, h, channels, px)
                    .map(Pixels::Bitmap)
                    .ok_or_else(|| CodecError::internal("WebP decoder", "returned a short buffer"))
            }
            Source::Image(decoder) => {
                Ok(decode_with_image(format, decoder, memory_budget).map(Pixels::Bitmap)?)
            }
            Source::TiffCmyk(data) => Ok(decode_tiff_cmyk(
                data,
                self.width,
                self.height,
                memory_budget,
            )?),
        }
    }
}

/// A CMYK TIFF (8 bits a sample, 0 = no ink) as CMYK pixels.
fn decode_tiff_cmyk(
    data: &[u8],
    width: u32,
    height: u32,
    budget: u64,
) -> Result<Pixels, Rejection> {
    let err = |e: tiff::TiffError| match e {
        tiff::TiffError::LimitsExceeded => {
            Rejection::too_large("CMYK TIFF needs more memory to decode than the budget allows")
        }
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Rejection::truncated("TIFF data ends before the image does")
        }
        tiff::TiffError::UnsupportedError(u) => Rejection::unsupported(format!(
            "TIFF uses a feature this decoder does not support ({u})"
        )),
        other => Rejection::corrupt(format!("TIFF data is corrupt ({other})")),
    };
    let mut limits = tiff::decoder::Limits::default();
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    limits.decoding_buffer_size = budget;
    limits.intermediate_buffer_size = budget;
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(data))
        .map_err(err)?
        .with_limits(limits);
    let data = match decoder.read_image().map_err(err)? {
        tiff::decoder::DecodingResult::U8(v) => v,
        _ => {
            return Err(Rejection::unsupported(
                "CMYK TIFF with more than 8 bits a sample",
            ));
        }
    };
    if data.len() != width as usize * height as usize * 4 {
        return Err(Rejection::corrupt(
            "CMYK TIFF data does not match its dimensions",
        ));
    }
    Ok(Pixels::Cmyk {
        width,
        height,
        data,
        inverted: false,
    })
}

/// The ICC profile of a TIFF (tag 34675), read with the `tiff` crate: the `image` crate's
/// decoder misses large ones (a 650 KB FOGRA39 profile, for one).
fn tiff_icc(data: &[u8]) -> Option<Vec<u8>> {
    let mut limits = tiff::decoder::Limits::default();
    limits.ifd_value_size = MAX_ICC_BYTES;
    tiff::decoder::Decoder::new(Cursor::new(data))
        .ok()?
        .with_limits(limits)
        .get_tag_u8_vec(tiff::tags::Tag::IccProfile)
        .ok()
}

/// Largest embedded ICC profile read from a TIFF (big CMYK profiles are about 1–2 MB).
const MAX_ICC_BYTES: usize = 8 << 20;

/// The ICC profile embedded in a BMP with a `BITMAPV5HEADER` (`bV5CSType` = `PROFILE_EMBEDDED`),
/// which the `image` crate does not read.
fn bmp_icc(data: &[u8]) -> Option<Vec<u8>> {
    const FILE_HEADER: usize = 14;
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u32_at(FILE_HEADER)? < 124 {
        return None; // not a V5 header
    }
    // bV5CSType at +56 is 'MBED' (stored little-endian, so the bytes read "DEBM").
    if data.get(FILE_HEADER + 56..FILE_HEADER + 60)? != b"DEBM" {
        return None;
    }
    let offset = u32_at(FILE_HEADER + 112)? as usize; // from the start of the info header
    let size = u32_at(FILE_HEADER + 116)? as usize;
    let start = FILE_HEADER.checked_add(offset)?;
    let profile = data.get(start..start.checked_add(size)?)?;
    (size >= 128).then(|| profile.to_vec())
}

/// How much reduction JPEG shrink-on-load leaves for the Lanczos filter: landing exactly on the
/// target size skips the filter and the DCT-domain scale aliases. Measured with `make quality`:
/// worst-case PSNR against a full decode went from 39.4 dB (1.0) to 43.5 dB (1.2).
pub const JPEG_SHRINK_HEADROOM: f64 = 1.2;

/// The smallest N/8 JPEG scale that keeps at least `min_scale` × [`JPEG_SHRINK_HEADROOM`] of
/// the stored size.
pub fn jpeg_scale_eighths(min_scale: f64) -> u8 {
    let want = (min_scale * JPEG_SHRINK_HEADROOM).min(1.0);
    (1..=8u8)
        .find(|&n| f64::from(n) / 8.0 >= want - 1e-9)
        .unwrap_or(8)
}

/// The largest integer WebP shrink factor that keeps at least `min_scale` (libvips does the same).
pub fn webp_shrink(min_scale: f64) -> u32 {
    if min_scale <= 0.0 {
        return 8;
    }
    ((1.0 / min_scale).floor() as u32).clamp(1, 8)
}

fn decode_with_image(
    format: Format,
    decoder: Box<dyn ImageDecoder + '_>,
    budget: u64,
) -> Result<Bitmap, Rejection> {
    let (w, h) = decoder.dimensions();
    let color = decoder.color_type();
    let total = decoder.total_bytes();
    if total > budget {
        return Err(Rejection::too_large(format!(
            "{} {w}x{h} needs {total} bytes to decode, over the budget of {budget}",
            format.as_str().to_uppercase()
        )));
    }
    let mut buf = vec![0u8; total as usize];
    decoder
        .read_image_boxed(&mut buf)
        .map_err(|e| image_error(format, e))?;
    let short = || Rejection::corrupt("decoder returned a short buffer");
    let px = w as usize * h as usize;
    let bitmap = match color {
        ColorType::Rgb8 => Bitmap::from_raw(w, h, Channels::Rgb, buf),
        ColorType::Rgba8 => Bitmap::from_raw(w, h, Channels::Rgba, buf),
        ColorType::L8 => Bitmap::from_raw(
            w,
            h,
            Channels::Rgb,
            buf.iter().flat_map(|&v| [v, v, v]).collect(),
        ),
        ColorType::La8 => Bitmap::from_raw(
            w,
            h,
            Channels::Rgba,
            buf.chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
        ),
        ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => {
            let n = color.channel_count() as usize;
            let v16: Vec<u8> = buf
                .chunks_exact(2)
                .map(|b| reduce16(u16::from_ne_bytes([b[0], b[1]])))
                .collect();
            let (channels, data) = match n {
                1 => (Channels::Rgb, v16.iter().flat_map(|&v| [v, v, v]).collect()),
                2 => (
                    Channels::Rgba,
                    v16.chunks_exact(2)
                        .flat_map(|p| [p[0], p[0], p[0], p[1]])
                        .collect(),
                ),
                3 => (Channels::Rgb, v16),
                _ => (Channels::Rgba, v16),
            };
            Bitmap::from_raw(w, h, channels, data)
        }
        ColorType::Rgb32F | ColorType::Rgba32F => {
            let n = color.channel_count() as usize;
            let v: Vec<u8> = buf
                .chunks_exact(4)
                .map(|b| {
                    let f = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                    (f.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
                })
                .collect();
            Bitmap::from_raw(
                w,
                h,
                if n == 3 {
                    Channels::Rgb
                } else {
                    Channels::Rgba
                },
                v,
            )
        }
        other => {
            return Err(Rejection::unsupported(format!(
                "{} with colour type {other:?}",
                format.as_str().to_uppercase()
            )));
        }
    };
    let _ = px;
    bitmap.ok_or_else(short)
}

/// 16 → 8 bits with rounding (not truncation).
pub fn reduce16(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_scale_is_the_smallest_sufficient_eighth() {
        // With 1.2 headroom: 0.5 → 0.6 → 5/8; 0.2667 (24 MP → 1600) → 0.32 → 3/8.
        assert_eq!(jpeg_scale_eighths(1.0), 8);
        assert_eq!(jpeg_scale_eighths(0.5), 5);
        assert_eq!(jpeg_scale_eighths(0.26667), 3);
        assert_eq!(jpeg_scale_eighths(0.01), 1);
        assert_eq!(jpeg_scale_eighths(0.1), 1);
        assert_eq!(jpeg_scale_eighths(0.125), 2);
    }

    #[test]
    fn webp_shrink_keeps_enough_pixels() {
        assert_eq!(webp_shrink(1.0), 1);
        assert_eq!(webp_shrink(0.49), 2);
        assert_eq!(webp_shrink(0.26), 3);
        assert_eq!(webp_shrink(0.001), 8);
    }

    #[test]
    fn sixteen_bit_reduction_rounds() {
        assert_eq!(reduce16(0), 0);
        assert_eq!(reduce16(65535), 255);
        assert_eq!(reduce16(257 * 100), 100);
        assert_eq!(reduce16(257 * 100 + 128), 100);
        assert_eq!(reduce16(257 * 100 + 129), 101);
    }
}
