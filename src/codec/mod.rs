//! Thin, safe wrappers over the codec libraries we link (libjpeg-turbo, libwebp), the header and
//! EXIF scans that run before them, and nothing else: this layer imports nothing from the
//! pipeline above it. Everything `unsafe` in the crate lives here.

pub mod exif;
pub mod jpeg_markers;
pub mod libjpeg;
pub mod libwebp;

use crate::reject::Rejection;

/// Why a codec call failed, typed by whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input is bad (truncated, corrupt, unsupported, over a limit): a permanent rejection.
    #[error("{0}")]
    Input(Rejection),
    /// The codec failed on input it accepted, or on pixels we made (every encoder error): a fault
    /// of ours or of the library, never the upload's, so the render is retried, not rejected.
    #[error("{codec}: {reason}")]
    Internal { codec: &'static str, reason: String },
    /// The render was cancelled (its deadline passed) while the codec ran.
    #[error("cancelled")]
    Cancelled,
}

impl CodecError {
    pub(crate) fn internal(codec: &'static str, reason: impl Into<String>) -> Self {
        CodecError::Internal {
            codec,
            reason: reason.into(),
        }
    }
}

impl From<Rejection> for CodecError {
    fn from(r: Rejection) -> Self {
        CodecError::Input(r)
    }
}

/// The text of a panic payload (`&str` or `String`), for an internal error's reason.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
