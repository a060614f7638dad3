//! A `tracing` layer that turns selected spans into X-Ray subsegments and sends each one
//! to the daemon when it closes, or (`TRACES=otlp`) into OpenTelemetry spans exported over
//! OTLP/HTTP when the invocation ends. AWS's X-Ray SDKs are in maintenance and there is no
//! maintained Rust one, so this is our own small replacement (see the module docs of
//! `telemetry` for the span/field conventions).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

mod document;
mod ids;
mod otlp;
mod sender;
mod stages;
pub(crate) mod trace_header;

use document::{Subsegment, SubsegmentVisitor};
pub use otlp::OtlpExporter;
pub use sender::UdpSender;
pub(crate) use stages::emit_stage_spans;
pub use trace_header::TraceContext;

/// Spans whose target equals this or starts with `renditions::xray::` become subsegments.
pub const DEFAULT_TARGET_PREFIX: &str = "renditions::xray";
/// A span field holding the full trace header (`Root=…;Parent=…;Sampled=…`); the span
/// (e.g. `lambda_runtime`'s "Lambda runtime invoke") then supplies the trace context for
/// subsegments below it, overriding the slot set by [`set_invocation`].
pub const TRACE_HEADER_FIELD: &str = "xrayTraceId";

struct Shared {
    slot: RwLock<Option<Arc<TraceContext>>>,
    exporter: Exporter,
    prefixes: Vec<String>,
}

/// Where finished subsegments go.
enum Exporter {
    /// One datagram per subsegment to the X-Ray daemon, as it closes.
    Xray(UdpSender),
    /// Buffered as OTLP spans until [`XrayHandle::flush`].
    Otlp(Arc<OtlpExporter>),
}

