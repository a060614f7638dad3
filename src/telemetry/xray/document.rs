//! The X-Ray subsegment document: how span fields (OpenTelemetry semantic-convention
//! names) map onto the segment-document JSON schema, and how a finished subsegment is
//! encoded into one daemon datagram (`{"format": "json", "version": 1}\n{…}`, ≤ 64 KB).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};

use super::ids::new_id;
use super::trace_header::TraceContext;

/// The daemon's datagram header line.
pub(crate) const DATAGRAM_HEADER: &[u8] = b"{\"format\": \"json\", \"version\": 1}\n";
/// Upper bound for one datagram (header + document); the daemon reads 64 KiB.
pub const MAX_DATAGRAM_BYTES: usize = 64_000;
/// X-Ray caps annotations per document; extra keys are ignored.
const MAX_ANNOTATIONS: usize = 50;
/// Annotation string values are truncated to this many bytes (on a char boundary).
const MAX_ANNOTATION_STR: usize = 1000;
/// X-Ray segment names are at most 200 characters.
const MAX_NAME_CHARS: usize = 200;

/// One span's value, as recorded by `tracing`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    fn as_bool(&self) -> bool {
        match self {
            Self::Bool(b) => *b,
            Self::Str(s) => s.eq_ignore_ascii_case("true") || s == "1",
            Self::I64(v) => *v != 0,
            Self::U64(v) => *v != 0,
            Self::F64(v) => *v != 0.0,
        }
    }

    fn into_string(self) -> String {
        match self {
            Self::Str(s) => s,
            Self::I64(v) => v.to_string(),
            Self::U64(v) => v.to_string(),
            Self::F64(v) => v.to_string(),
            Self::Bool(v) => v.to_string(),
        }
    }

    fn as_status(&self) -> Option<u16> {
        match self {
            Self::I64(v) => u16::try_from(*v).ok(),
            Self::U64(v) => u16::try_from(*v).ok(),
            Self::Str(s) => s.trim().parse().ok(),
            Self::F64(_) | Self::Bool(_) => None,
        }
    }

    /// Epoch seconds (float or integer) as epoch microseconds; `None` if not a time.
    fn as_epoch_micros(&self) -> Option<u64> {
        let secs = match self {
            Self::F64(v) => *v,
            Self::U64(v) => *v as f64,
            Self::I64(v) => *v as f64,
            Self::Str(s) => s.trim().parse().ok()?,
            Self::Bool(_) => return None,
        };
        (secs.is_finite() && secs > 0.0).then(|| (secs * 1e6).round() as u64)
    }

    /// JSON value for annotations/metadata; `None` for non-finite floats (X-Ray rejects null).
    fn into_json(self) -> Option<Value> {
        Some(match self {
            Self::Str(s) => Value::String(s),
            Self::I64(v) => Value::from(v),
            Self::U64(v) => Value::from(v),
            Self::F64(v) if v.is_finite() => Value::from(v),
            Self::F64(_) => return None,
            Self::Bool(v) => Value::Bool(v),
        })
    }
}

/// The `aws` block of a subsegment.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct AwsBlock {
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_2: Option<String>,
}

impl AwsBlock {
    fn is_empty(&self) -> bool {
        self.operation.is_none()
            && self.region.is_none()
            && self.bucket_name.is_none()
            && self.key.is_none()
            && self.request_id.is_none()
            && self.id_2.is_none()
    }
}

