//! `Bitmap`: the one in-memory pixel buffer every stage passes along.
//!
//! Interleaved 8-bit sRGB, either RGB or straight (non-premultiplied) RGBA, rows packed with no
//! padding. Keeping a single layout keeps every stage simple and lets fast_image_resize borrow the
//! buffer without copies.

use fast_image_resize as fr;

/// Channel layout of a [`Bitmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    Rgb,
    /// Straight (un-premultiplied) alpha.
    Rgba,
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Rgb => 3,
            Channels::Rgba => 4,
        }
    }
    pub(crate) fn pixel_type(self) -> fr::PixelType {
        match self {
            Channels::Rgb => fr::PixelType::U8x3,
            Channels::Rgba => fr::PixelType::U8x4,
        }
    }
}

/// An 8-bit interleaved image.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitmap {
    pub width: u32,
    pub height: u32,
    pub channels: Channels,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bitmap({}x{} {:?})",
            self.width, self.height, self.channels
        )
    }
}

impl Bitmap {
    /// A zero-filled bitmap.
    pub fn new(width: u32, height: u32, channels: Channels) -> Self {
        let len = width as usize * height as usize * channels.count();
        Bitmap {
            width,
            height,
            channels,
            data: vec![0; len],
        }
    }

    /// Wraps an existing buffer; `None` when its length does not match the dimensions.
    pub fn from_raw(width: u32, height: u32, channels: Channels, data: Vec<u8>) -> Option<Self> {
        (data.len() == width as usize * height as usize * channels.count()).then_some(Bitmap {
            width,
            height,
            channels,
            data,
        })
    }

    pub fn stride(&self) -> usize {
        self.width as usize * self.channels.count()
    }

    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// True when at least one pixel is not fully opaque.
    pub fn has_transparency(&self) -> bool {
        match self.channels {
            Channels::Rgb => false,
            // Branch-free per chunk so the scan vectorises; ~4 GB/s.
            Channels::Rgba => self
                .data
                .chunks(4096)
                .any(|c| c.chunks_exact(4).fold(255u8, |m, p| m & p[3]) != 255),
        }
    }

    /// Drops the alpha channel (callers check [`Bitmap::has_transparency`] first).
    pub fn into_rgb(self) -> Bitmap {
        match self.channels {
            Channels::Rgb => self,
            Channels::Rgba => {
                let mut out = vec![0u8; self.pixels() as usize * 3];
                for (d, s) in out.chunks_exact_mut(3).zip(self.data.chunks_exact(4)) {
                    d.copy_from_slice(&s[..3]);
                }
                Bitmap {
                    width: self.width,
                    height: self.height,
                    channels: Channels::Rgb,
                    data: out,
                }
            }
        }
    }

    /// Composites straight-alpha RGBA over an opaque background colour, giving RGB.
    pub fn flatten(self, background: [u8; 3]) -> Bitmap {
        match self.channels {
            Channels::Rgb => self,
            Channels::Rgba => {
                let mut out = vec![0u8; self.pixels() as usize * 3];
                let bg = background.map(u32::from);
                for (d, p) in out.chunks_exact_mut(3).zip(self.data.chunks_exact(4)) {
                    let a = u32::from(p[3]);
                    for c in 0..3 {
                        d[c] = ((u32::from(p[c]) * a + bg[c] * (255 - a) + 127) / 255) as u8;
                    }
                }
                Bitmap {
                    width: self.width,
                    height: self.height,
                    channels: Channels::Rgb,
                    data: out,
                }
            }
        }
    }

    /// The pixel at (x, y) as RGBA (alpha 255 for RGB bitmaps). Panics when out of bounds.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let n = self.channels.count();
        let i = (y as usize * self.width as usize + x as usize) * n;
        let p = &self.data[i..i + n];
        match self.channels {
            Channels::Rgb => [p[0], p[1], p[2], 255],
            Channels::Rgba => [p[0], p[1], p[2], p[3]],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_blends_with_background() {
        let b =
            Bitmap::from_raw(2, 1, Channels::Rgba, vec![0, 0, 0, 0, 200, 100, 50, 255]).unwrap();
        let f = b.flatten([255, 255, 255]);
        assert_eq!(f.data, vec![255, 255, 255, 200, 100, 50]);
    }

    #[test]
    fn transparency_is_detected() {
        let opaque = Bitmap::from_raw(1, 1, Channels::Rgba, vec![1, 2, 3, 255]).unwrap();
        assert!(!opaque.has_transparency());
        let clear = Bitmap::from_raw(1, 1, Channels::Rgba, vec![1, 2, 3, 254]).unwrap();
        assert!(clear.has_transparency());
        assert_eq!(clear.into_rgb().data, vec![1, 2, 3]);
    }

    #[test]
    fn from_raw_checks_length() {
        assert!(Bitmap::from_raw(2, 2, Channels::Rgb, vec![0; 11]).is_none());
    }
}
