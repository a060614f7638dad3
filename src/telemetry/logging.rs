//! Log output for Lambda: level and format from Lambda's advanced logging controls
//! (`AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT`) or `RUST_LOG`, and flat JSON lines
//! that carry the fields of every enclosing span (so `requestId` and `xrayTraceId` are
//! on every line, however deeply nested), plus the X-Ray layer.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use super::xray::XrayLayer;
use super::xray::trace_header::root_of;
use crate::settings::{LogConfig, LogFormat};

/// Builds the full subscriber (registry + fmt layer filtered by [`LogFilter`] + the
/// X-Ray layer with its own filter) writing logs to `writer`. Used by `init_logging`
/// with stdout and by tests with a buffer; install it with `with_default` or
/// `set_global_default`.
pub fn build_subscriber<W>(
    config: &LogConfig,
    writer: W,
    xray: Option<XrayLayer>,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = || LogFilter::new(&config.filter);
    let (json, text) = match config.format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLines)
                    .with_ansi(false)
                    .with_writer(writer)
                    .with_filter(filter()),
            ),
            None,
        ),
        LogFormat::Text => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(config.ansi)
                    .with_target(true)
                    .with_writer(writer)
                    .with_filter(filter()),
            ),
        ),
    };
    let xray = xray.map(|layer| {
        let filter = layer.filter();
        layer.with_filter(filter)
    });
    tracing_subscriber::registry()
        .with(json)
        .with(text)
        .with(xray)
}

/// The log layer's filter: `EnvFilter` for events and fine spans, but spans at INFO and
/// above are always kept, so a `WARN` log level still shows the `requestId`/`xrayTraceId`
/// of the enclosing (INFO) invocation span on every line.
pub struct LogFilter {
    env: EnvFilter,
}

impl LogFilter {
    /// Parses `directives` (invalid ones are ignored; empty means `info`).
    pub fn new(directives: &str) -> Self {
        let env = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
        Self { env }
    }

    fn always(meta: &Metadata<'_>) -> bool {
        meta.is_span() && *meta.level() <= Level::INFO
    }
}

impl<S> Filter<S> for LogFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Self::always(meta) || Filter::<S>::enabled(&self.env, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::always(meta) {
            Interest::always()
        } else {
            Filter::<S>::callsite_enabled(&self.env, meta)
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        Filter::<S>::event_enabled(&self.env, event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.env).map(|l| l.max(LevelFilter::INFO))
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        Filter::<S>::on_new_span(&self.env, attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        Filter::<S>::on_record(&self.env, id, values, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        Filter::<S>::on_enter(&self.env, id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        Filter::<S>::on_exit(&self.env, id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        Filter::<S>::on_close(&self.env, id, ctx);
    }
}

/// Keys written first, in this order; event/span fields with these names are renamed
/// `field.<name>` so they cannot clobber them.
const RESERVED: [&str; 7] = [
    "timestamp",
    "level",
    "message",
    "requestId",
    "xrayTraceId",
    "target",
    "span",
];

/// Flat JSON event format: `{"timestamp","level","message","requestId","xrayTraceId",
/// "target","span", …fields of enclosing spans (outer to inner), …event fields}`.
/// `xrayTraceId` is shortened to its Root (`1-…-…`) when it holds a full trace header.
/// Needs `JsonFields` as the layer's field formatter.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        let mut span_name = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(formatted) = span.extensions().get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str(&formatted.fields)
                {
                    fields.extend(map);
                }
                span_name = Some(span.name());
            }
        }
        let mut visitor = JsonVisitor {
            message: None,
            fields: Map::new(),
        };
        event.record(&mut visitor);
        fields.extend(visitor.fields);

        let mut timestamp = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let request_id = fields.remove("requestId");
        let trace_id = fields.remove("xrayTraceId").map(|v| match &v {
            Value::String(s) => root_of(s).map_or(v.clone(), |r| Value::String(r.to_owned())),
            _ => v,
        });

        let mut line = JsonObject::new();
        line.entry("timestamp", &Value::String(timestamp));
        line.entry("level", &Value::String(meta.level().as_str().to_owned()));
        line.entry(
            "message",
            &Value::String(visitor.message.unwrap_or_default()),
        );
        if let Some(v) = &request_id {
            line.entry("requestId", v);
        }
        if let Some(v) = &trace_id {
            line.entry("xrayTraceId", v);
        }
        line.entry("target", &Value::String(meta.target().to_owned()));
        if let Some(name) = span_name {
            line.entry("span", &Value::String(name.to_owned()));
        }
        for (k, v) in &fields {
            if RESERVED.contains(&k.as_str()) {
                line.entry(&format!("field.{k}"), v);
            } else {
                line.entry(k, v);
            }
        }
        writer.write_str(&line.finish())?;
        writer.write_char('\n')
    }
}

/// Minimal streaming JSON object writer (keeps our key order).
struct JsonObject(String);

impl JsonObject {
    fn new() -> Self {
        Self(String::from("{"))
    }

