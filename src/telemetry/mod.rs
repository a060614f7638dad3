//! Telemetry for the Lambda function: structured logs, AWS X-Ray subsegments and
//! CloudWatch EMF metrics, with no SDK (the X-Ray SDKs are in maintenance and no
//! maintained Rust one exists) — just `tracing`, a UDP socket and stdout.
//!
//! # Setup
//! ```text
//! let xray = telemetry::init_logging()?;           // once, at cold start
//! // per invocation (also automatic below lambda_runtime's span, see "Trace context"):
//! telemetry::xray::set_invocation(
//!     ctx.xray_trace_id.as_deref().and_then(telemetry::TraceContext::parse));
//! ```
//!
//! # Logs
//! Format: JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON`, readable text otherwise. Level:
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`. Each line carries the fields of
//! every enclosing span, so open (or rely on `lambda_runtime`'s "Lambda runtime invoke"
//! span, which has exactly these fields) an INFO span per invocation:
//! `info_span!("invocation", requestId = %ctx.request_id, xrayTraceId = %header)`.
//! JSON lines then read `{"timestamp","level","message","requestId","xrayTraceId"
//! (Root only),"target","span",…span fields,…event fields}`. INFO+ spans are kept for
//! log context even when the level is WARN/ERROR.
//!
//! # X-Ray conventions
//! * A span is a subsegment iff its **target** is `renditions::xray` or starts with
//!   `renditions::xray::` ([`xray::DEFAULT_TARGET_PREFIX`]; configurable). Level does not
//!   matter and the log filter never hides them. Other spans (the invocation span,
//!   library spans) are not subsegments. Events never are.
//! * Name: the span name (`otel.name` overrides). Parent: nearest enclosing subsegment
//!   span, else the header's `Parent` (Lambda's function segment).
//! * Start at span creation, end at close (= when the last handle drops; async: use
//!   `.instrument(span)`; `tokio::spawn`ed futures need `.in_current_span()` to keep
//!   their parent); one datagram per subsegment when it closes.
//! * Fields (declare late ones as `tracing::field::Empty`, then `span.record(..)`):
//!   - `namespace` = "aws" | "remote" (or `rpc.system = "aws-api"` → aws)
//!   - `aws.operation` (or `rpc.method`), `aws.region` (or `cloud.region`),
//!     `aws.s3.bucket` → `aws.bucket_name`, `aws.s3.key` → `aws.key`, `aws.request_id`,
//!     `aws.extended_request_id` → `aws.id_2`; bucket and key are also annotations
//!     `aws_s3_bucket` / `aws_s3_key` (searchable)
//!   - `http.response.status_code` → `http.response.status` (429 → throttle+error,
//!     4xx → error, 5xx → fault); `http.request.method`, `url.full` → `http.request`
//!   - `error`, `throttle`, `fault`: booleans (OR'ed with the status rule)
//!   - `exception.message`, `exception.type` → `cause.exceptions[0]`; an exception (or
//!     `otel.status_code = "ERROR"`) with no flag set marks `fault`
//!   - `metadata.<k>` → `metadata.default.<k>`; other `otel.*` are ignored
//!   - `xray.start_time` / `xray.end_time` (epoch seconds, f64): explicit times instead of
//!     the span's lifetime, for work timed elsewhere (pipeline stages reported as durations)
//!   - anything else → annotation, key with non-alphanumerics as `_` (`a.b` → `a_b`)
//!
//! ```text
//! let obj = info_span!(target: "renditions::xray", "object",
//!     aws.s3.bucket = %bucket, aws.s3.key = %key, format = tracing::field::Empty);
//! let s3 = info_span!(target: "renditions::xray", "S3", namespace = "aws",
//!     aws.operation = "GetObject", aws.region = %region, aws.s3.bucket = %bucket,
//!     aws.s3.key = %key, aws.request_id = Empty, http.response.status_code = Empty,
//!     error = Empty, throttle = Empty, fault = Empty, exception.message = Empty);
//! ```
//!
//! # OpenTelemetry (`TRACES=otlp`)
//! The same spans, ids and times go out as OTLP spans instead (fields become attributes under
//! their OpenTelemetry names; AWS calls are `SPAN_KIND_CLIENT` with `rpc.system = "aws-api"`;
//! X-Ray's error/fault flags become the span status), buffered and sent in one OTLP/HTTP JSON
//! request by [`xray::flush`] before the invocation returns. The trace id is the X-Ray root
//! without dashes and the first parent is Lambda's segment, so the ADOT collector's X-Ray
//! exporter nests them as the X-Ray layer would; an invocation without a trace header starts
//! its own trace.
//!
//! # Trace context
//! A subsegment's trace comes from (1) its parent subsegment, else (2) the nearest
//! enclosing span with an `xrayTraceId` field holding a full header (lambda_runtime's
//! span; safe with concurrent invocations), else (3) the slot set by
//! [`xray::set_invocation`]. Unsampled, missing or invalid → nothing is sent.
//!
//! # Metrics
//! [`Metrics`] accumulates counters and stage timings; `emit(namespace, function_name)`
//! prints EMF lines to stdout at the end of the invocation.

mod logging;
mod metrics;
pub mod xray;

use std::fmt;

pub use crate::settings::{LogConfig, LogFormat};
use crate::settings::{TraceExporter, TraceSettings};
pub use logging::build_subscriber;
pub use metrics::Metrics;
pub use xray::{OtlpExporter, TraceContext, UdpSender, XrayHandle, XrayLayer};

/// Why telemetry could not be installed.
#[derive(Debug)]
pub enum TelemetryError {
    /// A global `tracing` subscriber was already set.
    AlreadyInitialized,
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyInitialized => f.write_str("a global tracing subscriber is already set"),
        }
    }
}

