//! Backfills end to end, against real S3 over HTTP (the embedded s3s server on 127.0.0.1):
//! S3 Batch Operations payloads (schema 1.0 and 2.0) through the real `renditions-lambda` binary
//! and the Runtime API; skip-unchanged counted in S3 requests; delete sync; and the
//! `renditions backfill` command in `--local` and `--invoke` modes (the latter through a Lambda
//! Invoke API on loopback that hands each payload to the real function), killed mid-run and
//! resumed from its state file.

#![cfg(feature = "lambda")]

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::local_s3::LocalS3;
use support::*;

const SRC: &str = "uploads";
const DEST: &str = "renditions";

fn batch(schema: &str, tasks: &[(&str, &str)], force: bool) -> Value {
    let tasks: Vec<Value> = tasks
        .iter()
        .enumerate()
        .map(|(i, (bucket, key))| {
            let mut t = json!({"taskId": format!("task-{i}"), "s3Key": key, "s3VersionId": null});
            if schema == "1.0" {
                t["s3BucketArn"] = json!(format!("arn:aws:s3:::{bucket}"));
            } else {
                t["s3Bucket"] = json!(bucket);
            }
            t
        })
        .collect();
    let mut job = json!({"id": "job-1"});
    if schema == "2.0" {
        job["userArguments"] = json!({"force": if force { "true" } else { "false" }});
    }
    json!({"invocationSchemaVersion": schema, "invocationId": "inv-xyz", "job": job, "tasks": tasks})
}

