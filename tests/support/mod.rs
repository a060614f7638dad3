//! Test harness for the end-to-end tests: a Lambda Runtime API (2018-06-01) served on
//! loopback, the real `renditions-lambda` binary run against it with a guard that kills it
//! by PID, the embedded S3 server, and builders for S3/SQS/EventBridge payloads.
//! Every wait is bounded.

#![allow(dead_code)]

pub mod fault_proxy;
pub mod local_s3;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use local_s3::LocalS3;
use renditions::event::keys::encode_key;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `POST …/response` body.
    Response(Value),
    /// `POST …/error` body (`errorType`, `errorMessage`).
    Error(Value),
}

impl Answer {
    pub fn response(self) -> Value {
        match self {
            Answer::Response(v) => v,
            Answer::Error(e) => panic!("expected a response, got an error: {e}"),
        }
    }
    pub fn error(self) -> Value {
        match self {
            Answer::Error(e) => e,
            Answer::Response(v) => panic!("expected an error, got a response: {v}"),
        }
    }
}

struct Pending {
    id: String,
    body: String,
    trace: Option<String>,
    deadline_ms: u64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    answers: HashMap<String, Answer>,
    init_errors: Vec<(String, Value)>,
}

/// A Lambda Runtime API on 127.0.0.1.
#[derive(Clone)]
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    next_id: Arc<AtomicU64>,
}

