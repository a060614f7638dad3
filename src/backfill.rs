//! `renditions backfill s3://bucket/prefix`: renders what is already in a bucket, three ways
//! (docs/backfill.md says when to use which):
//!
//! - `--manifest-out FILE`: writes the S3 Batch Operations CSV manifest (`bucket,key`, keys
//!   URL-encoded as Batch expects) and prints the `CreateJob` request (LambdaInvoke, schema 2.0,
//!   completion report to a prefix) for `aws s3control create-job --cli-input-json`; with
//!   `--report-bucket` the manifest is uploaded there first, so the request is complete;
//! - `--invoke FUNCTION`: lists the prefix and invokes the deployed function directly with the
//!   same Batch payloads, a few tasks per invocation, a bounded number in flight;
//! - `--local`: renders in this process (the function's handler, the same settings from the
//!   environment) against any S3 endpoint.
//!
//! `--invoke` and `--local` go page by page (ListObjectsV2) and record, after each page, where
//! the next one starts in `--state FILE`: killed and started again, they go on from the page that
//! was in progress, whose finished objects are then skipped as unchanged (nothing rendered
//! twice, nothing missed). Progress (rate, ETA once the listing is done) goes to stderr; a
//! summary ends the run. Exit status: 0 everything rendered or up to date, 1 some image refused
//! (a permanent failure), 3 some object failed transiently (run again), 2 usage or setup.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::event::keys;
use crate::function::App;
use crate::settings::{self, S3Settings};
use crate::store::{self, ListPage, ObjectStore, PutRequest, S3Store};
use crate::telemetry::Metrics;

/// `renditions backfill` usage.
pub const USAGE: &str = "\
usage: renditions backfill s3://BUCKET[/PREFIX] MODE [OPTIONS]

modes (exactly one):
  --manifest-out FILE        write the S3 Batch Operations CSV manifest and print the CreateJob
                             request; with --report-bucket the manifest is uploaded there
                             (renditions/manifests/) and the request is ready to run
      --function-arn ARN     the function the job invokes (the stack's FunctionArn output)
      --role-arn ARN         the role Batch assumes (the stack's BackfillBatchRoleArn output)
      --report-bucket NAME   where the manifest and the completion report go (never a source
                             bucket: every object written there would trigger the function)
  --invoke FUNCTION          invoke the deployed function directly (name or ARN)
  --local                    render in this process, with the function's settings from the
                             environment (DEST_BUCKET, RENDITIONS, …)

options for --invoke and --local:
  --state FILE               resume from and record progress in FILE
  --concurrency N            invocations (or task groups) in flight [4]
  --tasks-per-invoke N       objects per invocation [10]
  --page-size N              keys per listing page [1000]
  --force                    render even objects whose renditions are up to date
  --quiet                    no progress line

exit status: 0 all rendered or up to date, 1 some image refused, 2 usage or setup error,
3 some objects failed transiently (run again: finished ones are skipped)
";

/// Which way to backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Manifest {
        out: PathBuf,
        function_arn: Option<String>,
        role_arn: Option<String>,
        report_bucket: Option<String>,
    },
    Invoke(String),
    Local,
}

#[derive(Debug, Clone)]
struct Args {
    bucket: String,
    prefix: String,
    mode: Mode,
    state: Option<PathBuf>,
    concurrency: usize,
    tasks_per_invoke: usize,
    page_size: u32,
    force: bool,
    quiet: bool,
}