    fn entry(&mut self, key: &str, value: &Value) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        // Serializing a str or Value into a String cannot fail.
        let key = serde_json::to_string(key).unwrap_or_else(|_| "\"?\"".to_owned());
        let value = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        self.0.push_str(&key);
        self.0.push(':');
        self.0.push_str(&value);
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

struct JsonVisitor {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing::{debug, error, info, info_span, warn};

    /// A `MakeWriter` capturing everything written into a shared buffer.
    #[derive(Clone, Default)]
    pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    const HEADER: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    fn config(format: LogFormat, filter: &str) -> LogConfig {
        LogConfig {
            format,
            filter: filter.into(),
            ansi: false,
        }
    }

    fn emit_nested() {
        let inv = info_span!(
            "Lambda runtime invoke",
            requestId = "req-42",
            xrayTraceId = HEADER
        );
        let _inv = inv.enter();
        info!("starting");
        let obj = info_span!(target: "renditions::xray", "object", aws.s3.key = "a/b.jpg");
        let _obj = obj.enter();
        let stage = tracing::debug_span!("decode", width = 10u32);
        let _stage = stage.enter();
        warn!(bytes = 12u64, "deep warning");
        debug!("debug detail");
        error!(level = "shadow", "with reserved field");
    }

    #[test]
    fn json_lines_carry_request_and_trace_id_in_nested_spans() {
        let out = Capture::default();
        let sub = build_subscriber(&config(LogFormat::Json, "info"), out.clone(), None);
        tracing::subscriber::with_default(sub, emit_nested);
        let lines: Vec<Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for l in &lines {
            assert_eq!(l["requestId"], "req-42");
            assert_eq!(l["xrayTraceId"], "1-5759e988-bd862e3fe1be46a994272793");
            assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
        }
        assert_eq!(lines[0]["message"], "starting");
        assert_eq!(lines[0]["level"], "INFO");
        let deep = &lines[1];
        assert_eq!(deep["level"], "WARN");
        assert_eq!(deep["message"], "deep warning");
        assert_eq!(deep["bytes"], 12);
        assert_eq!(deep["aws.s3.key"], "a/b.jpg");
        // The debug span is filtered out at info level.
        assert_eq!(deep["span"], "object");
        assert!(deep.get("width").is_none());
        assert_eq!(lines[2]["level"], "ERROR");
        assert_eq!(lines[2]["field.level"], "shadow");
    }

    #[test]
    fn warn_level_still_shows_request_id_and_debug_shows_fine_spans() {
        let out = Capture::default();
        let sub = build_subscriber(&config(LogFormat::Json, "warn"), out.clone(), None);
        tracing::subscriber::with_default(sub, emit_nested);
        let lines: Vec<Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l["requestId"] == "req-42"));

        let out = Capture::default();
        let sub = build_subscriber(&config(LogFormat::Json, "debug"), out.clone(), None);
        tracing::subscriber::with_default(sub, emit_nested);
        let text = out.text();
        let deep: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(
            (deep["span"].clone(), deep["width"].clone()),
            ("decode".into(), 10.into())
        );
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn text_lines_show_request_and_trace_id() {
        let out = Capture::default();
        let sub = build_subscriber(&config(LogFormat::Text, "info"), out.clone(), None);
        tracing::subscriber::with_default(sub, emit_nested);
        let text = out.text();
        let deep = text.lines().find(|l| l.contains("deep warning")).unwrap();
        assert!(deep.contains("req-42"), "{deep}");
        assert!(
            deep.contains("1-5759e988-bd862e3fe1be46a994272793"),
            "{deep}"
        );
        assert!(deep.contains("a/b.jpg"), "{deep}");
        assert!(!text.contains('\u{1b}'), "no ANSI escapes");
    }

    #[test]
    fn config_from_lambda_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let c = LogConfig::from_lookup(env(&[]));
        assert_eq!((c.format, c.filter.as_str()), (LogFormat::Text, "info"));
        let c = LogConfig::from_lookup(env(&[
            ("AWS_LAMBDA_LOG_FORMAT", "json"),
            ("AWS_LAMBDA_LOG_LEVEL", "FATAL"),
            ("RUST_LOG", "trace"),
        ]));
        assert_eq!((c.format, c.filter.as_str()), (LogFormat::Json, "error"));
        let c = LogConfig::from_lookup(env(&[
            ("AWS_LAMBDA_LOG_FORMAT", "Text"),
            ("RUST_LOG", "renditions=debug,warn"),
        ]));
        assert_eq!(
            (c.format, c.filter.as_str()),
            (LogFormat::Text, "renditions=debug,warn")
        );
        let c = LogConfig::from_lookup(env(&[("AWS_LAMBDA_LOG_LEVEL", "Debug")]));
        assert_eq!(c.filter, "debug");
        let c = LogConfig::from_lookup(env(&[("AWS_LAMBDA_LOG_LEVEL", "loud"), ("RUST_LOG", "")]));
        assert_eq!(c.filter, "info");
    }
}
