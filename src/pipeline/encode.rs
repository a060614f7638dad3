//! Encode: renditions → JPEG (libjpeg-turbo, 4:2:0, optimised Huffman), PNG (fast deflate),
//! WebP (libwebp, lossy) or AVIF (opt-in `avif` feature). Outputs carry no metadata at all:
//! EXIF (with GPS), XMP and comments from the upload never reach a rendition.

use crate::bitmap::{Bitmap, Channels};
use crate::codec::CodecError;
use crate::settings::{Encoding, PipelineConfig};

/// Encodes one rendition. Errors here are bugs or resource exhaustion, not bad input: every one
/// is a [`CodecError::Internal`].
pub fn encode(
    bitmap: &Bitmap,
    encoding: Encoding,
    config: &PipelineConfig,
) -> Result<Vec<u8>, CodecError> {
    match encoding {
        Encoding::Jpeg => {
            let flat;
            let rgb = match bitmap.channels {
                Channels::Rgb => bitmap,
                Channels::Rgba => {
                    flat = bitmap.clone().flatten(config.background);
                    &flat
                }
            };
            crate::codec::libjpeg::encode_rgb(
                rgb.width,
                rgb.height,
                &rgb.data,
                config.jpeg.quality,
                config.jpeg.progressive,
            )
        }
        Encoding::Png => {
            use image::ImageEncoder;
            let mut out = Vec::with_capacity(bitmap.data.len() / 2);
            let encoder = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            );
            let color = match bitmap.channels {
                Channels::Rgb => image::ExtendedColorType::Rgb8,
                Channels::Rgba => image::ExtendedColorType::Rgba8,
            };
            encoder
                .write_image(&bitmap.data, bitmap.width, bitmap.height, color)
                .map_err(|e| CodecError::internal("PNG encoder", e.to_string()))?;
            Ok(out)
        }
        Encoding::Webp => crate::codec::libwebp::encode(
            bitmap.width,
            bitmap.height,
            &bitmap.data,
            bitmap.channels == Channels::Rgba,
            config.lossy_quality,
        ),
        Encoding::Avif => encode_avif(bitmap, config.lossy_quality),
    }
}

#[cfg(feature = "avif")]
fn encode_avif(bitmap: &Bitmap, quality: u8) -> Result<Vec<u8>, CodecError> {
    let enc = ravif::Encoder::new()
        .with_quality(f32::from(quality))
        .with_speed(10)
        .with_num_threads(Some(1));
    let (w, h) = (bitmap.width as usize, bitmap.height as usize);
    let out = match bitmap.channels {
        Channels::Rgb => {
            let px: Vec<ravif::RGB8> = bitmap
                .data
                .chunks_exact(3)
                .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
                .collect();
            enc.encode_rgb(ravif::Img::new(&px[..], w, h))
        }
        Channels::Rgba => {
            let px: Vec<ravif::RGBA8> = bitmap
                .data
                .chunks_exact(4)
                .map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3]))
                .collect();
            enc.encode_rgba(ravif::Img::new(&px[..], w, h))
        }
    };
    out.map(|o| o.avif_file)
        .map_err(|e| CodecError::internal("AVIF encoder", e.to_string()))
}

#[cfg(not(feature = "avif"))]
fn encode_avif(_bitmap: &Bitmap, _quality: u8) -> Result<Vec<u8>, CodecError> {
    Err(CodecError::internal(
        "AVIF encoder",
        "AVIF output needs a build with the `avif` cargo feature",
    ))
}
