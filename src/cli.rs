//! The `renditions` command line: `renditions render [OPTIONS] --out DIR FILE...`.
//!
//! Options carry the same names and meanings as the Lambda function's environment variables
//! (`--watermark-opacity` ⇔ `WATERMARK_OPACITY`), so one configuration means the same thing in a
//! terminal and in production. Exit status: 0 all rendered, 1 some file rejected, 2 usage or
//! configuration error.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::manifest::{ManifestRendition, ManifestSource};
use crate::pipeline::{Pipeline, RenderError, RenderOutput};
use crate::reject::Rejection;
use crate::settings::{self, ConfigError, PipelineConfig};

/// `renditions --help`: the commands, the options from the settings table, and the CLI's own.
pub fn usage() -> String {
    format!(
        "\
usage: renditions render [OPTIONS] --out DIR FILE...
       renditions backfill s3://BUCKET[/PREFIX] (--manifest-out FILE | --invoke FUNCTION | --local) ...
       renditions settings

render: renders each FILE into DIR/<rendition>/<file stem>.<ext>.
backfill: renders what is already in a bucket (`renditions backfill --help`).
settings: prints every setting (variable, flag, default, meaning) as a Markdown table.

options (each matches the Lambda environment variable in brackets):
{}  --threads N                images rendered in parallel (1 = exactly one thread)
  --json                     one JSON object per file, with per-stage timings
  --manifest                 also write DIR/_manifest/<file name>.json (the function's manifest:
                             renditions, sizes, placeholders; docs/manifest.schema.json)
  --out DIR                  output folder (required)
",
        settings::cli_options()
    )
}

/// What `parse_args` answers for `renditions settings` (a command with no arguments).
const SETTINGS_REQUESTED: &str = "\0settings";

/// Parsed `render` arguments.
struct RenderArgs {
    settings: HashMap<String, String>,
    threads: usize,
    json: bool,
    manifest: bool,
    out: PathBuf,
    files: Vec<PathBuf>,
}

fn usage_error(msg: impl std::fmt::Display) -> String {
    format!("renditions: {msg}\n\n{}", usage())
}

fn parse_args(args: Vec<String>) -> Result<RenderArgs, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    match p.next().map_err(usage_error)? {
        Some(Value(cmd)) if cmd == "render" => {}
        Some(Value(cmd)) if cmd == "settings" => return Err(SETTINGS_REQUESTED.to_string()),
        Some(Long("help")) | Some(Short('h')) | None => return Err(usage()),
        Some(other) => {
            return Err(usage_error(format!(
                "unknown command {:?}; expected `render`",
                other
            )));
        }
    }
    let mut a = RenderArgs {
        settings: HashMap::new(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        json: false,
        manifest: false,
        out: PathBuf::new(),
        files: Vec::new(),
    };
    let mut out = None;
    while let Some(arg) = p.next().map_err(usage_error)? {
        match arg {
            Long("json") => a.json = true,
            Long("manifest") => a.manifest = true,
            Long("out") | Short('o') => out = Some(PathBuf::from(p.value().map_err(usage_error)?)),
            Long("threads") | Short('j') => {
                let v = p
                    .value()
                    .map_err(usage_error)?
                    .string()
                    .map_err(usage_error)?;
                a.threads = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| usage_error(format!("--threads: `{v}` must be 1..=256")))?;
            }
            Long("help") | Short('h') => return Err(usage()),
            Long(name) => {
                let Some(setting) = settings::find_flag(name) else {
                    return Err(usage_error(format!("unknown option --{name}")));
                };
                let v = p
                    .value()
                    .map_err(usage_error)?
                    .string()
                    .map_err(usage_error)?;
                a.settings.insert(setting.name.to_string(), v);
            }
            Value(f) => a.files.push(PathBuf::from(f)),
            Short(c) => return Err(usage_error(format!("unknown option -{c}"))),
        }
    }
    a.out = out.ok_or_else(|| usage_error("--out DIR is required"))?;
    if a.files.is_empty() {
        return Err(usage_error("no input files"));
    }
    Ok(a)
}

