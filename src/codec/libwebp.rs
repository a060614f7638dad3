//! Safe wrappers over libwebp (built by `cc` with SSE4.1/NEON): still-image decode with optional
//! in-decoder downscaling, first-frame decode of animations, lossy encode, and the RIFF chunk
//! scan that finds EXIF and ICC data.

use std::ffi::c_int;

use libwebp_sys as ffi;

use super::CodecError;
use crate::codec::exif::{self, Orientation};
use crate::reject::Rejection;

/// What the container says about a WebP file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebpHeader {
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub animated: bool,
    pub orientation: Orientation,
    pub icc: Option<Vec<u8>>,
}

/// Reads the bitstream features (libwebp) and the EXIF/ICCP chunks (our RIFF scan).
pub fn read_header(data: &[u8]) -> Result<WebpHeader, Rejection> {
    let mut f: ffi::WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    // SAFETY: reads at most `data.len()` bytes; `f` is a plain C struct.
    let status = unsafe { ffi::WebPGetFeatures(data.as_ptr(), data.len(), &mut f) };
    match status {
        ffi::VP8StatusCode::VP8_STATUS_OK => {}
        ffi::VP8StatusCode::VP8_STATUS_NOT_ENOUGH_DATA => {
            return Err(Rejection::truncated("WebP ends inside its header"));
        }
        ffi::VP8StatusCode::VP8_STATUS_UNSUPPORTED_FEATURE => {
            return Err(Rejection::unsupported(
                "WebP uses a feature libwebp does not support",
            ));
        }
        other => {
            return Err(Rejection::corrupt(format!(
                "WebP header is invalid ({other:?})"
            )));
        }
    }
    if f.width <= 0 || f.height <= 0 {
        return Err(Rejection::corrupt("WebP declares a zero dimension"));
    }
    let mut h = WebpHeader {
        width: f.width as u32,
        height: f.height as u32,
        has_alpha: f.has_alpha != 0,
        animated: f.has_animation != 0,
        orientation: Orientation::NORMAL,
        icc: None,
    };
    // RIFF chunks after "RIFF" size "WEBP": FourCC, little-endian size, payload, pad to even.
    let mut pos = 12;
    let mut seen_exif = false;
    while let Some(head) = data.get(pos..pos + 8) {
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let Some(body) = data.get(pos + 8..(pos + 8).saturating_add(size)) else {
            break;
        };
        match &head[0..4] {
            b"EXIF" if !seen_exif => {
                seen_exif = true;
                // Some writers keep JPEG's "Exif\0\0" prefix; exif::orientation accepts both.
                h.orientation = exif::orientation(body);
            }
            b"ICCP" if h.icc.is_none() => h.icc = Some(body.to_vec()),
            _ => {}
        }
        pos += 8 + size + (size & 1);
    }
    Ok(h)
}

fn decode_status(status: ffi::VP8StatusCode) -> Result<(), Rejection> {
    match status {
        ffi::VP8StatusCode::VP8_STATUS_OK => Ok(()),
        ffi::VP8StatusCode::VP8_STATUS_NOT_ENOUGH_DATA => {
            Err(Rejection::truncated("WebP data ends before the image does"))
        }
        ffi::VP8StatusCode::VP8_STATUS_OUT_OF_MEMORY => {
            Err(Rejection::too_large("WebP decoder ran out of memory"))
        }
        ffi::VP8StatusCode::VP8_STATUS_UNSUPPORTED_FEATURE => Err(Rejection::unsupported(
            "WebP uses a feature libwebp does not support",
        )),
        other => Err(Rejection::corrupt(format!(
            "WebP bitstream is corrupt ({other:?})"
        ))),
    }
}

/// Decodes a still WebP into packed RGB (or RGBA when `alpha`), scaled to `out_w`×`out_h` by
/// libwebp's own rescaler when those differ from the stored size.
pub fn decode_still(
    data: &[u8],
    alpha: bool,
    out_w: u32,
    out_h: u32,
) -> Result<Vec<u8>, Rejection> {
    let n = if alpha { 4 } else { 3 };
    let mut out = vec![0u8; out_w as usize * out_h as usize * n];
    let mut config: ffi::WebPDecoderConfig = unsafe { std::mem::zeroed() };
    // SAFETY: config initialised by WebPInitDecoderConfig; the output buffer is ours
    // (is_external_memory) and sized exactly stride × height.
    unsafe {
        if !ffi::WebPInitDecoderConfig(&mut config) {
            return Err(Rejection::corrupt("libwebp version mismatch"));
        }
        let (w0, h0) = (config.input.width, config.input.height);
        let _ = (w0, h0);
        config.output.colorspace = if alpha {
            ffi::WEBP_CSP_MODE::MODE_RGBA
        } else {
            ffi::WEBP_CSP_MODE::MODE_RGB
        };
        config.output.is_external_memory = 1;
        config.output.u.RGBA.rgba = out.as_mut_ptr();
        config.output.u.RGBA.stride = (out_w as usize * n) as c_int;
        config.output.u.RGBA.size = out.len();
        config.options.use_threads = 0;
        let mut features: ffi::WebPBitstreamFeatures = std::mem::zeroed();
        decode_status(ffi::WebPGetFeatures(
            data.as_ptr(),
            data.len(),
            &mut features,
        ))?;
        if features.width as u32 != out_w || features.height as u32 != out_h {
            config.options.use_scaling = 1;
            config.options.scaled_width = out_w as c_int;
            config.options.scaled_height = out_h as c_int;
        }
        let status = ffi::WebPDecode(data.as_ptr(), data.len(), &mut config);
        ffi::WebPFreeDecBuffer(&mut config.output);
        decode_status(status)?;
    }
    Ok(out)
}

