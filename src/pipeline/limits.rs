//! Input limits in one place: bytes, declared pixels and the per-image working-memory budget.
//! Every check that refuses an image for its size reads these numbers; see `decode` for where
//! they are applied (before any pixel buffer exists).

use super::sniff::Format;
use crate::reject::{RejectKind, Rejection};

/// Input limits, checked from the header before any pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_input_bytes: u64,
    pub max_input_pixels: u64,
    /// Budget for pixel buffers held at once for one image (decode buffer plus renditions), in
    /// bytes. Larger images are decoded at a reduced scale when that fits, else rejected.
    pub max_working_bytes: u64,
}

impl Limits {
    /// The per-image working budget for a function with `memory_mb` of memory that renders
    /// `concurrent` images at once: what is left after a fixed reserve for the runtime, the
    /// binary, S3 buffers (input object and outputs) and allocator slack, shared equally.
    pub fn working_bytes_for_memory(memory_mb: u64, concurrent: u64, max_input_bytes: u64) -> u64 {
        const RESERVE: u64 = 96 << 20;
        let total = memory_mb << 20;
        let per_image_io = max_input_bytes.min(64 << 20);
        let usable = total
            .saturating_sub(RESERVE)
            .saturating_sub(per_image_io * concurrent.max(1));
        (usable / concurrent.max(1)).max(16 << 20)
    }
}

impl Limits {
    /// Refuses an empty object, or one over [`Limits::max_input_bytes`].
    pub(crate) fn check_input(&self, len: usize) -> Result<(), Rejection> {
        if len == 0 {
            return Err(Rejection::new(
                RejectKind::Empty,
                "the object is empty (0 bytes)",
            ));
        }
        if len as u64 > self.max_input_bytes {
            return Err(Rejection::too_large(format!(
                "{len} bytes is over the input limit of {} bytes",
                self.max_input_bytes
            )));
        }
        Ok(())
    }

    /// Refuses dimensions declared by the header that are zero or over
    /// [`Limits::max_input_pixels`], before anything is decoded.
    pub(crate) fn check_declared(
        &self,
        format: Format,
        width: u32,
        height: u32,
    ) -> Result<(), Rejection> {
        if width == 0 || height == 0 {
            return Err(Rejection::corrupt(format!(
                "the image declares {width}x{height} pixels"
            )));
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_input_pixels {
            return Err(Rejection::too_large(format!(
                "{} declares {width}x{height} = {:.1} megapixels, over the limit of {:.1}",
                format.as_str().to_uppercase(),
                pixels as f64 / 1e6,
                self.max_input_pixels as f64 / 1e6
            )));
        }
        Ok(())
    }

    /// Refuses an image whose decode needs more than [`Limits::max_working_bytes`] (`working`:
    /// the decoder's estimate at the chosen scale).
    pub(crate) fn check_working(
        &self,
        format: Format,
        width: u32,
        height: u32,
        working: u64,
    ) -> Result<(), Rejection> {
        if working > self.max_working_bytes {
            return Err(Rejection::too_large(format!(
                "{width}x{height} {} needs about {} MiB to decode, over the memory budget of {} MiB",
                format.as_str().to_uppercase(),
                working >> 20,
                self.max_working_bytes >> 20
            )));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 50 * 1024 * 1024,
            max_input_pixels: 100_000_000,
            max_working_bytes: 1024 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_budget_shrinks_with_memory_and_concurrency() {
        let big = Limits::working_bytes_for_memory(1769, 1, 50 << 20);
        let small = Limits::working_bytes_for_memory(512, 1, 50 << 20);
        let shared = Limits::working_bytes_for_memory(1769, 3, 50 << 20);
        assert!(big > small && big > shared);
        assert!((16 << 20..512 << 20).contains(&small));
        assert_eq!(Limits::working_bytes_for_memory(128, 8, 50 << 20), 16 << 20);
    }
}
