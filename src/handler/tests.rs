//! Unit tests of the handler against the in-memory store: outcomes, partial batches,
//! deadlines, recursion skips, rejection reports and error classification.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::event::Trigger;
use crate::event::keys::{self, encode_key};
use crate::manifest::rfc3339;
use crate::store::{MemoryStore, StoreError};

const SRC: &str = "uploads";
const DEST: &str = "renditions";

fn png(w: u32, h: u32) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn handler_with(vars: &[(&str, &str)]) -> Handler<MemoryStore> {
    let mut map: HashMap<String, String> = [
        ("DEST_BUCKET", DEST),
        ("RENDITIONS", "large:64,thumb:16"),
        ("WATERMARK", "none"),
        ("DEADLINE_MARGIN_MS", "0"),
        // Manifests have their own test; the others list the renditions and reports alone.
        ("MANIFEST_KEY_TEMPLATE", "none"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    let get = |k: &str| map.get(k).cloned();
    let config = crate::PipelineConfig::from_settings(get, &|_| Err("no files".into())).unwrap();
    let settings = LambdaSettings::from_settings(get, &config.renditions).unwrap();
    let pipeline = Pipeline::new(config).unwrap();
    Handler::new(
        Arc::new(MemoryStore::new()),
        Arc::new(pipeline),
        Arc::new(settings),
    )
}

fn handler() -> Handler<MemoryStore> {
    handler_with(&[])
}

/// A handler whose pipeline fails every render in the encode stage, as a bug of ours would.
fn handler_with_internal_fault() -> Handler<MemoryStore> {
    let h = handler();
    let pipeline = Pipeline::new(h.pipeline.config().clone())
        .unwrap()
        .with_internal_fault(crate::pipeline::Stage::Encode);
    Handler::new(
        Arc::new(MemoryStore::new()),
        Arc::new(pipeline),
        Arc::clone(&h.settings),
    )
}

/// What every trigger must do with an internal error: retry it (a function error, or a batch
/// item failure), count it under `InternalErrors`, write no rejection report and no rendition.
fn assert_internal_error_is_retried(h: &Handler<MemoryStore>, report: &Report, metrics: &Metrics) {
    assert_eq!(report.count("internal"), 1, "{report:#?}");
    assert_eq!(report.count("rejected"), 0);
    assert!(
        h.store().keys(DEST).is_empty(),
        "{:?}",
        h.store().keys(DEST)
    );
    let lines = metrics.lines_at("Renditions", "f", 0);
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["InternalErrors"], 1, "{first}");
    assert_eq!(first["ImagesRejected"], 0, "{first}");
}

#[tokio::test]
async fn internal_errors_are_retried_never_reported_for_direct_s3_events() {
    let h = handler_with_internal_fault();
    h.store().insert(SRC, "cat.png", png(32, 32));
    let (report, metrics) = run(&h, &s3_event(&["cat.png"])).await;
    assert_internal_error_is_retried(&h, &report, &metrics);
    let err = report.response().unwrap_err();
    assert_eq!(err.error_type, "Renditions.RetryableFailure");
    assert!(err.message.contains("internal error"), "{}", err.message);
    assert!(err.message.contains("encode"), "{}", err.message);
}

#[tokio::test]
async fn internal_errors_are_batch_item_failures_for_sqs() {
    let h = handler_with_internal_fault();
    h.store().insert(SRC, "cat.png", png(32, 32));
    let event = sqs_event(&[("m-1", s3_event(&["cat.png"]))]);
    let (report, metrics) = run(&h, &event).await;
    assert_internal_error_is_retried(&h, &report, &metrics);
    assert_eq!(
        report.response().unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
    );
}

#[tokio::test]
async fn internal_errors_are_retried_for_eventbridge() {
    let h = handler_with_internal_fault();
    h.store().insert(SRC, "cat.png", png(32, 32));
    let event = json!({
        "version": "0",
        "id": "e-1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{SRC}")],
        "detail": {"version": "0", "bucket": {"name": SRC}, "object": {"key": "cat.png", "size": 1}}
    });
    let (report, metrics) = run(&h, &event).await;
    assert_eq!(report.trigger, Trigger::EventBridge);
    assert_internal_error_is_retried(&h, &report, &metrics);
    assert!(report.response().is_err());
}

fn record(bucket: &str, key: &str) -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": encode_key(key), "size": 1}}
    })
}

fn s3_event(keys: &[&str]) -> Value {
    json!({"Records": keys.iter().map(|k| record(SRC, k)).collect::<Vec<_>>()})
}

fn sqs_event(messages: &[(&str, Value)]) -> Value {
    json!({"Records": messages.iter().map(|(id, body)| json!({
        "messageId": id,
        "receiptHandle": "rh",
        "body": if body.is_string() { body.as_str().unwrap().to_owned() } else { body.to_string() },
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest",
        "awsRegion": "us-east-1"
    })).collect::<Vec<_>>()})
}