/// Decodes the first frame of an animated WebP onto its full canvas as RGBA.
pub fn decode_first_frame(data: &[u8]) -> Result<(u32, u32, Vec<u8>), Rejection> {
    // SAFETY: WebPData borrows `data` for the decoder's lifetime, which ends in this function;
    // the frame buffer belongs to the decoder and is copied before WebPAnimDecoderDelete.
    unsafe {
        let webp_data = ffi::WebPData {
            bytes: data.as_ptr(),
            size: data.len(),
        };
        let mut opts: ffi::WebPAnimDecoderOptions = std::mem::zeroed();
        if ffi::WebPAnimDecoderOptionsInit(&mut opts) == 0 {
            return Err(Rejection::corrupt("libwebp version mismatch"));
        }
        opts.color_mode = ffi::WEBP_CSP_MODE::MODE_RGBA;
        opts.use_threads = 0;
        let dec = ffi::WebPAnimDecoderNew(&webp_data, &opts);
        if dec.is_null() {
            return Err(Rejection::corrupt("animated WebP could not be parsed"));
        }
        let mut info = ffi::WebPAnimInfo::default();
        let result = if ffi::WebPAnimDecoderGetInfo(dec, &mut info) == 0 {
            Err(Rejection::corrupt("animated WebP has no readable canvas"))
        } else {
            let mut buf: *mut u8 = std::ptr::null_mut();
            let mut ts: c_int = 0;
            if ffi::WebPAnimDecoderGetNext(dec, &mut buf, &mut ts) == 0 || buf.is_null() {
                Err(Rejection::corrupt(
                    "animated WebP: the first frame does not decode",
                ))
            } else {
                let len = info.canvas_width as usize * info.canvas_height as usize * 4;
                let pixels = std::slice::from_raw_parts(buf, len).to_vec();
                Ok((info.canvas_width, info.canvas_height, pixels))
            }
        };
        ffi::WebPAnimDecoderDelete(dec);
        result
    }
}

/// Encodes packed RGB or RGBA as lossy WebP at `quality` (0..=100), method 4, no metadata.
pub fn encode(
    width: u32,
    height: u32,
    pixels: &[u8],
    alpha: bool,
    quality: u8,
) -> Result<Vec<u8>, CodecError> {
    let n = if alpha { 4 } else { 3 };
    if pixels.len() != width as usize * height as usize * n {
        return Err(CodecError::internal(
            "WebP encoder",
            format!("bad pixel buffer for {width}x{height}"),
        ));
    }
    let config = ffi::WebPConfig::new_with_preset(
        ffi::WebPPreset::WEBP_PRESET_PHOTO,
        f32::from(quality.min(100)),
    )
    .map_err(|_| CodecError::internal("WebP encoder", "libwebp config init failed"))?;
    let mut config = config;
    config.method = 4;
    // SAFETY: picture and writer are initialised by libwebp, freed on every path below.
    unsafe {
        let mut pic = ffi::WebPPicture::new()
            .map_err(|_| CodecError::internal("WebP encoder", "libwebp picture init failed"))?;
        pic.width = width as c_int;
        pic.height = height as c_int;
        pic.use_argb = 0;
        let stride = (width as usize * n) as c_int;
        let imported = if alpha {
            ffi::WebPPictureImportRGBA(&mut pic, pixels.as_ptr(), stride)
        } else {
            ffi::WebPPictureImportRGB(&mut pic, pixels.as_ptr(), stride)
        };
        if imported == 0 {
            ffi::WebPPictureFree(&mut pic);
            return Err(CodecError::internal(
                "WebP encoder",
                "libwebp could not import the picture",
            ));
        }
        let mut writer: ffi::WebPMemoryWriter = std::mem::zeroed();
        ffi::WebPMemoryWriterInit(&mut writer);
        pic.writer = Some(ffi::WebPMemoryWrite);
        pic.custom_ptr = (&mut writer as *mut ffi::WebPMemoryWriter).cast();
        let ok = ffi::WebPEncode(&config, &mut pic);
        let result = if ok == 0 {
            Err(CodecError::internal(
                "WebP encoder",
                format!("libwebp encode failed ({:?})", pic.error_code),
            ))
        } else {
            Ok(std::slice::from_raw_parts(writer.mem, writer.size).to_vec())
        };
        ffi::WebPMemoryWriterClear(&mut writer);
        ffi::WebPPictureFree(&mut pic);
        result
    }
}
