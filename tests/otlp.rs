//! `TRACES=otlp` end to end: the real `renditions-lambda` binary, driven through a Runtime API
//! on loopback, exports its spans to an OTLP/HTTP receiver on 127.0.0.1 before it answers;
//! the spans hang under the invocation's trace, with the Lambda trace id.

#![cfg(feature = "lambda")]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::*;
use tokio::net::TcpListener;

const SRC: &str = "uploads";
const DEST: &str = "renditions";
const ROOT: &str = "1-6751b2c4-0123456789abcdef01234567";
const ROOT_HEX: &str = "6751b2c40123456789abcdef01234567";
const PARENT: &str = "53995c3f42cd8ad8";

/// One export request as received.
#[derive(Clone, Debug)]
struct Export {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// An OTLP/HTTP receiver on 127.0.0.1 that records each request and answers `status`.
#[derive(Clone)]
struct Collector {
    addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Export>>>,
}

impl Collector {
    async fn start(status: StatusCode) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let collector = Collector {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
        };
        let received = Arc::clone(&collector.received);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let received = Arc::clone(&received);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let received = Arc::clone(&received);
                        async move {
                            let path = req.uri().path().to_owned();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.to_string(), v.to_str().unwrap_or_default().to_owned())
                                })
                                .collect();
                            let bytes = req.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&bytes).expect("a JSON body");
                            received.lock().unwrap().push(Export {
                                path,
                                headers,
                                body,
                            });
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                            *resp.status_mut() = status;
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        collector
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn take(&self) -> Vec<Export> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

