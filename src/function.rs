//! The function's life cycle: everything built once at init ([`App::from_env`]: settings, the
//! pipeline, the S3 client), init errors posted to the Runtime API, and one [`App::handle`] per
//! invocation (trace context, the handler, metrics, the answer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tracing::{error, info, warn};

use crate::event::EventError;
use crate::handler::{Handler, InvocationError, Report};
use crate::pipeline::{Limits, Pipeline};
use crate::settings::{
    self, ConfigError, LambdaSettings, PipelineConfig, S3Settings, TraceSettings,
};
use crate::store::{self, GetRequest, ObjectStore, S3Store};
use crate::telemetry::{Metrics, TraceContext, xray};

/// Largest watermark image fetched from S3 at init.
const MAX_WATERMARK_BYTES: u64 = 16 * 1024 * 1024;

/// Why the function could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// A setting is missing or invalid (the message starts with the variable's name).
    #[error("{0}")]
    Config(#[from] ConfigError),
}

impl InitError {
    /// The `errorType` reported to Lambda.
    pub fn error_type(&self) -> &'static str {
        match self {
            InitError::Config(_) => "Renditions.ConfigError",
        }
    }
}

/// Everything built once at init: the handler over S3, and the settings.
pub struct App {
    handler: Handler<S3Store>,
    /// When this process started: a deadline before it is not a real deadline.
    started: SystemTime,
    /// Whether the made-up-deadline warning was logged (once per process).
    warned_deadline: AtomicBool,
}

impl App {
    /// Reads the process environment (see `docs/lambda.md` for the variables).
    pub async fn from_env() -> Result<App, InitError> {
        Self::from_lookup(settings::env).await
    }

    /// Builds the app from named settings: pipeline settings, Lambda settings, the S3 client
    /// (endpoint, region and credentials from the standard AWS variables) and, for a
    /// `WATERMARK=s3://bucket/key`, the watermark image.
    pub async fn from_lookup(
        get: impl Fn(&str) -> Option<String> + Clone,
    ) -> Result<App, InitError> {
        let s3_settings = S3Settings::from_settings(get.clone())?;
        let mut sdk = None;
        let watermark = get("WATERMARK")
            .map(|w| w.trim().to_owned())
            .unwrap_or_default();
        let mut fetched_watermark: Option<Result<Vec<u8>, String>> = None;
        if let Some(location) = watermark.strip_prefix("s3://") {
            let loaded = store::load_sdk_config(&s3_settings).await;
            let store = S3Store::new(&loaded, s3_settings.force_path_style);
            fetched_watermark = Some(fetch_watermark(&store, location).await);
            sdk = Some(loaded);
        }
        let load_watermark = |value: &str| -> Result<Vec<u8>, String> {
            if value.starts_with("s3://") {
                fetched_watermark
                    .clone()
                    .unwrap_or_else(|| Err("the S3 watermark was not fetched".into()))
            } else {
                std::fs::read(value)
                    .map_err(|e| format!("cannot read the watermark file `{value}`: {e}"))
            }
        };
        let mut pipeline_config = PipelineConfig::from_settings(get.clone(), &load_watermark)?;
        // Read (and acted on) by `init_logging`; an invalid value fails the init here.
        TraceSettings::from_settings(get.clone())?;
        let settings = LambdaSettings::from_settings(get, &pipeline_config.renditions)?;
        if let Some(mb) = settings.memory_mb {
            // Pixel buffers of every record in flight must fit the function's memory: an image
            // that needs more is rejected as too large for this memory size instead of an OOM.
            let limits = &mut pipeline_config.limits;
            limits.max_working_bytes = Limits::working_bytes_for_memory(
                mb,
                settings.concurrency.records as u64,
                limits.max_input_bytes,
            );
        }
        let pipeline = Pipeline::new(pipeline_config)?;
        let sdk = match sdk {
            Some(sdk) => sdk,
            None => store::load_sdk_config(&s3_settings).await,
        };
        if sdk.region().is_none() {
            return Err(ConfigError::new(
                "AWS_REGION",
                "no region: set AWS_REGION (Lambda sets it) or a region in the AWS config",
            )
            .into());
        }
        let store = S3Store::new(&sdk, s3_settings.force_path_style);
        if !settings.key_template.keeps_whole_key() {
            warn!(
                key_template = settings.key_template.as_str(),
                "DEST_KEY_TEMPLATE drops the source extension: sources that differ only in it (a.jpg, a.png) \
                 share rendition keys and the later upload wins"
            );
        }
        info!(
            dest_bucket = %settings.dest_bucket,
            key_template = settings.key_template.as_str(),
            renditions = %pipeline.config().renditions.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            records_in_parallel = settings.concurrency.records,
            renders_in_parallel = settings.concurrency.renders,
            working_budget_mib = pipeline.config().limits.max_working_bytes >> 20,
            region = store.region(),
            "renditions-lambda initialised"
        );
        Ok(App {
            handler: Handler::new(Arc::new(store), Arc::new(pipeline), Arc::new(settings)),
            started: SystemTime::now(),
            warned_deadline: AtomicBool::new(false),
        })
    }

