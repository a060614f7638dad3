//! Format detection from magic bytes.
//!
//! The extension and Content-Type of an upload are whatever the uploader said; only the first
//! bytes of the file decide which decoder runs. Unsupported formats get a reason that names what
//! the bytes look like, so a rejection report is useful to a person.

use crate::reject::Rejection;

/// An input format we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
    Tiff,
    Bmp,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Bmp => "bmp",
        }
    }
}

/// Decides the format from the leading bytes.
pub fn sniff(data: &[u8]) -> Result<Format, Rejection> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        return Ok(Format::Gif);
    }
    if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        return Ok(Format::Webp);
    }
    if data.starts_with(b"II*\0")
        || data.starts_with(b"MM\0*")
        || data.starts_with(b"II+\0")
        || data.starts_with(b"MM\0+")
    {
        return Ok(Format::Tiff);
    }
    if data.len() >= 18 && data.starts_with(b"BM") {
        return Ok(Format::Bmp);
    }
    Err(Rejection::unsupported(describe_unknown(data)))
}

/// A short description of what unsupported bytes look like.
fn describe_unknown(data: &[u8]) -> String {
    let head = &data[..data.len().min(512)];
    let what = if data.len() >= 12 && &data[4..8] == b"ftyp" {
        match &data[8..12] {
            b"avif" | b"avis" => "AVIF",
            b"heic" | b"heix" | b"hevc" | b"heim" | b"heis" | b"mif1" | b"msf1" => "HEIF/HEIC",
            _ => "an ISO media file (MP4/MOV/HEIF)",
        }
    } else if data.starts_with(b"%PDF") {
        "PDF"
    } else if data.starts_with(b"\0\0\0\x0cjP  ") || data.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        "JPEG 2000"
    } else if data.starts_with(&[0xFF, 0x0A]) || data.starts_with(b"\0\0\0\x0cJXL ") {
        "JPEG XL"
    } else if data.starts_with(b"8BPS") {
        "Photoshop PSD"
    } else if data.starts_with(b"PK\x03\x04") {
        "a ZIP archive"
    } else if data.starts_with(&[0x1F, 0x8B]) {
        "gzip data"
    } else if data.starts_with(&[0, 0, 1, 0]) {
        "an ICO icon"
    } else if data.starts_with(&[0xFF, 0xD8]) {
        "a JPEG with a broken start-of-image marker"
    } else if looks_like_text(head) {
        let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
        let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
        if has(b"<svg") {
            "SVG (vector images are not rendered)"
        } else if has(b"<html") || has(b"<!doctype html") {
            "HTML"
        } else {
            "text"
        }
    } else {
        "no known image format"
    };
    format!(
        "not a supported image: the content is {what} (supported: JPEG, PNG, WebP, GIF, TIFF, BMP)"
    )
}

fn looks_like_text(head: &[u8]) -> bool {
    !head.is_empty()
        && std::str::from_utf8(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head))
            .map(|s| s.chars().all(|c| !c.is_control() || c.is_whitespace()))
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(), Format::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nxxxx").unwrap(), Format::Png);
        assert_eq!(sniff(b"GIF89a....").unwrap(), Format::Gif);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), Format::Webp);
        assert_eq!(sniff(b"II*\0\x08\0\0\0").unwrap(), Format::Tiff);
        assert_eq!(sniff(b"MM\0*\0\0\0\x08").unwrap(), Format::Tiff);
        assert_eq!(
            sniff(b"BM\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").unwrap(),
            Format::Bmp
        );
    }

    #[test]
    fn names_what_unsupported_bytes_are() {
        let r = sniff(b"<!DOCTYPE html><html><body>hi</body></html>").unwrap_err();
        assert_eq!(r.kind, crate::RejectKind::Unsupported);
        assert!(r.reason.contains("HTML"), "{}", r.reason);
        assert!(sniff(b"hello world\n").unwrap_err().reason.contains("text"));
        assert!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0")
                .unwrap_err()
                .reason
                .contains("HEIF")
        );
        assert!(
            sniff(b"RIFF\0\0\0\0AVI LIST")
                .unwrap_err()
                .reason
                .contains("no known")
        );
    }
}