async fn run(h: &Handler<MemoryStore>, event: &Value) -> (Report, Metrics) {
    let metrics = Metrics::new();
    let report = h.process(event, None, &metrics).await.unwrap();
    (report, metrics)
}

fn decoded_size(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}

#[tokio::test]
async fn renders_every_record_to_the_template_keys() {
    let h = handler();
    h.store().insert(SRC, "inbox/2026/cat.png", png(128, 96));
    h.store().insert(SRC, "my photo+1.png", png(40, 80));
    let (report, metrics) = run(&h, &s3_event(&["inbox/2026/cat.png", "my photo+1.png"])).await;
    assert_eq!(report.count("rendered"), 2, "{report:#?}");
    assert_eq!(
        h.store().keys(DEST),
        [
            "large/inbox/2026/cat.png",
            "large/my photo+1.png",
            "thumb/inbox/2026/cat.png",
            "thumb/my photo+1.png"
        ]
    );
    let large = h.store().object(DEST, "large/inbox/2026/cat.png").unwrap();
    assert_eq!(large.content_type, "image/jpeg");
    assert_eq!(decoded_size(&large.bytes), (64, 48));
    assert_eq!(
        decoded_size(
            &h.store()
                .object(DEST, "thumb/my photo+1.png")
                .unwrap()
                .bytes
        ),
        (8, 16)
    );
    let meta: HashMap<_, _> = large.metadata.iter().cloned().collect();
    assert_eq!(meta["source-bucket"], SRC);
    assert_eq!(meta["source-key"], "inbox/2026/cat.png");
    assert_eq!(
        (meta["width"].as_str(), meta["height"].as_str()),
        ("64", "48")
    );
    let meta: HashMap<_, _> = h
        .store()
        .object(DEST, "thumb/my photo+1.png")
        .unwrap()
        .metadata
        .into_iter()
        .collect();
    assert_eq!(meta["source-key"], "my+photo%2B1.png");
    assert_eq!(report.response().unwrap()["rendered"], 2);
    let lines = metrics.lines("Renditions", "fn");
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["ImagesProcessed"], 2);
    assert_eq!(first["ImagesRejected"], 0);
    assert!(first["OutputBytes"].as_u64().unwrap() > 0);
    assert!(first.get("DownloadDuration").is_some() && first.get("EncodeDuration").is_some());
}

#[tokio::test]
async fn same_input_gives_same_keys_and_bytes() {
    let h = handler();
    h.store().insert(SRC, "a.png", png(100, 70));
    run(&h, &s3_event(&["a.png"])).await;
    let first = h.store().object(DEST, "large/a.png").unwrap().bytes;
    run(&h, &s3_event(&["a.png"])).await;
    assert_eq!(h.store().object(DEST, "large/a.png").unwrap().bytes, first);
    assert_eq!(h.store().keys(DEST).len(), 2);
}

#[tokio::test]
async fn a_bad_image_mid_batch_is_reported_and_the_others_complete() {
    let h = handler_with(&[("RECORD_CONCURRENCY", "1")]);
    h.store().insert(SRC, "one.png", png(30, 30));
    h.store()
        .insert(SRC, "dir/not-an-image.jpg", b"hello, I am text".to_vec());
    h.store().insert(SRC, "three.png", png(30, 20));
    let (report, metrics) = run(
        &h,
        &s3_event(&["one.png", "dir/not-an-image.jpg", "three.png"]),
    )
    .await;
    let outcomes: Vec<&str> = report.objects.iter().map(|o| o.outcome.name()).collect();
    assert_eq!(outcomes, ["rendered", "rejected", "rendered"]);
    assert!(
        matches!(&report.objects[1].outcome, Outcome::Rejected { kind, report: Some(k), .. }
        if kind == "unsupported" && k == "_rejected/dir/not-an-image.jpg.json")
    );
    let stored = h
        .store()
        .object(DEST, "_rejected/dir/not-an-image.jpg.json")
        .unwrap();
    assert_eq!(stored.content_type, "application/json");
    let doc: Value = serde_json::from_slice(&stored.bytes).unwrap();
    assert_eq!(doc["bucket"], SRC);
    assert_eq!(doc["key"], "dir/not-an-image.jpg");
    assert_eq!(doc["kind"], "unsupported");
    assert!(doc["reason"].as_str().unwrap().len() > 5);
    assert!(doc["time"].as_str().unwrap().ends_with('Z'));
    assert!(doc.get("etag").is_some());
    // A rejection is permanent: the invocation succeeds (no retry).
    assert_eq!(report.response().unwrap()["rejected"], 1);
    let lines: Vec<Value> = metrics
        .lines("N", "f")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["ImagesProcessed"], 2);
    assert_eq!(lines[0]["ImagesRejected"], 1);
    assert!(
        lines
            .iter()
            .any(|l| l["RejectionKind"] == "unsupported" && l["ImagesRejected"] == 1)
    );
}