    /// The handler (also usable without the runtime).
    pub fn handler(&self) -> &Handler<S3Store> {
        &self.handler
    }

    /// Serves one invocation: sets the X-Ray context, processes the payload, prints the EMF
    /// metrics and answers (see [`Report::response`]).
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, InvocationError> {
        let (payload, ctx) = event.into_parts();
        xray::set_invocation(ctx.xray_trace_id.as_deref().and_then(TraceContext::parse));
        let deadline = self.deadline_of(ctx.deadline());
        let metrics = Metrics::new();
        let result = self
            .handler
            .process(&payload, Some(deadline), &metrics)
            .await;
        let settings = self.handler.settings();
        metrics.emit(&settings.metrics_namespace, &settings.function_name);
        let answer = self.answer(result);
        // OTLP spans leave before the answer does: Lambda may freeze the sandbox right after.
        xray::flush(Some(deadline)).await;
        answer
    }

    fn answer(&self, result: Result<Report, EventError>) -> Result<Value, InvocationError> {
        match result {
            Err(e) => {
                error!(reason = %e, "unrecognised event");
                Err(e.into())
            }
            Ok(report) => {
                let response = report.response();
                info!(
                    trigger = report.trigger.as_str(),
                    objects = report.objects.len(),
                    rendered = report.count("rendered"),
                    rejected = report.count("rejected") + report.count("unreadable"),
                    skipped = report.count("skipped"),
                    failed = report.count("failed"),
                    internal = report.count("internal"),
                    malformed = report.malformed.len(),
                    ignored = report.ignored,
                    batch_item_failures = report.batch_item_failures().len(),
                    "invocation done"
                );
                response
            }
        }
    }
}

impl App {
    /// The invocation's deadline as an `Instant`. One before this process started is not a
    /// real deadline (`cargo lambda watch` sends `Lambda-Runtime-Deadline-Ms: 600000`, ten
    /// minutes after 1970): it is treated as unknown, with one WARN, and the invocation gets
    /// `DEADLINE_FALLBACK_MS`.
    fn deadline_of(&self, deadline: SystemTime) -> Instant {
        if deadline >= self.started {
            return instant_of(deadline);
        }
        let fallback = self.handler.settings().deadline_fallback;
        if !self.warned_deadline.swap(true, Ordering::Relaxed) {
            let epoch_ms = deadline
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            warn!(
                deadline_epoch_ms = epoch_ms as u64,
                fallback_ms = fallback.as_millis() as u64,
                "the Runtime API sent a deadline before this process started (an emulator's \
                 made-up value?): treating it as unknown and using DEADLINE_FALLBACK_MS"
            );
        }
        Instant::now() + fallback
    }
}

async fn fetch_watermark(store: &S3Store, location: &str) -> Result<Vec<u8>, String> {
    let Some((bucket, key)) = location
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
    else {
        return Err(format!("`s3://{location}` is not s3://bucket/key"));
    };
    let req = GetRequest {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: None,
        if_match: None,
        max_bytes: MAX_WATERMARK_BYTES,
    };
    store
        .get(req)
        .await
        .map(|f| f.bytes)
        .map_err(|e| format!("cannot fetch s3://{location}: {e}"))
}

/// A wall-clock deadline as an `Instant` (already passed → now).
pub fn instant_of(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// Reports an init failure to the Lambda Runtime API (`POST /runtime/init/error`), as
/// lambda_runtime only does that itself for SnapStart hooks. Logs the error too. Does
/// nothing outside Lambda (no `AWS_LAMBDA_RUNTIME_API`); never fails.
pub async fn report_init_error(err: &InitError) {
    error!(error_type = err.error_type(), reason = %err, "init failed");
    let Some(api) = settings::env("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = serde_json::json!({
        "errorType": err.error_type(),
        "errorMessage": err.to_string(),
        "stackTrace": [],
    });
    let post = async {
        let base: http::Uri = format!("http://{api}")
            .parse()
            .map_err(|e| format!("bad AWS_LAMBDA_RUNTIME_API: {e}"))?;
        let client = lambda_runtime_api_client::Client::builder()
            .with_endpoint(base)
            .build()
            .map_err(|e| e.to_string())?;
        let req = lambda_runtime_api_client::build_request()
            .method("POST")
            .uri("/2018-06-01/runtime/init/error")
            .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
            .header("Content-Type", "application/json")
            .body(lambda_runtime_api_client::body::Body::from(
                body.to_string(),
            ))
            .map_err(|e| e.to_string())?;
        let resp = client.call(req).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(resp.status())
    };
    match tokio::time::timeout(Duration::from_secs(3), post).await {
        Ok(Ok(status)) if status.is_success() => {}
        Ok(Ok(status)) => error!(%status, "the Runtime API refused the init error report"),
        Ok(Err(e)) => error!(reason = %e, "could not report the init error"),
        Err(_) => error!("reporting the init error timed out"),
    }
}