fn parse_args(args: Vec<String>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut source = None;
    let (mut manifest, mut invoke, mut local) = (None, None, false);
    let (mut function_arn, mut role_arn, mut report_bucket) = (None, None, None);
    let mut a = Args {
        bucket: String::new(),
        prefix: String::new(),
        mode: Mode::Local,
        state: None,
        concurrency: 4,
        tasks_per_invoke: 10,
        page_size: 1000,
        force: false,
        quiet: false,
    };
    let number = |p: &mut lexopt::Parser, name: &str, max: u64| -> Result<u64, String> {
        let v = p
            .value()
            .map_err(|e| e.to_string())?
            .string()
            .map_err(|e| format!("{e:?}"))?;
        v.parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| format!("--{name}: `{v}` must be 1..={max}"))
    };
    let text = |p: &mut lexopt::Parser| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .string()
            .map_err(|e| format!("{e:?}"))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("manifest-out") => manifest = Some(PathBuf::from(text(&mut p)?)),
            Long("function-arn") => function_arn = Some(text(&mut p)?),
            Long("role-arn") => role_arn = Some(text(&mut p)?),
            Long("report-bucket") => report_bucket = Some(text(&mut p)?),
            Long("invoke") => invoke = Some(text(&mut p)?),
            Long("local") => local = true,
            Long("state") => a.state = Some(PathBuf::from(text(&mut p)?)),
            Long("concurrency") => a.concurrency = number(&mut p, "concurrency", 256)? as usize,
            Long("tasks-per-invoke") => {
                a.tasks_per_invoke = number(&mut p, "tasks-per-invoke", 100)? as usize;
            }
            Long("page-size") => a.page_size = number(&mut p, "page-size", 1000)? as u32,
            Long("force") => a.force = true,
            Long("quiet") => a.quiet = true,
            Long("help") | Short('h') => return Err(String::new()),
            Value(v) if source.is_none() => {
                source = Some(v.string().map_err(|e| format!("{e:?}"))?);
            }
            other => return Err(format!("unexpected {}", other.unexpected())),
        }
    }
    let source = source.ok_or("no s3://bucket/prefix given")?;
    let rest = source
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{source}` is not s3://bucket[/prefix]"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("`{source}` names no bucket"));
    }
    a.bucket = bucket.to_owned();
    a.prefix = prefix.to_owned();
    a.mode = match (manifest, invoke, local) {
        (Some(out), None, false) => Mode::Manifest {
            out,
            function_arn,
            role_arn,
            report_bucket,
        },
        (None, Some(f), false) => Mode::Invoke(f),
        (None, None, true) => Mode::Local,
        _ => return Err("give exactly one of --manifest-out, --invoke, --local".into()),
    };
    Ok(a)
}

/// Runs `renditions backfill …` (the arguments after `backfill`); returns the exit status.
pub fn run(args: Vec<String>) -> i32 {
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            print!("{USAGE}");
            return 0;
        }
        Err(msg) => {
            eprint!("renditions backfill: {msg}\n\n{USAGE}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("renditions backfill: cannot start the async runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(async move {
        match run_async(a).await {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("renditions backfill: {msg}");
                2
            }
        }
    })
}

async fn run_async(a: Args) -> Result<i32, String> {
    let s3_settings = S3Settings::from_settings(settings::env).map_err(|e| e.to_string())?;
    let sdk = store::load_sdk_config(&s3_settings).await;
    let store = S3Store::new(&sdk, s3_settings.force_path_style);
    match &a.mode {
        Mode::Manifest {
            out,
            function_arn,
            role_arn,
            report_bucket,
        } => write_manifest(&a, &store, out, function_arn, role_arn, report_bucket).await,
        Mode::Invoke(function) => {
            // Not the S3 timeouts: an invocation may run up to Lambda's 15 minutes, and an
            // attempt cut off by a client timeout would be sent again while the first still
            // runs. Throttling (429) and 5xx are still retried by the SDK.
            let timeouts = aws_sdk_lambda::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(905))
                .operation_timeout(Duration::from_secs(2700))
                .build();
            let conf = aws_sdk_lambda::config::Builder::from(&sdk)
                .timeout_config(timeouts)
                .build();
            let client = aws_sdk_lambda::Client::from_conf(conf);
            let target = Target::Invoke {
                client,
                function: function.clone(),
            };
            run_tasks(&a, &store, &target).await
        }
        Mode::Local => {
            let app = App::from_env().await.map_err(|e| e.to_string())?;
            run_tasks(&a, &store, &Target::Local(Box::new(app))).await
        }
    }
}

// --- the manifest and the CreateJob request ------------------------------------------------------

/// A key as a Batch CSV manifest field: every byte outside `A-Z a-z 0-9 - _ . ~ /`
/// percent-encoded (a space as `%20`, so the key reads the same whether Batch decodes it
/// form-style or strictly; no `,`, `+` or line break is left to quote).
pub fn manifest_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn write_manifest(
    a: &Args,
    store: &S3Store,
    out: &PathBuf,
    function_arn: &Option<String>,
    role_arn: &Option<String>,
    report_bucket: &Option<String>,
) -> Result<i32, String> {
    let mut csv = String::new();
    let mut token: Option<String> = None;
    let mut count = 0u64;
    loop {
        let page = store
            .list(&a.bucket, &a.prefix, token.as_deref(), a.page_size)
            .await
            .map_err(|e| format!("listing s3://{}/{}: {e}", a.bucket, a.prefix))?;
        for o in page.objects.iter().filter(|o| !o.key.ends_with('/')) {
            csv.push_str(&format!("{},{}\n", a.bucket, manifest_key(&o.key)));
            count += 1;
        }
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    std::fs::write(out, &csv).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "{count} objects listed; manifest written to {}",
        out.display()
    );
    let name = format!(
        "renditions/manifests/{}-{}.csv",
        a.bucket,
        keys::digest_hex(&csv)
    );
    let (manifest_arn, etag) = match report_bucket {
        Some(bucket) => {
            store
                .put(PutRequest {
                    bucket: bucket.clone(),
                    key: name.clone(),
                    body: bytes::Bytes::from(csv.clone()),
                    content_type: "text/csv".into(),
                    cache_control: None,
                    metadata: Vec::new(),
                })
                .await
                .map_err(|e| format!("uploading the manifest to s3://{bucket}/{name}: {e}"))?;
            let head = store
                .head(bucket, &name, None)
                .await
                .map_err(|e| format!("reading back s3://{bucket}/{name}: {e}"))?;
            let etag = head.and_then(|h| h.etag).unwrap_or_default();
            eprintln!("manifest uploaded to s3://{bucket}/{name}");
            (format!("arn:aws:s3:::{bucket}/{name}"), etag)
        }
        None => (
            "arn:aws:s3:::REPORT_BUCKET/".to_owned() + &name,
            "ETAG_OF_THE_UPLOADED_MANIFEST".to_owned(),
        ),
    };
    let function_arn = function_arn
        .clone()
        .unwrap_or_else(|| "FUNCTION_ARN".to_owned());
    let account = function_arn
        .split(':')
        .nth(4)
        .unwrap_or("ACCOUNT_ID")
        .to_owned();
    let report = report_bucket
        .clone()
        .unwrap_or_else(|| "REPORT_BUCKET".to_owned());
    let job = json!({
        "AccountId": account,
        "ConfirmationRequired": true,
        "Operation": {"LambdaInvoke": {
            "FunctionArn": function_arn,
            "InvocationSchemaVersion": "2.0",
            "UserArguments": {"force": if a.force { "true" } else { "false" }},
        }},
        "Manifest": {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {"ObjectArn": manifest_arn, "ETag": etag},
        },
        "Report": {
            "Bucket": format!("arn:aws:s3:::{report}"),
            "Prefix": "renditions/reports",
            "Format": "Report_CSV_20180820",
            "Enabled": true,
            "ReportScope": "FailedTasksOnly",
        },
        "Priority": 10,
        "RoleArn": role_arn.clone().unwrap_or_else(|| "BACKFILL_BATCH_ROLE_ARN".to_owned()),
        "ClientRequestToken": keys::digest_hex(&format!("{name}{etag}")),
        "Description": format!("renditions backfill s3://{}/{}", a.bucket, a.prefix),
    });
    println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
    eprintln!(
        "save this as job.json and run: aws s3control create-job --cli-input-json file://job.json\n\
         (ConfirmationRequired: the job waits in Suspended with its task count; start it with \
         aws s3control update-job-status --requested-job-status Ready)"
    );
    Ok(0)
}

// --- --invoke and --local --------------------------------------------------------------------------

/// Where task payloads are sent.
enum Target {
    Invoke {
        client: aws_sdk_lambda::Client,
        function: String,
    },
    Local(Box<App>),
}

impl Target {
    /// Sends one Batch 2.0 payload; the answer's `results`, or why there is none.
    async fn send(&self, payload: Value) -> Result<Value, String> {
        match self {
            Target::Local(app) => {
                let metrics = Metrics::new();
                let report = app
                    .handler()
                    .process(&payload, None, &metrics)
                    .await
                    .map_err(|e| e.to_string())?;
                report.response().map_err(|e| e.to_string())
            }
            Target::Invoke { client, function } => {
                let out = client
                    .invoke()
                    .function_name(function)
                    .payload(aws_sdk_lambda::primitives::Blob::new(
                        payload.to_string().into_bytes(),
                    ))
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "invoking {function}: {}",
                            aws_sdk_lambda::error::DisplayErrorContext(&e)
                        )
                    })?;
                let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
                if let Some(kind) = out.function_error() {
                    return Err(format!(
                        "{function} failed ({kind}): {}",
                        String::from_utf8_lossy(&body[..body.len().min(500)])
                    ));
                }
                serde_json::from_slice(body)
                    .map_err(|e| format!("{function} answered non-JSON: {e}"))
            }
        }
    }
}

/// Counts by result, and the lines worth printing.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Counts {
    listed: u64,
    rendered: u64,
    unchanged: u64,
    skipped: u64,
    rejected: u64,
    failed: u64,
}

impl Counts {
    fn done(&self) -> u64 {
        self.rendered + self.unchanged + self.skipped + self.rejected + self.failed
    }
}

/// What `--state FILE` holds.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct State {
    source: String,
    /// Where the next page starts (`None` with `finished`: done; without: the first page).
    next: Option<String>,
    finished: bool,
    counts: Counts,
}

fn load_state(path: &PathBuf, source: &str) -> Result<State, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let state: State = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a backfill state file: {e}", path.display()))?;
            if state.source != source {
                return Err(format!(
                    "{} records a backfill of {}, not {source}",
                    path.display(),
                    state.source
                ));
            }
            Ok(state)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
            source: source.to_owned(),
            ..State::default()
        }),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn save_state(path: &PathBuf, state: &State) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One Batch 2.0 payload for `keys` of `bucket`.
fn payload(bucket: &str, keys: &[String], force: bool, serial: u64) -> Value {
    let tasks: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            json!({"taskId": format!("b{serial}-{i}"), "s3Key": keys::encode_key(k), "s3VersionId": null, "s3Bucket": bucket})
        })
        .collect();
    json!({
        "invocationSchemaVersion": "2.0",
        "invocationId": format!("renditions-backfill-{serial}"),
        "job": {"id": "renditions-backfill", "userArguments": {"force": if force { "true" } else { "false" }}},
        "tasks": tasks,
    })
}

async fn run_tasks(a: &Args, store: &S3Store, target: &Target) -> Result<i32, String> {
    let source = format!("s3://{}/{}", a.bucket, a.prefix);
    let mut state = match &a.state {
        Some(path) => load_state(path, &source)?,
        None => State {
            source: source.clone(),
            ..State::default()
        },
    };
    if state.finished {
        eprintln!("{source}: the state file says this backfill finished; delete it to run again");
        print_summary(&source, &state.counts, Duration::ZERO);
        return Ok(exit_code(&state.counts));
    }
    let started = Instant::now();
    let counts = Mutex::new(state.counts.clone());
    let base_done = state.counts.done();
    let mut listing_done = false;
    let mut serial = 0u64;
    let mut last_progress = Instant::now();
    loop {
        let page: ListPage = store
            .list(&a.bucket, &a.prefix, state.next.as_deref(), a.page_size)
            .await
            .map_err(|e| format!("listing {source}: {e}"))?;
        let keys: Vec<String> = page.objects.iter().map(|o| o.key.clone()).collect();
        lock(&counts).listed += keys.len() as u64;
        let chunks: Vec<(u64, Vec<String>)> = keys
            .chunks(a.tasks_per_invoke)
            .map(|c| {
                serial += 1;
                (serial, c.to_vec())
            })
            .collect();
        let mut stream = futures_util::stream::iter(chunks)
            .map(|(serial, chunk)| async move {
                let answer = target
                    .send(payload(&a.bucket, &chunk, a.force, serial))
                    .await;
                (chunk, answer)
            })
            .buffer_unordered(a.concurrency);
        while let Some((chunk, answer)) = stream.next().await {
            tally(&a.bucket, &chunk, answer, &counts);
            if !a.quiet && last_progress.elapsed() >= Duration::from_secs(1) {
                progress(&lock(&counts), base_done, started, listing_done);
                last_progress = Instant::now();
            }
        }
        listing_done = page.next.is_none();
        state.next = page.next;
        state.finished = listing_done;
        state.counts = lock(&counts).clone();
        if let Some(path) = &a.state {
            save_state(path, &state)?;
        }
        if listing_done {
            break;
        }
    }
    if !a.quiet {
        progress(&state.counts, base_done, started, true);
        eprintln!();
    }
    print_summary(&source, &state.counts, started.elapsed());
    Ok(exit_code(&state.counts))
}

fn lock(m: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts one answer (per-task results), printing each refusal and failure.
fn tally(bucket: &str, chunk: &[String], answer: Result<Value, String>, counts: &Mutex<Counts>) {
    let mut c = lock(counts);
    let results = match answer {
        Ok(v) => v["results"].as_array().cloned().unwrap_or_default(),
        Err(reason) => {
            for key in chunk {
                eprintln!("failed  s3://{bucket}/{key}: {reason}");
            }
            c.failed += chunk.len() as u64;
            return;
        }
    };
    for (i, key) in chunk.iter().enumerate() {
        // `payload` names task i of a chunk `b<serial>-<i>`: results are matched by that id.
        let suffix = format!("-{i}");
        let r = results
            .iter()
            .find(|r| r["taskId"].as_str().is_some_and(|id| id.ends_with(&suffix)))
            .cloned()
            .unwrap_or(Value::Null);
        let code = r["resultCode"].as_str().unwrap_or("missing");
        let text = r["resultString"]
            .as_str()
            .unwrap_or("no result for this task");
        match code {
            "Succeeded" if text.starts_with("rendered") => c.rendered += 1,
            "Succeeded" if text.starts_with("unchanged") => c.unchanged += 1,
            "Succeeded" => c.skipped += 1,
            "PermanentFailure" => {
                eprintln!("refused s3://{bucket}/{key}: {text}");
                c.rejected += 1;
            }
            _ => {
                eprintln!("failed  s3://{bucket}/{key}: {text}");
                c.failed += 1;
            }
        }
    }
}

fn progress(c: &Counts, base_done: u64, started: Instant, listing_done: bool) {
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let rate = (c.done() - base_done) as f64 / secs;
    let eta = if listing_done && rate > 0.0 {
        let left = c.listed.saturating_sub(c.done()) as f64 / rate;
        format!("ETA {}:{:02}", (left / 60.0) as u64, (left % 60.0) as u64)
    } else {
        "ETA: still listing".to_owned()
    };
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\rlisted {} · done {} (rendered {}, unchanged {}, refused {}, failed {}) · {rate:.1}/s · {eta}   ",
        c.listed,
        c.done(),
        c.rendered,
        c.unchanged,
        c.rejected,
        c.failed
    );
    let _ = err.flush();
}

fn print_summary(source: &str, c: &Counts, elapsed: Duration) {
    println!(
        "{source}: listed {}, rendered {}, skipped unchanged {}, skipped {}, refused {}, failed {} in {:.1} s",
        c.listed,
        c.rendered,
        c.unchanged,
        c.skipped,
        c.rejected,
        c.failed,
        elapsed.as_secs_f64()
    );
}

fn exit_code(c: &Counts) -> i32 {
    if c.failed > 0 {
        3
    } else if c.rejected > 0 {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn parses_the_three_modes_and_refuses_mixtures() {
        let a = args(&[
            "s3://uploads/photos/2019/",
            "--invoke",
            "fn",
            "--concurrency",
            "8",
        ])
        .unwrap();
        assert_eq!(
            (a.bucket.as_str(), a.prefix.as_str()),
            ("uploads", "photos/2019/")
        );
        assert_eq!(a.mode, Mode::Invoke("fn".into()));
        assert_eq!(a.concurrency, 8);
        let a = args(&["s3://uploads", "--local", "--force"]).unwrap();
        assert_eq!(
            (a.prefix.as_str(), a.force, a.mode),
            ("", true, Mode::Local)
        );
        let a = args(&[
            "s3://u/p",
            "--manifest-out",
            "m.csv",
            "--report-bucket",
            "ops",
        ])
        .unwrap();
        assert!(matches!(a.mode, Mode::Manifest { report_bucket: Some(ref b), .. } if b == "ops"));
        for bad in [
            &["s3://u", "--local", "--invoke", "f"][..],
            &["s3://u"],
            &["uploads", "--local"],
            &["s3:///x", "--local"],
            &["s3://u", "--local", "--concurrency", "0"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn manifest_keys_are_encoded_for_either_decoding() {
        assert_eq!(manifest_key("photos/IMG_0001.JPG"), "photos/IMG_0001.JPG");
        assert_eq!(
            manifest_key("holiday beach, day 2+3.jpg"),
            "holiday%20beach%2C%20day%202%2B3.jpg"
        );
        assert_eq!(manifest_key("ünï.jpg"), "%C3%BCn%C3%AF.jpg");
        for key in ["a b+c,d%41.jpg", "ünï/x y.png", "plain.jpg"] {
            assert_eq!(keys::decode_key(&manifest_key(key)).unwrap(), key);
        }
    }

    #[test]
    fn tally_and_exit_codes() {
        let counts = Mutex::new(Counts::default());
        let chunk: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let answer = json!({"results": [
            // Out of order: results are matched by task id.
            {"taskId": "b1-4", "resultCode": "TemporaryFailure", "resultString": "SlowDown"},
            {"taskId": "b1-0", "resultCode": "Succeeded", "resultString": "rendered: large/a"},
            {"taskId": "b1-1", "resultCode": "Succeeded", "resultString": "unchanged: renditions up to date"},
            {"taskId": "b1-2", "resultCode": "Succeeded", "resultString": "skipped: a folder marker"},
            {"taskId": "b1-3", "resultCode": "PermanentFailure", "resultString": "undecodable: junk"},
        ]});
        tally("b", &chunk, Ok(answer), &counts);
        let c = lock(&counts).clone();
        assert_eq!(
            (c.rendered, c.unchanged, c.skipped, c.rejected, c.failed),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(exit_code(&c), 3);
        tally("b", &chunk[..2], Err("throttled".into()), &counts);
        assert_eq!(lock(&counts).failed, 3);
        let ok = Counts {
            rendered: 2,
            rejected: 1,
            ..Counts::default()
        };
        assert_eq!(exit_code(&ok), 1);
        assert_eq!(exit_code(&Counts::default()), 0);
    }
}