/// A subsegment being built from a span; turned into a document when the span closes.
#[derive(Debug)]
pub(crate) struct Subsegment {
    name: String,
    pub(crate) id: String,
    parent_id: String,
    pub(crate) ctx: Arc<TraceContext>,
    start_micros: u64,
    started: Instant,
    /// Explicit times (`xray.start_time` / `xray.end_time`, epoch seconds) for work that was
    /// timed elsewhere, e.g. pipeline stages reported as durations after the fact.
    start_override: Option<u64>,
    end_override: Option<u64>,
    namespace: Option<&'static str>,
    rpc_system_aws: bool,
    aws: AwsBlock,
    http_status: Option<u16>,
    http_method: Option<String>,
    http_url: Option<String>,
    error: bool,
    throttle: bool,
    fault: bool,
    otel_error: bool,
    exception_message: Option<String>,
    exception_type: Option<String>,
    annotations: Map<String, Value>,
    metadata: Map<String, Value>,
    /// The span's fields as recorded, for exporters that keep OpenTelemetry attributes (OTLP);
    /// X-Ray-only and `otel.*` fields are left out.
    pub(super) attributes: Vec<(&'static str, FieldValue)>,
}

impl Subsegment {
    pub(crate) fn new(name: &str, parent_id: String, ctx: Arc<TraceContext>) -> Self {
        Self {
            name: sanitize_name(name),
            id: new_id(),
            parent_id,
            ctx,
            start_micros: now_micros(),
            started: Instant::now(),
            start_override: None,
            end_override: None,
            namespace: None,
            rpc_system_aws: false,
            aws: AwsBlock::default(),
            http_status: None,
            http_method: None,
            http_url: None,
            error: false,
            throttle: false,
            fault: false,
            otel_error: false,
            exception_message: None,
            exception_type: None,
            annotations: Map::new(),
            metadata: Map::new(),
            attributes: Vec::new(),
        }
    }

    /// Applies one span field according to the module's field conventions.
    pub(crate) fn apply(&mut self, key: &'static str, value: FieldValue) {
        if !(key.starts_with("otel.") || key.starts_with("xray.") || key == "namespace") {
            match self.attributes.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value.clone(),
                None => self.attributes.push((key, value.clone())),
            }
        }
        match key {
            "namespace" | "xray.namespace" => {
                if let FieldValue::Str(s) = &value {
                    self.namespace = match s.as_str() {
                        "aws" => Some("aws"),
                        "remote" => Some("remote"),
                        _ => self.namespace,
                    };
                }
            }
            "rpc.system" => self.rpc_system_aws = value.into_string() == "aws-api",
            "aws.operation" | "rpc.method" => self.aws.operation = Some(value.into_string()),
            "aws.region" | "cloud.region" => self.aws.region = Some(value.into_string()),
            "aws.request_id" => self.aws.request_id = Some(value.into_string()),
            "aws.extended_request_id" => self.aws.id_2 = Some(value.into_string()),
            "aws.s3.bucket" => {
                let v = value.into_string();
                self.annotate("aws_s3_bucket", FieldValue::Str(v.clone()));
                self.aws.bucket_name = Some(v);
            }
            "aws.s3.key" => {
                let v = value.into_string();
                self.annotate("aws_s3_key", FieldValue::Str(v.clone()));
                self.aws.key = Some(v);
            }
            "http.response.status_code" => self.http_status = value.as_status(),
            "http.request.method" => self.http_method = Some(value.into_string()),
            "url.full" => self.http_url = Some(value.into_string()),
            "error" => self.error = value.as_bool(),
            "throttle" => self.throttle = value.as_bool(),
            "fault" => self.fault = value.as_bool(),
            "exception.message" => self.exception_message = Some(value.into_string()),
            "exception.type" => self.exception_type = Some(value.into_string()),
            "otel.name" => self.name = sanitize_name(&value.into_string()),
            "xray.start_time" => self.start_override = value.as_epoch_micros(),
            "xray.end_time" => self.end_override = value.as_epoch_micros(),
            "otel.status_code" => {
                self.otel_error = value.into_string().eq_ignore_ascii_case("error");
            }
            "otel.status_description" => {
                if self.exception_message.is_none() {
                    self.exception_message = Some(value.into_string());
                }
            }
            k if k.starts_with("otel.") => {}
            k => {
                if let Some(meta_key) = k.strip_prefix("metadata.") {
                    if let Some(v) = value.into_json() {
                        self.metadata.insert(meta_key.to_owned(), v);
                    }
                } else {
                    self.annotate(k, value);
                }
            }
        }
    }

