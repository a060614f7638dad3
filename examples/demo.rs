//! `demo` (`make demo`): the Lambda function's whole path on one machine, with no AWS
//! account, Docker or network. Starts an embedded S3 server (s3s-fs over `demo-out/s3`),
//! uploads `assets/samples` to a source bucket through the real aws-sdk-s3 client, builds
//! the S3 ObjectCreated event Lambda would receive, and feeds it to the same handler code
//! the function runs. Prints a summary table and where the rendition files are.
//!
//! Pipeline settings come from the usual variables (`RENDITIONS`, `OUTPUT_FORMAT`, …);
//! `DEMO_OUT` moves the output folder (default `demo-out`), `DEMO_SAMPLES` the samples folder.

// The embedded S3 server lives with the test support (it is not part of the function's build);
// the demo borrows it.
#[allow(dead_code)]
#[path = "../tests/support/local_s3.rs"]
mod local_s3;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use local_s3::LocalS3;
use renditions::Handler;
use renditions::LambdaSettings;
use renditions::S3Store;
use renditions::event::keys::encode_key;
use renditions::{LogConfig, LogFormat, Metrics, init_logging_with};
use renditions::{Outcome, Report};
use renditions::{Pipeline, PipelineConfig, setting_env};
use serde_json::{Value, json};

const SOURCE_BUCKET: &str = "uploads";
const DEST_BUCKET: &str = "renditions";
const KEY_PREFIX: &str = "inbox/2026/";

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    // Warnings and errors only (the rejected sample logs its ERROR line); RUST_LOG overrides.
    let filter = setting_env("RUST_LOG").unwrap_or_else(|| "warn".into());
    let _ = init_logging_with(
        LogConfig {
            format: LogFormat::Text,
            filter,
            ansi: false,
        },
        None,
    );

    let out = PathBuf::from(setting_env("DEMO_OUT").unwrap_or_else(|| "demo-out".into()));
    let samples_dir = PathBuf::from(
        setting_env("DEMO_SAMPLES")
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples").into()),
    );
    let s3_root = out.join("s3");
    if s3_root.exists() {
        std::fs::remove_dir_all(&s3_root)
            .map_err(|e| format!("cannot clear {}: {e}", s3_root.display()))?;
    }
    let server = LocalS3::start(&s3_root)
        .await
        .map_err(|e| format!("cannot start the embedded S3 server: {e}"))?;
    println!(
        "S3 server (s3s-fs)  {}  serving {}",
        server.endpoint(),
        server.root().display()
    );

    let client = server.client();
    for bucket in [SOURCE_BUCKET, DEST_BUCKET] {
        client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "create bucket {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
    }

    // Upload the samples (and the bad file) through the real S3 client.
    let samples = sample_files(&samples_dir)?;
    let mut records = Vec::new();
    for path in &samples {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("odd file name {}", path.display()))?;
        let key = format!("{KEY_PREFIX}{name}");
        let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let size = bytes.len();
        let put = client
            .put_object()
            .bucket(SOURCE_BUCKET)
            .key(&key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "upload {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        records.push(s3_record(&key, size, put.e_tag().unwrap_or_default()));
    }
    println!(
        "uploaded {} files to s3://{SOURCE_BUCKET}/{KEY_PREFIX}",
        samples.len()
    );

    // The same handler the Lambda function runs, over the same S3 store type.
    let handler = build_handler(&server)?;
    let event = json!({ "Records": records });
    let metrics = Metrics::new();
    let started = Instant::now();
    let report = handler
        .process(&event, None, &metrics)
        .await
        .map_err(|e| format!("the handler refused the event: {e}"))?;
    let wall = started.elapsed();

    print_table(&report, wall);
    print_rejections(&report, &server);
    let dest = server.bucket_dir(DEST_BUCKET);
    let page = write_page(&report, &dest, &out)?;
    println!("\npage built from the manifests: {}", page.display());
    println!("\nRenditions are files under {}/", dest.display());
    println!(
        "(source objects under {}/)",
        server.bucket_dir(SOURCE_BUCKET).display()
    );
    match report.response() {
        Ok(summary) => println!("handler answer: {summary}"),
        Err(e) => return Err(format!("the handler asked for a retry: {e}").into()),
    }
    Ok(())
}