/// The spans of an export, each with its attributes as a map of plain JSON values.
fn spans_of(export: &Export) -> Vec<(Value, HashMap<String, Value>)> {
    let mut out = Vec::new();
    for rs in export.body["resourceSpans"].as_array().unwrap() {
        for ss in rs["scopeSpans"].as_array().unwrap() {
            for span in ss["spans"].as_array().unwrap() {
                let attrs = span["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        let v = a["value"].as_object().unwrap().values().next().unwrap();
                        (a["key"].as_str().unwrap().to_owned(), v.clone())
                    })
                    .collect();
                out.push((span.clone(), attrs));
            }
        }
    }
    out
}

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_before_the_answer() {
    let s3 = s3_with_buckets("otlp", &[SRC, DEST]).await;
    put(&s3, SRC, "traced.jpg", jpeg(320, 240)).await;
    let collector = Collector::start(StatusCode::OK).await;
    let api = RuntimeApi::start().await;
    let endpoint = collector.endpoint();
    let _f = Function::start(
        &api,
        Some(&s3),
        &[
            ("RENDITIONS", "large:200,thumb:50"),
            ("TRACES", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cr%3Dt"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            // Set by Lambda when active tracing is on: must not receive anything now.
            ("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:9"),
        ],
    );
    let event = s3_event(SRC, &["traced.jpg", "missing.jpg"]);

    // Sampled: every span of the invocation arrives in one request before the answer.
    let header = format!("Root={ROOT};Parent={PARENT};Sampled=1");
    let answer = api.invoke(&event, Some(&header)).await.response();
    assert_eq!(answer["rendered"], 1, "{answer}");
    let exports = collector.take();
    assert_eq!(exports.len(), 1, "one request per invocation: {exports:#?}");
    let export = &exports[0];
    assert_eq!(export.path, "/v1/traces");
    assert_eq!(export.headers["content-type"], "application/json");
    assert_eq!(export.headers["x-api-key"], "s3cr=t");
    assert!(export.headers["user-agent"].starts_with("renditions/"));
    let resource: HashMap<&str, &Value> = export.body["resourceSpans"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap(), &a["value"]["stringValue"]))
        .collect();
    assert_eq!(resource["service.name"], "renditions-test");
    assert_eq!(resource["faas.name"], "renditions-test");
    assert_eq!(resource["cloud.platform"], "aws_lambda");
    assert_eq!(resource["cloud.region"], "us-east-1");
    assert_eq!(resource["deployment.environment"], "test");

    let spans = spans_of(export);
    let ids: HashSet<&str> = spans
        .iter()
        .map(|(s, _)| s["spanId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), spans.len(), "span ids are unique");
    for (span, _) in &spans {
        assert_eq!(span["traceId"], ROOT_HEX, "{span}");
        assert!(is_hex(&span["spanId"], 16), "{span}");
        let parent = span["parentSpanId"].as_str().unwrap();
        assert!(parent == PARENT || ids.contains(parent), "{span}");
        let time = |k: &str| span[k].as_str().unwrap().parse::<u128>().unwrap();
        assert!(time("endTimeUnixNano") >= time("startTimeUnixNano"));
    }
    let named = |n: &str| {
        spans
            .iter()
            .filter(|(s, _)| s["name"] == n)
            .collect::<Vec<_>>()
    };
    let objects = named("object");
    assert_eq!(objects.len(), 2);
    let (good, good_attrs) = objects
        .iter()
        .find(|(_, a)| a["aws.s3.key"] == "traced.jpg")
        .unwrap();
    assert_eq!(good["parentSpanId"], PARENT);
    assert_eq!(good["kind"], 1);
    assert_eq!(good_attrs["format"], "jpeg");
    assert_eq!(good_attrs["width"], "320");
    assert!(good.get("status").is_none(), "{good}");
    let (missing, _) = objects
        .iter()
        .find(|(_, a)| a["aws.s3.key"] == "missing.jpg")
        .unwrap();
    assert_eq!(missing["status"]["code"], 2, "{missing}");
    for stage in ["download", "decode", "colour", "resize", "encode", "upload"] {
        assert!(
            named(stage)
                .iter()
                .any(|(s, _)| s["parentSpanId"] == good["spanId"]),
            "{stage} under the object"
        );
    }
    let s3_calls = named("S3");
    let gets: Vec<_> = s3_calls
        .iter()
        .filter(|(_, a)| a["rpc.method"] == "GetObject")
        .collect();
    let puts = s3_calls
        .iter()
        .filter(|(_, a)| a["rpc.method"] == "PutObject")
        .count();
    assert_eq!(
        (gets.len(), puts),
        (2, 4),
        "2 gets; 2 renditions + 1 manifest + 1 report"
    );
    for (span, attrs) in &s3_calls {
        assert_eq!(span["kind"], 3, "a client span: {span}");
        assert_eq!(attrs["rpc.system"], "aws-api");
        assert_eq!(attrs["rpc.service"], "S3");
    }
    let (failed_get, failed_attrs) = gets
        .iter()
        .find(|(_, a)| a["aws.s3.key"] == "missing.jpg")
        .unwrap();
    assert_eq!(failed_attrs["http.response.status_code"], "404");
    assert_eq!(failed_get["status"]["code"], 2);
    assert!(
        failed_get["status"]["message"]
            .as_str()
            .unwrap()
            .contains("NoSuchKey"),
        "{failed_get}"
    );

    // Not sampled: nothing is exported.
    let unsampled = format!("Root={ROOT};Parent={PARENT};Sampled=0");
    api.invoke(&event, Some(&unsampled)).await.response();
    assert!(collector.take().is_empty());

    // No trace header (active tracing off): a trace of our own, in X-Ray's id format.
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    api.invoke(&s3_event(SRC, &["traced.jpg"]), None)
        .await
        .response();
    let exports = collector.take();
    assert_eq!(exports.len(), 1);
    let spans = spans_of(&exports[0]);
    let trace = spans[0].0["traceId"].as_str().unwrap().to_owned();
    assert!(is_hex(&spans[0].0["traceId"], 32));
    assert_ne!(trace, ROOT_HEX);
    let epoch = u64::from_str_radix(&trace[..8], 16).unwrap();
    assert!(epoch >= before && epoch <= before + 60, "{trace}");
    assert!(spans.iter().all(|(s, _)| s["traceId"] == trace.as_str()));
    let (object, _) = spans.iter().find(|(s, _)| s["name"] == "object").unwrap();
    assert!(
        object.get("parentSpanId").is_none(),
        "a root span: {object}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_missing_collector_never_fails_the_invocation() {
    let s3 = s3_with_buckets("otlp_failing", &[SRC, DEST]).await;
    put(&s3, SRC, "a.jpg", jpeg(100, 100)).await;
    let refusing = Collector::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let header = format!("Root={ROOT};Parent={PARENT};Sampled=1");
    for endpoint in [refusing.endpoint(), dead] {
        let api = RuntimeApi::start().await;
        let f = Function::start(
            &api,
            Some(&s3),
            &[
                ("RENDITIONS", "s:20"),
                ("TRACES", "otlp"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
            ],
        );
        for _ in 0..2 {
            let answer = api
                .invoke(&s3_event(SRC, &["a.jpg"]), Some(&header))
                .await
                .response();
            assert_eq!(answer["rendered"], 1, "{endpoint}: {answer}");
        }
        let warnings: Vec<Value> = f
            .json_lines()
            .into_iter()
            .filter(|l| l["message"] == "OTLP spans dropped (later drops are only counted)")
            .collect();
        assert_eq!(warnings.len(), 1, "{endpoint}: warned once: {warnings:?}");
        assert_eq!(warnings[0]["level"], "WARN");
    }
    assert_eq!(refusing.take().len(), 2, "each invocation tried once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_trace_settings_fail_the_init_naming_the_variable() {
    for (var, value) in [
        ("TRACES", "zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example"),
    ] {
        let api = RuntimeApi::start().await;
        let mut vars = vec![(var, value)];
        if var != "TRACES" {
            vars.push(("TRACES", "otlp"));
        }
        let mut f = Function::start(&api, None, &vars);
        let (kind, body) = api
            .init_error(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{var}={value}: no init error"));
        assert_eq!(kind, "Runtime.InitError");
        let message = body["errorMessage"].as_str().unwrap();
        assert!(message.starts_with(var), "{var}={value}: {message}");
        assert!(f.wait_exit(Duration::from_secs(10)).is_some());
    }
}
