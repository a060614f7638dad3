//! An S3 server inside the process, for `demo` and the end-to-end tests, so both run on a
//! fresh machine with no AWS account, Docker or network: s3s-fs keeps each bucket as a folder
//! under a root directory, s3s speaks the S3 REST API (path-style, SigV4 with fixed
//! credentials) over hyper on 127.0.0.1.
//!
//! [`Faults`] lets a test make chosen calls fail with a 5xx, to exercise retries and
//! transient-failure handling against a real server.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use hyper_util::rt::TokioIo;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Access key of the embedded server (fixed: it only listens on loopback).
pub const ACCESS_KEY: &str = "renditions-local";
/// Secret key of the embedded server.
pub const SECRET_KEY: &str = "renditions-local-secret";
/// Region the clients sign for.
pub const REGION: &str = "us-east-1";

/// How an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 InternalError.
    Internal,
    /// 503 SlowDown (throttling).
    SlowDown,
    /// 403 AccessDenied.
    Denied,
}

/// (operation name, bucket, key) of a call.
type CallId = (String, String, String);

#[derive(Debug, Default)]
struct FaultTable {
    /// Fault and how many more times (`None`: always).
    rules: HashMap<CallId, (Fault, Option<u32>)>,
    hits: HashMap<CallId, u32>,
    /// Every signed call, by operation name (`GetObject`, `HeadObject`, …).
    calls: HashMap<String, u64>,
}

/// Calls to fail, shared by the server and the test that sets them.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    table: Arc<Mutex<FaultTable>>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, FaultTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `operation` (e.g. `GetObject`) on `bucket`/`key` fail with `fault`, `times` times
    /// (`None`: every time).
    pub fn fail(&self, operation: &str, bucket: &str, key: &str, fault: Fault, times: Option<u32>) {
        self.lock().rules.insert(
            (operation.into(), bucket.into(), key.into()),
            (fault, times),
        );
    }

    /// How many calls a rule has failed so far.
    pub fn hits(&self, operation: &str, bucket: &str, key: &str) -> u32 {
        self.lock()
            .hits
            .get(&(operation.into(), bucket.into(), key.into()))
            .copied()
            .unwrap_or(0)
    }

    /// How many signed calls of `operation` (e.g. `GetObject`) the server has answered.
    pub fn calls(&self, operation: &str) -> u64 {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    fn count(&self, operation: &str) {
        *self.lock().calls.entry(operation.to_owned()).or_insert(0) += 1;
    }

    fn check(&self, operation: &str, bucket: &str, key: &str) -> Option<Fault> {
        let id = (operation.to_owned(), bucket.to_owned(), key.to_owned());
        let mut table = self.lock();
        let (fault, times) = table.rules.get_mut(&id)?;
        match times {
            Some(0) => return None,
            Some(n) => *n -= 1,
            None => {}
        }
        let fault = *fault;
        *table.hits.entry(id).or_insert(0) += 1;
        Some(fault)
    }
}

/// Signed requests only, plus the injected faults.
struct Access {
    faults: Faults,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signature required"));
        }
        self.faults.count(cx.s3_op().name());
        if let S3Path::Object { bucket, key } = cx.s3_path()
            && let Some(fault) = self.faults.check(cx.s3_op().name(), bucket, key)
        {
            return Err(match fault {
                Fault::Internal => s3_error!(InternalError, "injected fault"),
                Fault::SlowDown => s3_error!(SlowDown, "injected fault"),
                Fault::Denied => s3_error!(AccessDenied, "injected fault"),
            });
        }
        Ok(())
    }
}

/// A running embedded S3 server; stops when dropped.
pub struct LocalS3 {
    addr: SocketAddr,
    root: PathBuf,
    faults: Faults,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl LocalS3 {
    /// Serves the folder `root` (created if missing) on 127.0.0.1 at a free port. Must be
    /// called within a Tokio runtime, which then runs the server.
    pub async fn start(root: impl AsRef<Path>) -> io::Result<LocalS3> {
        std::fs::create_dir_all(root.as_ref())?;
        let root = root.as_ref().canonicalize()?;
        let fs = s3s_fs::FileSystem::new(&root).map_err(|e| io::Error::other(format!("{e:?}")))?;
        let faults = Faults::default();
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.set_access(Access {
                faults: faults.clone(),
            });
            b.build()
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, mut rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => continue,
                    },
                    _ = &mut rx => break,
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(socket), service);
                    let _ = conn.await;
                });
            }
        });
        Ok(LocalS3 {
            addr,
            root,
            faults,
            shutdown: Some(tx),
            task,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The folder holding the buckets.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of one bucket: its objects are files at their keys.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    /// The fault injector of this server.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// SDK configuration for this server: fixed credentials, region, endpoint and the
    /// function's retry and timeout settings.
    pub fn sdk_config(&self) -> SdkConfig {
        let (retry, timeout) = renditions::sdk_retry_timeouts(&renditions::S3Settings::default());
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                ACCESS_KEY,
                SECRET_KEY,
                None,
                None,
                "renditions-local",
            )))
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .retry_config(retry)
            .timeout_config(timeout)
            .build()
    }

    /// A path-style S3 client for this server.
    pub fn client(&self) -> aws_sdk_s3::Client {
        renditions::S3Store::new(&self.sdk_config(), true)
            .client()
            .clone()
    }

    /// The environment a `renditions-lambda` process needs to use this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
        ]
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}
