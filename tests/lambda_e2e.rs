//! End-to-end tests of the real `renditions-lambda` binary. Each test starts an S3 server
//! (s3s-fs, embedded in the test process) and a Lambda Runtime API on loopback, runs the
//! binary against both like Lambda would, and checks what lands in the buckets, what the
//! function answers, what it prints (logs, EMF) and what it sends to the X-Ray daemon.

#![cfg(feature = "lambda")]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::local_s3::Fault;
use support::*;

const SRC: &str = "uploads";
const DEST: &str = "renditions";
const ROOT: &str = "1-6751b2c4-0123456789abcdef01234567";
const PARENT: &str = "53995c3f42cd8ad8";

fn sampled() -> String {
    format!("Root={ROOT};Parent={PARENT};Sampled=1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_batch_renders_every_image_and_reports_the_bad_one() {
    let s3 = s3_with_buckets("s3_batch", &[SRC, DEST]).await;
    let photo = "inbox/2026/lady bird.jpg";
    let bad = "inbox/2026/not-a-photo.jpg";
    let deep = "a/b/c/d/e/f/g/fleur+café 猫 (1).png";
    let rotated = "cameras/IMG_0001.JPG";
    let webp = "storm.webp";
    put(&s3, SRC, photo, sample("ladybird.jpg")).await;
    put(&s3, SRC, bad, b"plain text, not a JPEG".to_vec()).await;
    put(&s3, SRC, deep, sample("flower-alpha.png")).await;
    put(&s3, SRC, rotated, sample("dune-exif-rotated.jpg")).await;
    put(&s3, SRC, webp, sample("storm.webp")).await;

    let api = RuntimeApi::start().await;
    let _f = Function::start(
        &api,
        Some(&s3),
        &[
            ("RENDITIONS", "large:640,thumb:160"),
            ("SOURCE_BUCKETS", SRC),
            ("CACHE_CONTROL", "public, max-age=60"),
            ("RECORD_CONCURRENCY", "2"),
        ],
    );
    // The bad image sits in the middle of the batch.
    let event = s3_event(SRC, &[photo, deep, bad, rotated, webp]);
    let answer = api.invoke(&event, None).await.response();
    assert_eq!(answer["rendered"], 4, "{answer}");
    assert_eq!(answer["rejected"], 1, "{answer}");

    let expected = [
        "_manifest/a/b/c/d/e/f/g/fleur+café 猫 (1).png.json",
        "_manifest/cameras/IMG_0001.JPG.json",
        "_manifest/inbox/2026/lady bird.jpg.json",
        "_manifest/storm.webp.json",
        "_rejected/inbox/2026/not-a-photo.jpg.json",
        "large/a/b/c/d/e/f/g/fleur+café 猫 (1).png",
        "large/cameras/IMG_0001.JPG",
        "large/inbox/2026/lady bird.jpg",
        "large/storm.webp",
        "thumb/a/b/c/d/e/f/g/fleur+café 猫 (1).png",
        "thumb/cameras/IMG_0001.JPG",
        "thumb/inbox/2026/lady bird.jpg",
        "thumb/storm.webp",
    ];
    assert_eq!(keys(&s3, DEST).await, expected);

    let (bytes, ct, meta) = get(&s3, DEST, "large/inbox/2026/lady bird.jpg").await;
    assert_eq!(ct.as_deref(), Some("image/jpeg"));
    assert_eq!(size_of(&bytes), (640, 400));
    assert_eq!(meta["source-bucket"], SRC);
    assert_eq!(meta["source-key"], "inbox/2026/lady+bird.jpg");
    assert_eq!(
        (meta["width"].as_str(), meta["height"].as_str()),
        ("640", "400")
    );
    assert!(meta.contains_key("source-etag"));
    let (bytes, _, _) = get(&s3, DEST, "thumb/inbox/2026/lady bird.jpg").await;
    assert_eq!(size_of(&bytes), (160, 100));
    // Transparent PNG stays PNG; no upscaling past the source (520x391).
    let (bytes, ct, _) = get(&s3, DEST, "large/a/b/c/d/e/f/g/fleur+café 猫 (1).png").await;
    assert_eq!(ct.as_deref(), Some("image/png"));
    assert_eq!(size_of(&bytes), (520, 391));
    let (bytes, _, _) = get(&s3, DEST, "thumb/a/b/c/d/e/f/g/fleur+café 猫 (1).png").await;
    assert_eq!(size_of(&bytes), (160, 120));
    // EXIF orientation 6: stored 875x1400, shown (and rendered) as landscape.
    let (bytes, _, _) = get(&s3, DEST, "large/cameras/IMG_0001.JPG").await;
    assert_eq!(size_of(&bytes), (640, 400));
    let (bytes, ct, _) = get(&s3, DEST, "large/storm.webp").await;
    assert_eq!(ct.as_deref(), Some("image/jpeg"));
    let (w, h) = size_of(&bytes);
    assert!(w == 640 && (426..=427).contains(&h), "{w}x{h}");

    let (report, ct, _) = get(&s3, DEST, "_rejected/inbox/2026/not-a-photo.jpg.json").await;
    assert_eq!(ct.as_deref(), Some("application/json"));
    let report: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["bucket"], SRC);
    assert_eq!(report["key"], bad);
    assert_eq!(report["kind"], "unsupported");
    assert!(
        report["reason"].as_str().unwrap().contains("text"),
        "{report}"
    );
    assert!(
        report["etag"].as_str().is_some_and(|e| e.len() == 32),
        "{report}"
    );
    assert!(report["time"].as_str().unwrap().ends_with('Z'));

    // Same event again: same keys, same bytes (idempotent), source untouched.
    let before = get(&s3, DEST, "large/storm.webp").await.0;
    api.invoke(&event, None).await.response();
    assert_eq!(keys(&s3, DEST).await, expected);
    assert_eq!(get(&s3, DEST, "large/storm.webp").await.0, before);
    assert_eq!(get(&s3, SRC, webp).await.0, sample("storm.webp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_batch_reports_only_retryable_messages() {
    let s3 = s3_with_buckets("sqs_batch", &[SRC, DEST]).await;
    put(&s3, SRC, "ok.jpg", jpeg(300, 200)).await;
    put(&s3, SRC, "flaky.jpg", jpeg(300, 200)).await;
    put(&s3, SRC, "bad.jpg", b"GIF89a? no".to_vec()).await;
    s3.faults()
        .fail("GetObject", SRC, "flaky.jpg", Fault::Internal, None);

    let api = RuntimeApi::start().await;
    let _f = Function::start(&api, Some(&s3), &[("RENDITIONS", "small:100")]);
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-01T00:00:00.000Z", "Bucket": SRC, "RequestId": "R", "HostId": "H"});
    let event = sqs_event(&[
        ("m-ok", s3_event(SRC, &["ok.jpg"])),
        ("m-missing", s3_event(SRC, &["missing.jpg"])),
        ("m-flaky", s3_event(SRC, &["flaky.jpg"])),
        ("m-bad", s3_event(SRC, &["bad.jpg"])),
        ("m-test", test_event),
    ]);
    let answer = api.invoke(&event, None).await.response();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-missing"}, {"itemIdentifier": "m-flaky"}]})
    );
    // The SDK retried the 500s (standard mode, 3 attempts) before giving up.
    assert_eq!(s3.faults().hits("GetObject", SRC, "flaky.jpg"), 3);
    let keys = keys(&s3, DEST).await;
    assert!(keys.contains(&"small/ok.jpg".to_owned()), "{keys:?}");
    assert!(
        keys.contains(&"_rejected/bad.jpg.json".to_owned()),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("flaky")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_test_events_recursion_and_transient_errors() {
    let s3 = s3_with_buckets("eventbridge", &[SRC, DEST]).await;
    put(&s3, SRC, "eb/photo one.jpg", jpeg(200, 100)).await;
    put(&s3, SRC, "throttled.jpg", jpeg(200, 100)).await;
    s3.faults()
        .fail("GetObject", SRC, "throttled.jpg", Fault::SlowDown, None);
    let api = RuntimeApi::start().await;
    let _f = Function::start(&api, Some(&s3), &[("RENDITIONS", "small:50")]);

    let answer = api
        .invoke(&eventbridge_event(SRC, "eb/photo one.jpg"), None)
        .await
        .response();
    assert_eq!(
        (answer["trigger"].clone(), answer["rendered"].clone()),
        (json!("eventbridge"), json!(1))
    );
    let (bytes, _, _) = get(&s3, DEST, "small/eb/photo one.jpg").await;
    assert_eq!(size_of(&bytes), (50, 25));

    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-01T00:00:00.000Z", "Bucket": SRC, "RequestId": "R", "HostId": "H"});
    let answer = api.invoke(&test_event, None).await.response();
    assert_eq!(answer["ignored"], 1);

    // Our own output (destination bucket, destination prefixes) is never processed.
    let own = json!({"Records": [
        s3_record(DEST, "small/eb/photo one.jpg", None),
        s3_record(SRC, "small/x.jpg", None),
        s3_record(SRC, "_rejected/x.jpg.json", None),
    ]});
    let answer = api.invoke(&own, None).await.response();
    assert_eq!(answer["skipped"], 3, "{answer}");

    // A transient failure fails a direct invocation so Lambda retries it.
    invoke_expecting_retry(&api, &s3_event(SRC, &["throttled.jpg"]), "throttled.jpg").await;

    // Not an S3 payload at all.
    let error = api.invoke(&json!({"hello": "world"}), None).await.error();
    assert_eq!(
        error["errorType"], "Renditions.UnrecognisedEvent",
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_is_posted_to_init_error() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("DEST_BUCKET", "")], "DEST_BUCKET"),
        (&[("RENDITIONS", "bad")], "RENDITIONS"),
        (&[("SOURCE_BUCKETS", "uploads,renditions")], "DEST_BUCKET"),
        (&[("JPEG_QUALITY", "101")], "JPEG_QUALITY"),
    ];
    for (vars, variable) in cases {
        let api = RuntimeApi::start().await;
        let mut f = Function::start(&api, None, vars);
        let (error_type, body) = api
            .init_error(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no init error for {vars:?}; stdout: {:?}", f.stdout()));
        assert_eq!(error_type, "Runtime.InitError");
        assert_eq!(body["errorType"], "Renditions.ConfigError", "{body}");
        let message = body["errorMessage"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{variable}:")),
            "{vars:?}: {message}"
        );
        let code = f.wait_exit(Duration::from_secs(10));
        assert!(code.is_some_and(|c| c != 0), "{vars:?}: exit {code:?}");
    }
}

/// Receives X-Ray daemon datagrams until `quiet` passes without one.
async fn drain(rx: &tokio::net::UdpSocket, quiet: Duration) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, rx.recv(&mut buf)).await {
        let text = std::str::from_utf8(&buf[..n]).expect("utf-8 datagram");
        let (header, body) = text.split_once('\n').expect("header line");
        assert_eq!(header, r#"{"format": "json", "version": 1}"#);
        docs.push(serde_json::from_str(body).expect("JSON document"));
        assert!(docs.len() < 500);
    }
    docs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xray_subsegments_for_s3_calls_and_stages() {
    let s3 = s3_with_buckets("xray", &[SRC, DEST]).await;
    put(&s3, SRC, "traced.jpg", jpeg(320, 240)).await;
    let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let daemon = rx.local_addr().unwrap().to_string();
    let api = RuntimeApi::start().await;
    let _f = Function::start(
        &api,
        Some(&s3),
        &[
            ("RENDITIONS", "large:200,thumb:50"),
            ("AWS_XRAY_DAEMON_ADDRESS", &daemon),
        ],
    );
    let event = s3_event(SRC, &["traced.jpg", "missing.jpg"]);

    // Not sampled: nothing is sent.
    let unsampled = format!("Root={ROOT};Parent={PARENT};Sampled=0");
    api.invoke(&event, Some(&unsampled)).await.response();
    assert!(drain(&rx, Duration::from_millis(500)).await.is_empty());

    api.invoke(&event, Some(&sampled())).await.response();
    let docs = drain(&rx, Duration::from_millis(700)).await;
    let ids: HashSet<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), docs.len(), "ids are unique");
    for d in &docs {
        assert_eq!(d["type"], "subsegment");
        assert_eq!(d["trace_id"], ROOT, "{d}");
        let parent = d["parent_id"].as_str().unwrap();
        assert!(
            parent == PARENT || ids.contains(parent),
            "unknown parent: {d}"
        );
        assert!(
            d["end_time"].as_f64().unwrap() >= d["start_time"].as_f64().unwrap(),
            "{d}"
        );
    }
    let named = |n: &str| {
        docs.iter()
            .filter(move |d| d["name"] == n)
            .collect::<Vec<_>>()
    };
    let objects = named("object");
    assert_eq!(objects.len(), 2, "{docs:#?}");
    let good = objects
        .iter()
        .find(|d| d["annotations"]["aws_s3_key"] == "traced.jpg")
        .unwrap();
    assert_eq!(good["parent_id"], PARENT);
    assert_eq!(good["annotations"]["format"], "jpeg");
    assert_eq!(good["annotations"]["width"], 320);
    assert_eq!(good["annotations"]["height"], 240);
    assert_eq!(good["annotations"]["renditions"], 2);
    assert!(good["annotations"]["bytes_out"].as_u64().unwrap() > 0);
    for stage in [
        "download",
        "decode",
        "colour",
        "orient",
        "watermark",
        "upload",
    ] {
        let spans = named(stage);
        assert!(
            spans.iter().any(|s| s["parent_id"] == good["id"]),
            "{stage} under the object: {docs:#?}"
        );
    }
    assert_eq!(
        named("resize")
            .iter()
            .filter(|s| s["parent_id"] == good["id"])
            .count(),
        2
    );
    assert_eq!(
        named("encode")
            .iter()
            .filter(|s| s["parent_id"] == good["id"])
            .count(),
        2
    );
    // The stages sit where they ran: pipeline order, no overlap, inside the object.
    let pipeline_stages = [
        "decode",
        "colour",
        "resize",
        "orient",
        "watermark",
        "encode",
    ];
    let time = |d: &Value, k: &str| d[k].as_f64().unwrap();
    let mut stages: Vec<&Value> = docs
        .iter()
        .filter(|d| d["parent_id"] == good["id"])
        .filter(|d| pipeline_stages.contains(&d["name"].as_str().unwrap()))
        .collect();
    stages.sort_by(|a, b| time(a, "start_time").total_cmp(&time(b, "start_time")));
    let order: Vec<&str> = stages.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        [
            "decode",
            "colour",
            "resize",
            "resize",
            "orient",
            "watermark",
            "encode",
            "orient",
            "watermark",
            "encode"
        ]
    );
    for pair in stages.windows(2) {
        assert!(
            time(pair[0], "end_time") <= time(pair[1], "start_time") + 1e-6,
            "overlap: {} then {}",
            pair[0],
            pair[1]
        );
    }
    assert!(time(stages[0], "start_time") >= time(good, "start_time") - 1e-6);
    assert!(time(stages[stages.len() - 1], "end_time") <= time(good, "end_time") + 1e-6);

    let s3_docs = named("S3");
    let op = |d: &&&Value, o: &str| d["aws"]["operation"] == o;
    let gets: Vec<_> = s3_docs.iter().filter(|d| op(d, "GetObject")).collect();
    let puts: Vec<_> = s3_docs.iter().filter(|d| op(d, "PutObject")).collect();
    assert_eq!(
        (gets.len(), puts.len()),
        (2, 4),
        "2 gets; 2 renditions + 1 manifest + 1 rejection report"
    );
    for d in s3_docs.iter() {
        assert_eq!(d["namespace"], "aws");
        assert_eq!(d["aws"]["region"], "us-east-1");
        assert!(d["http"]["response"]["status"].as_u64().is_some(), "{d}");
    }
    let ok_get = gets
        .iter()
        .find(|d| d["aws"]["key"] == "traced.jpg")
        .unwrap();
    assert_eq!(ok_get["http"]["response"]["status"], 200);
    assert!(
        ok_get.get("error").is_none() && ok_get.get("fault").is_none(),
        "{ok_get}"
    );
    let download = named("download")
        .into_iter()
        .find(|d| d["parent_id"] == good["id"])
        .unwrap();
    assert_eq!(ok_get["parent_id"], download["id"]);
    let failed_get = gets
        .iter()
        .find(|d| d["aws"]["key"] == "missing.jpg")
        .unwrap();
    assert_eq!(
        failed_get["http"]["response"]["status"], 404,
        "{failed_get}"
    );
    assert_eq!(failed_get["error"], true, "{failed_get}");
    assert!(
        failed_get["cause"]["exceptions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("NoSuchKey"),
        "{failed_get}"
    );
    let missing = objects
        .iter()
        .find(|d| d["annotations"]["aws_s3_key"] == "missing.jpg")
        .unwrap();
    assert_eq!(missing["error"], true);
    assert!(puts.iter().all(|d| d["http"]["response"]["status"] == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_xray_daemon_does_not_break_the_invocation() {
    let s3 = s3_with_buckets("xray_dead", &[SRC, DEST]).await;
    put(&s3, SRC, "a.jpg", jpeg(100, 100)).await;
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let api = RuntimeApi::start().await;
    let _f = Function::start(
        &api,
        Some(&s3),
        &[("RENDITIONS", "s:20"), ("AWS_XRAY_DAEMON_ADDRESS", &dead)],
    );
    for _ in 0..2 {
        let answer = api
            .invoke(&s3_event(SRC, &["a.jpg"]), Some(&sampled()))
            .await
            .response();
        assert_eq!(answer["rendered"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_metrics_and_summary_logs_on_stdout() {
    let s3 = s3_with_buckets("emf", &[SRC, DEST]).await;
    put(&s3, SRC, "one.jpg", jpeg(120, 80)).await;
    put(&s3, SRC, "two.jpg", jpeg(80, 120)).await;
    put(&s3, SRC, "empty.jpg", Vec::new()).await;
    put(&s3, SRC, "text.jpg", b"hello".to_vec()).await;
    let api = RuntimeApi::start().await;
    let f = Function::start(
        &api,
        Some(&s3),
        &[
            ("RENDITIONS", "s:40"),
            ("METRICS_NAMESPACE", "RenditionsTest"),
        ],
    );
    api.invoke(
        &s3_event(SRC, &["one.jpg", "empty.jpg", "two.jpg", "text.jpg"]),
        None,
    )
    .await
    .response();
    assert!(
        f.wait_line(Duration::from_secs(5), |l| l.contains("\"RejectionKind\""))
            .await,
        "no EMF lines: {:#?}",
        f.stdout()
    );
    let lines = f.json_lines();
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    let main = emf
        .iter()
        .find(|l| l.get("ImagesProcessed").is_some())
        .unwrap();
    let directive = &main["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "RenditionsTest");
    assert_eq!(main["FunctionName"], "renditions-test");
    assert_eq!(main["ImagesProcessed"], 2);
    assert_eq!(main["ImagesRejected"], 2);
    assert!(main["InputBytes"].as_u64().unwrap() > 0 && main["OutputBytes"].as_u64().unwrap() > 0);
    // Every fetched object is timed; the pipeline stages only for rendered ones.
    assert!(
        main["DownloadDuration"]
            .as_array()
            .is_some_and(|a| a.len() == 4),
        "{main}"
    );
    for stage in [
        "DecodeDuration",
        "ResizeDuration",
        "EncodeDuration",
        "UploadDuration",
    ] {
        assert!(
            main[stage].as_array().is_some_and(|a| a.len() == 2),
            "{stage}: {main}"
        );
    }
    let by_kind = |k: &str| {
        emf.iter()
            .find(|l| l["RejectionKind"] == k)
            .map(|l| l["ImagesRejected"].clone())
    };
    assert_eq!(by_kind("empty"), Some(json!(1)));
    assert_eq!(by_kind("unsupported"), Some(json!(1)));

    // One INFO summary line per rendered object, with stage durations and the request id.
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "object rendered")
        .collect();
    assert_eq!(summaries.len(), 2, "{lines:#?}");
    for s in summaries {
        assert_eq!(s["level"], "INFO");
        assert!(
            s["requestId"]
                .as_str()
                .is_some_and(|r| r.starts_with("req-")),
            "{s}"
        );
        for field in [
            "download_ms",
            "decode_ms",
            "resize_ms",
            "encode_ms",
            "upload_ms",
            "bytes_in",
            "bytes_out",
        ] {
            assert!(s[field].is_number(), "{field}: {s}");
        }
    }
    let rejected: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "image rejected")
        .collect();
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected
            .iter()
            .all(|l| l["level"] == "ERROR" && l["bucket"] == SRC && l["kind"].is_string())
    );
}

/// The key policy (docs/lambda.md, "Keys") against a real S3 server: keys kept byte for byte, no
/// collision between `a.jpg` and `a.png` or between NFC and NFD spellings, and a `..` key refused
/// without being read. (1,024-byte keys: s3s-fs stores a key's metadata under a file named
/// after the key, so it cannot hold keys over ~180 bytes; they are tested against the in-memory
/// store in `src/lambda/handler/tests.rs` and against moto in the load-test smoke run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_policy_over_real_s3() {
    let s3 = s3_with_buckets("keys", &[SRC, DEST]).await;
    let nfc = "photos/caf\u{e9}.jpg";
    let nfd = "photos/cafe\u{301}.jpg";
    let sources = [
        ("a.jpg", jpeg(300, 150), (100, 50)),
        ("a.png", jpeg(150, 300), (50, 100)), // a JPEG named .png: sniffed, not trusted
        (nfc, jpeg(400, 100), (100, 25)),
        (nfd, jpeg(100, 400), (25, 100)),
    ];
    for (key, bytes, _) in &sources {
        put(&s3, SRC, key, bytes.clone()).await;
    }
    let api = RuntimeApi::start().await;
    let _f = Function::start(&api, Some(&s3), &[("RENDITIONS", "small:100")]);
    let dotted = "x/../a.jpg";
    let mut event_keys: Vec<&str> = sources.iter().map(|(k, _, _)| *k).collect();
    event_keys.push(dotted);
    let answer = api
        .invoke(&s3_event(SRC, &event_keys), None)
        .await
        .response();
    assert_eq!(
        (answer["rendered"].clone(), answer["rejected"].clone()),
        (json!(4), json!(1)),
        "{answer}"
    );

    for (key, _, size) in &sources {
        let (bytes, ct, meta) = get(&s3, DEST, &format!("small/{key}")).await;
        assert_eq!(size_of(&bytes), *size, "{key}");
        assert_eq!(ct.as_deref(), Some("image/jpeg"), "{key}");
        assert_eq!(meta["source-key"], renditions::event::keys::encode_key(key));
    }
    let dest = keys(&s3, DEST).await;
    let reports: Vec<&String> = dest
        .iter()
        .filter(|k| k.starts_with("_rejected/"))
        .collect();
    assert_eq!(reports.len(), 1, "{dest:?}");
    assert!(
        reports[0].starts_with("_rejected/unsafe-keys/"),
        "{reports:?}"
    );
    let (report, _, _) = get(&s3, DEST, reports[0]).await;
    let report: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(
        (report["key"].as_str(), report["kind"].as_str()),
        (Some(dotted), Some("unsafe-key"))
    );
    assert_eq!(
        dest.len(),
        9,
        "4 renditions, their 4 manifests, 1 report: {dest:?}"
    );
}
