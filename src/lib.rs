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

// Modules are private: what other crates (the binaries, tests, benches, fuzzers) may use is the
// curated list below, so that rustc's dead-code lint sees everything else.
#[cfg(feature = "lambda")]
mod backfill;
mod bitmap;
mod cancel;
mod cli;
mod codec;
#[cfg(any(feature = "lambda", feature = "events"))]
pub mod event;
#[cfg(feature = "lambda")]
mod function;
#[cfg(feature = "lambda")]
mod handler;
mod manifest;
mod pipeline;
mod reject;
mod settings;
#[cfg(feature = "lambda")]
mod store;
mod telemetry;

// --- the pipeline: bytes → renditions (the CLI, benches, fuzzers) ---
pub use bitmap::{Bitmap, Channels};
pub use cancel::Cancel;
pub use cli::run as run_cli;
pub use pipeline::{
    Format, Limits, Pipeline, RenderError, RenderOutput, Rendition, Stage, StageSpan, StageTimings,
};
pub use reject::{RejectKind, Rejection};
/// Reads one setting from the process environment (only names in [`SETTINGS`]).
pub use settings::env as setting_env;
pub use settings::{
    Anchor, ConfigError, Encoding, Fit, JpegSettings, OutputFormat, PipelineConfig, RenditionSpec,
    S3Settings, SETTINGS, Scope, Setting, WatermarkSource, WatermarkSpec,
};

/// Single stages and codecs, for benches and tests that drive or measure one step at a time.
pub mod stages {
    pub use crate::codec::{exif, libjpeg, libwebp};
    pub use crate::pipeline::Placeholder;
    pub use crate::pipeline::geometry::Crop;
    pub use crate::pipeline::orient::apply as orient;
    pub use crate::pipeline::resize::resize;
    pub use crate::pipeline::watermark::{DEFAULT_WATERMARK_PNG, Watermark, render_text};
}

// --- the Lambda function: event → store → pipeline → store ---
#[cfg(feature = "lambda")]
pub use function::{App, InitError, report_init_error};
#[cfg(feature = "lambda")]
pub use handler::{
    Handler, InvocationError, ObjectReport, Outcome, Rendered, Report, Written, rfc3339,
};
#[cfg(feature = "lambda")]
pub use settings::LambdaSettings;
#[cfg(feature = "lambda")]
pub use store::{ObjectStore, S3Store, load_sdk_config, sdk_retry_timeouts};
pub use telemetry::{LogConfig, LogFormat, Metrics, init_logging, init_logging_with};
