//! Every setting in one place: the [`SETTINGS`] table (name, CLI flag, default, meaning), the one
//! function that reads the process environment ([`env`]), and the parsers that turn values into
//! typed configuration, each failing with a [`ConfigError`] that names the setting.
//!
//! The table drives `renditions render --help`, the README's configuration table (a test keeps
//! them equal) and a check of template.yaml's `Environment.Variables`. The CLI flags and the
//! Lambda variables share names (`--watermark-opacity` ⇔ `WATERMARK_OPACITY`) and parsers, so one
//! configuration means the same thing in a terminal and in production.

#[cfg(feature = "lambda")]
mod function;
mod parse;
mod pipeline;
mod s3;
mod telemetry;

#[cfg(feature = "lambda")]
pub use function::LambdaSettings;
pub use pipeline::{
    Anchor, DEFAULT_RENDITIONS, Encoding, Fit, JpegSettings, OutputFormat, PipelineConfig,
    RenditionSpec, WatermarkSource, WatermarkSpec,
};
pub use s3::S3Settings;
pub use telemetry::{
    LogConfig, LogFormat, OtlpSettings, TraceExporter, TraceSettings, xray_daemon_address,
};

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The option or variable name, e.g. `RENDITIONS` or `--quality`.
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

/// Who reads a setting, and so where it is documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// What to make: read by the CLI (as a flag) and by the function.
    Pipeline,
    /// The function's own behaviour (destination, keys, reports, concurrency).
    Function,
    /// Retries and timeouts of the function's S3 calls.
    S3,
    /// Logs and traces.
    Telemetry,
    /// Set by the Lambda service, never by the user; read as facts about the sandbox.
    Lambda,
    /// The `make demo` example only.
    Demo,
}

/// One setting: an environment variable, and for [`Scope::Pipeline`] also a CLI flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable, e.g. `WATERMARK_OPACITY`.
    pub name: &'static str,
    /// The CLI flag without `--` and its value's placeholder, e.g. (`watermark-opacity`, `X`).
    pub flag: Option<(&'static str, &'static str)>,
    /// The default as users write it; empty when unset means "off" or "not given".
    pub default: &'static str,
    /// One line on what it does (Markdown: backticks allowed).
    pub meaning: &'static str,
    pub scope: Scope,
}

