//! The same spans as OpenTelemetry: each finished subsegment becomes an OTLP span (same ids,
//! times and attributes; the X-Ray trace id `1-5759e988-bd86…` as the 128-bit trace id
//! `5759e988bd86…`, as AWS's OpenTelemetry propagator maps it), buffered, and sent as one
//! OTLP/HTTP request with a JSON body when the invocation ends ([`OtlpExporter::flush`]), so
//! nothing is left in memory when Lambda freezes the sandbox. No OpenTelemetry SDK: the spans
//! exist already (see the module docs of `telemetry`), and OTLP/JSON is a stable encoding that
//! collectors (the ADOT Lambda layer, vendors' extensions) accept on port 4318.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

use super::document::{FieldValue, Subsegment};
use crate::settings::OtlpSettings;

/// Spans kept between flushes; more are dropped (and counted) so a runaway loop cannot grow
/// the buffer without bound.
pub const MAX_BUFFERED_SPANS: usize = 8192;
/// The instrumentation scope our spans are reported under.
const SCOPE: &str = "renditions";

/// Buffers finished spans and exports them over OTLP/HTTP (JSON).
#[derive(Debug)]
pub struct OtlpExporter {
    settings: OtlpSettings,
    spans: Mutex<Vec<Value>>,
    exported: AtomicU64,
    dropped: AtomicU64,
    warned: AtomicBool,
    #[cfg(feature = "lambda")]
    client: std::sync::OnceLock<Result<lambda_runtime_api_client::Client, String>>,
}

impl OtlpExporter {
    pub fn new(settings: OtlpSettings) -> Self {
        Self {
            settings,
            spans: Mutex::new(Vec::new()),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            #[cfg(feature = "lambda")]
            client: std::sync::OnceLock::new(),
        }
    }

    /// Whether `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` was set (JSON is sent regardless).
    pub fn protobuf_requested(&self) -> bool {
        self.settings.protobuf_requested
    }

    /// Adds a finished span to the buffer.
    pub(super) fn push(&self, sub: &Subsegment) {
        let span = encode_span(sub);
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if spans.len() >= MAX_BUFFERED_SPANS {
            drop(spans);
            self.record_drop(1, "more spans than the buffer holds between flushes");
        } else {
            spans.push(span);
        }
    }