/// Result of one file.
enum FileResult {
    Rendered {
        output: Box<RenderOutput>,
        paths: Vec<PathBuf>,
        elapsed: Duration,
    },
    Rejected(Rejection),
    Failed(String),
}

/// Runs the CLI; returns the process exit status.
pub fn run(args: Vec<String>) -> i32 {
    if args.first().map(String::as_str) == Some("backfill") {
        #[cfg(feature = "lambda")]
        return crate::backfill::run(args[1..].to_vec());
        #[cfg(not(feature = "lambda"))]
        {
            eprintln!("renditions: backfill needs a build with the `lambda` feature (the default)");
            return 2;
        }
    }
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(msg) if msg == SETTINGS_REQUESTED => {
            print!("{}", settings::markdown_table());
            return 0;
        }
        Err(msg) => {
            if msg == usage() {
                print!("{msg}");
                return 0;
            }
            eprint!("{msg}");
            return 2;
        }
    };
    let config = PipelineConfig::from_settings(|k| a.settings.get(k).cloned(), &|path| {
        std::fs::read(path).map_err(|e| format!("cannot read watermark file {path}: {e}"))
    });
    let pipeline = match config.and_then(Pipeline::new) {
        Ok(p) => p,
        Err(ConfigError { setting, problem }) => {
            let name = match settings::find(&setting).and_then(|s| s.flag) {
                Some((flag, _)) => format!("--{flag}"),
                None => setting,
            };
            eprintln!("renditions: {name}: {problem}");
            return 2;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        eprintln!("renditions: cannot create {}: {e}", a.out.display());
        return 2;
    }
    let results: Mutex<(usize, Vec<Option<FileResult>>)> =
        Mutex::new((0, (0..a.files.len()).map(|_| None).collect()));
    let next = AtomicUsize::new(0);
    let rejected = AtomicUsize::new(0);
    let worker = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(file) = a.files.get(i) else { break };
            let r = render_file(&pipeline, file, &a.out, a.manifest);
            if !matches!(r, FileResult::Rendered { .. }) {
                rejected.fetch_add(1, Ordering::Relaxed);
            }
            // Print in input order as soon as the next file in line is done.
            let Ok(mut guard) = results.lock() else { break };
            guard.1[i] = Some(r);
            let (cursor, slots) = &mut *guard;
            while let Some(Some(done)) = slots.get_mut(*cursor).map(Option::take) {
                report(&a.files[*cursor], &done, a.json);
                *cursor += 1;
            }
        }
    };
    if a.threads <= 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 0..a.threads.min(a.files.len()) {
                s.spawn(worker);
            }
        });
    }
    if rejected.load(Ordering::Relaxed) > 0 {
        1
    } else {
        0
    }
}

fn render_file(pipeline: &Pipeline, file: &Path, out: &Path, manifest: bool) -> FileResult {
    let start = Instant::now();
    let data = match read_capped(file, pipeline.config().limits.max_input_bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let output = match pipeline.render(&data) {
        Ok(o) => o,
        Err(RenderError::Rejected(r)) => return FileResult::Rejected(r),
        // Not the file's fault: say so (the exit status still says not everything rendered).
        Err(e @ (RenderError::Internal { .. } | RenderError::Cancelled { .. })) => {
            return FileResult::Failed(e.to_string());
        }
    };
    let stem = file
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let mut paths = Vec::with_capacity(output.renditions.len());
    for r in &output.renditions {
        let dir = out.join(&r.name);
        let path = dir.join(format!("{stem}.{}", r.encoding.extension()));
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &r.bytes))
        {
            return FileResult::Failed(format!("cannot write {}: {e}", path.display()));
        }
        paths.push(path);
    }
    if manifest && let Err(e) = write_manifest(pipeline, file, out, &output, &paths, data.len()) {
        return FileResult::Failed(e);
    }
    FileResult::Rendered {
        output: Box::new(output),
        paths,
        elapsed: start.elapsed(),
    }
}