const fn pipeline(
    name: &'static str,
    flag: &'static str,
    value: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> Setting {
    Setting {
        name,
        flag: Some((flag, value)),
        default,
        meaning,
        scope: Scope::Pipeline,
    }
}

const fn setting(
    scope: Scope,
    name: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> Setting {
    Setting {
        name,
        flag: None,
        default,
        meaning,
        scope,
    }
}

/// Every environment variable the crate reads, and every CLI flag that configures a render.
pub const SETTINGS: &[Setting] = &[
    // --- what to make (CLI flag ⇔ variable) ---
    pipeline(
        "RENDITIONS",
        "renditions",
        "SPEC",
        DEFAULT_RENDITIONS,
        "rendition specs, comma-separated: `NAME:SIDE`, `NAME:WxH` or `NAME:WxH:cover`",
    ),
    pipeline(
        "OUTPUT_FORMAT",
        "format",
        "F",
        "auto",
        "`auto` (JPEG, or PNG for real transparency), `jpeg`, `png`, `webp`; `avif` in builds with the `avif` feature",
    ),
    pipeline("JPEG_QUALITY", "quality", "Q", "82", "JPEG quality 1–100"),
    pipeline(
        "JPEG_PROGRESSIVE",
        "progressive",
        "BOOL",
        "false",
        "progressive JPEG output",
    ),
    pipeline(
        "LOSSY_QUALITY",
        "lossy-quality",
        "Q",
        "80",
        "WebP/AVIF quality 0–100",
    ),
    pipeline(
        "WATERMARK",
        "watermark",
        "W",
        "default",
        "`default` (compiled-in mark), `none`, a PNG path, `s3://bucket/key` (function only: fetched once at init) or `text:…`",
    ),
    pipeline(
        "WATERMARK_POSITION",
        "watermark-position",
        "P",
        "bottom-right",
        "one of the 9 anchors (`top-left` … `bottom-right`, `center`)",
    ),
    pipeline("WATERMARK_OPACITY", "watermark-opacity", "X", "0.5", "0–1"),
    pipeline(
        "WATERMARK_WIDTH",
        "watermark-width",
        "X",
        "0.25",
        "mark width as a fraction of the rendition width",
    ),
    pipeline(
        "WATERMARK_MARGIN",
        "watermark-margin",
        "X",
        "0.02",
        "margin as a fraction of the rendition width (≤ 0.25)",
    ),
    pipeline(
        "WATERMARK_MIN_WIDTH",
        "watermark-min-width",
        "PX",
        "200",
        "renditions narrower than this are not stamped",
    ),
    pipeline(
        "BACKGROUND",
        "background",
        "COLOUR",
        "#ffffff",
        "colour transparent sources are flattened onto for JPEG",
    ),
    pipeline(
        "MAX_INPUT_BYTES",
        "max-input-bytes",
        "N",
        "52428800",
        "larger objects are refused before the download completes",
    ),
    pipeline(
        "MAX_INPUT_PIXELS",
        "max-input-pixels",
        "N",
        "100000000",
        "larger declared dimensions are refused from the header",
    ),
    pipeline(
        "CASCADE",
        "cascade",
        "BOOL",
        "true",
        "make smaller renditions from larger ones",
    ),
    pipeline(
        "SHRINK_ON_LOAD",
        "shrink-on-load",
        "BOOL",
        "true",
        "decode JPEG/WebP at reduced scale when the renditions allow",
    ),
    // --- the function ---
    setting(
        Scope::Function,
        "DEST_BUCKET",
        "",
        "(required) bucket the renditions are written to",
    ),
    setting(
        Scope::Function,
        "DEST_KEY_TEMPLATE",
        "{rendition}/{key}",
        "`inbox/2026/cat.png` → `large/inbox/2026/cat.png` whatever the output format (its `Content-Type` says); also `{key_stem}`, `{basename}`, `{ext}`. Key policy: [docs/lambda.md](docs/lambda.md#keys)",
    ),
    setting(
        Scope::Function,
        "CACHE_CONTROL",
        "",
        "`Cache-Control` of the written objects",
    ),
    setting(
        Scope::Function,
        "REJECTION_REPORTS",
        "true",
        "write a JSON report for each refused upload",
    ),
    setting(
        Scope::Function,
        "REJECTION_PREFIX",
        "_rejected/",
        "where rejection reports go (`<prefix><key>.json`)",
    ),
    setting(
        Scope::Function,
        "SOURCE_BUCKETS",
        "",
        "known source buckets, comma-separated: the destination may not be one (checked at init), and objects of other buckets are skipped (Batch: a permanent failure)",
    ),
    setting(
        Scope::Function,
        "MANIFEST_KEY_TEMPLATE",
        "_manifest/{key}.json",
        "where each source's JSON manifest goes in DEST_BUCKET (renditions with sizes and keys, placeholders, source facts; schema in docs/manifest.schema.json); `none` writes none",
    ),
    setting(
        Scope::Function,
        "ON_SOURCE_DELETE",
        "keep",
        "`delete`: an `ObjectRemoved` event (S3, SQS, EventBridge \"Object Deleted\") deletes that source's renditions and report once the key is gone; `keep` ignores deletions",
    ),
    setting(
        Scope::Function,
        "METRICS_NAMESPACE",
        "Renditions",
        "CloudWatch namespace of the EMF metrics",
    ),
    setting(
        Scope::Function,
        "RECORD_CONCURRENCY",
        "",
        "records processed at once (default from memory: memory / 512 MB, 1–8)",
    ),
    setting(
        Scope::Function,
        "DEADLINE_MARGIN_MS",
        "5000",
        "stop starting records when less time than this is left",
    ),
    setting(
        Scope::Function,
        "DEADLINE_FALLBACK_MS",
        "60000",
        "time budget of an invocation whose deadline lies before the process started (emulators that send a made-up deadline)",
    ),
    // --- S3 ---
    setting(
        Scope::S3,
        "S3_FORCE_PATH_STYLE",
        "false",
        "path-style S3 URLs, for emulators",
    ),
    setting(
        Scope::S3,
        "S3_MAX_ATTEMPTS",
        "3",
        "attempts per S3 call (and per download whose body breaks off), 1–10",
    ),
    setting(
        Scope::S3,
        "S3_CONNECT_TIMEOUT_MS",
        "3000",
        "S3 connect timeout",
    ),
    setting(
        Scope::S3,
        "S3_ATTEMPT_TIMEOUT_MS",
        "20000",
        "one S3 attempt, and the longest stall of a download body",
    ),
    setting(
        Scope::S3,
        "S3_OPERATION_TIMEOUT_MS",
        "50000",
        "one S3 call with its retries",
    ),
    // --- telemetry ---
    setting(
        Scope::Telemetry,
        "AWS_LAMBDA_LOG_FORMAT",
        "Text",
        "`JSON` for one JSON object per line (Lambda's advanced logging controls)",
    ),
    setting(
        Scope::Telemetry,
        "AWS_LAMBDA_LOG_LEVEL",
        "",
        "`TRACE` … `FATAL` (Lambda's advanced logging controls); wins over `RUST_LOG`",
    ),
    setting(
        Scope::Telemetry,
        "RUST_LOG",
        "info",
        "log filter directives when `AWS_LAMBDA_LOG_LEVEL` is unset (local runs)",
    ),
    setting(
        Scope::Telemetry,
        "AWS_XRAY_DAEMON_ADDRESS",
        "",
        "X-Ray daemon (`host:port`); set by Lambda when active tracing is on",
    ),
    setting(
        Scope::Telemetry,
        "TRACES",
        "xray",
        "where spans go: `xray` (the daemon, when Lambda's active tracing is on), `otlp` (OTLP/HTTP JSON to the collector below, flushed before each invocation returns) or `off`",
    ),
    setting(
        Scope::Telemetry,
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://localhost:4318",
        "with `TRACES=otlp`: the collector's base URL (`/v1/traces` is appended); plain `http://`, as the ADOT and vendors' Lambda extensions listen on localhost",
    ),
    setting(
        Scope::Telemetry,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "",
        "with `TRACES=otlp`: the full traces URL, used as is (wins over the base URL)",
    ),
    setting(
        Scope::Telemetry,
        "OTEL_EXPORTER_OTLP_HEADERS",
        "",
        "with `TRACES=otlp`: extra request headers, `key=value,key2=value2` (values URL-encoded)",
    ),
    setting(
        Scope::Telemetry,
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "10000",
        "with `TRACES=otlp`: milliseconds one export may take (never past the invocation's deadline)",
    ),
    setting(
        Scope::Telemetry,
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/json",
        "with `TRACES=otlp`: `http/json` (what is sent); `http/protobuf` is accepted with a warning (collectors take both on 4318); `grpc` is refused",
    ),
    setting(
        Scope::Telemetry,
        "OTEL_SERVICE_NAME",
        "",
        "with `TRACES=otlp`: the `service.name` resource attribute (default: the function's name)",
    ),
    setting(
        Scope::Telemetry,
        "OTEL_RESOURCE_ATTRIBUTES",
        "",
        "with `TRACES=otlp`: more resource attributes, `key=value,…`",
    ),
    // --- facts Lambda sets ---
    setting(
        Scope::Lambda,
        "AWS_LAMBDA_FUNCTION_NAME",
        "",
        "the `FunctionName` dimension of the metrics",
    ),
    setting(
        Scope::Lambda,
        "AWS_LAMBDA_FUNCTION_VERSION",
        "",
        "the `faas.version` attribute of OTLP traces",
    ),
    setting(
        Scope::Lambda,
        "AWS_REGION",
        "",
        "the region (the AWS SDK reads it too); the `cloud.region` attribute of OTLP traces",
    ),
    setting(
        Scope::Lambda,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "",
        "memory in MB: sizes the record concurrency and the per-image memory budget",
    ),
    setting(
        Scope::Lambda,
        "AWS_LAMBDA_RUNTIME_API",
        "",
        "where init errors are reported",
    ),
    // --- the demo ---
    setting(
        Scope::Demo,
        "DEMO_OUT",
        "demo-out",
        "where `make demo` writes its S3 folders and renditions",
    ),
    setting(
        Scope::Demo,
        "DEMO_SAMPLES",
        "assets/samples",
        "the images `make demo` uploads",
    ),
];

/// The setting called `name`.
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The pipeline setting whose CLI flag is `--flag`.
pub fn find_flag(flag: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.flag.is_some_and(|(f, _)| f == flag))
}

/// Reads one variable from the process environment: the only place the crate does. Only names in
/// [`SETTINGS`] may be read (a debug build panics on any other, so the table stays complete).
pub fn env(name: &str) -> Option<String> {
    debug_assert!(find(name).is_some(), "{name} is missing from SETTINGS");
    std::env::var(name).ok()
}

/// `value` trimmed, or `None` when unset or blank (an empty variable means "the default").
pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The options part of `renditions render --help`, from the table.
pub fn cli_options() -> String {
    let mut out = String::new();
    for s in SETTINGS {
        let Some((flag, value)) = s.flag else {
            continue;
        };
        let left = format!("  --{flag} {value}");
        let default = if s.default.is_empty() {
            String::new()
        } else {
            format!(", default {}", s.default)
        };
        let meaning = s.meaning.replace('`', "");
        out.push_str(&format!("{left:<29}{meaning} [{}{default}]\n", s.name));
    }
    out
}

/// The README's configuration table (every setting a user sets: not those Lambda sets, not the
/// demo's), as Markdown.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | CLI flag | default | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS
        .iter()
        .filter(|s| !matches!(s.scope, Scope::Lambda | Scope::Demo))
    {
        let flag = s.flag.map_or(String::new(), |(f, _)| format!("`--{f}`"));
        let default = if s.default.is_empty() {
            "unset".to_owned()
        } else {
            format!("`{}`", s.default)
        };
        out.push_str(&format!(
            "| `{}` | {flag} | {default} | {} |\n",
            s.name, s.meaning
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flags_are_unique() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.name, b.name);
                if let (Some(fa), Some(fb)) = (a.flag, b.flag) {
                    assert_ne!(fa.0, fb.0, "{} and {}", a.name, b.name);
                }
            }
            assert_eq!(a.flag.is_some(), a.scope == Scope::Pipeline, "{}", a.name);
        }
        assert_eq!(find_flag("quality").map(|s| s.name), Some("JPEG_QUALITY"));
        assert_eq!(find("DEST_BUCKET").map(|s| s.scope), Some(Scope::Function));
    }

    #[test]
    fn defaults_in_the_table_are_the_parsers_defaults() {
        // Every pipeline default, given explicitly, yields the default configuration.
        let explicit =
            PipelineConfig::from_settings(|k| find(k).map(|s| s.default.to_owned()), &|_| {
                Err("no watermark files here".into())
            })
            .unwrap();
        assert_eq!(explicit, PipelineConfig::default());
        let s3 = S3Settings::from_settings(|k| find(k).map(|s| s.default.to_owned())).unwrap();
        assert_eq!(s3, S3Settings::default());
    }

    #[test]
    fn help_lists_every_flag_with_its_variable() {
        let help = cli_options();
        for s in SETTINGS.iter().filter(|s| s.flag.is_some()) {
            let (flag, _) = s.flag.unwrap();
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("--{flag} ")))
                .unwrap();
            assert!(line.contains(&format!("[{}", s.name)), "{line}");
        }
    }

    #[test]
    fn readme_table_matches_the_settings() {
        let readme = include_str!("../../README.md");
        let begin = "<!-- settings:begin -->\n";
        let start = readme.find(begin).expect("README has the settings markers") + begin.len();
        let end = readme[start..].find("<!-- settings:end -->").unwrap() + start;
        assert_eq!(
            &readme[start..end],
            markdown_table(),
            "README.md's settings table is stale: paste `renditions settings` between the markers"
        );
    }

    /// The names under `Environment: Variables:` in template.yaml (a line scan: the template's
    /// variables are one `NAME: value` per line, comments allowed).
    fn template_variables(template: &str) -> Vec<String> {
        let indent = |l: &str| l.len() - l.trim_start().len();
        let lines: Vec<&str> = template.lines().collect();
        let mut names = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.trim() != "Variables:" || !lines[i - 1].trim().starts_with("Environment:") {
                continue;
            }
            let base = indent(line);
            for l in &lines[i + 1..] {
                let t = l.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if indent(l) <= base {
                    break;
                }
                if indent(l) == base + 2
                    && let Some((name, _)) = t.split_once(':')
                {
                    names.push(name.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn template_sets_only_known_settings() {
        let names = template_variables(include_str!("../../template.yaml"));
        assert!(names.contains(&"DEST_BUCKET".to_owned()), "{names:?}");
        assert!(names.len() >= 5, "{names:?}");
        for name in &names {
            let s = find(name)
                .unwrap_or_else(|| panic!("template.yaml sets {name}, which nothing reads"));
            assert!(
                !matches!(s.scope, Scope::Lambda | Scope::Demo),
                "template.yaml sets {name}, which only Lambda or the demo sets"
            );
        }
    }
}
