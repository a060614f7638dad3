//! Thin, safe wrappers over the codec libraries we link (libjpeg-turbo, libwebp) and the header
//! scans that run before them. Everything `unsafe` in the crate lives here.

pub mod jpeg_markers;
pub mod libjpeg;
pub mod libwebp;