impl RuntimeApi {
    /// Serves on a free port (within the current Tokio runtime).
    pub async fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = RuntimeApi {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            changed: Arc::new(Notify::new()),
            next_id: Arc::new(AtomicU64::new(1)),
        };
        let server = api.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let api = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, std::convert::Infallible>(api.serve(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        api
    }

    /// `127.0.0.1:PORT`, for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    async fn serve(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let error_type = req
            .headers()
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let json_body = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
        let reply = |status: StatusCode, body: &str| {
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap()
        };
        match (method.as_str(), path.as_str()) {
            ("GET", "/2018-06-01/runtime/invocation/next") => {
                let pending = loop {
                    let notified = self.changed.notified();
                    if let Some(p) = self.state.lock().unwrap().queue.pop_front() {
                        break p;
                    }
                    notified.await;
                };
                let mut resp = Response::builder()
                    .status(StatusCode::OK)
                    .header("Lambda-Runtime-Aws-Request-Id", &pending.id)
                    .header(
                        "Lambda-Runtime-Deadline-Ms",
                        pending.deadline_ms.to_string(),
                    )
                    .header(
                        "Lambda-Runtime-Invoked-Function-Arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:renditions-test",
                    )
                    .header("Content-Type", "application/json");
                if let Some(t) = &pending.trace {
                    resp = resp.header("Lambda-Runtime-Trace-Id", t);
                }
                resp.body(Full::new(Bytes::from(pending.body))).unwrap()
            }
            ("POST", "/2018-06-01/runtime/init/error") => {
                self.state
                    .lock()
                    .unwrap()
                    .init_errors
                    .push((error_type, json_body()));
                self.changed.notify_waiters();
                reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
            }
            ("POST", p) if p.starts_with("/2018-06-01/runtime/invocation/") => {
                let rest = &p["/2018-06-01/runtime/invocation/".len()..];
                let answer = match rest.rsplit_once('/') {
                    Some((id, "response")) => Some((id.to_owned(), Answer::Response(json_body()))),
                    Some((id, "error")) => Some((id.to_owned(), Answer::Error(json_body()))),
                    _ => None,
                };
                match answer {
                    Some((id, answer)) => {
                        self.state.lock().unwrap().answers.insert(id, answer);
                        self.changed.notify_waiters();
                        reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
                    }
                    None => reply(StatusCode::NOT_FOUND, "{}"),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, "{}"),
        }
    }

    /// Queues an invocation and waits (bounded) for its answer.
    pub async fn invoke(&self, event: &Value, trace: Option<&str>) -> Answer {
        self.invoke_with_deadline(event, trace, Duration::from_secs(60))
            .await
    }

    /// Like [`RuntimeApi::invoke`] with the deadline `budget` from now.
    pub async fn invoke_with_deadline(
        &self,
        event: &Value,
        trace: Option<&str>,
        budget: Duration,
    ) -> Answer {
        let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + budget;
        self.invoke_with_deadline_ms(event, trace, deadline.as_millis() as u64)
            .await
    }

    /// Like [`RuntimeApi::invoke`] with `Lambda-Runtime-Deadline-Ms` set to `deadline_ms`
    /// (milliseconds since the epoch, whatever they are).
    pub async fn invoke_with_deadline_ms(
        &self,
        event: &Value,
        trace: Option<&str>,
        deadline_ms: u64,
    ) -> Answer {
        let id = format!("req-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.state.lock().unwrap().queue.push_back(Pending {
            id: id.clone(),
            body: event.to_string(),
            trace: trace.map(str::to_owned),
            deadline_ms,
        });
        self.changed.notify_waiters();
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if let Some(a) = self.state.lock().unwrap().answers.remove(&id) {
                    return a;
                }
                notified.await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("no answer to {id} within {WAIT:?}"))
    }

    /// Waits (bounded) for a `POST /runtime/init/error`: (error-type header, body).
    pub async fn init_error(&self, timeout: Duration) -> Option<(String, Value)> {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if let Some(e) = self.state.lock().unwrap().init_errors.first().cloned() {
                    return e;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

/// The Lambda Invoke API (`POST /2015-03-31/functions/NAME/invocations`, what the SDK's
/// `Invoke` sends) on 127.0.0.1, passing each payload to a [`RuntimeApi`] (so to the real
/// function binary) and answering as Lambda does: the function's response, or its error with
/// `X-Amz-Function-Error: Unhandled`. Keeps every (payload, answer) for inspection.
#[derive(Clone)]
pub struct InvokeApi {
    addr: SocketAddr,
    pub calls: Arc<Mutex<Vec<(Value, Answer)>>>,
}

impl InvokeApi {
    pub async fn start(runtime: RuntimeApi) -> InvokeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = InvokeApi {
            addr: listener.local_addr().unwrap(),
            calls: Arc::default(),
        };
        let calls = Arc::clone(&api.calls);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (runtime, calls) = (runtime.clone(), Arc::clone(&calls));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (runtime, calls) = (runtime.clone(), Arc::clone(&calls));
                        async move {
                            let ok = req.method() == hyper::Method::POST
                                && req.uri().path().starts_with("/2015-03-31/functions/")
                                && req.uri().path().ends_with("/invocations");
                            let bytes = req.into_body().collect().await.unwrap().to_bytes();
                            if !ok {
                                let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                                *resp.status_mut() = StatusCode::NOT_FOUND;
                                return Ok::<_, std::convert::Infallible>(resp);
                            }
                            let payload: Value =
                                serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let answer = runtime.invoke(&payload, None).await;
                            calls.lock().unwrap().push((payload, answer.clone()));
                            let mut resp = match &answer {
                                Answer::Response(v) => {
                                    Response::new(Full::new(Bytes::from(v.to_string())))
                                }
                                Answer::Error(e) => {
                                    let mut r =
                                        Response::new(Full::new(Bytes::from(e.to_string())));
                                    r.headers_mut().insert(
                                        "X-Amz-Function-Error",
                                        "Unhandled".parse().unwrap(),
                                    );
                                    r
                                }
                            };
                            resp.headers_mut()
                                .insert("Content-Type", "application/json".parse().unwrap());
                            Ok(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        api
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_LAMBDA`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The `renditions-lambda` process; killed (by PID) and reaped on drop.
pub struct Function {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Function {
    /// Starts the binary with a clean environment: the Lambda variables for `api`, the S3
    /// variables for `s3`, and `vars` on top (a value of `""` removes a variable).
    pub fn start(api: &RuntimeApi, s3: Option<&LocalS3>, vars: &[(&str, &str)]) -> Function {
        Self::start_with(api, s3, vars, |_| {})
    }

    /// [`Function::start`], with `configure` applied to the command before it is spawned
    /// (resource limits, for example).
    pub fn start_with(
        api: &RuntimeApi,
        s3: Option<&LocalS3>,
        vars: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Function {
        let mut env: HashMap<String, String> = [
            ("AWS_LAMBDA_RUNTIME_API", api.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", "renditions-test".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("DEST_BUCKET", "renditions".into()),
            ("WATERMARK", "none".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(s3) = s3 {
            for (k, v) in s3.env() {
                env.insert(k.to_owned(), v);
            }
        }
        for (k, v) in vars {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_renditions-lambda"));
        cmd.env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("start renditions-lambda");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stdout.take().expect("stdout pipe");
        let lines = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                match line {
                    Ok(l) => lines.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        Function { child, stdout }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Stdout lines that are JSON objects.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits (bounded) for the process to exit; its exit status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let until = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits (bounded) until a stdout line satisfies `pred`.
    pub async fn wait_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < until {
            if self.stdout().iter().any(|l| pred(l)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this process (by its PID).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh, empty folder for one test's S3 server.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("lambda_e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the embedded S3 server with `buckets`.
pub async fn s3_with_buckets(name: &str, buckets: &[&str]) -> LocalS3 {
    let s3 = LocalS3::start(scratch(name)).await.unwrap();
    let client = s3.client();
    for b in buckets {
        client.create_bucket().bucket(*b).send().await.unwrap();
    }
    s3
}

/// Uploads an object through the SDK; returns its ETag (unquoted).
pub async fn put(s3: &LocalS3, bucket: &str, key: &str, bytes: Vec<u8>) -> String {
    let out = s3
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    out.e_tag().unwrap_or_default().trim_matches('"').to_owned()
}

/// Every key of a bucket, sorted.
pub async fn keys(s3: &LocalS3, bucket: &str) -> Vec<String> {
    let client = s3.client();
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.take())
            .send()
            .await
            .unwrap();
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => break,
        }
    }
    keys.sort();
    keys
}

/// An object's bytes and content type.
pub async fn get(
    s3: &LocalS3,
    bucket: &str,
    key: &str,
) -> (Vec<u8>, Option<String>, HashMap<String, String>) {
    let out = s3
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let content_type = out.content_type().map(str::to_owned);
    let metadata = out.metadata().cloned().unwrap_or_default();
    let bytes = out.body.collect().await.unwrap().into_bytes().to_vec();
    (bytes, content_type, metadata)
}

/// Invokes `event` and asserts that the function failed it as retryable, with a message that
/// contains `needle` (the key, the cause); returns the error body.
pub async fn invoke_expecting_retry(api: &RuntimeApi, event: &Value, needle: &str) -> Value {
    let error = api.invoke(event, None).await.error();
    assert_eq!(error["errorType"], "Renditions.RetryableFailure", "{error}");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {error}");
    error
}

/// One S3 ObjectCreated record (key URL-encoded like S3 does).
pub fn s3_record(bucket: &str, key: &str, etag: Option<&str>) -> Value {
    let mut object = json!({"key": encode_key(key), "size": 1, "sequencer": "0A1B2C3D4E5F678901"});
    if let Some(e) = etag {
        object["eTag"] = json!(e);
    }
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "EXAMPLE123456789", "x-amz-id-2": "EXAMPLE/abcdefgh"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "renditions",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": object
        }
    })
}

/// An S3 notification with one record per key.
pub fn s3_event(bucket: &str, keys: &[&str]) -> Value {
    json!({"Records": keys.iter().map(|k| s3_record(bucket, k, None)).collect::<Vec<_>>()})
}

/// An SQS batch: (messageId, body JSON).
pub fn sqs_event(messages: &[(&str, Value)]) -> Value {
    json!({"Records": messages.iter().map(|(id, body)| json!({
        "messageId": id,
        "receiptHandle": format!("handle-{id}"),
        "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000", "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1767225600001"},
        "messageAttributes": {},
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:renditions-ingest",
        "awsRegion": "us-east-1"
    })).collect::<Vec<_>>()})
}

/// An EventBridge "Object Created" event.
pub fn eventbridge_event(bucket: &str, key: &str) -> Value {
    json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": encode_key(key), "size": 1, "sequencer": "617f08299329d189"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject"
        }
    })
}

/// A sample photo from `assets/samples`.
pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("assets/samples")
            .join(name),
    )
    .unwrap()
}

/// A generated JPEG of the given size.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Decoded (width, height) of an image.
pub fn size_of(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}
