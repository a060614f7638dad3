//! Thin, safe wrappers over the codec libraries we link (libjpeg-turbo, libwebp), the header and
//! EXIF scans that run before them, and nothing else: this layer imports nothing from the
//! pipeline above it. Everything `unsafe` in the crate lives here.

pub mod exif;
pub mod jpeg_markers;
pub mod libjpeg;
pub mod libwebp;