impl std::error::Error for TelemetryError {}

/// Installs the global subscriber from the environment: logs to stdout per
/// [`LogConfig::from_env`], and spans where `TRACES` says: X-Ray to `AWS_XRAY_DAEMON_ADDRESS`
/// (the default), OTLP to `OTEL_EXPORTER_OTLP_ENDPOINT`, or nowhere. Also registers the handle
/// behind [`xray::set_invocation`] and [`xray::flush`]. Call once, before the runtime starts.
/// Invalid trace settings install no span exporter here; the function's init reports them.
pub fn init_logging() -> Result<XrayHandle, TelemetryError> {
    let traces = TraceSettings::from_settings(crate::settings::env);
    let layer = match &traces {
        Ok(TraceSettings {
            exporter: TraceExporter::Xray,
        }) => Some(XrayLayer::from_env()),
        Ok(TraceSettings {
            exporter: TraceExporter::Otlp(otlp),
        }) => Some(XrayLayer::otlp(OtlpExporter::new(otlp.clone()))),
        Ok(TraceSettings {
            exporter: TraceExporter::Off,
        })
        | Err(_) => None,
    };
    let handle = init_logging_with(LogConfig::from_env(), layer)?;
    if handle.otlp().is_some_and(OtlpExporter::protobuf_requested) {
        tracing::warn!(
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: spans are sent as http/json, which \
             OTLP/HTTP collectors accept on the same endpoint"
        );
    }
    Ok(handle)
}

/// Like [`init_logging`] with explicit settings; `xray: None` disables X-Ray (the
/// returned handle then belongs to an inert layer).
pub fn init_logging_with(
    config: LogConfig,
    xray: Option<XrayLayer>,
) -> Result<XrayHandle, TelemetryError> {
    let handle = match &xray {
        Some(layer) => layer.handle(),
        None => XrayLayer::new(UdpSender::unconfigured("X-Ray disabled".into())).handle(),
    };
    let subscriber = build_subscriber(&config, std::io::stdout, xray);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| TelemetryError::AlreadyInitialized)?;
    xray::install_global(handle.clone());
    Ok(handle)
}
