//! S3 fault injection: the real `renditions-lambda` binary talks to a real S3 server (s3s-fs)
//! through a fault-injecting proxy on loopback (tests/support/fault_proxy.rs) that answers 503
//! SlowDown and 500, resets connections, stalls past the timeouts and cuts bodies short, in both
//! directions. What must hold: transient faults are retried and every rendition lands, byte for
//! byte what a fault-free render gives; a fault that persists fails the invocation or the SQS
//! record so that Lambda delivers it again; the redelivery completes the set; and no truncated or
//! corrupt object is ever visible in the destination bucket.

#![cfg(feature = "lambda")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use renditions::{Pipeline, PipelineConfig};
use serde_json::{Value, json};
use support::fault_proxy::{FaultProxy, ProxyFault};
use support::local_s3::LocalS3;
use support::*;

const SRC: &str = "uploads";
const DEST: &str = "renditions";
const RENDITIONS: &str = "large:320,thumb:80";
/// Short timeouts so that stalls cost seconds, not minutes.
const ATTEMPT_TIMEOUT_MS: &str = "1500";
const STALL: Duration = Duration::from_secs(4);

/// A source image per key, each a different size so that a mix-up would show.
fn source(i: u32) -> Vec<u8> {
    jpeg(600 + 8 * i, 400 + 4 * i)
}

/// What a fault-free render writes for `bytes`: rendition key → bytes.
fn reference(key: &str, bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let get = |k: &str| match k {
        "RENDITIONS" => Some(RENDITIONS.to_owned()),
        "WATERMARK" => Some("none".to_owned()),
        _ => None,
    };
    let config = PipelineConfig::from_settings(get, &|_| Err("no files".into())).unwrap();
    let out = Pipeline::new(config).unwrap().render(bytes).unwrap();
    out.renditions
        .into_iter()
        .map(|r| (format!("{}/{key}", r.name), r.bytes))
        .collect()
}

/// The S3 server, the proxy in front of it, the Runtime API and the function using the proxy.
struct Rig {
    s3: LocalS3,
    proxy: FaultProxy,
    api: RuntimeApi,
    _function: Function,
}

async fn rig(name: &str, extra: &[(&str, &str)]) -> Rig {
    let s3 = s3_with_buckets(name, &[SRC, DEST]).await;
    let proxy = FaultProxy::start(s3.addr()).await;
    let api = RuntimeApi::start().await;
    let endpoint = proxy.endpoint();
    let mut vars = vec![
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("RENDITIONS", RENDITIONS),
        ("S3_ATTEMPT_TIMEOUT_MS", ATTEMPT_TIMEOUT_MS),
        ("S3_OPERATION_TIMEOUT_MS", "15000"),
        ("SOURCE_BUCKETS", SRC),
        // The renditions are compared byte for byte with a fault-free render; manifests (with
        // their timestamps) have their own tests.
        ("MANIFEST_KEY_TEMPLATE", "none"),
    ];
    vars.extend_from_slice(extra);
    let function = Function::start(&api, Some(&s3), &vars);
    Rig {
        s3,
        proxy,
        api,
        _function: function,
    }
}

/// Every object in the destination must be exactly what a fault-free render gives: no truncated,
/// corrupt or foreign object, ever. Returns the keys present.
async fn assert_destination_clean(
    s3: &LocalS3,
    expected: &BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    let present = keys(s3, DEST).await;
    for key in &present {
        let want = expected
            .get(key)
            .unwrap_or_else(|| panic!("unexpected object {key} in the destination"));
        let (got, _, _) = get(s3, DEST, key).await;
        assert_eq!(
            got.len(),
            want.len(),
            "{key}: {} bytes, expected {}",
            got.len(),
            want.len()
        );
        assert!(got == *want, "{key}: bytes differ from a fault-free render");
    }
    present
}