impl Shared {
    fn is_subsegment_target(&self, target: &str) -> bool {
        self.prefixes.iter().any(|p| {
            target
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
    }

    fn wants(&self, meta: &Metadata<'_>) -> bool {
        meta.is_span()
            && (self.is_subsegment_target(meta.target())
                || meta.fields().field(TRACE_HEADER_FIELD).is_some())
    }

    fn current(&self) -> Option<Arc<TraceContext>> {
        self.slot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn emit(&self, sub: &mut Subsegment) {
        let sender = match &self.exporter {
            Exporter::Xray(sender) => sender,
            Exporter::Otlp(otlp) => return otlp.push(sub),
        };
        thread_local! {
            static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
        }
        let encoded = BUF.try_with(|buf| match buf.try_borrow_mut() {
            Ok(mut buf) => encode_and_send(sender, sub, &mut buf),
            Err(_) => encode_and_send(sender, sub, &mut Vec::new()),
        });
        if encoded.is_err() {
            // Thread-local storage is being torn down: fall back to a fresh buffer.
            encode_and_send(sender, sub, &mut Vec::new());
        }
    }
}

fn encode_and_send(sender: &UdpSender, sub: &mut Subsegment, buf: &mut Vec<u8>) {
    if sub.encode_datagram(buf) {
        sender.send(buf);
    } else {
        sender.record_drop("subsegment document larger than 64 KB");
    }
}

/// The X-Ray layer. Cheap to clone (shared state); get a [`XrayHandle`] to set the
/// per-invocation trace context.
#[derive(Clone)]
pub struct XrayLayer {
    shared: Arc<Shared>,
}

/// Controls a [`XrayLayer`] from the handler: per-invocation context and counters.
#[derive(Clone)]
pub struct XrayHandle {
    shared: Arc<Shared>,
}

/// Per-layer filter for [`XrayLayer`]: only spans it cares about, at every level, so
/// the log level never hides subsegments (see `logging::build_subscriber`).
#[derive(Clone)]
pub struct XrayFilter {
    shared: Arc<Shared>,
}

/// Extension on spans whose target makes them subsegments.
enum XraySpan {
    Traced(Box<Subsegment>),
    /// Not sampled / no context: descendants are not traced either.
    Untraced,
}

/// Extension on spans carrying [`TRACE_HEADER_FIELD`]; `None` if it did not parse.
struct InvocationHeader(Option<Arc<TraceContext>>);

impl XrayLayer {
    /// Layer sending to `sender`, turning spans under [`DEFAULT_TARGET_PREFIX`] into
    /// subsegments.
    pub fn new(sender: UdpSender) -> Self {
        Self::with_target_prefixes(sender, [DEFAULT_TARGET_PREFIX])
    }

    /// Layer whose subsegment spans are those with a target equal to, or a `::` child
    /// of, one of `prefixes`.
    pub fn with_target_prefixes<I, P>(sender: UdpSender, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        Self::with_exporter(Exporter::Xray(sender), prefixes)
    }

    /// Layer exporting the same spans over OTLP (see [`OtlpExporter`]); flush with
    /// [`XrayHandle::flush`] before each invocation returns.
    pub fn otlp(exporter: OtlpExporter) -> Self {
        Self::with_exporter(Exporter::Otlp(Arc::new(exporter)), [DEFAULT_TARGET_PREFIX])
    }

    fn with_exporter<I, P>(exporter: Exporter, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        Self {
            shared: Arc::new(Shared {
                slot: RwLock::new(None),
                exporter,
                prefixes: prefixes.into_iter().map(Into::into).collect(),
            }),
        }
    }

    /// Layer sending to `AWS_XRAY_DAEMON_ADDRESS` (see [`UdpSender::from_env`]).
    pub fn from_env() -> Self {
        Self::new(UdpSender::from_env())
    }

    /// A handle sharing this layer's state.
    pub fn handle(&self) -> XrayHandle {
        XrayHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The per-layer filter to pair with this layer (`layer.with_filter(filter)`).
    pub fn filter(&self) -> XrayFilter {
        XrayFilter {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whether spans with this target become subsegments.
    pub fn is_subsegment_target(&self, target: &str) -> bool {
        self.shared.is_subsegment_target(target)
    }

    /// Parent id and context for a new subsegment span: the nearest subsegment
    /// ancestor, else the nearest span carrying a trace header, else the slot.
    fn resolve<S>(&self, span: &SpanRef<'_, S>) -> Option<(String, Arc<TraceContext>)>
    where
        S: for<'a> LookupSpan<'a>,
    {
        // Starts at the span itself: it may carry the header field too.
        for ancestor in span.scope() {
            let ext = ancestor.extensions();
            match ext.get::<XraySpan>() {
                Some(XraySpan::Traced(sub)) => {
                    return Some((sub.id.clone(), Arc::clone(&sub.ctx)));
                }
                Some(XraySpan::Untraced) => return None,
                None => {}
            }
            if let Some(InvocationHeader(Some(ctx))) = ext.get::<InvocationHeader>() {
                return Some((ctx.parent().to_owned(), Arc::clone(ctx)));
            }
        }
        self.shared
            .current()
            .map(|ctx| (ctx.parent().to_owned(), ctx))
    }
}

impl XrayHandle {
    /// Sets (or clears, with `None`) the trace context for spans created from now on.
    /// Call at the start of each invocation with the parsed `Context.xray_trace_id`. With
    /// OTLP, an invocation without one gets a trace of its own (OpenTelemetry's default
    /// parent-based sampler does the same); an unsampled header still means nothing is sent.
    pub fn set_invocation(&self, ctx: Option<TraceContext>) {
        let ctx = match (&self.shared.exporter, ctx) {
            (Exporter::Otlp(_), None) => Some(TraceContext::new_root()),
            (_, ctx) => ctx,
        };
        *self
            .shared
            .slot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = ctx.map(Arc::new);
    }

    /// The OTLP exporter, when spans go to one.
    pub fn otlp(&self) -> Option<&OtlpExporter> {
        match &self.shared.exporter {
            Exporter::Otlp(otlp) => Some(otlp),
            Exporter::Xray(_) => None,
        }
    }

    /// Exports the spans buffered for OTLP (no-op for X-Ray, whose documents leave as each
    /// span closes), within `deadline`.
    #[cfg(feature = "lambda")]
    pub async fn flush(&self, deadline: Option<std::time::Instant>) {
        if let Some(otlp) = self.otlp() {
            otlp.flush(deadline).await;
        }
    }

    /// The context currently in the slot.
    pub fn current(&self) -> Option<TraceContext> {
        self.shared.current().map(|c| (*c).clone())
    }

    /// Documents (or OTLP spans) dropped: daemon or collector unreachable, socket busy,
    /// oversize, buffer full.
    pub fn dropped(&self) -> u64 {
        match &self.shared.exporter {
            Exporter::Xray(sender) => sender.dropped(),
            Exporter::Otlp(otlp) => otlp.dropped(),
        }
    }

    /// Datagrams handed to the OS (or OTLP spans the collector accepted).
    pub fn sent(&self) -> u64 {
        match &self.shared.exporter {
            Exporter::Xray(sender) => sender.sent(),
            Exporter::Otlp(otlp) => otlp.exported(),
        }
    }
}

impl<S> Filter<S> for XrayFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        self.shared.wants(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.shared.wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}

struct HeaderVisitor(Option<String>);

impl Visit for HeaderVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACE_HEADER_FIELD {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == TRACE_HEADER_FIELD {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

fn parse_header(raw: Option<String>) -> Option<Arc<TraceContext>> {
    raw.and_then(|h| TraceContext::parse(&h)).map(Arc::new)
}

impl<S> Layer<S> for XrayLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        let Some(span) = ctx.span(id) else { return };
        if meta.fields().field(TRACE_HEADER_FIELD).is_some() {
            let mut visitor = HeaderVisitor(None);
            attrs.record(&mut visitor);
            span.extensions_mut()
                .insert(InvocationHeader(parse_header(visitor.0)));
        }
        if !self.shared.is_subsegment_target(meta.target()) {
            return;
        }
        let state = match self.resolve(&span) {
            Some((parent_id, trace)) if trace.sampled() => {
                let mut sub = Subsegment::new(meta.name(), parent_id, trace);
                attrs.record(&mut SubsegmentVisitor(&mut sub));
                XraySpan::Traced(Box::new(sub))
            }
            _ => XraySpan::Untraced,
        };
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(XraySpan::Traced(sub)) = ext.get_mut::<XraySpan>() {
            values.record(&mut SubsegmentVisitor(sub));
        }
        if let Some(header) = ext.get_mut::<InvocationHeader>() {
            let mut visitor = HeaderVisitor(None);
            values.record(&mut visitor);
            if visitor.0.is_some() {
                header.0 = parse_header(visitor.0);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let state = span.extensions_mut().remove::<XraySpan>();
        if let Some(XraySpan::Traced(mut sub)) = state {
            self.shared.emit(&mut sub);
        }
    }
}

static GLOBAL: OnceLock<XrayHandle> = OnceLock::new();

/// Registers the handle used by the free functions below (done by `init_logging`).
/// Returns `false` if one was already registered.
pub fn install_global(handle: XrayHandle) -> bool {
    GLOBAL.set(handle).is_ok()
}

/// Sets the trace context of the current invocation on the globally installed layer
/// (no-op before `init_logging`). Pass `None` for "no tracing".
pub fn set_invocation(ctx: Option<TraceContext>) {
    if let Some(handle) = GLOBAL.get() {
        handle.set_invocation(ctx);
    }
}

/// Exports the spans the globally installed layer buffered for OTLP (see
/// [`XrayHandle::flush`]); call before each invocation returns.
#[cfg(feature = "lambda")]
pub async fn flush(deadline: Option<std::time::Instant>) {
    if let Some(handle) = GLOBAL.get() {
        handle.flush(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashSet;
    use std::net::UdpSocket;
    use std::time::Duration;
    use tracing::field::Empty;
    use tracing::{info_span, trace_span};
    use tracing_subscriber::prelude::*;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
    const PARENT: &str = "53995c3f42cd8ad8";
    const HEADER: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1|68fd508a:5";

    fn receiver() -> UdpSocket {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        rx
    }

    /// Reads datagrams until the (short) read timeout; returns parsed documents.
    fn drain(rx: &UdpSocket) -> Vec<Value> {
        let mut docs = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = rx.recv(&mut buf) {
            let (head, body) = buf[..n].split_at(super::document::DATAGRAM_HEADER.len());
            assert_eq!(head, b"{\"format\": \"json\", \"version\": 1}\n");
            docs.push(serde_json::from_slice(body).unwrap());
            assert!(docs.len() < 1000);
        }
        docs
    }

    fn by_name<'a>(docs: &'a [Value], name: &str) -> Vec<&'a Value> {
        docs.iter().filter(|d| d["name"] == name).collect()
    }

    fn is_hex16(v: &Value) -> bool {
        v.as_str().is_some_and(|s| {
            s.len() == 16 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        })
    }

    fn emit_invocation() {
        let inv = info_span!("invocation", requestId = "req-1");
        let _inv = inv.enter();
        let obj = info_span!(
            target: "renditions::xray",
            "object",
            aws.s3.bucket = "in-bucket",
            aws.s3.key = "photos/cat.jpg",
            format = Empty
        );
        let _obj = obj.enter();
        obj.record("format", "jpeg");
        {
            let s3 = info_span!(
                target: "renditions::xray",
                "S3",
                namespace = "aws",
                aws.operation = "GetObject",
                aws.region = "eu-west-1",
                aws.s3.bucket = "in-bucket",
                aws.s3.key = "photos/cat.jpg",
                aws.request_id = Empty,
                http.response.status_code = Empty
            );
            let _s3 = s3.enter();
            s3.record("aws.request_id", "REQ123");
            s3.record("http.response.status_code", 200u16);
        }
        {
            let put = info_span!(
                target: "renditions::xray",
                "S3",
                namespace = "aws",
                aws.operation = "PutObject",
                aws.region = "eu-west-1",
                aws.s3.bucket = "out-bucket",
                aws.s3.key = "photos/cat-640.webp",
                http.response.status_code = Empty,
                fault = Empty,
                exception.message = Empty
            );
            let _put = put.enter();
            put.record("http.response.status_code", 503u16);
            put.record("fault", true);
            put.record("exception.message", "SlowDown: reduce request rate");
        }
        {
            // Low-level spans still become subsegments regardless of log level.
            let resize = trace_span!(target: "renditions::xray::stage", "resize", width = 640u32);
            let _r = resize.enter();
            let kernel = info_span!(target: "renditions::xray", "kernel");
            let _k = kernel.enter();
            let _other = info_span!(target: "renditions::xrayish", "not_a_subsegment").entered();
        }
    }

    fn check_invocation_docs(docs: &[Value], parent: &str) {
        assert_eq!(docs.len(), 5, "{docs:#?}");
        let ids: HashSet<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 5);
        for d in docs {
            for key in [
                "name",
                "id",
                "trace_id",
                "parent_id",
                "start_time",
                "end_time",
            ] {
                assert!(d.get(key).is_some(), "{key} missing in {d}");
            }
            assert_eq!(d["type"], "subsegment");
            assert!(is_hex16(&d["id"]) && is_hex16(&d["parent_id"]), "{d}");
            assert_eq!(d["trace_id"], ROOT);
            let p = d["parent_id"].as_str().unwrap();
            assert!(p == parent || ids.contains(p), "{d}");
            assert!(d["end_time"].as_f64().unwrap() >= d["start_time"].as_f64().unwrap());
        }
        let object = by_name(docs, "object")[0];
        assert_eq!(object["parent_id"], parent);
        assert_eq!(object["annotations"]["format"], "jpeg");
        assert_eq!(object["annotations"]["aws_s3_key"], "photos/cat.jpg");
        assert_eq!(object["aws"]["bucket_name"], "in-bucket");
        assert!(object.get("namespace").is_none());

        let s3 = by_name(docs, "S3");
        let get = s3
            .iter()
            .find(|d| d["aws"]["operation"] == "GetObject")
            .unwrap();
        assert_eq!(get["namespace"], "aws");
        assert_eq!(get["parent_id"], object["id"]);
        assert_eq!(get["aws"]["region"], "eu-west-1");
        assert_eq!(get["aws"]["bucket_name"], "in-bucket");
        assert_eq!(get["aws"]["key"], "photos/cat.jpg");
        assert_eq!(get["aws"]["request_id"], "REQ123");
        assert_eq!(get["http"]["response"]["status"], 200);
        assert!(
            get.get("fault").is_none() && get.get("error").is_none() && get.get("cause").is_none()
        );

        let put = s3
            .iter()
            .find(|d| d["aws"]["operation"] == "PutObject")
            .unwrap();
        assert_eq!(put["fault"], true);
        assert_eq!(put["http"]["response"]["status"], 503);
        let exc = &put["cause"]["exceptions"][0];
        assert_eq!(exc["message"], "SlowDown: reduce request rate");
        assert!(is_hex16(&exc["id"]));

        let resize = by_name(docs, "resize")[0];
        assert_eq!(resize["parent_id"], object["id"]);
        assert_eq!(resize["annotations"]["width"], 640);
        let kernel = by_name(docs, "kernel")[0];
        assert_eq!(kernel["parent_id"], resize["id"]);
        // Children end before their parents.
        assert!(kernel["end_time"].as_f64() <= resize["end_time"].as_f64());
    }

    #[test]
    fn spans_become_subsegment_datagrams() {
        let rx = receiver();
        let layer = XrayLayer::new(UdpSender::new(rx.local_addr().unwrap()));
        let handle = layer.handle();
        handle.set_invocation(TraceContext::parse(HEADER));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, emit_invocation);
        check_invocation_docs(&drain(&rx), PARENT);
        assert_eq!((handle.sent(), handle.dropped()), (5, 0));
    }

    #[test]
    fn filtered_layer_in_full_subscriber_with_warn_log_level() {
        let rx = receiver();
        let layer = XrayLayer::new(UdpSender::new(rx.local_addr().unwrap()));
        layer.handle().set_invocation(TraceContext::parse(HEADER));
        let config = crate::telemetry::LogConfig {
            format: crate::telemetry::LogFormat::Json,
            filter: "warn".into(),
            ansi: false,
        };
        let subscriber = crate::telemetry::build_subscriber(&config, std::io::sink, Some(layer));
        tracing::subscriber::with_default(subscriber, emit_invocation);
        check_invocation_docs(&drain(&rx), PARENT);
    }

    #[test]
    fn trace_header_span_field_overrides_slot() {
        let rx = receiver();
        let layer = XrayLayer::new(UdpSender::new(rx.local_addr().unwrap()));
        let other_parent = "0123456789abcdef";
        let subscriber =
            tracing_subscriber::registry().with(layer.clone().with_filter(layer.filter()));
        tracing::subscriber::with_default(subscriber, || {
            // No slot set: context comes from the runtime-style span.
            let header = format!("Root={ROOT};Parent={other_parent};Sampled=1");
            let inv = info_span!("Lambda runtime invoke", requestId = "r", xrayTraceId = %header);
            let _g = inv.enter();
            let _s = info_span!(target: "renditions::xray", "work").entered();
        });
        let docs = drain(&rx);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["parent_id"], other_parent);
        assert_eq!(docs[0]["trace_id"], ROOT);

        // A not-sampled header on the span wins over a sampled slot.
        layer.handle().set_invocation(TraceContext::parse(HEADER));
        let subscriber =
            tracing_subscriber::registry().with(layer.clone().with_filter(layer.filter()));
        tracing::subscriber::with_default(subscriber, || {
            let header = format!("Root={ROOT};Parent={other_parent};Sampled=0");
            let inv = info_span!("invocation", xrayTraceId = %header);
            let _g = inv.enter();
            let _s = info_span!(target: "renditions::xray", "work").entered();
        });
        assert!(drain(&rx).is_empty());
    }

    #[test]
    fn unsampled_or_missing_context_sends_nothing() {
        let rx = receiver();
        let layer = XrayLayer::new(UdpSender::new(rx.local_addr().unwrap()));
        let handle = layer.handle();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            emit_invocation(); // no context at all
            handle.set_invocation(TraceContext::parse(&format!(
                "Root={ROOT};Parent={PARENT};Sampled=0"
            )));
            emit_invocation();
            handle.set_invocation(TraceContext::parse(&format!("Root={ROOT};Parent={PARENT}")));
            emit_invocation();
            handle.set_invocation(TraceContext::parse("Root=bad;Parent=bad;Sampled=1"));
            emit_invocation();
        });
        assert!(drain(&rx).is_empty());
        assert_eq!((handle.sent(), handle.dropped()), (0, 0));
    }

    #[test]
    fn dead_port_counts_drops_and_warns_once() {
        let dead = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let layer = XrayLayer::new(UdpSender::new(dead));
        let handle = layer.handle();
        handle.set_invocation(TraceContext::parse(HEADER));
        let logs = crate::telemetry::logging::tests::Capture::default();
        let config = crate::telemetry::LogConfig {
            format: crate::telemetry::LogFormat::Json,
            filter: "info".into(),
            ansi: false,
        };
        let subscriber = crate::telemetry::build_subscriber(&config, logs.clone(), Some(layer));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                emit_invocation();
            }
        });
        assert!(handle.dropped() >= 1, "dropped {}", handle.dropped());
        assert_eq!(handle.sent() + handle.dropped(), 15);
        let text = logs.text();
        assert_eq!(text.matches("X-Ray document dropped").count(), 1, "{text}");
    }
}
