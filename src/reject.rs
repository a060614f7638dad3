//! Typed rejections: why an input could not be turned into renditions.
//!
//! Every refusal carries a machine-readable [`RejectKind`] (for metrics, reports and exit codes)
//! and a human-readable reason that names the problem, never a panic or a half-decoded image.

use std::fmt;

/// The class of a rejection. Stable strings (see [`RejectKind::as_str`]) appear in logs,
/// rejection reports and metric dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectKind {
    /// Zero bytes.
    Empty,
    /// Not an image format we decode (sniffed from magic bytes).
    Unsupported,
    /// The data ends before the image does.
    Truncated,
    /// Malformed headers or entropy-coded data.
    Corrupt,
    /// Over a byte, pixel or memory limit (declared dimensions are checked before decoding).
    TooLarge,
}

impl RejectKind {
    /// The stable, kebab-case name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Empty => "empty",
            RejectKind::Unsupported => "unsupported",
            RejectKind::Truncated => "truncated",
            RejectKind::Corrupt => "corrupt",
            RejectKind::TooLarge => "too-large",
        }
    }

    /// Every kind, in a fixed order (for metrics that report zero counts too).
    pub const ALL: [RejectKind; 5] = [
        RejectKind::Empty,
        RejectKind::Unsupported,
        RejectKind::Truncated,
        RejectKind::Corrupt,
        RejectKind::TooLarge,
    ];
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permanent refusal of one input: retrying the same bytes gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct Rejection {
    pub kind: RejectKind,
    pub reason: String,
}

impl Rejection {
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Self {
        Rejection {
            kind,
            reason: reason.into(),
        }
    }
    pub fn unsupported(reason: impl Into<String>) -> Self {
        Self::new(RejectKind::Unsupported, reason)
    }
    pub fn corrupt(reason: impl Into<String>) -> Self {
        Self::new(RejectKind::Corrupt, reason)
    }
    pub fn truncated(reason: impl Into<String>) -> Self {
        Self::new(RejectKind::Truncated, reason)
    }
    pub fn too_large(reason: impl Into<String>) -> Self {
        Self::new(RejectKind::TooLarge, reason)
    }
}
