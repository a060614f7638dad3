//! The AWS Lambda side: S3 / SQS / EventBridge events in, renditions written to S3.
//!
//! ```text
//! event (JSON) ─ event.rs ─▶ objects ─ store.rs/s3.rs ─▶ bytes ─ Pipeline ─▶ renditions ─▶ S3
//! ```
//! [`App::from_env`] reads and checks the whole configuration once (a bad value is an init
//! error naming the variable, posted to the Runtime API by [`report_init_error`]); then
//! [`App::handle`] serves each invocation through [`handler::Handler`], which the local demo
//! also calls directly. Design notes and decisions: `docs/lambda.md`.

// Event parsing and the key policy are pure (no AWS SDK, no tokio): the `events` feature builds
// only them, for the `events` fuzz target.
pub mod event;
pub mod keys;

#[cfg(feature = "lambda")]
mod app;
#[cfg(feature = "lambda")]
pub mod config;
#[cfg(feature = "lambda")]
pub mod handler;
#[cfg(feature = "lambda")]
pub mod s3;
#[cfg(feature = "lambda")]
pub mod store;

#[cfg(feature = "lambda")]
pub use app::*;
#[cfg(feature = "lambda")]
pub use config::LambdaSettings;
#[cfg(feature = "lambda")]
pub use handler::{Handler, InvocationError, Outcome, Report};
#[cfg(feature = "lambda")]
pub use s3::S3Store;
#[cfg(feature = "lambda")]
pub use store::ObjectStore;
