//! `renditions`: turn an uploaded image into a set of resized, watermarked renditions.
//!
//! The crate is laid out along the data flow:
//! - [`config`]: what to make (renditions, format, watermark, limits), shared by CLI and Lambda;
//! - [`pipeline`]: pure image code, bytes → [`pipeline::RenderOutput`] or a [`Rejection`];
//! - [`codec`]: safe wrappers over libjpeg-turbo and libwebp;
//! - [`cli`]: the `renditions render` command;
//! - [`telemetry`]: X-Ray subsegments over UDP, JSON logs and EMF metrics.

pub mod bitmap;
pub mod cli;
pub mod codec;
pub mod config;
#[cfg(any(feature = "lambda", feature = "events"))]
pub mod lambda;
#[cfg(feature = "lambda")]
pub mod local;
pub mod pipeline;
pub mod reject;
pub mod telemetry;

pub use config::{ConfigError, PipelineConfig};
pub use pipeline::{Pipeline, RenderOutput, Rendition};
pub use reject::{RejectKind, Rejection};