#[tokio::test]
async fn reports_can_be_switched_off() {
    let h = handler_with(&[("REJECTION_REPORTS", "false")]);
    h.store().insert(SRC, "bad.png", Vec::new());
    let (report, _) = run(&h, &s3_event(&["bad.png"])).await;
    assert!(
        matches!(&report.objects[0].outcome, Outcome::Rejected { kind, report: None, .. } if kind == "empty")
    );
    assert!(h.store().keys(DEST).is_empty());
}

#[tokio::test]
async fn too_large_objects_are_refused_before_decoding() {
    let h = handler_with(&[("MAX_INPUT_BYTES", "100")]);
    h.store().insert(SRC, "big.png", png(64, 64));
    let (report, _) = run(&h, &s3_event(&["big.png"])).await;
    assert!(
        matches!(&report.objects[0].outcome, Outcome::Rejected { kind, .. } if kind == "too-large"),
        "{report:?}"
    );
    assert_eq!(h.store().gets()[0].max_bytes, 100);
    assert!(h.store().object(DEST, "_rejected/big.png.json").is_some());
}

#[tokio::test]
async fn transient_download_failure_fails_a_direct_invocation() {
    let h = handler();
    h.store().insert(SRC, "ok.png", png(20, 20));
    h.store().fail_get(
        "flaky.png",
        StoreError::Transient("SlowDown (HTTP 503)".into()),
    );
    let (report, _) = run(&h, &s3_event(&["ok.png", "flaky.png"])).await;
    assert_eq!(report.count("rendered"), 1);
    let err = report.response().unwrap_err();
    assert_eq!(err.error_type, "Renditions.RetryableFailure");
    assert!(
        err.message.contains("flaky.png") && err.message.contains("503"),
        "{err}"
    );
    // No report for a transient failure.
    assert!(h.store().object(DEST, "_rejected/flaky.png.json").is_none());
}

#[tokio::test]
async fn missing_object_is_permanent_for_direct_events() {
    let h = handler();
    let (report, metrics) = run(&h, &s3_event(&["gone.png"])).await;
    assert!(
        matches!(&report.objects[0].outcome, Outcome::Unreadable { kind, .. } if kind == "not-found")
    );
    assert!(report.response().is_ok());
    assert!(h.store().object(DEST, "_rejected/gone.png.json").is_some());
    let first: Value = serde_json::from_str(&metrics.lines("N", "f")[0]).unwrap();
    assert_eq!(first["ImagesRejected"], 1);
}

#[tokio::test]
async fn upload_failure_is_transient() {
    let h = handler();
    h.store().insert(SRC, "a.png", png(20, 20));
    h.store().fail_put(
        "thumb/",
        StoreError::Transient("InternalError (HTTP 500)".into()),
    );
    let (report, _) = run(&h, &s3_event(&["a.png"])).await;
    assert!(matches!(&report.objects[0].outcome, Outcome::Failed(r) if r.contains("upload")));
    assert!(report.response().is_err());
}

#[tokio::test]
async fn sqs_partial_batch_response() {
    let h = handler();
    h.store().insert(SRC, "good.png", png(30, 30));
    h.store()
        .insert(SRC, "bad.jpg", b"GIF89a but not really".to_vec());
    h.store()
        .fail_get("flaky.png", StoreError::Transient("timed out".into()));
    h.store().insert(SRC, "also-good.png", png(10, 10));
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": SRC});
    let event = sqs_event(&[
        ("m-good", s3_event(&["good.png"])),
        ("m-missing", s3_event(&["missing.png"])),
        ("m-flaky", s3_event(&["flaky.png", "also-good.png"])),
        ("m-bad", s3_event(&["bad.jpg"])),
        ("m-test", test_event),
        ("m-garbage", json!("{not json")),
    ]);
    let (report, _) = run(&h, &event).await;
    assert_eq!(report.trigger, Trigger::Sqs);
    assert_eq!(
        report.batch_item_failures(),
        ["m-missing", "m-flaky", "m-garbage"]
    );
    assert_eq!(
        report.response().unwrap(),
        json!({"batchItemFailures": [
            {"itemIdentifier": "m-missing"}, {"itemIdentifier": "m-flaky"}, {"itemIdentifier": "m-garbage"}
        ]})
    );
    assert_eq!(report.ignored, 1);
    assert!(h.store().object(DEST, "large/also-good.png").is_some());
    assert!(h.store().object(DEST, "_rejected/bad.jpg.json").is_some());
}

