//! `renditions`: turn an uploaded image into a set of resized, watermarked renditions.
//!
//! The modules follow the data flow of the Lambda function:
//!
//! ```text
//! event ──▶ store (get) ──▶ pipeline: decode → colour → resize → orient → watermark → encode ──▶ store (put)
//!   │                         └── codec: libjpeg-turbo, libwebp, header and EXIF scans
//!   └── handler: one invocation, its outcomes and answer        telemetry: logs, EMF, X-Ray
//! ```
//! - [`settings`]: every environment variable and CLI flag, in one table, parsed once;
//! - [`event`]: trigger payloads (S3, SQS, EventBridge) → objects, and the key policy;
//! - [`store`]: the object-store seam and its S3 implementation;
//! - [`pipeline`]: pure image code, bytes → [`RenderOutput`] or a [`Rejection`];
//! - [`codec`]: safe wrappers over the C codecs (all of the crate's `unsafe`);
//! - [`handler`]: one invocation: download, render, upload, outcomes, the answer;
//! - [`function`]: init and the Lambda runtime wiring;
//! - [`telemetry`]: JSON logs, EMF metrics and X-Ray subsegments;
//! - [`cli`]: the `renditions render` command.

// The codec layer turns libjpeg's fatal errors into Rust panics that unwind through libjpeg's C
// frames back to `catch_unwind` (see `codec::libjpeg`). With panic = "abort" a truncated JPEG
// would kill the process instead of being rejected, so such a build must not exist. (cargo-fuzz
// builds with `--cfg fuzzing`; its targets keep unwinding too.)
#[cfg(all(panic = "abort", not(fuzzing)))]
compile_error!(
    "renditions must be built with panic = \"unwind\": libjpeg errors unwind to catch_unwind \
     (cargo lambda build defaults to abort unless [profile.release] sets panic)"
);

pub mod bitmap;
pub mod cli;
pub mod codec;
#[cfg(any(feature = "lambda", feature = "events"))]
pub mod event;
#[cfg(feature = "lambda")]
pub mod function;
#[cfg(feature = "lambda")]
pub mod handler;
pub mod pipeline;
mod reject;
pub mod settings;
#[cfg(feature = "lambda")]
pub mod store;
pub mod telemetry;

pub use pipeline::{Pipeline, RenderOutput, Rendition};
pub use reject::{RejectKind, Rejection};
pub use settings::{ConfigError, PipelineConfig};