fn results(answer: &Value) -> Vec<(String, String)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resultCode"].as_str().unwrap().to_owned(),
                r["resultString"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_jobs_schema_1_and_2_through_the_function() {
    let s3 = s3_with_buckets("batch_e2e", &[SRC, DEST, "other"]).await;
    let spaced = "inbox/sp ace+plus/ünï 1.jpg";
    put(&s3, SRC, spaced, jpeg(320, 240)).await;
    put(&s3, SRC, "inbox/bad.jpg", b"not an image".to_vec()).await;
    put(&s3, "other", "x.jpg", jpeg(64, 64)).await;
    let api = RuntimeApi::start().await;
    let _f = Function::start(
        &api,
        Some(&s3),
        &[
            ("RENDITIONS", "large:200,thumb:50"),
            ("SOURCE_BUCKETS", SRC),
        ],
    );
    // Keys URL-encoded as Batch sends them (the manifest's encoding).
    let encoded = "inbox/sp%20ace%2Bplus/%C3%BCn%C3%AF%201.jpg";
    for schema in ["1.0", "2.0"] {
        let event = batch(
            schema,
            &[
                (SRC, encoded),
                (SRC, "inbox/bad.jpg"),
                (SRC, "inbox/missing.jpg"),
                ("other", "x.jpg"),
            ],
            true,
        );
        let answer = api.invoke(&event, None).await.response();
        assert_eq!(answer["invocationSchemaVersion"], schema);
        assert_eq!(answer["invocationId"], "inv-xyz");
        assert_eq!(answer["treatMissingKeysAs"], "PermanentFailure");
        let r = results(&answer);
        assert_eq!(r[0].0, "Succeeded", "{schema}: {r:?}");
        assert!(r[0].1.contains(&format!("large/{spaced}")), "{r:?}");
        assert_eq!(r[1].0, "PermanentFailure");
        assert!(
            r[1].1.starts_with("undecodable:") || r[1].1.contains("not"),
            "{r:?}"
        );
        assert_eq!(r[2].0, "PermanentFailure");
        assert!(r[2].1.starts_with("not-found:"), "{r:?}");
        assert_eq!(r[3].0, "PermanentFailure");
        assert!(
            r[3].1.contains("recursion guard") && r[3].1.contains("SOURCE_BUCKETS"),
            "{r:?}"
        );
    }
    let written = keys(&s3, DEST).await;
    assert!(written.contains(&format!("large/{spaced}")), "{written:?}");
    assert!(written.contains(&format!("thumb/{spaced}")));

    // An unparsable Batch payload is an invocation error that says what is wrong.
    let mut bad = batch("2.0", &[(SRC, "a.jpg")], false);
    bad["invocationSchemaVersion"] = json!("9.9");
    let error = api.invoke(&bad, None).await.error();
    assert_eq!(error["errorType"], "Renditions.UnrecognisedEvent");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("invocationSchemaVersion"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_batch_over_unchanged_sources_reads_and_writes_nothing() {
    let s3 = s3_with_buckets("batch_noop", &[SRC, DEST]).await;
    let keys_: Vec<String> = (0..6).map(|i| format!("p/{i}.jpg")).collect();
    for k in &keys_ {
        put(&s3, SRC, k, jpeg(120, 90)).await;
    }
    put(&s3, SRC, "p/bad.jpg", b"junk".to_vec()).await;
    let tasks: Vec<(&str, &str)> = keys_
        .iter()
        .map(|k| (SRC, k.as_str()))
        .chain([(SRC, "p/bad.jpg")])
        .collect();
    let api = RuntimeApi::start().await;
    let _f = Function::start(&api, Some(&s3), &[("RENDITIONS", "large:100,thumb:30")]);
    let first = results(
        &api.invoke(&batch("2.0", &tasks, false), None)
            .await
            .response(),
    );
    assert_eq!(
        first.iter().filter(|r| r.1.starts_with("rendered")).count(),
        6
    );
    let faults = s3.faults();
    let (gets, puts, heads) = (
        faults.calls("GetObject"),
        faults.calls("PutObject"),
        faults.calls("HeadObject"),
    );
    let second = results(
        &api.invoke(&batch("2.0", &tasks, false), None)
            .await
            .response(),
    );
    assert_eq!(
        second
            .iter()
            .filter(|r| r.1.starts_with("unchanged"))
            .count(),
        6,
        "{second:?}"
    );
    assert!(second[6].1.contains("refused before"), "{second:?}");
    assert_eq!(faults.calls("GetObject"), gets, "no source downloaded");
    assert_eq!(faults.calls("PutObject"), puts, "nothing written");
    // One HEAD of the source and one per rendition (auto: .jpg keys only, as the template
    // keeps the source's extension), plus the report for the refused one.
    let heads_per_object = faults.calls("HeadObject") - heads;
    println!("no-op re-run of 7 tasks: {heads_per_object} HEADs, 0 GETs, 0 PUTs");
    assert_eq!(heads_per_object, 6 * 3 + (3 + 1));
    let forced = results(
        &api.invoke(&batch("2.0", &tasks, true), None)
            .await
            .response(),
    );
    assert_eq!(
        forced
            .iter()
            .filter(|r| r.1.starts_with("rendered"))
            .count(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_sync_removes_renditions_and_report_only_when_asked() {
    let s3 = s3_with_buckets("delete_sync", &[SRC, DEST]).await;
    let api = RuntimeApi::start().await;
    let _f = Function::start(
        &api,
        Some(&s3),
        &[
            ("RENDITIONS", "large:100,thumb:30"),
            ("ON_SOURCE_DELETE", "delete"),
        ],
    );
    put(&s3, SRC, "d/cat.jpg", jpeg(120, 90)).await;
    put(&s3, SRC, "d/bad.jpg", b"junk".to_vec()).await;
    api.invoke(&s3_event(SRC, &["d/cat.jpg", "d/bad.jpg"]), None)
        .await
        .response();
    assert_eq!(
        keys(&s3, DEST).await,
        [
            "_manifest/d/cat.jpg.json",
            "_rejected/d/bad.jpg.json",
            "large/d/cat.jpg",
            "thumb/d/cat.jpg"
        ]
    );
    let client = s3.client();
    for k in ["d/cat.jpg", "d/bad.jpg"] {
        client
            .delete_object()
            .bucket(SRC)
            .key(k)
            .send()
            .await
            .unwrap();
    }
    let removed = |key: &str| {
        let mut ev = s3_event(SRC, &[key]);
        ev["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
        ev
    };
    let answer = api.invoke(&removed("d/cat.jpg"), None).await.response();
    assert_eq!(answer["deleted"], 1, "{answer}");
    // Through EventBridge ("Object Deleted") too.
    let mut eb = eventbridge_event(SRC, "d/bad.jpg");
    eb["detail-type"] = json!("Object Deleted");
    let answer = api.invoke(&eb, None).await.response();
    assert_eq!(answer["deleted"], 1, "{answer}");
    assert!(keys(&s3, DEST).await.is_empty());

    // With the default (keep), nothing is deleted.
    let s3k = s3_with_buckets("delete_keep", &[SRC, DEST]).await;
    let api2 = RuntimeApi::start().await;
    let _g = Function::start(&api2, Some(&s3k), &[("RENDITIONS", "large:100")]);
    put(&s3k, SRC, "k.jpg", jpeg(50, 50)).await;
    api2.invoke(&s3_event(SRC, &["k.jpg"]), None)
        .await
        .response();
    s3k.client()
        .delete_object()
        .bucket(SRC)
        .key("k.jpg")
        .send()
        .await
        .unwrap();
    let mut ev = s3_event(SRC, &["k.jpg"]);
    ev["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
    let answer = api2.invoke(&ev, None).await.response();
    assert_eq!(
        (answer["ignored"].clone(), answer["deleted"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(
        keys(&s3k, DEST).await,
        ["_manifest/k.jpg.json", "large/k.jpg"]
    );
}

/// Runs `renditions backfill ARGS` with the function's settings for `s3`; (status, stdout, stderr).
fn backfill(s3: &LocalS3, args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = backfill_command(s3, args, vars);
    let out = cmd.output().expect("run renditions backfill");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn backfill_command(s3: &LocalS3, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_renditions"));
    cmd.arg("backfill")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("DEST_BUCKET", DEST)
        .env("WATERMARK", "none")
        .env("RENDITIONS", "large:100,thumb:30")
        .stdin(Stdio::null());
    for (k, v) in s3.env() {
        cmd.env(k, v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_local_renders_then_skips_then_rerenders_on_a_config_change() {
    let s3 = s3_with_buckets("backfill_local", &[SRC, DEST]).await;
    let mut sources = vec!["a b+c/ünï.jpg".to_owned()];
    sources.extend((0..10).map(|i| format!("img/{i:02}.jpg")));
    for k in &sources {
        put(&s3, SRC, k, jpeg(80, 60)).await;
    }
    put(&s3, SRC, "img/zz-bad.jpg", b"junk".to_vec()).await;
    let args = [
        "s3://uploads/",
        "--local",
        "--page-size",
        "5",
        "--tasks-per-invoke",
        "3",
        "--quiet",
    ];
    let (code, out, err) = backfill(&s3, &args, &[]);
    assert_eq!(code, 1, "one refused image: {out}\n{err}");
    assert!(
        out.contains("listed 12, rendered 11, skipped unchanged 0, skipped 0, refused 1, failed 0"),
        "{out}"
    );
    assert!(err.contains("refused s3://uploads/img/zz-bad.jpg"), "{err}");
    let written = keys(&s3, DEST).await;
    assert!(
        written.contains(&"large/a b+c/ünï.jpg".to_owned()),
        "{written:?}"
    );

    let faults = s3.faults();
    let (gets, puts) = (faults.calls("GetObject"), faults.calls("PutObject"));
    let (code, out, _) = backfill(&s3, &args, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("rendered 0, skipped unchanged 11"), "{out}");
    assert_eq!(
        (faults.calls("GetObject"), faults.calls("PutObject")),
        (gets, puts),
        "a no-op re-run downloads and writes nothing"
    );

    let (_, out, _) = backfill(&s3, &args, &[("WATERMARK", "text:new")]);
    assert!(out.contains("rendered 11, skipped unchanged 0"), "{out}");
    let mut forced = args.to_vec();
    forced.push("--force");
    let (_, out, _) = backfill(&s3, &forced, &[("WATERMARK", "text:new")]);
    assert!(out.contains("rendered 11"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_manifest_is_what_batch_expects() {
    let s3 = s3_with_buckets("backfill_manifest", &[SRC, DEST, "ops"]).await;
    for k in ["x/holiday beach, day 2+3.jpg", "x/ünï.jpg", "x/plain.jpg"] {
        put(&s3, SRC, k, jpeg(8, 8)).await;
    }
    let dir = scratch("backfill_manifest_out");
    let manifest = dir.join("manifest.csv");
    let (code, job, err) = backfill(
        &s3,
        &[
            "s3://uploads/x/",
            "--manifest-out",
            manifest.to_str().unwrap(),
            "--report-bucket",
            "ops",
            "--function-arn",
            "arn:aws:lambda:us-east-1:111122223333:function:renditions",
            "--role-arn",
            "arn:aws:iam::111122223333:role/batch",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(
        csv,
        "uploads,x/holiday%20beach%2C%20day%202%2B3.jpg\nuploads,x/plain.jpg\nuploads,x/%C3%BCn%C3%AF.jpg\n"
    );
    let job: Value = serde_json::from_str(&job).unwrap();
    assert_eq!(job["AccountId"], "111122223333");
    assert_eq!(
        job["Operation"]["LambdaInvoke"]["InvocationSchemaVersion"],
        "2.0"
    );
    let location = &job["Manifest"]["Location"];
    let arn = location["ObjectArn"].as_str().unwrap();
    let key = arn.strip_prefix("arn:aws:s3:::ops/").unwrap();
    let (uploaded, _, _) = get(&s3, "ops", key).await;
    assert_eq!(uploaded, csv.as_bytes());
    assert!(!location["ETag"].as_str().unwrap().is_empty());
    assert_eq!(job["Report"]["Bucket"], "arn:aws:s3:::ops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_invoke_over_1000_objects_killed_and_resumed_loses_and_repeats_nothing() {
    const N: usize = 1000;
    let s3 = s3_with_buckets("backfill_invoke", &[SRC, DEST]).await;
    let image = jpeg(48, 36);
    let client = s3.client();
    let puts = futures_util::stream::iter((0..N).map(|i| {
        let (client, image) = (client.clone(), image.clone());
        async move {
            client
                .put_object()
                .bucket(SRC)
                .key(format!("bulk/{i:04} photo.jpg"))
                .body(image.into())
                .send()
                .await
                .unwrap();
        }
    }));
    futures_util::StreamExt::collect::<Vec<()>>(futures_util::StreamExt::buffer_unordered(
        puts, 16,
    ))
    .await;
    let puts_before = s3.faults().calls("PutObject");
    let runtime = RuntimeApi::start().await;
    let _f = Function::start(
        &runtime,
        Some(&s3),
        &[("RENDITIONS", "large:40,thumb:16"), ("SOURCE_BUCKETS", SRC)],
    );
    let invoke = InvokeApi::start(runtime.clone()).await;
    let dir = scratch("backfill_invoke_state");
    let state = dir.join("state.json");
    let lambda_endpoint = invoke.endpoint();
    let vars = [("AWS_ENDPOINT_URL_LAMBDA", lambda_endpoint.as_str())];
    let args = [
        "s3://uploads/bulk/",
        "--invoke",
        "renditions-lambda",
        "--state",
        state.to_str().unwrap(),
        "--page-size",
        "100",
        "--tasks-per-invoke",
        "10",
        "--concurrency",
        "4",
    ];

    // Kill the first run once a few pages are done (bounded wait), by its PID.
    let mut first = backfill_command(&s3, &args, &vars)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    let mut killed_after = 0;
    while Instant::now() < until {
        if let Ok(text) = std::fs::read_to_string(&state)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            // Mid-page: some invocations answered beyond what the state file records, so the
            // resumed run meets objects that were rendered but not recorded.
            let done = v["counts"]["rendered"].as_u64().unwrap_or(0);
            let answered = 10 * invoke.calls.lock().unwrap().len() as u64;
            if done >= 300 && answered >= done + 30 {
                killed_after = done;
                break;
            }
        }
        if first.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = first.kill();
    let _ = first.wait();
    assert!(killed_after >= 300, "the first run never got 3 pages done");
    assert!(
        killed_after < N as u64,
        "the first run finished before it could be killed"
    );

    let t = Instant::now();
    let (code, out, err) = backfill(&s3, &args, &vars);
    let elapsed = t.elapsed();
    assert_eq!(code, 0, "{out}\n{err}");
    println!("resumed run: {out} ({:.1} s)", elapsed.as_secs_f64());

    // Every object rendered exactly once over both runs, as the function answered.
    let mut rendered: HashMap<String, usize> = HashMap::new();
    for (payload, answer) in invoke.calls.lock().unwrap().iter() {
        let Answer::Response(answer) = answer else {
            panic!("function error: {answer:?}")
        };
        for (task, result) in payload["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .zip(results(answer))
        {
            if result.1.starts_with("rendered") {
                *rendered
                    .entry(task["s3Key"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    assert!(rendered.values().all(|n| *n == 1), "none rendered twice");
    // Invocations cut off by the kill rendered without their answer being recorded: the
    // function's writes are the full count. Two renditions and a manifest per object, each
    // written once.
    assert_eq!(
        s3.faults().calls("PutObject") - puts_before,
        3 * N as u64,
        "every object rendered exactly once over both runs"
    );
    let written = keys(&s3, DEST).await;
    assert_eq!(written.len(), 3 * N, "two renditions and a manifest each");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(v["finished"], true);
    let counts = &v["counts"];
    assert!(
        counts["unchanged"].as_u64().unwrap() >= 30,
        "the resumed run skipped what the killed one had done: {counts}"
    );
    assert_eq!(
        counts["listed"].as_u64(),
        Some(N as u64),
        "pages recorded once each"
    );
    assert_eq!(
        counts["rendered"].as_u64().unwrap() + counts["unchanged"].as_u64().unwrap(),
        N as u64
    );
}