    /// Spans buffered and not yet exported.
    pub fn buffered(&self) -> usize {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Spans accepted by the collector so far.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans lost (collector unreachable or refusing, buffer full).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    #[cfg(any(feature = "lambda", test))]
    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts lost spans; the first loss of the process is logged at WARN (later ones only
    /// counted, so a dead collector cannot flood the logs).
    fn record_drop(&self, count: usize, reason: &str) {
        self.dropped.fetch_add(count as u64, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                spans = count,
                reason,
                endpoint = %format!("{}{}", self.settings.origin, self.settings.path),
                "OTLP spans dropped (later drops are only counted)"
            );
        }
    }

    /// The request body for `spans`: one resource, one scope.
    pub fn request_body(&self, spans: Vec<Value>) -> Vec<u8> {
        let resource: Vec<Value> = self
            .settings
            .resource
            .iter()
            .map(|(k, v)| attribute(k, &FieldValue::Str(v.clone())))
            .collect();
        let body = json!({
            "resourceSpans": [{
                "resource": { "attributes": resource },
                "scopeSpans": [{
                    "scope": { "name": SCOPE, "version": env!("CARGO_PKG_VERSION") },
                    "spans": spans,
                }],
            }],
        });
        body.to_string().into_bytes()
    }
}

#[cfg(feature = "lambda")]
impl OtlpExporter {
    /// Sends every buffered span in one request, waiting at most the configured timeout and
    /// never past `deadline`. Failures drop the spans (counted, WARN once): a trace is never
    /// worth failing or delaying an invocation for.
    pub async fn flush(&self, deadline: Option<std::time::Instant>) {
        let spans = self.take();
        if spans.is_empty() {
            return;
        }
        let count = spans.len();
        let mut budget = self.settings.timeout;
        if let Some(deadline) = deadline {
            budget = budget.min(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        let body = self.request_body(spans);
        match tokio::time::timeout(budget, self.post(body)).await {
            Ok(Ok(())) => {
                self.exported.fetch_add(count as u64, Ordering::Relaxed);
            }
            Ok(Err(reason)) => self.record_drop(count, &reason),
            Err(_) => self.record_drop(
                count,
                &format!("no answer within {} ms", budget.as_millis()),
            ),
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let client = self
            .client
            .get_or_init(|| {
                let origin: http::Uri = self.settings.origin.parse().map_err(|e| format!("{e}"))?;
                lambda_runtime_api_client::Client::builder()
                    .with_endpoint(origin)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let mut request = http::Request::builder()
            .method("POST")
            .header(
                "User-Agent",
                concat!("renditions/", env!("CARGO_PKG_VERSION")),
            )
            .uri(self.settings.path.as_str())
            .header("Content-Type", "application/json");
        for (name, value) in &self.settings.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(lambda_runtime_api_client::body::Body::from(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = client.call(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}

/// One OTLP span (JSON encoding: ids in hex, 64-bit integers as strings, enums as numbers).
fn encode_span(sub: &Subsegment) -> Value {
    let (start, end) = sub.times();
    let mut attributes: Vec<Value> = Vec::with_capacity(sub.attributes.len() + 3);
    let operation = sub.aws_operation();
    if let Some(op) = operation {
        // What AWS's X-Ray exporter and the AWS semantic conventions read for SDK calls.
        attributes.push(attribute("rpc.system", &FieldValue::Str("aws-api".into())));
        attributes.push(attribute(
            "rpc.service",
            &FieldValue::Str(sub.name().into()),
        ));
        attributes.push(attribute("rpc.method", &FieldValue::Str(op.into())));
    }
    for (key, value) in &sub.attributes {
        // X-Ray's own flags are the span status here; metadata keys lose their prefix.
        if matches!(*key, "error" | "fault" | "throttle") {
            continue;
        }
        let key = key.strip_prefix("metadata.").unwrap_or(key);
        attributes.push(attribute(key, value));
    }
    let mut span = json!({
        "traceId": otlp_trace_id(sub.ctx.root()),
        "spanId": sub.id,
        "name": sub.name(),
        // SPAN_KIND_CLIENT for calls to AWS, SPAN_KIND_INTERNAL for our own work.
        "kind": if operation.is_some() { 3 } else { 1 },
        "startTimeUnixNano": (u128::from(start) * 1000).to_string(),
        "endTimeUnixNano": (u128::from(end) * 1000).to_string(),
        "attributes": attributes,
    });
    if !sub.parent_id().is_empty() {
        span["parentSpanId"] = Value::String(sub.parent_id().to_owned());
    }
    if let Some(message) = sub.failure() {
        // STATUS_CODE_ERROR
        span["status"] = json!({ "code": 2, "message": message });
    }
    if let Some((message, kind)) = sub.exception() {
        let mut attrs = Vec::new();
        if let Some(m) = message {
            attrs.push(attribute("exception.message", &FieldValue::Str(m.into())));
        }
        if let Some(t) = kind {
            attrs.push(attribute("exception.type", &FieldValue::Str(t.into())));
        }
        span["events"] = json!([{
            "name": "exception",
            "timeUnixNano": (u128::from(end) * 1000).to_string(),
            "attributes": attrs,
        }]);
    }
    span
}

/// An OTLP `KeyValue`.
fn attribute(key: &str, value: &FieldValue) -> Value {
    let value = match value {
        FieldValue::Str(s) => json!({ "stringValue": s }),
        FieldValue::I64(v) => json!({ "intValue": v.to_string() }),
        FieldValue::U64(v) => match i64::try_from(*v) {
            Ok(v) => json!({ "intValue": v.to_string() }),
            Err(_) => json!({ "stringValue": v.to_string() }),
        },
        FieldValue::F64(v) if v.is_finite() => json!({ "doubleValue": v }),
        FieldValue::F64(v) => json!({ "stringValue": v.to_string() }),
        FieldValue::Bool(v) => json!({ "boolValue": v }),
    };
    json!({ "key": key, "value": value })
}

/// `1-5759e988-bd862e3fe1be46a994272793` → `5759e988bd862e3fe1be46a994272793`.
fn otlp_trace_id(root: &str) -> String {
    root.strip_prefix("1-").unwrap_or(root).replace('-', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::TraceContext;
    use std::sync::Arc;

    fn exporter() -> OtlpExporter {
        OtlpExporter::new(OtlpSettings {
            origin: "http://127.0.0.1:1".into(),
            path: "/v1/traces".into(),
            headers: Vec::new(),
            timeout: std::time::Duration::from_millis(100),
            resource: vec![("service.name".into(), "svc".into())],
            protobuf_requested: false,
        })
    }

    fn ctx() -> Arc<TraceContext> {
        Arc::new(
            TraceContext::new(
                "1-5759e988-bd862e3fe1be46a994272793",
                "53995c3f42cd8ad8",
                true,
            )
            .unwrap(),
        )
    }

    #[test]
    fn s3_call_becomes_a_client_span_with_error_status() {
        let mut s = Subsegment::new("S3", "53995c3f42cd8ad8".into(), ctx());
        s.apply("namespace", FieldValue::Str("aws".into()));
        s.apply("aws.operation", FieldValue::Str("PutObject".into()));
        s.apply("aws.s3.key", FieldValue::Str("a/b.jpg".into()));
        s.apply("http.response.status_code", FieldValue::U64(503));
        s.apply("fault", FieldValue::Bool(true));
        s.apply("exception.message", FieldValue::Str("SlowDown".into()));
        s.apply("xray.start_time", FieldValue::F64(1_718_000_000.25));
        s.apply("xray.end_time", FieldValue::F64(1_718_000_000.5));
        s.apply("metadata.detail", FieldValue::Str("x".into()));
        let v = encode_span(&s);
        assert_eq!(v["traceId"], "5759e988bd862e3fe1be46a994272793");
        assert_eq!(v["parentSpanId"], "53995c3f42cd8ad8");
        assert_eq!(v["spanId"].as_str().unwrap().len(), 16);
        assert_eq!(v["kind"], 3);
        assert_eq!(v["startTimeUnixNano"], "1718000000250000000");
        assert_eq!(v["endTimeUnixNano"], "1718000000500000000");
        assert_eq!(v["status"]["code"], 2);
        assert_eq!(v["status"]["message"], "SlowDown");
        assert_eq!(v["events"][0]["name"], "exception");
        let attrs: Vec<(String, Value)> = v["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["key"].as_str().unwrap().to_owned(), a["value"].clone()))
            .collect();
        let get = |k: &str| {
            attrs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("rpc.system").unwrap()["stringValue"], "aws-api");
        assert_eq!(get("rpc.service").unwrap()["stringValue"], "S3");
        assert_eq!(get("rpc.method").unwrap()["stringValue"], "PutObject");
        assert_eq!(get("aws.s3.key").unwrap()["stringValue"], "a/b.jpg");
        assert_eq!(get("http.response.status_code").unwrap()["intValue"], "503");
        assert_eq!(get("detail").unwrap()["stringValue"], "x");
        for absent in ["fault", "namespace", "xray.start_time"] {
            assert!(get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn own_work_is_an_internal_span_without_status() {
        let mut s = Subsegment::new("resize", "0123456789abcdef".into(), ctx());
        s.apply("width", FieldValue::U64(640));
        s.apply("ratio", FieldValue::F64(0.5));
        s.apply("stamped", FieldValue::Bool(true));
        let v = encode_span(&s);
        assert_eq!(v["kind"], 1);
        assert!(v.get("status").is_none() && v.get("events").is_none());
        assert_eq!(v["attributes"][0]["value"]["intValue"], "640");
        assert_eq!(v["attributes"][1]["value"]["doubleValue"], 0.5);
        assert_eq!(v["attributes"][2]["value"]["boolValue"], true);
        // A root span (no Lambda header) has no parent.
        let root = Arc::new(TraceContext::new_root());
        let s = Subsegment::new("object", root.parent().to_owned(), Arc::clone(&root));
        let v = encode_span(&s);
        assert!(v.get("parentSpanId").is_none());
        assert_eq!(v["traceId"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn body_has_resource_scope_and_spans_and_buffer_is_bounded() {
        let e = exporter();
        for _ in 0..MAX_BUFFERED_SPANS + 5 {
            e.push(&Subsegment::new("x", "53995c3f42cd8ad8".into(), ctx()));
        }
        assert_eq!((e.buffered(), e.dropped()), (MAX_BUFFERED_SPANS, 5));
        let spans = e.take();
        assert_eq!(e.buffered(), 0);
        let body: Value = serde_json::from_slice(&e.request_body(spans)).unwrap();
        let rs = &body["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "renditions");
        assert_eq!(
            rs["scopeSpans"][0]["spans"].as_array().unwrap().len(),
            MAX_BUFFERED_SPANS
        );
    }

    #[cfg(feature = "lambda")]
    #[tokio::test]
    async fn unreachable_collector_drops_and_counts() {
        let e = exporter();
        e.push(&Subsegment::new("x", "53995c3f42cd8ad8".into(), ctx()));
        e.push(&Subsegment::new("y", "53995c3f42cd8ad8".into(), ctx()));
        e.flush(None).await;
        assert_eq!((e.exported(), e.dropped(), e.buffered()), (0, 2, 0));
    }
}
