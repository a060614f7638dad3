//! JPEG header scan: dimensions, colour model, EXIF orientation and ICC profile from the marker
//! segments before the first scan, without decoding any pixels.
//!
//! This runs before anything is allocated for pixels, so a file that declares 65500×65500 is
//! refused after reading a few hundred bytes.

use crate::codec::exif::{self, Orientation};
use crate::reject::Rejection;

/// What the header says about a JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegHeader {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub precision: u8,
    pub progressive: bool,
    /// Transform byte of an Adobe APP14 segment, when present (its presence means CMYK data is
    /// stored inverted).
    pub adobe_transform: Option<u8>,
    pub orientation: Orientation,
    pub icc: Option<Vec<u8>>,
    /// Horizontal × vertical sampling factors per component, from the frame header.
    pub sampling: Vec<(u8, u8)>,
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Scans the markers up to the first SOS.
pub fn read_header(data: &[u8]) -> Result<JpegHeader, Rejection> {
    let truncated = || Rejection::truncated("JPEG ends inside its header");
    let mut pos = 2; // after SOI
    let mut frame: Option<JpegHeader> = None;
    let mut orientation = Orientation::NORMAL;
    let mut saw_exif = false;
    let mut adobe = None;
    let mut icc_chunks: Vec<(u8, u8, &[u8])> = Vec::new();
    loop {
        // Find the next marker, tolerating fill bytes and (like libjpeg) stray garbage.
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let marker = *data.get(pos).ok_or_else(truncated)?;
        pos += 1;
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue, // standalone markers
            0xD9 => return Err(Rejection::corrupt("JPEG ends (EOI) before any image data")),
            _ => {}
        }
        let len = be16(data, pos).ok_or_else(truncated)? as usize;
        if len < 2 {
            return Err(Rejection::corrupt(format!(
                "JPEG marker 0x{marker:02X} has length {len}"
            )));
        }
        let seg = data.get(pos + 2..pos + len).ok_or_else(truncated)?;
        pos += len;
        match marker {
            0xDA => break, // SOS: pixel data starts
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if matches!(marker, 0xC3 | 0xC7 | 0xCB | 0xCF) {
                    return Err(Rejection::unsupported(
                        "lossless JPEG (SOF3/7/11/15) is not supported",
                    ));
                }
                if matches!(marker, 0xC5 | 0xC6 | 0xC7 | 0xCD | 0xCE | 0xCF) {
                    return Err(Rejection::unsupported("hierarchical JPEG is not supported"));
                }
                if frame.is_some() {
                    return Err(Rejection::corrupt("JPEG has two frame headers"));
                }
                let precision = *seg.first().ok_or_else(truncated)?;
                let height = u32::from(be16(seg, 1).ok_or_else(truncated)?);
                let width = u32::from(be16(seg, 3).ok_or_else(truncated)?);
                let components = *seg.get(5).ok_or_else(truncated)?;
                if width == 0 || height == 0 {
                    return Err(Rejection::corrupt(format!(
                        "JPEG declares {width}x{height} pixels (a zero dimension)"
                    )));
                }
                if !matches!(components, 1 | 3 | 4) {
                    return Err(Rejection::unsupported(format!(
                        "JPEG with {components} colour components"
                    )));
                }
                if precision != 8 {
                    return Err(Rejection::unsupported(format!("{precision}-bit JPEG")));
                }
                let mut sampling = Vec::with_capacity(components as usize);
                for c in 0..components as usize {
                    let hv = *seg.get(6 + c * 3 + 1).ok_or_else(truncated)?;
                    sampling.push((hv >> 4, hv & 0x0F));
                }
                frame = Some(JpegHeader {
                    width,
                    height,
                    components,
                    precision,
                    progressive: matches!(marker, 0xC2 | 0xCA),
                    adobe_transform: None,
                    orientation: Orientation::NORMAL,
                    icc: None,
                    sampling,
                });
            }
            0xE1 if !saw_exif && seg.starts_with(b"Exif\0\0") => {
                saw_exif = true;
                orientation = exif::orientation(seg);
            }
            0xE2 if seg.starts_with(b"ICC_PROFILE\0") && seg.len() > 14 => {
                icc_chunks.push((seg[12], seg[13], &seg[14..]));
            }
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => adobe = Some(seg[11]),
            _ => {}
        }
    }
    let mut header =
        frame.ok_or_else(|| Rejection::corrupt("JPEG has no frame header before its scan"))?;
    header.orientation = orientation;
    header.adobe_transform = adobe;
    header.icc = assemble_icc(icc_chunks);
    Ok(header)
}

/// Joins APP2 ICC chunks in sequence order; any gap or inconsistency means "no profile".
fn assemble_icc(mut chunks: Vec<(u8, u8, &[u8])>) -> Option<Vec<u8>> {
    let count = chunks.first()?.1;
    if count == 0 || chunks.len() != count as usize || chunks.iter().any(|c| c.1 != count) {
        return None;
    }
    chunks.sort_by_key(|c| c.0);
    if chunks
        .iter()
        .enumerate()
        .any(|(i, c)| c.0 as usize != i + 1)
    {
        return None;
    }
    Some(chunks.iter().flat_map(|c| c.2.iter().copied()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn sof(w: u16, h: u16) -> Vec<u8> {
        let mut b = vec![8];
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        segment(0xC0, &b)
    }

    #[test]
    fn reads_dimensions_orientation_and_icc() {
        let mut f = vec![0xFF, 0xD8];
        f.extend(segment(0xE1, &exif::build_orientation_exif(6, true)));
        let mut icc2 = b"ICC_PROFILE\0\x02\x02".to_vec();
        icc2.extend_from_slice(b"world");
        let mut icc1 = b"ICC_PROFILE\0\x01\x02".to_vec();
        icc1.extend_from_slice(b"hello ");
        f.extend(segment(0xE2, &icc2));
        f.extend(segment(0xE2, &icc1));
        f.extend(sof(65500, 65500));
        f.extend(segment(0xDA, &[0; 10]));
        let h = read_header(&f).unwrap();
        assert_eq!((h.width, h.height, h.components), (65500, 65500, 3));
        assert_eq!(h.orientation.value(), 6);
        assert_eq!(h.icc.as_deref(), Some(&b"hello world"[..]));
        assert_eq!(h.sampling[0], (2, 2));
        assert!(!h.progressive);
    }

    #[test]
    fn truncated_and_broken_headers_are_rejected() {
        let mut f = vec![0xFF, 0xD8];
        f.extend(sof(10, 10));
        f.extend(segment(0xDA, &[0; 10]));
        for n in 2..f.len() - 12 {
            assert!(read_header(&f[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(
            read_header(&[0xFF, 0xD8, 0xFF, 0xD9]).unwrap_err().kind,
            crate::RejectKind::Corrupt
        );
        let mut zero = vec![0xFF, 0xD8];
        zero.extend(sof(0, 10));
        zero.extend(segment(0xDA, &[0; 10]));
        assert_eq!(
            read_header(&zero).unwrap_err().kind,
            crate::RejectKind::Corrupt
        );
    }

    #[test]
    fn inconsistent_icc_chunks_are_ignored() {
        assert!(assemble_icc(vec![(1, 2, b"a"), (3, 2, b"b")]).is_none());
        assert!(assemble_icc(vec![(1, 2, b"a")]).is_none());
        assert_eq!(assemble_icc(vec![(1, 1, b"a")]).unwrap(), b"a");
    }
}
