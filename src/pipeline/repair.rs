//! Small repairs that the reference decoders (libpng as sharp/libvips use it, Pillow) make and the
//! `image` crate does not, so that an upload they render is not refused here:
//!
//! - a PNG whose image data is complete but whose `IEND` chunk is missing or cut (the file was
//!   cut a few bytes early): `IEND` is appended;
//! - a GIF with no global colour table (and frames without local ones): a greyscale table is
//!   inserted, as Pillow, sharp and libvips use.
//!
//! Anything else stays as it is: a PNG cut inside its image data is still truncated.

use std::borrow::Cow;

use super::sniff::Format;

/// The bytes to decode: `data` itself, or a repaired copy with a note saying what was repaired.
pub(super) fn repair(format: Format, data: &[u8]) -> (Cow<'_, [u8]>, Option<&'static str>) {
    match format {
        Format::Png if png_needs_iend(data) => {
            let mut fixed = Vec::with_capacity(data.len() + IEND.len());
            fixed.extend_from_slice(&data[..png_chunks_end(data)]);
            fixed.extend_from_slice(&IEND);
            (
                Cow::Owned(fixed),
                Some("the PNG's IEND chunk was missing or cut; its image data is complete"),
            )
        }
        Format::Gif if gif_lacks_global_table(data) => {
            let mut fixed = Vec::with_capacity(data.len() + 768);
            fixed.extend_from_slice(&data[..13]);
            // Global colour table flag, 256 entries (size field 7); keep resolution and sort bits.
            fixed[10] = (fixed[10] & 0x78) | 0x80 | 0x07;
            fixed.extend((0..=255u8).flat_map(|v| [v, v, v]));
            fixed.extend_from_slice(&data[13..]);
            (
                Cow::Owned(fixed),
                Some("the GIF has no colour table; a greyscale palette was used"),
            )
        }
        _ => (Cow::Borrowed(data), None),
    }
}

/// The 12-byte `IEND` chunk: length 0, type, CRC.
const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// Where the last whole chunk ends (after the 8-byte signature), walking the chunk list.
fn png_chunks_end(data: &[u8]) -> usize {
    walk_png(data).0
}

/// (end of the last whole chunk, saw IDAT, saw IEND).
fn walk_png(data: &[u8]) -> (usize, bool, bool) {
    let (mut at, mut idat, mut iend) = (8usize, false, false);
    while let Some(head) = data.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(end) = at.checked_add(12).and_then(|e| e.checked_add(len)) else {
            break;
        };
        if end > data.len() {
            break;
        }
        match &head[4..8] {
            b"IDAT" => idat = true,
            b"IEND" => {
                iend = true;
                at = end;
                break;
            }
            _ => {}
        }
        at = end;
    }
    (at, idat, iend)
}

/// A PNG whose chunks are all whole, with image data, that stops before (or inside) `IEND`.
fn png_needs_iend(data: &[u8]) -> bool {
    if data.len() < 8 {
        return false;
    }
    let (end, idat, iend) = walk_png(data);
    let rest = &data[end..];
    idat && !iend && rest.len() < IEND.len() && IEND.starts_with(rest)
}

/// A GIF (`GIF87a`/`GIF89a` header of 13 bytes) without a global colour table.
fn gif_lacks_global_table(data: &[u8]) -> bool {
    data.len() > 13 && data.starts_with(b"GIF8") && data[10] & 0x80 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_png_cut_in_or_before_iend_gets_it_back() {
        let whole = png(8, 6);
        assert!(whole.ends_with(&IEND));
        let (same, note) = repair(Format::Png, &whole);
        assert!(matches!(same, Cow::Borrowed(_)) && note.is_none());
        for cut in [12, 6, 1] {
            let data = &whole[..whole.len() - cut];
            let (fixed, note) = repair(Format::Png, data);
            assert_eq!(&fixed[..], &whole[..], "cut {cut}");
            assert!(note.is_some());
        }
        // Cut inside the image data: nothing to repair, it stays truncated.
        let idat_cut = &whole[..whole.len() - 20];
        assert!(matches!(repair(Format::Png, idat_cut).0, Cow::Borrowed(_)));
    }

    #[test]
    fn a_gif_without_a_colour_table_gets_a_grey_one() {
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[4, 0, 3, 0, 0x00, 0, 0]);
        gif.extend_from_slice(b",rest");
        let (fixed, note) = repair(Format::Gif, &gif);
        assert!(note.is_some());
        assert_eq!(fixed[10], 0x87);
        assert_eq!(fixed.len(), gif.len() + 768);
        assert_eq!(&fixed[13..16], &[0, 0, 0]);
        assert_eq!(&fixed[13 + 3 * 200..13 + 3 * 201], &[200, 200, 200]);
        assert_eq!(&fixed[13 + 768..], b",rest");
        // With a table: untouched.
        let mut with_table = gif.clone();
        with_table[10] = 0x80;
        assert!(matches!(
            repair(Format::Gif, &with_table).0,
            Cow::Borrowed(_)
        ));
    }
}