    fn annotate(&mut self, key: &str, value: FieldValue) {
        let key = sanitize_annotation_key(key);
        if self.annotations.len() >= MAX_ANNOTATIONS && !self.annotations.contains_key(&key) {
            return;
        }
        if let Some(mut v) = value.into_json() {
            if let Value::String(s) = &mut v {
                truncate_utf8(s, MAX_ANNOTATION_STR);
            }
            self.annotations.insert(key, v);
        }
    }

    /// Serializes the finished subsegment (ending now) into `buf` as one datagram.
    /// Drops metadata, then annotations, then long strings to fit
    /// [`MAX_DATAGRAM_BYTES`]; returns `false` if it still does not fit.
    pub(crate) fn encode_datagram(&mut self, buf: &mut Vec<u8>) -> bool {
        let (start_micros, end_micros) = self.times();
        let exception_id =
            (self.exception_message.is_some() || self.exception_type.is_some()).then(new_id);
        for attempt in 0..4 {
            match attempt {
                1 => self.metadata.clear(),
                2 => self.annotations.clear(),
                3 => {
                    for s in [&mut self.exception_message, &mut self.http_url]
                        .into_iter()
                        .flatten()
                    {
                        truncate_utf8(s, MAX_ANNOTATION_STR);
                    }
                    if let Some(k) = &mut self.aws.key {
                        truncate_utf8(k, MAX_ANNOTATION_STR);
                    }
                }
                _ => {}
            }
            buf.clear();
            buf.extend_from_slice(DATAGRAM_HEADER);
            let doc = self.document(start_micros, end_micros, exception_id.as_deref());
            if serde_json::to_writer(&mut *buf, &doc).is_ok() && buf.len() <= MAX_DATAGRAM_BYTES {
                return true;
            }
        }
        buf.clear();
        false
    }

    /// Start and end (epoch µs): the explicit times when given, else creation and now.
    pub(super) fn times(&self) -> (u64, u64) {
        let elapsed = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let start = self.start_override.unwrap_or(self.start_micros);
        let end = self
            .end_override
            .unwrap_or_else(|| self.start_micros.saturating_add(elapsed))
            .max(start);
        (start, end)
    }

    /// The name (sanitised), the parent's id, the operation and whether it is an AWS call.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn parent_id(&self) -> &str {
        &self.parent_id
    }

    /// `Some(operation)` for calls to AWS (`namespace = "aws"` or `rpc.system = "aws-api"`).
    pub(super) fn aws_operation(&self) -> Option<&str> {
        let aws = self.namespace == Some("aws") || self.rpc_system_aws;
        aws.then(|| self.aws.operation.as_deref().unwrap_or(""))
    }

    /// Whether the span failed by the same rules as the X-Ray document (status code, flags,
    /// exception, `otel.status_code`), and the message to show.
    pub(super) fn failure(&self) -> Option<&str> {
        let failed = self.error
            || self.throttle
            || self.fault
            || self.otel_error
            || self.exception_message.is_some()
            || self.exception_type.is_some()
            || self.http_status.is_some_and(|s| s >= 400);
        failed.then(|| self.exception_message.as_deref().unwrap_or(""))
    }

    /// The exception's message and type, when one was recorded.
    pub(super) fn exception(&self) -> Option<(Option<&str>, Option<&str>)> {
        (self.exception_message.is_some() || self.exception_type.is_some()).then_some((
            self.exception_message.as_deref(),
            self.exception_type.as_deref(),
        ))
    }

    fn document<'a>(
        &'a self,
        start_micros: u64,
        end_micros: u64,
        exception_id: Option<&'a str>,
    ) -> Document<'a> {
        let (mut error, mut throttle, mut fault) = (self.error, self.throttle, self.fault);
        match self.http_status {
            Some(429) => throttle = true,
            Some(400..=499) => error = true,
            Some(500..=599) => fault = true,
            _ => {}
        }
        error |= throttle;
        if (exception_id.is_some() || self.otel_error) && !(error || fault) {
            fault = true;
        }
        let namespace = self.namespace.or(self.rpc_system_aws.then_some("aws"));
        let http =
            (self.http_status.is_some() || self.http_method.is_some() || self.http_url.is_some())
                .then(|| Http {
                    request: (self.http_method.is_some() || self.http_url.is_some()).then_some(
                        HttpRequest {
                            method: self.http_method.as_deref(),
                            url: self.http_url.as_deref(),
                        },
                    ),
                    response: self.http_status.map(|status| HttpResponse { status }),
                });
        Document {
            name: &self.name,
            id: &self.id,
            trace_id: self.ctx.root(),
            parent_id: &self.parent_id,
            start_time: micros_to_secs(start_micros),
            end_time: micros_to_secs(end_micros),
            kind: "subsegment",
            namespace,
            annotations: (!self.annotations.is_empty()).then_some(&self.annotations),
            metadata: (!self.metadata.is_empty()).then_some(Metadata {
                default: &self.metadata,
            }),
            aws: (!self.aws.is_empty()).then_some(&self.aws),
            http,
            error,
            throttle,
            fault,
            cause: exception_id.map(|id| Cause {
                exceptions: [Exception {
                    id,
                    message: self.exception_message.as_deref().unwrap_or("error"),
                    kind: self.exception_type.as_deref(),
                }],
            }),
        }
    }
}