/// The key policy (keys.rs, docs/lambda.md "Keys") end to end through the handler.
#[tokio::test]
async fn key_policy() {
    let h = handler();
    let nfc = "caf\u{e9}.png";
    let nfd = "cafe\u{301}.png";
    let long = format!("deep/{}.png", "k".repeat(1024 - 9));
    assert_eq!(long.len(), 1024);
    let sources: [(&str, Vec<u8>); 6] = [
        ("a.jpg", png(100, 50)), // PNG bytes under a .jpg name: sniffed, not trusted
        ("a.png", png(50, 100)),
        (nfc, png(60, 30)),
        (nfd, png(30, 60)),
        ("/lead.png", png(40, 40)),
        (long.as_str(), png(80, 40)),
    ];
    for (key, bytes) in &sources {
        h.store().insert(SRC, key, bytes.clone());
    }
    let unsafe_keys = ["../up.png", "a/./b.png", "x/../a.png"];
    for key in unsafe_keys {
        h.store().insert(SRC, key, png(10, 10));
    }
    let all: Vec<&str> = sources.iter().map(|(k, _)| *k).chain(unsafe_keys).collect();
    let (report, metrics) = run(&h, &s3_event(&all)).await;
    assert_eq!(report.count("rendered"), 6, "{report:#?}");
    assert_eq!(report.count("rejected"), 3, "{report:#?}");

    // a.jpg and a.png, NFC and NFD: four sources, four distinct sets, each from its own source.
    let size = |key: &str| decoded_size(&h.store().object(DEST, key).unwrap().bytes);
    assert_eq!(size("large/a.jpg"), (64, 32));
    assert_eq!(size("large/a.png"), (32, 64));
    assert_eq!(size(&format!("large/{nfc}")), (60, 30));
    assert_eq!(size(&format!("large/{nfd}")), (30, 60));
    assert_eq!(size("large//lead.png"), (40, 40));
    // The 1,024-byte key: a 1,024-byte rendition key, its digest naming the source.
    let long_large = keys::fit(&format!("large/{long}")).into_owned();
    assert_eq!(long_large.len(), keys::MAX_KEY_BYTES);
    assert_eq!(size(&long_large), (64, 32));
    let meta: HashMap<_, _> = h
        .store()
        .object(DEST, &long_large)
        .unwrap()
        .metadata
        .into_iter()
        .collect();
    assert_eq!(meta.get("source-key"), Some(&long));
    let dest = h.store().keys(DEST);
    assert!(
        dest.iter().all(|k| k.len() <= keys::MAX_KEY_BYTES),
        "{dest:?}"
    );

    // Dot segments: nothing rendered under them, a report under _rejected/unsafe-keys/.
    assert!(
        !dest
            .iter()
            .any(|k| k.contains("/../") || k.contains("/./") || k.starts_with("large/..")),
        "{dest:?}"
    );
    let reports: Vec<_> = dest
        .iter()
        .filter(|k| k.starts_with("_rejected/unsafe-keys/"))
        .collect();
    assert_eq!(reports.len(), 3, "{dest:?}");
    let named: Vec<String> = reports
        .iter()
        .map(|k| {
            let report: Value =
                serde_json::from_slice(&h.store().object(DEST, k).unwrap().bytes).unwrap();
            assert_eq!(report["kind"], "unsafe-key");
            assert!(
                report["reason"].as_str().unwrap().contains("path segment"),
                "{report}"
            );
            report["key"].as_str().unwrap().to_owned()
        })
        .collect();
    for key in unsafe_keys {
        assert!(
            named.iter().any(|n| n == key),
            "{key} not reported: {named:?}"
        );
    }
    // Never downloaded.
    assert!(
        h.store()
            .gets()
            .iter()
            .all(|g| !unsafe_keys.contains(&g.key.as_str()))
    );
    let lines = metrics.lines("Renditions", "fn");
    assert!(lines.iter().any(|l| l.contains("unsafe-key")), "{lines:?}");
}

#[tokio::test]
async fn a_key_too_long_for_metadata_is_named_by_its_digest() {
    let h = handler();
    // 300 three-byte characters: 900 bytes of key, 2,700 bytes URL-encoded.
    let key = format!("{}.png", "猫".repeat(300));
    h.store().insert(SRC, &key, png(20, 20));
    let (report, _) = run(&h, &s3_event(&[&key])).await;
    assert_eq!(report.count("rendered"), 1, "{report:#?}");
    let meta: HashMap<_, _> = h
        .store()
        .object(DEST, &format!("large/{key}"))
        .unwrap()
        .metadata
        .into_iter()
        .collect();
    assert!(!meta.contains_key("source-key"), "{meta:?}");
    assert_eq!(meta["source-key-sha256"], keys::digest_hex(&key));
    let total: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(total < 2048, "{total}");
}

#[tokio::test]
async fn sqs_all_good_is_an_empty_failure_list() {
    let h = handler();
    h.store().insert(SRC, "a.png", png(10, 10));
    let (report, _) = run(&h, &sqs_event(&[("m1", s3_event(&["a.png"]))])).await;
    assert_eq!(report.response().unwrap(), json!({"batchItemFailures": []}));
}