/// The sample files, sorted by name.
fn sample_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(
                        e.to_ascii_lowercase().as_str(),
                        "jpg" | "jpeg" | "png" | "webp" | "gif" | "tif" | "tiff" | "bmp"
                    )
                })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no sample images in {}", dir.display()).into());
    }
    Ok(files)
}

/// One record of an S3 ObjectCreated notification, as S3 sends it (key URL-encoded).
fn s3_record(key: &str, size: usize, etag: &str) -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": local_s3::REGION,
        "eventTime": renditions::rfc3339(std::time::SystemTime::now()),
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "demo"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "demo", "x-amz-id-2": "demo"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "demo",
            "bucket": {"name": SOURCE_BUCKET, "ownerIdentity": {"principalId": "demo"}, "arn": format!("arn:aws:s3:::{SOURCE_BUCKET}")},
            "object": {"key": encode_key(key), "size": size, "eTag": etag.trim_matches('"'), "sequencer": "0"}
        }
    })
}

fn build_handler(server: &LocalS3) -> Result<Handler<S3Store>, Box<dyn Error>> {
    let defaults = [
        ("DEST_BUCKET", DEST_BUCKET),
        ("SOURCE_BUCKETS", SOURCE_BUCKET),
    ];
    let get = |k: &str| {
        setting_env(k).or_else(|| {
            defaults
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
    };
    let config = PipelineConfig::from_settings(get, &|path| {
        std::fs::read(path).map_err(|e| format!("cannot read the watermark file `{path}`: {e}"))
    })?;
    let settings = LambdaSettings::from_settings(get, &config.renditions)?;
    let pipeline = Pipeline::new(config)?;
    let store = S3Store::new(&server.sdk_config(), true);
    Ok(Handler::new(
        Arc::new(store),
        Arc::new(pipeline),
        Arc::new(settings),
    ))
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn print_table(report: &Report, wall: Duration) {
    println!();
    println!(
        "{:<28} {:<6} {:>11} {:>9}  {:<8} {:>11} {:>9} {:>9}  {:>7} {:>7} {:>7}",
        "image",
        "format",
        "input",
        "bytes",
        "rendition",
        "size",
        "bytes",
        "type",
        "render",
        "upload",
        "total"
    );
    println!("{}", "-".repeat(130));
    for o in &report.objects {
        let name = o.object.key.trim_start_matches(KEY_PREFIX);
        match &o.outcome {
            Outcome::Rendered(r) => {
                let render = r.timings.total();
                for (i, w) in r.renditions.iter().enumerate() {
                    let first = i == 0;
                    println!(
                        "{:<28} {:<6} {:>11} {:>9}  {:<8} {:>11} {:>9} {:>9}  {:>7} {:>7} {:>7}",
                        if first { name } else { "" },
                        if first { r.format.as_str() } else { "" },
                        if first {
                            format!("{}x{}", r.width, r.height)
                        } else {
                            String::new()
                        },
                        if first {
                            r.bytes_in.to_string()
                        } else {
                            String::new()
                        },
                        w.rendition,
                        format!("{}x{}", w.width, w.height),
                        w.bytes,
                        w.content_type.trim_start_matches("image/"),
                        if first {
                            format!("{} ms", ms(render))
                        } else {
                            String::new()
                        },
                        if first {
                            format!("{} ms", ms(r.upload))
                        } else {
                            String::new()
                        },
                        if first {
                            format!("{} ms", ms(o.elapsed))
                        } else {
                            String::new()
                        },
                    );
                }
                if r.orientation != 1 {
                    println!("{:<28} (EXIF orientation {} applied)", "", r.orientation);
                }
            }
            other => println!(
                "{:<28} {}: {}",
                name,
                other.name().to_uppercase(),
                describe(other)
            ),
        }
    }
    println!("{}", "-".repeat(130));
    println!(
        "{} images: {} rendered, {} rejected, in {} ms (records in parallel; render = decode+resize+encode)",
        report.objects.len(),
        report.count("rendered"),
        report.count("rejected") + report.count("unreadable"),
        ms(wall)
    );
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Rejected { kind, reason, .. } | Outcome::Unreadable { kind, reason, .. } => {
            format!("{kind}: {reason}")
        }
        Outcome::Skipped(r)
        | Outcome::Guarded(r)
        | Outcome::Unchanged(r)
        | Outcome::Failed(r)
        | Outcome::Internal(r) => r.clone(),
        Outcome::Removed(keys) => format!("deleted {}", keys.join(", ")),
        Outcome::Rendered(_) => String::new(),
    }
}

fn print_rejections(report: &Report, server: &LocalS3) {
    for o in &report.objects {
        if let Outcome::Rejected {
            report: Some(key), ..
        }
        | Outcome::Unreadable {
            report: Some(key), ..
        } = &o.outcome
        {
            let path = server.bucket_dir(DEST_BUCKET).join(key);
            println!(
                "\nrejection report s3://{DEST_BUCKET}/{key}  ({})",
                path.display()
            );
            if let Ok(text) = std::fs::read_to_string(&path) {
                for line in text.lines() {
                    println!("  {line}");
                }
            }
        }
    }
}

/// Prints each image's placeholders from its manifest and writes `DEMO_OUT/index.html`, built only
/// from the manifests the handler wrote: per upload, an `<img srcset sizes>` of its renditions with
/// width and height from the manifest, its dominant colour painted until the image loads, and
/// each rejection with its reason.
fn write_page(report: &Report, dest: &Path, out: &Path) -> Result<PathBuf, Box<dyn Error>> {
    let link = |key: &str| {
        let mut url = String::from("s3/renditions/");
        for b in key.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        url
    };
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut figures = String::new();
    let mut rejections = String::new();
    println!();
    for o in &report.objects {
        match &o.outcome {
            Outcome::Rendered(_) => {
                let path = dest
                    .join("_manifest")
                    .join(format!("{}.json", o.object.key));
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the manifest {}: {e}", path.display()))?;
                let m: Value = serde_json::from_str(&text)?;
                let p = &m["placeholders"];
                let dominant = p["dominant_colour"].as_str().unwrap_or("#cccccc");
                println!(
                    "placeholder {:<34} dominant {dominant}  average {}  blurhash {}",
                    o.object.key,
                    p["average_colour"].as_str().unwrap_or(""),
                    p["blurhash"].as_str().unwrap_or("")
                );
                let mut renditions: Vec<&Value> = m["renditions"]
                    .as_array()
                    .map(|r| r.iter().collect())
                    .unwrap_or_default();
                renditions.sort_by_key(|r| r["width"].as_u64().unwrap_or(0));
                // A source smaller than two boxes gives two renditions of one width: one entry.
                renditions.dedup_by_key(|r| r["width"].as_u64().unwrap_or(0));
                let Some(largest) = renditions.last() else {
                    continue;
                };
                let srcset: Vec<String> = renditions
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {}w",
                            link(r["key"].as_str().unwrap_or("")),
                            r["width"].as_u64().unwrap_or(0)
                        )
                    })
                    .collect();
                figures.push_str(&format!(
                    "<figure><img src=\"{}\" srcset=\"{}\" sizes=\"(max-width: 640px) 100vw, 640px\" \
                     width=\"{}\" height=\"{}\" style=\"background:{dominant}\" alt=\"{}\">\
                     <figcaption>{} · {} {}×{} · {} renditions</figcaption></figure>\n",
                    link(largest["key"].as_str().unwrap_or("")),
                    esc(&srcset.join(", ")),
                    largest["width"],
                    largest["height"],
                    esc(&o.object.key),
                    esc(&o.object.key),
                    m["source"]["format"].as_str().unwrap_or(""),
                    m["source"]["display_width"],
                    m["source"]["display_height"],
                    m["renditions"].as_array().map_or(0, Vec::len)
                ));
            }
            Outcome::Rejected { kind, reason, .. } | Outcome::Unreadable { kind, reason, .. } => {
                rejections.push_str(&format!(
                    "<li><b>{}</b>: {} ({})</li>\n",
                    esc(&o.object.key),
                    esc(reason),
                    esc(kind)
                ));
            }
            _ => {}
        }
    }
    let html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\"><title>renditions demo</title>\n\
         <style>body{{font:14px system-ui;margin:2em}}figure{{display:inline-block;margin:1em;max-width:640px}}\
         img{{max-width:100%;height:auto;display:block}}</style>\n\
         <h1>Renditions, from the manifests</h1>\n{figures}<h2>Refused</h2><ul>\n{rejections}</ul>\n"
    );
    let page = out.join("index.html");
    std::fs::write(&page, html).map_err(|e| format!("cannot write {}: {e}", page.display()))?;
    Ok(page)
}