/// Collects span fields into a [`Subsegment`].
pub(crate) struct SubsegmentVisitor<'a>(pub(crate) &'a mut Subsegment);

impl Visit for SubsegmentVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.apply(field.name(), FieldValue::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.apply(field.name(), FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.apply(field.name(), FieldValue::U64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.apply(field.name(), FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .apply(field.name(), FieldValue::Str(value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .apply(field.name(), FieldValue::Str(format!("{value:?}")));
    }
}

#[derive(Serialize)]
struct Document<'a> {
    name: &'a str,
    id: &'a str,
    trace_id: &'a str,
    parent_id: &'a str,
    start_time: f64,
    end_time: f64,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aws: Option<&'a AwsBlock>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<Http<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    error: bool,
    #[serde(skip_serializing_if = "is_false")]
    throttle: bool,
    #[serde(skip_serializing_if = "is_false")]
    fault: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<Cause<'a>>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    default: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct Http<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<HttpResponse>,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

#[derive(Serialize)]
struct HttpResponse {
    status: u16,
}

#[derive(Serialize)]
struct Cause<'a> {
    exceptions: [Exception<'a>; 1],
}

#[derive(Serialize)]
struct Exception<'a> {
    id: &'a str,
    message: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn micros_to_secs(micros: u64) -> f64 {
    // Exact below 2^53 µs (year 2255): integer seconds plus a 6-digit fraction.
    (micros / 1_000_000) as f64 + (micros % 1_000_000) as f64 / 1e6
}

/// X-Ray names: letters, digits, whitespace and `_ . : / % & # = + \ - @`, ≤ 200 chars.
fn sanitize_name(name: &str) -> String {
    let s: String = name
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() || "_.:/%&#=+\\-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.trim().is_empty() {
        "span".to_owned()
    } else {
        s
    }
}

/// Annotation keys: ASCII alphanumerics and `_` only (`aws.s3.key` → `aws_s3_key`).
fn sanitize_annotation_key(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn encode(sub: &mut Subsegment) -> Value {
        let mut buf = Vec::new();
        assert!(sub.encode_datagram(&mut buf));
        assert!(buf.starts_with(DATAGRAM_HEADER));
        serde_json::from_slice(&buf[DATAGRAM_HEADER.len()..]).unwrap()
    }

    #[test]
    fn maps_fields_and_flags() {
        let mut s = Subsegment::new("S3", "53995c3f42cd8ad8".into(), ctx());
        s.apply("namespace", FieldValue::Str("aws".into()));
        s.apply("aws.operation", FieldValue::Str("GetObject".into()));
        s.apply("http.response.status_code", FieldValue::U64(429));
        s.apply("format", FieldValue::Str("webp".into()));
        s.apply("width.px", FieldValue::I64(640));
        s.apply("ratio", FieldValue::F64(f64::NAN));
        s.apply("metadata.detail", FieldValue::Str("x".into()));
        s.apply("otel.kind", FieldValue::Str("client".into()));
        let v = encode(&mut s);
        assert_eq!(v["namespace"], "aws");
        assert_eq!(v["aws"]["operation"], "GetObject");
        assert_eq!(v["http"]["response"]["status"], 429);
        assert_eq!(
            (v["throttle"].clone(), v["error"].clone()),
            (true.into(), true.into())
        );
        assert!(v.get("fault").is_none());
        assert_eq!(v["annotations"]["format"], "webp");
        assert_eq!(v["annotations"]["width_px"], 640);
        assert!(v["annotations"].get("ratio").is_none());
        assert!(v["annotations"].get("otel_kind").is_none());
        assert_eq!(v["metadata"]["default"]["detail"], "x");
        let (start, end) = (
            v["start_time"].as_f64().unwrap(),
            v["end_time"].as_f64().unwrap(),
        );
        assert!(end >= start && start > 1.6e9);
    }

    #[test]
    fn explicit_start_and_end_times() {
        let mut s = Subsegment::new("decode", "53995c3f42cd8ad8".into(), ctx());
        s.apply("xray.start_time", FieldValue::F64(1_718_000_000.25));
        s.apply("xray.end_time", FieldValue::F64(1_718_000_000.5));
        let v = encode(&mut s);
        assert_eq!(v["start_time"], 1_718_000_000.25);
        assert_eq!(v["end_time"], 1_718_000_000.5);
        assert!(v.get("annotations").is_none());
        // An end before the start is clamped; only a start keeps the span's own end.
        let mut s = Subsegment::new("x", "53995c3f42cd8ad8".into(), ctx());
        s.apply("xray.start_time", FieldValue::F64(2e9));
        s.apply("xray.end_time", FieldValue::F64(1e9));
        let v = encode(&mut s);
        assert_eq!(v["end_time"], v["start_time"]);
    }

    #[test]
    fn exception_without_flags_is_a_fault() {
        let mut s = Subsegment::new("work", "53995c3f42cd8ad8".into(), ctx());
        s.apply("exception.message", FieldValue::Str("boom".into()));
        let v = encode(&mut s);
        assert_eq!(v["fault"], true);
        assert_eq!(v["cause"]["exceptions"][0]["message"], "boom");
        assert_eq!(
            v["cause"]["exceptions"][0]["id"].as_str().unwrap().len(),
            16
        );
    }

    #[test]
    fn oversize_drops_metadata_then_annotations() {
        let mut s = Subsegment::new("big", "53995c3f42cd8ad8".into(), ctx());
        s.apply("metadata.blob", FieldValue::Str("x".repeat(70_000)));
        s.apply("small", FieldValue::Bool(true));
        let v = encode(&mut s);
        assert!(v.get("metadata").is_none());
        assert_eq!(v["annotations"]["small"], true);
    }

    #[test]
    fn names_and_keys_are_sanitized() {
        assert_eq!(sanitize_name("a<b>c"), "a_b_c");
        assert_eq!(sanitize_name(""), "span");
        assert_eq!(sanitize_annotation_key("aws.s3.key"), "aws_s3_key");
        let mut s = "héllo".to_owned();
        truncate_utf8(&mut s, 2);
        assert_eq!(s, "h");
        assert_eq!(micros_to_secs(1_718_000_000_123_456), 1_718_000_000.123_456);
    }
}
