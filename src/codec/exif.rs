//! EXIF orientation: the one tag we read from EXIF, with a parser that cannot be led astray.
//!
//! Reads IFD0 of a TIFF-structured EXIF block (with or without the `Exif\0\0` prefix) and returns
//! the Orientation tag (0x0112). Bad offsets, truncated entries, absurd entry counts, duplicates or
//! out-of-range values make it answer "no rotation" rather than fail: malformed EXIF is common
//! and must never cost a user their upload.

/// How the stored pixels must be transformed for display (EXIF values 1–8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Orientation(u8);

impl Orientation {
    pub const NORMAL: Orientation = Orientation(1);

    /// `None` for values outside 1..=8.
    pub fn from_exif(v: u16) -> Option<Orientation> {
        (1..=8).contains(&v).then_some(Orientation(v as u8))
    }

    pub fn value(self) -> u8 {
        self.0.max(1)
    }

    /// True for 5–8, whose display size is the stored size transposed.
    pub fn swaps_axes(self) -> bool {
        self.0 >= 5
    }
}

/// Orientation from an EXIF block; `NORMAL` when absent or malformed.
pub fn orientation(exif: &[u8]) -> Orientation {
    parse(exif).unwrap_or(Orientation::NORMAL)
}

fn parse(exif: &[u8]) -> Option<Orientation> {
    let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let big_endian = match tiff.get(0..4)? {
        [b'I', b'I', 42, 0] => false,
        [b'M', b'M', 0, 42] => true,
        _ => return None,
    };
    let u16_at = |off: usize| -> Option<u16> {
        let b = tiff.get(off..off.checked_add(2)?)?;
        Some(if big_endian {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |off: usize| -> Option<u32> {
        let b = tiff.get(off..off.checked_add(4)?)?;
        Some(if big_endian {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })
    };
    let ifd0 = u32_at(4)? as usize;
    let count = u16_at(ifd0)? as usize;
    // An IFD entry is 12 bytes; a count that runs past the data is malformed.
    if count == 0 || ifd0 + 2 + count * 12 > tiff.len() {
        return None;
    }
    for i in 0..count {
        let e = ifd0 + 2 + i * 12;
        if u16_at(e)? == 0x0112 {
            // type SHORT (3), count 1; the value sits in the first two bytes of the value field.
            if u16_at(e + 2)? != 3 || u32_at(e + 4)? != 1 {
                return None;
            }
            return Orientation::from_exif(u16_at(e + 8)?);
        }
    }
    None
}

/// Builds a minimal little- or big-endian EXIF block carrying one Orientation tag (test helper,
/// also used by fixtures generators).
pub fn build_orientation_exif(value: u16, big_endian: bool) -> Vec<u8> {
    let mut v = b"Exif\0\0".to_vec();
    type U16Bytes = fn(u16) -> [u8; 2];
    type U32Bytes = fn(u32) -> [u8; 4];
    let (u16b, u32b): (U16Bytes, U32Bytes) = if big_endian {
        v.extend_from_slice(b"MM\0*");
        (u16::to_be_bytes, u32::to_be_bytes)
    } else {
        v.extend_from_slice(b"II*\0");
        (u16::to_le_bytes, u32::to_le_bytes)
    };
    v.extend_from_slice(&u32b(8));
    v.extend_from_slice(&u16b(1));
    v.extend_from_slice(&u16b(0x0112));
    v.extend_from_slice(&u16b(3));
    v.extend_from_slice(&u32b(1));
    v.extend_from_slice(&u16b(value));
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&u32b(0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_byte_orders() {
        for v in 1..=8 {
            assert_eq!(
                orientation(&build_orientation_exif(v, false)).value(),
                v as u8
            );
            assert_eq!(
                orientation(&build_orientation_exif(v, true)).value(),
                v as u8
            );
        }
    }

    #[test]
    fn malformed_exif_means_normal() {
        let good = build_orientation_exif(6, false);
        assert_eq!(orientation(&[]).value(), 1);
        assert_eq!(orientation(b"Exif\0\0garbage").value(), 1);
        // Out-of-range value.
        assert_eq!(orientation(&build_orientation_exif(9, false)).value(), 1);
        // IFD offset pointing past the end.
        let mut bad = good.clone();
        bad[10] = 0xFF;
        assert_eq!(orientation(&bad).value(), 1);
        // Absurd entry count.
        let mut bad = good.clone();
        bad[14] = 0xFF;
        bad[15] = 0xFF;
        assert_eq!(orientation(&bad).value(), 1);
        // Truncated anywhere.
        for n in 0..good.len() - 6 {
            let _ = orientation(&good[..n]);
        }
    }

    #[test]
    fn swaps_axes_for_transposing_values() {
        assert!(!Orientation::from_exif(4).unwrap().swaps_axes());
        assert!(Orientation::from_exif(5).unwrap().swaps_axes());
        assert!(Orientation::from_exif(8).unwrap().swaps_axes());
    }
}