#[tokio::test]
async fn recursion_guard_skips_own_output() {
    let h = handler();
    h.store().insert(DEST, "x.png", png(10, 10));
    h.store().insert(SRC, "large/x.png", png(10, 10));
    h.store().insert(SRC, "_rejected/y.json", b"{}".to_vec());
    let event = json!({"Records": [
        record(DEST, "x.png"),
        record(SRC, "large/x.png"),
        record(SRC, "_rejected/y.json"),
        record(SRC, "folder/"),
    ]});
    let (report, _) = run(&h, &event).await;
    assert_eq!(report.count("skipped"), 4, "{report:#?}");
    assert!(h.store().gets().is_empty());
    assert!(report.response().is_ok());
}

#[tokio::test]
async fn uses_if_match_on_the_announced_etag_and_skips_changed_objects() {
    let h = handler();
    h.store().fail_get(
        "changed.png",
        StoreError::Changed("PreconditionFailed (HTTP 412)".into()),
    );
    let mut r = record(SRC, "changed.png");
    r["s3"]["object"]["eTag"] = json!("abc123");
    r["s3"]["object"]["versionId"] = json!("v1");
    let (report, _) = run(&h, &json!({"Records": [r]})).await;
    assert!(matches!(&report.objects[0].outcome, Outcome::Skipped(r) if r.contains("changed")));
    let get = &h.store().gets()[0];
    assert_eq!(
        (get.if_match.as_deref(), get.version_id.as_deref()),
        (Some("abc123"), None)
    );
    assert!(h.store().keys(DEST).is_empty());
}

#[tokio::test]
async fn near_the_deadline_no_record_is_started() {
    let h = handler_with(&[("DEADLINE_MARGIN_MS", "5000")]);
    h.store().insert(SRC, "a.png", png(10, 10));
    let metrics = Metrics::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let report = h
        .process(&s3_event(&["a.png", "b.png"]), Some(deadline), &metrics)
        .await
        .unwrap();
    assert_eq!(report.count("failed"), 2);
    assert!(h.store().gets().is_empty());
    assert!(report.response().is_err());
    let sqs = sqs_event(&[("m1", s3_event(&["a.png"]))]);
    let report = h.process(&sqs, Some(deadline), &metrics).await.unwrap();
    assert_eq!(report.batch_item_failures(), ["m1"]);
}

#[tokio::test]
async fn records_running_into_the_deadline_are_cut_off() {
    let h = handler();
    h.store().insert(SRC, "fast.png", png(10, 10));
    h.store().insert(SRC, "slow.png", png(10, 10));
    h.store().delay_get("slow.png", Duration::from_secs(30));
    let metrics = Metrics::new();
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1500);
    let report = h
        .process(
            &s3_event(&["fast.png", "slow.png"]),
            Some(deadline),
            &metrics,
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.objects[0].outcome.name(), "rendered");
    assert!(matches!(&report.objects[1].outcome, Outcome::Failed(r) if r.contains("deadline")));
}

#[tokio::test]
async fn unknown_payload_is_an_error() {
    let h = handler();
    let err = h
        .process(&json!({"foo": 1}), None, &Metrics::new())
        .await
        .unwrap_err();
    let err: InvocationError = err.into();
    assert_eq!(err.error_type, "Renditions.UnrecognisedEvent");
}

#[test]
fn rfc3339_dates() {
    use std::time::{Duration, UNIX_EPOCH};
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(1_767_225_599)),
        "2025-12-31T23:59:59Z"
    );
}

// --- S3 Batch Operations, skip-unchanged, delete sync -------------------------------------------

/// A schema 2.0 Batch invocation over `keys` (given as Batch sends them: URL-encoded).
fn batch_event(bucket: &str, raw_keys: &[&str], force: bool) -> Value {
    let tasks: Vec<Value> = raw_keys
        .iter()
        .enumerate()
        .map(|(i, k)| json!({"taskId": format!("t{i}"), "s3Key": k, "s3VersionId": null, "s3Bucket": bucket}))
        .collect();
    json!({
        "invocationSchemaVersion": "2.0",
        "invocationId": "inv-1",
        "job": {"id": "job-1", "userArguments": {"force": if force { "true" } else { "false" }}},
        "tasks": tasks,
    })
}