fn all_keys(expected: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    expected.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_every_rendition_lands() {
    let Rig {
        s3,
        proxy,
        api,
        _function: _f,
    } = rig("faults_transient", &[]).await;
    // (source key, method, target fragment, fault, times)
    let cases: [(&str, &str, &str, ProxyFault, u32); 11] = [
        (
            "get-slowdown.jpg",
            "GET",
            "/uploads/get-slowdown.jpg",
            ProxyFault::Status(503, "SlowDown"),
            2,
        ),
        (
            "get-500.jpg",
            "GET",
            "/uploads/get-500.jpg",
            ProxyFault::Status(500, "InternalError"),
            1,
        ),
        (
            "get-reset.jpg",
            "GET",
            "/uploads/get-reset.jpg",
            ProxyFault::Reset,
            1,
        ),
        (
            "get-stall.jpg",
            "GET",
            "/uploads/get-stall.jpg",
            ProxyFault::Stall(STALL),
            1,
        ),
        (
            "get-truncated.jpg",
            "GET",
            "/uploads/get-truncated.jpg",
            ProxyFault::TruncateResponse,
            1,
        ),
        (
            "get-body-stall.jpg",
            "GET",
            "/uploads/get-body-stall.jpg",
            ProxyFault::StallResponseBody(STALL),
            1,
        ),
        (
            "put-slowdown.jpg",
            "PUT",
            "/renditions/large/put-slowdown.jpg",
            ProxyFault::Status(503, "SlowDown"),
            2,
        ),
        (
            "put-500.jpg",
            "PUT",
            "/renditions/thumb/put-500.jpg",
            ProxyFault::Status(500, "InternalError"),
            1,
        ),
        (
            "put-reset.jpg",
            "PUT",
            "/renditions/thumb/put-reset.jpg",
            ProxyFault::Reset,
            1,
        ),
        (
            "put-truncated.jpg",
            "PUT",
            "/renditions/large/put-truncated.jpg",
            ProxyFault::TruncateRequest,
            1,
        ),
        (
            "put-stall.jpg",
            "PUT",
            "/renditions/thumb/put-stall.jpg",
            ProxyFault::Stall(STALL),
            1,
        ),
    ];
    let mut expected = BTreeMap::new();
    for (i, (key, ..)) in cases.iter().enumerate() {
        let bytes = source(i as u32);
        put(&s3, SRC, key, bytes.clone()).await;
        expected.extend(reference(key, &bytes));
    }
    for (_, method, target, fault, times) in cases {
        proxy.inject(method, target, fault, Some(times));
    }

    let sources: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let answer = api.invoke(&s3_event(SRC, &sources), None).await.response();
    assert_eq!(answer["rendered"], cases.len(), "{answer}");
    assert_eq!(answer["failed"], 0, "{answer}");

    // Each faulted call was made again after its faults: the retries happened.
    for (key, method, target, fault, times) in cases {
        let n = proxy.count(method, target);
        assert_eq!(
            n,
            times as usize + 1,
            "{key}: {method} {target} ({fault:?}) seen {n} times"
        );
    }
    // Every rendition is there, complete, byte for byte; the sources are untouched.
    assert_eq!(
        assert_destination_clean(&s3, &expected).await,
        all_keys(&expected)
    );
    for (i, (key, ..)) in cases.iter().enumerate() {
        assert_eq!(get(&s3, SRC, key).await.0, source(i as u32), "{key}");
    }
    // The source was only ever read.
    assert!(
        proxy
            .seen()
            .iter()
            .all(|s| s.method == "GET" || s.target.starts_with("/renditions/")),
        "{:?}",
        proxy.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_faults_fail_the_record_and_a_redelivery_completes() {
    let Rig {
        s3,
        proxy,
        api,
        _function: _f,
    } = rig("faults_persistent", &[]).await;
    let names = [
        "ok.jpg",
        "get-down.jpg",
        "get-reset.jpg",
        "get-cut.jpg",
        "put-cut.jpg",
        "put-down.jpg",
    ];
    let mut expected = BTreeMap::new();
    for (i, key) in names.iter().enumerate() {
        let bytes = source(i as u32);
        put(&s3, SRC, key, bytes.clone()).await;
        expected.extend(reference(key, &bytes));
    }
    proxy.inject(
        "GET",
        "/uploads/get-down.jpg",
        ProxyFault::Status(503, "SlowDown"),
        None,
    );
    proxy.inject("GET", "/uploads/get-reset.jpg", ProxyFault::Reset, None);
    proxy.inject(
        "GET",
        "/uploads/get-cut.jpg",
        ProxyFault::TruncateResponse,
        None,
    );
    // Only `large` is cut: `thumb` lands, complete, and the record still fails.
    proxy.inject(
        "PUT",
        "/renditions/large/put-cut.jpg",
        ProxyFault::TruncateRequest,
        None,
    );
    proxy.inject(
        "PUT",
        "/renditions/large/put-down.jpg",
        ProxyFault::Status(500, "InternalError"),
        None,
    );

    let messages: Vec<(String, Value)> = names
        .iter()
        .map(|k| (format!("m-{k}"), s3_event(SRC, &[k])))
        .collect();
    let batch = |ids: &[&str]| {
        let chosen: Vec<(&str, Value)> = messages
            .iter()
            .filter(|(id, _)| ids.contains(&id.as_str()))
            .map(|(id, v)| (id.as_str(), v.clone()))
            .collect();
        sqs_event(&chosen)
    };
    let all_ids: Vec<&str> = messages.iter().map(|(id, _)| id.as_str()).collect();
    let answer = api.invoke(&batch(&all_ids), None).await.response();
    let failed: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    let want_failed = [
        "m-get-down.jpg",
        "m-get-reset.jpg",
        "m-get-cut.jpg",
        "m-put-cut.jpg",
        "m-put-down.jpg",
    ];
    assert_eq!(failed, want_failed, "{answer}");

    // Every call was tried the configured number of times (3), no more.
    for (method, target) in [
        ("GET", "/uploads/get-down.jpg"),
        ("GET", "/uploads/get-reset.jpg"),
        ("GET", "/uploads/get-cut.jpg"),
        ("PUT", "/renditions/large/put-cut.jpg"),
        ("PUT", "/renditions/large/put-down.jpg"),
    ] {
        assert_eq!(proxy.count(method, target), 3, "{method} {target}");
    }
    // Nothing half-written: what is there is complete; the cut uploads are absent.
    let present = assert_destination_clean(&s3, &expected).await;
    assert!(present.contains(&"large/ok.jpg".to_owned()), "{present:?}");
    for absent in [
        "large/put-cut.jpg",
        "large/put-down.jpg",
        "large/get-cut.jpg",
    ] {
        assert!(
            !present.contains(&absent.to_owned()),
            "{absent} in {present:?}"
        );
    }
    assert!(
        present.contains(&"thumb/put-cut.jpg".to_owned()),
        "{present:?}"
    );
    assert!(
        !present.iter().any(|k| k.starts_with("_rejected/")),
        "{present:?}"
    );

    // A direct (asynchronous) invocation fails as a whole, naming the object, so that Lambda
    // retries it and then hands it to the on-failure destination.
    invoke_expecting_retry(&api, &s3_event(SRC, &["get-down.jpg"]), "get-down.jpg").await;

    // The fault clears; SQS delivers the failed messages again: the set completes.
    proxy.clear();
    let answer = api.invoke(&batch(&want_failed), None).await.response();
    assert_eq!(answer, json!({"batchItemFailures": []}), "{answer}");
    assert_eq!(
        assert_destination_clean(&s3, &expected).await,
        all_keys(&expected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_by_the_configured_attempts() {
    let attempts = [
        ("S3_MAX_ATTEMPTS", "4"),
        ("S3_OPERATION_TIMEOUT_MS", "30000"),
    ];
    let Rig {
        s3,
        proxy,
        api,
        _function: _f,
    } = rig("faults_attempts", &attempts).await;
    put(&s3, SRC, "four.jpg", source(1)).await;
    proxy.inject(
        "GET",
        "/uploads/four.jpg",
        ProxyFault::Status(503, "SlowDown"),
        Some(3),
    );
    let answer = api
        .invoke(&s3_event(SRC, &["four.jpg"]), None)
        .await
        .response();
    assert_eq!(answer["rendered"], 1, "{answer}");
    assert_eq!(proxy.count("GET", "/uploads/four.jpg"), 4);

    // A broken body is downloaded again up to the same bound.
    put(&s3, SRC, "cut.jpg", source(2)).await;
    proxy.inject(
        "GET",
        "/uploads/cut.jpg",
        ProxyFault::TruncateResponse,
        None,
    );
    invoke_expecting_retry(&api, &s3_event(SRC, &["cut.jpg"]), "broke off").await;
    assert_eq!(proxy.count("GET", "/uploads/cut.jpg"), 4);
}