/// Writes `out/_manifest/<file name>.json` for a rendered file.
fn write_manifest(
    pipeline: &Pipeline,
    file: &Path,
    out: &Path,
    output: &RenderOutput,
    paths: &[PathBuf],
    bytes: usize,
) -> Result<(), String> {
    let key = file.to_string_lossy();
    let relative: Vec<String> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(out)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let renditions: Vec<ManifestRendition<'_>> = output
        .renditions
        .iter()
        .zip(&relative)
        .map(|(r, key)| ManifestRendition {
            name: &r.name,
            key,
            width: r.width,
            height: r.height,
            bytes: r.bytes.len(),
            content_type: r.encoding.content_type(),
        })
        .collect();
    let source = ManifestSource {
        bucket: None,
        key: &key,
        etag: None,
        version_id: None,
        bytes: bytes as u64,
    };
    let doc = crate::manifest::document(&source, output, &renditions, pipeline.digest());
    let name = file
        .file_name()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let path = out.join("_manifest").join(format!("{name}.json"));
    std::fs::create_dir_all(out.join("_manifest"))
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads a file, refusing (without reading it all) one larger than the input limit.
fn read_capped(file: &Path, cap: u64) -> Result<Vec<u8>, Box<FileResult>> {
    use std::io::Read;
    let failed = |e: std::io::Error| Box::new(FileResult::Failed(format!("cannot read: {e}")));
    let f = std::fs::File::open(file).map_err(failed)?;
    let mut data = Vec::new();
    f.take(cap + 1).read_to_end(&mut data).map_err(failed)?;
    if data.len() as u64 > cap {
        return Err(Box::new(FileResult::Rejected(Rejection::too_large(
            format!("the file is over the input limit of {cap} bytes"),
        ))));
    }
    Ok(data)
}

fn report(file: &Path, r: &FileResult, json: bool) {
    let name = file.display().to_string();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match r {
        FileResult::Rendered {
            output,
            paths,
            elapsed,
        } => {
            if json {
                let line = serde_json::json!({
                    "file": name,
                    "format": output.format,
                    "detail": output.detail,
                    "width": output.width,
                    "height": output.height,
                    "orientation": output.orientation,
                    "decoded": [output.decoded_width, output.decoded_height],
                    "icc_converted": output.icc_converted,
                    "has_alpha": output.has_alpha,
                    "renditions": output.renditions.iter().zip(paths).map(|(r, p)| serde_json::json!({
                        "name": r.name,
                        "width": r.width,
                        "height": r.height,
                        "format": r.encoding,
                        "bytes": r.bytes.len(),
                        "watermarked": r.watermarked,
                        "path": p.display().to_string(),
                    })).collect::<Vec<_>>(),
                    "timings_ms": output.timings.as_millis().iter().map(|(k, v)| (k.as_str().to_string(), serde_json::json!(round3(*v)))).collect::<serde_json::Map<_, _>>(),
                    "total_ms": round3(elapsed.as_secs_f64() * 1000.0),
                    "notes": output.notes,
                });
                let _ = writeln!(out, "{line}");
            } else {
                let parts: Vec<String> = output
                    .renditions
                    .iter()
                    .map(|r| format!("{} {}x{} {}B", r.name, r.width, r.height, r.bytes.len()))
                    .collect();
                let _ = writeln!(
                    out,
                    "{name}: {} {}x{} -> {} in {:.1} ms",
                    output.format.as_str(),
                    output.width,
                    output.height,
                    parts.join(", "),
                    elapsed.as_secs_f64() * 1000.0
                );
            }
        }
        FileResult::Rejected(rej) => {
            if json {
                let line = serde_json::json!({"file": name, "rejected": {"kind": rej.kind, "reason": rej.reason}});
                let _ = writeln!(out, "{line}");
            }
            eprintln!("{name}: rejected: {rej}");
        }
        FileResult::Failed(msg) => {
            if json {
                let line = serde_json::json!({"file": name, "error": msg});
                let _ = writeln!(out, "{line}");
            }
            eprintln!("{name}: error: {msg}");
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