fn results(answer: &Value) -> Vec<(String, String, String)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["taskId"].as_str().unwrap().to_owned(),
                r["resultCode"].as_str().unwrap().to_owned(),
                r["resultString"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn batch_tasks_get_a_result_each() {
    let h = handler_with(&[("SOURCE_BUCKETS", "uploads,photos")]);
    h.store().insert(SRC, "a b+c/ünï.png", png(80, 60));
    h.store().insert(SRC, "bad.png", b"not a png".to_vec());
    h.store().fail_get(
        "slow.png",
        StoreError::Transient("SlowDown (HTTP 503)".into()),
    );
    h.store().insert("elsewhere", "x.png", png(8, 8));
    let encoded = encode_key("a b+c/ünï.png");
    let mut event = batch_event(
        SRC,
        &[&encoded, "bad.png", "missing.png", "slow.png"],
        false,
    );
    event["tasks"].as_array_mut().unwrap().push(
        json!({"taskId": "t4", "s3Key": "x.png", "s3VersionId": null, "s3Bucket": "elsewhere"}),
    );
    event["tasks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"taskId": "t5", "s3Bucket": SRC}));
    let (report, _) = run(&h, &event).await;
    let answer = report.response().unwrap();
    assert_eq!(answer["invocationSchemaVersion"], "2.0");
    assert_eq!(answer["invocationId"], "inv-1");
    assert_eq!(answer["treatMissingKeysAs"], "PermanentFailure");
    let r = results(&answer);
    let ids: Vec<&str> = r.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["t0", "t1", "t2", "t3", "t4", "t5"]);
    let code = |i: usize| r[i].1.as_str();
    assert_eq!(code(0), "Succeeded", "{:?}", r[0]);
    assert!(r[0].2.contains("large/a b+c/ünï.png"), "{:?}", r[0]);
    assert_eq!(code(1), "PermanentFailure");
    assert!(
        r[1].2.starts_with("undecodable") || r[1].2.contains("not"),
        "{:?}",
        r[1]
    );
    assert_eq!(code(2), "PermanentFailure");
    assert!(r[2].2.starts_with("not-found"), "{:?}", r[2]);
    assert_eq!(code(3), "TemporaryFailure");
    assert!(r[3].2.contains("SlowDown"), "{:?}", r[3]);
    assert_eq!(code(4), "PermanentFailure");
    assert!(r[4].2.contains("SOURCE_BUCKETS"), "{:?}", r[4]);
    assert!(r[4].2.starts_with("recursion guard"), "{:?}", r[4]);
    assert_eq!(code(5), "PermanentFailure");
    assert!(r[5].2.contains("without s3Key"), "{:?}", r[5]);
    assert!(
        h.store()
            .keys(DEST)
            .contains(&"large/a b+c/ünï.png".to_owned())
    );
}

#[tokio::test]
async fn schema_1_0_names_the_bucket_by_arn() {
    let h = handler();
    h.store().insert(SRC, "p.png", png(20, 20));
    let event = json!({
        "invocationSchemaVersion": "1.0",
        "invocationId": "inv-10",
        "job": {"id": "j"},
        "tasks": [
            {"taskId": "a", "s3Key": "p.png", "s3VersionId": null, "s3BucketArn": "arn:aws:s3:::uploads"},
            {"taskId": "b", "s3Key": "p.png", "s3VersionId": "1", "s3BucketArn": "arn:aws:s3:us-east-1:0123456788:uploads"},
        ],
    });
    let (report, _) = run(&h, &event).await;
    let answer = report.response().unwrap();
    assert_eq!(answer["invocationSchemaVersion"], "1.0");
    let r = results(&answer);
    assert_eq!(r[0].1, "Succeeded", "{r:?}");
    // The second is the same object: already rendered, same configuration.
    assert_eq!(r[1].1, "Succeeded", "{r:?}");
}

#[tokio::test]
async fn unchanged_sources_are_skipped_without_a_download_until_the_config_changes() {
    let h = handler();
    for k in ["a.png", "b.png"] {
        h.store().insert(SRC, k, png(40, 30));
    }
    h.store().insert(SRC, "bad.png", b"junk".to_vec());
    let keys = ["a.png", "b.png", "bad.png"];
    let (first, _) = run(&h, &batch_event(SRC, &keys, false)).await;
    assert_eq!((first.count("rendered"), first.count("rejected")), (2, 1));
    let written = h.store().keys(DEST);
    let rendition = h.store().object(DEST, "large/a.png").unwrap();
    let meta: HashMap<_, _> = rendition.metadata.iter().cloned().collect();
    assert_eq!(meta["config-digest"], h.config_digest());
    assert!(meta.contains_key("source-etag"));

    // The same job again: HEADs only (source + renditions), no GET, no PUT.
    let (gets, puts) = (h.store().calls("get"), h.store().calls("put"));
    let (second, _) = run(&h, &batch_event(SRC, &keys, false)).await;
    assert_eq!(second.count("unchanged"), 2, "{second:#?}");
    assert_eq!(
        second.count("rejected"),
        1,
        "refused before: still a permanent failure"
    );
    assert_eq!(
        (h.store().calls("get"), h.store().calls("put")),
        (gets, puts)
    );
    assert_eq!(h.store().keys(DEST), written);
    let r = results(&second.response().unwrap());
    assert!(r[0].2.starts_with("unchanged:"), "{r:?}");
    assert!(r[2].2.contains("refused before"), "{r:?}");

    // force: everything rendered again.
    let (forced, _) = run(&h, &batch_event(SRC, &keys, true)).await;
    assert_eq!(forced.count("rendered"), 2);
    assert_eq!(
        h.store().calls("put"),
        puts + 5,
        "2 × 2 renditions and the report again"
    );

    // A new source version: re-rendered.
    h.store().insert(SRC, "a.png", png(50, 30));
    let (changed, _) = run(&h, &batch_event(SRC, &keys, false)).await;
    assert_eq!(
        (changed.count("rendered"), changed.count("unchanged")),
        (1, 1)
    );

    // Another configuration (quality, watermark, …) over the same store: re-rendered.
    let other = handler_with(&[("WATERMARK", "text:©")]);
    assert_ne!(other.config_digest(), h.config_digest());
    let other = Handler::new(
        Arc::clone(&h.store),
        Arc::clone(&other.pipeline),
        Arc::clone(&other.settings),
    );
    let (reconfigured, _) = run(&other, &batch_event(SRC, &keys, false)).await;
    assert_eq!(reconfigured.count("rendered"), 2, "{reconfigured:#?}");
}

#[tokio::test]
async fn redelivered_sqs_messages_are_checked_first_fresh_events_are_not() {
    let h = handler();
    h.store().insert(SRC, "a.png", png(40, 30));
    let body = s3_event(&["a.png"]);
    let (first, _) = run(&h, &sqs_event(&[("m1", body.clone())])).await;
    assert_eq!(first.count("rendered"), 1);
    let heads = h.store().calls("head");
    assert_eq!(heads, 0, "a first delivery is rendered without HEADs");
    let mut again = sqs_event(&[("m1", body)]);
    again["Records"][0]["attributes"] = json!({"ApproximateReceiveCount": "2"});
    let gets = h.store().calls("get");
    let (second, _) = run(&h, &again).await;
    assert_eq!(second.count("unchanged"), 1, "{second:#?}");
    assert_eq!(h.store().calls("get"), gets);
    assert!(second.batch_item_failures().is_empty());
}

fn removed_event(key: &str) -> Value {
    let mut r = record(SRC, key);
    r["eventName"] = json!("ObjectRemoved:Delete");
    json!({"Records": [r]})
}

#[tokio::test]
async fn source_deletion_deletes_renditions_and_report_only_when_asked() {
    let h = handler_with(&[("ON_SOURCE_DELETE", "delete")]);
    h.store().insert(SRC, "a.png", png(40, 30));
    h.store().insert(SRC, "bad.png", b"junk".to_vec());
    h.store().insert(DEST, "large/other.png", png(4, 4));
    run(&h, &s3_event(&["a.png", "bad.png"])).await;
    assert_eq!(
        h.store().keys(DEST),
        [
            "_rejected/bad.png.json",
            "large/a.png",
            "large/other.png",
            "thumb/a.png"
        ]
    );

    // Still there: a late delete event leaves the renditions alone.
    let (kept, _) = run(&h, &removed_event("a.png")).await;
    assert_eq!(kept.count("skipped"), 1, "{kept:#?}");
    assert_eq!(h.store().keys(DEST).len(), 4);

    h.store().delete(SRC, "a.png").await.unwrap();
    h.store().delete(SRC, "bad.png").await.unwrap();
    let (deleted, _) = run(&h, &removed_event("a.png")).await;
    assert_eq!(deleted.count("deleted"), 1, "{deleted:#?}");
    run(&h, &removed_event("bad.png")).await;
    assert_eq!(h.store().keys(DEST), ["large/other.png"]);
    // Again: nothing left to delete is success.
    let (again, _) = run(&h, &removed_event("a.png")).await;
    assert_eq!(again.count("deleted"), 1);
    assert!(again.response().is_ok());

    // keep (the default): deletions are ignored.
    let keep = handler();
    keep.store().insert(DEST, "large/a.png", png(4, 4));
    let (ignored, _) = run(&keep, &removed_event("a.png")).await;
    assert_eq!((ignored.ignored, ignored.objects.len()), (1, 0));
    assert_eq!(keep.store().keys(DEST), ["large/a.png"]);
    assert_eq!(keep.store().calls("delete"), 0);
}

/// Checks `value` against the subset of JSON Schema that docs/manifest.schema.json uses: `type`
/// (one or several), `required`, `properties`, `additionalProperties: false`, `items`, `const`,
/// `minimum`, `maximum`, `minItems` and `pattern` (the two patterns it has: hex digests and colours).
fn validate(schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let type_ok = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_ok(t)) {
        return vec![format!("{path}: {value} is not {types:?}")];
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        errors.push(format!("{path}: {value} is not {c}"));
    }
    if let (Some(min), Some(v)) = (schema["minimum"].as_f64(), value.as_f64())
        && v < min
    {
        errors.push(format!("{path}: {v} < {min}"));
    }
    if let (Some(max), Some(v)) = (schema["maximum"].as_f64(), value.as_f64())
        && v > max
    {
        errors.push(format!("{path}: {v} > {max}"));
    }
    if let (Some(p), Some(s)) = (schema["pattern"].as_str(), value.as_str()) {
        let ok = match p {
            "^[0-9a-f]{16}$" => {
                s.len() == 16
                    && s.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            }
            "^#[0-9a-f]{6}$" => {
                s.len() == 7
                    && s.starts_with('#')
                    && s[1..]
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            }
            other => panic!("pattern {other} not supported by this checker"),
        };
        if !ok {
            errors.push(format!("{path}: {s:?} does not match {p}"));
        }
    }
    if let Some(obj) = value.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{path}: missing {r}"));
            }
        }
        for (k, v) in obj {
            match schema["properties"].get(k) {
                Some(s) => errors.extend(validate(s, v, &format!("{path}.{k}"))),
                None if schema["additionalProperties"] == false => {
                    errors.push(format!("{path}: unexpected {k}"));
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = schema["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            errors.push(format!("{path}: fewer than {min} items"));
        }
        for (i, item) in items.iter().enumerate() {
            errors.extend(validate(&schema["items"], item, &format!("{path}[{i}]")));
        }
    }
    errors
}

#[tokio::test]
async fn the_manifest_lists_what_was_written_and_matches_its_schema() {
    let h = handler_with(&[("MANIFEST_KEY_TEMPLATE", "_manifest/{key}.json")]);
    // Stored 60×40 with EXIF orientation 6 would display 40×60; a plain PNG here: 90×60.
    h.store().insert(SRC, "m/flower.png", png(90, 60));
    let (report, _) = run(&h, &s3_event(&["m/flower.png"])).await;
    assert_eq!(report.count("rendered"), 1, "{report:#?}");
    let stored = h
        .store()
        .object(DEST, "_manifest/m/flower.png.json")
        .unwrap();
    assert_eq!(stored.content_type, "application/json");
    assert_eq!(
        stored.cache_control, None,
        "a manifest changes with the configuration"
    );
    let doc: Value = serde_json::from_slice(&stored.bytes).unwrap();
    let schema: Value =
        serde_json::from_str(include_str!("../../docs/manifest.schema.json")).unwrap();
    let errors = validate(&schema, &doc, "$");
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    assert_eq!(doc["source"]["key"], "m/flower.png");
    assert_eq!(
        (
            doc["source"]["width"].clone(),
            doc["source"]["height"].clone()
        ),
        (json!(90), json!(60))
    );
    assert_eq!(doc["config_digest"], h.config_digest());
    // Exactly the renditions written, with their real sizes and bytes.
    let listed = doc["renditions"].as_array().unwrap();
    let written: Vec<String> = h
        .store()
        .keys(DEST)
        .into_iter()
        .filter(|k| !k.starts_with("_manifest/"))
        .collect();
    assert_eq!(listed.len(), written.len());
    for r in listed {
        let key = r["key"].as_str().unwrap();
        let object = h.store().object(DEST, key).unwrap();
        assert_eq!(
            r["bytes"].as_u64().unwrap() as usize,
            object.bytes.len(),
            "{key}"
        );
        assert_eq!(
            (
                r["width"].as_u64().unwrap() as u32,
                r["height"].as_u64().unwrap() as u32
            ),
            decoded_size(&object.bytes),
            "{key}"
        );
        assert_eq!(r["content_type"], object.content_type.as_str());
    }
    let p = &doc["placeholders"];
    assert!(p["thumbhash"].as_str().unwrap().len() > 10);
    assert_eq!(
        &p["blurhash"].as_str().unwrap()[..1],
        "L",
        "4×3 for a landscape image"
    );

    // A schema violation is caught (the checker is not a rubber stamp).
    let mut broken = doc.clone();
    broken["renditions"][0]["width"] = json!(0);
    broken["extra"] = json!(true);
    assert_eq!(validate(&schema, &broken, "$").len(), 2);
    // Deleting the source takes the manifest too.
    let h2 = handler_with(&[
        ("ON_SOURCE_DELETE", "delete"),
        ("MANIFEST_KEY_TEMPLATE", "_manifest/{key}.json"),
    ]);
    h2.store().insert(SRC, "x.png", png(20, 20));
    run(&h2, &s3_event(&["x.png"])).await;
    assert!(
        h2.store()
            .keys(DEST)
            .contains(&"_manifest/x.png.json".to_owned())
    );
    h2.store().delete(SRC, "x.png").await.unwrap();
    let mut ev = s3_event(&["x.png"]);
    ev["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
    run(&h2, &ev).await;
    assert!(
        h2.store().keys(DEST).is_empty(),
        "{:?}",
        h2.store().keys(DEST)
    );
}
