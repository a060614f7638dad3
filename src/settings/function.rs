//! The Lambda function's own settings (destination, key template, reports, concurrency),
//! read from the environment once at init and validated like the pipeline settings: a bad
//! value is a [`ConfigError`] naming the variable, which becomes the init error.
//!
//! Also home of the recursion guard: writing renditions where they would trigger the
//! function again is refused at init, and such events are skipped at run time.

use std::time::Duration;

use super::parse::{parse_bool, parse_u64};
use super::{ConfigError, RenditionSpec, non_empty};
use crate::event::keys::{self, DEFAULT_KEY_TEMPLATE, KeyTemplate};

/// Where rejection reports go in the destination bucket.
pub const DEFAULT_REJECTION_PREFIX: &str = "_rejected/";
/// CloudWatch namespace of the EMF metrics.
pub const DEFAULT_METRICS_NAMESPACE: &str = "Renditions";
/// Records are not started with less time than this left before the deadline.
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_secs(5);
/// Budget of an invocation whose deadline lies before the process started.
pub const DEFAULT_DEADLINE_FALLBACK: Duration = Duration::from_secs(60);
/// Lambda gives one full vCPU per 1,769 MB of memory.
pub const MB_PER_VCPU: u64 = 1769;
/// Memory budgeted per record in flight (input + renditions + decode buffers of typical photos).
pub const MB_PER_RECORD: u64 = 512;

/// How many records of one event run at once, and how many of them may render at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    /// Records in flight (download, render, upload), bounded by memory.
    pub records: usize,
    /// Renders on the blocking pool at once, ≈ vCPUs (the pipeline is single-threaded per
    /// image, so more would only time-slice the same cores).
    pub renders: usize,
}

impl Concurrency {
    /// From `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (MB): records = memory / 512 MB within 1..=8,
    /// renders = ⌈memory / 1769 MB⌉ within 1..=6 (Lambda's vCPU share) and ≤ records. Outside
    /// Lambda (no memory size), from the cores: renders = cores, records = 2 × cores.
    pub fn derive(memory_mb: Option<u64>, cores: usize) -> Concurrency {
        match memory_mb {
            Some(mb) => {
                let records = (mb / MB_PER_RECORD).clamp(1, 8) as usize;
                let renders = mb.div_ceil(MB_PER_VCPU).clamp(1, 6) as usize;
                Concurrency {
                    records,
                    renders: renders.min(records),
                }
            }
            None => {
                let cores = cores.max(1);
                Concurrency {
                    records: (2 * cores).min(16),
                    renders: cores,
                }
            }
        }
    }
}

/// Where manifests go by default: beside the reports, out of the renditions' prefixes.
pub const DEFAULT_MANIFEST_KEY_TEMPLATE: &str = "_manifest/{key}.json";

/// Everything the Lambda edge needs besides the pipeline configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaSettings {
    pub dest_bucket: String,
    pub key_template: KeyTemplate,
    pub cache_control: Option<String>,
    pub rejection_reports: bool,
    pub rejection_prefix: String,
    pub metrics_namespace: String,
    /// Buckets known to trigger the function (empty: unknown).
    pub source_buckets: Vec<String>,
    /// `AWS_LAMBDA_FUNCTION_NAME`, the metrics' `FunctionName` dimension.
    pub function_name: String,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (MB), when running in Lambda.
    pub memory_mb: Option<u64>,
    pub concurrency: Concurrency,
    pub deadline_margin: Duration,
    /// Budget of an invocation whose deadline is not a real one (`DEADLINE_FALLBACK_MS`).
    pub deadline_fallback: Duration,
    /// Key prefixes the function writes under (per rendition, and the rejection prefix):
    /// events for keys under them are skipped.
    pub destination_prefixes: Vec<String>,
    /// `ON_SOURCE_DELETE=delete`: a source's deletion deletes its renditions and report.
    pub delete_renditions: bool,
    /// Where each source's manifest goes (`{key}` replaced); `None`: no manifests.
    pub manifest_template: Option<String>,
}

impl LambdaSettings {
    /// Reads the settings by variable name (see [`LAMBDA_SETTINGS`]) plus
    /// `AWS_LAMBDA_FUNCTION_NAME` and `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, checks them and the
    /// recursion guard. `renditions` are the configured renditions (their names become
    /// destination prefixes).
    pub fn from_settings(
        get: impl Fn(&str) -> Option<String>,
        renditions: &[RenditionSpec],
    ) -> Result<LambdaSettings, ConfigError> {
        let val = |k: &str| non_empty(get(k));

        let dest_bucket = val("DEST_BUCKET").ok_or_else(|| {
            ConfigError::new(
                "DEST_BUCKET",
                "is required: the bucket the renditions are written to",
            )
        })?;
        check_bucket_name("DEST_BUCKET", &dest_bucket)?;

        let key_template = KeyTemplate::parse(
            "DEST_KEY_TEMPLATE",
            &val("DEST_KEY_TEMPLATE").unwrap_or_else(|| DEFAULT_KEY_TEMPLATE.to_owned()),
        )?;
        let cache_control = val("CACHE_CONTROL");
        if let Some(cc) = &cache_control
            && !cc.bytes().all(|b| (b' '..=b'~').contains(&b))
        {
            return Err(ConfigError::new(
                "CACHE_CONTROL",
                "must be printable ASCII (it is an HTTP header)",
            ));
        }
        let rejection_reports = match val("REJECTION_REPORTS") {
            Some(v) => parse_bool("REJECTION_REPORTS", &v)?,
            None => true,
        };
        let rejection_prefix =
            val("REJECTION_PREFIX").unwrap_or_else(|| DEFAULT_REJECTION_PREFIX.to_owned());
        if rejection_prefix.starts_with('/') {
            return Err(ConfigError::new(
                "REJECTION_PREFIX",
                "keys must not start with `/`",
            ));
        }
        let metrics_namespace =
            val("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned());
        if metrics_namespace.len() > 255 || metrics_namespace.contains(':') {
            return Err(ConfigError::new(
                "METRICS_NAMESPACE",
                "must be at most 255 characters without `:` (a CloudWatch namespace)",
            ));
        }
        let source_buckets: Vec<String> = val("SOURCE_BUCKETS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for b in &source_buckets {
            check_bucket_name("SOURCE_BUCKETS", b)?;
        }
        // Recursion guard: renditions written into a bucket that triggers the function would
        // trigger it again (and again). Prefix/suffix filters could make it safe, but we
        // cannot see the bucket's notification filters from here, so refuse.
        if source_buckets.contains(&dest_bucket) {
            return Err(ConfigError::new(
                "DEST_BUCKET",
                format!(
                    "`{dest_bucket}` is also listed in SOURCE_BUCKETS: renditions written there would trigger \
                     the function again; use a separate destination bucket"
                ),
            ));
        }

        let memory_mb = match get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") {
            Some(v) => Some(parse_u64(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                &v,
                128,
                1 << 20,
            )?),
            None => None,
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut concurrency = Concurrency::derive(memory_mb, cores);
        if let Some(v) = val("RECORD_CONCURRENCY") {
            concurrency.records = parse_u64("RECORD_CONCURRENCY", &v, 1, 64)? as usize;
            concurrency.renders = concurrency.renders.min(concurrency.records);
        }
        let deadline_margin = match val("DEADLINE_MARGIN_MS") {
            Some(v) => Duration::from_millis(parse_u64("DEADLINE_MARGIN_MS", &v, 0, 900_000)?),
            None => DEFAULT_DEADLINE_MARGIN,
        };
        let deadline_fallback = match val("DEADLINE_FALLBACK_MS") {
            Some(v) => Duration::from_millis(parse_u64("DEADLINE_FALLBACK_MS", &v, 1000, 900_000)?),
            None => DEFAULT_DEADLINE_FALLBACK,
        };
        let function_name =
            val("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "renditions-lambda".to_owned());
        let manifest_template = match val("MANIFEST_KEY_TEMPLATE").as_deref() {
            Some("none") => None,
            other => {
                let t = other.unwrap_or(DEFAULT_MANIFEST_KEY_TEMPLATE).to_owned();
                let bad = |why: &str| {
                    Err(ConfigError::new(
                        "MANIFEST_KEY_TEMPLATE",
                        format!("`{t}` {why} (e.g. `{DEFAULT_MANIFEST_KEY_TEMPLATE}`, or `none`)"),
                    ))
                };
                if t.matches("{key}").count() != 1 {
                    return bad("must contain {key} exactly once");
                }
                if t.replace("{key}", "").contains(['{', '}']) {
                    return bad("has a placeholder other than {key}");
                }
                if t.starts_with('/') || t == "{key}" {
                    return bad("must have a prefix or suffix and not start with `/`");
                }
                Some(t)
            }
        };
        let delete_renditions = match val("ON_SOURCE_DELETE").as_deref() {
            None | Some("keep") => false,
            Some("delete") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "ON_SOURCE_DELETE",
                    format!("`{other}` is not keep or delete"),
                ));
            }
        };

        let mut destination_prefixes: Vec<String> = renditions
            .iter()
            .map(|r| key_template.prefix_for(&r.name))
            .filter(|p| !p.is_empty())
            .collect();
        if !rejection_prefix.is_empty() {
            destination_prefixes.push(rejection_prefix.clone());
        }
        if let Some(prefix) = manifest_template
            .as_deref()
            .and_then(|t| t.split("{key}").next())
            .filter(|p| !p.is_empty())
        {
            destination_prefixes.push(prefix.to_owned());
        }
        destination_prefixes.sort();
        destination_prefixes.dedup();

        Ok(LambdaSettings {
            dest_bucket,
            key_template,
            cache_control,
            rejection_reports,
            rejection_prefix,
            metrics_namespace,
            source_buckets,
            function_name,
            memory_mb,
            concurrency,
            deadline_margin,
            deadline_fallback,
            destination_prefixes,
            delete_renditions,
            manifest_template,
        })
    }

    /// Why an object must not be processed because of where it is (the function's own
    /// output), or `None` when it may be.
    pub fn recursion_skip(&self, bucket: &str, key: &str) -> Option<String> {
        if bucket == self.dest_bucket {
            return Some(format!(
                "the object is in the destination bucket {bucket}: processing it could loop"
            ));
        }
        if !self.source_buckets.is_empty() && !self.source_buckets.iter().any(|b| b == bucket) {
            return Some(format!(
                "the bucket {bucket} is not in SOURCE_BUCKETS ({}): the recursion guard only \
                 lets known source buckets in",
                self.source_buckets.join(",")
            ));
        }
        self.destination_prefixes
            .iter()
            .find(|p| key.starts_with(p.as_str()))
            .map(|p| {
                format!("the key is under the destination prefix `{p}`: processing it could loop")
            })
    }

    /// The key of the manifest of a source key (fitted to S3's key length), if manifests are on.
    pub fn manifest_key(&self, key: &str) -> Option<String> {
        self.manifest_template
            .as_deref()
            .map(|t| keys::fit(&t.replace("{key}", key)).into_owned())
    }

    /// The key of the rejection report for a source key (see [`keys::rejection_key`]).
    pub fn rejection_key(&self, key: &str) -> String {
        keys::rejection_key(&self.rejection_prefix, key)
    }
}

/// S3 bucket naming rules (3–63 of `a-z 0-9 . -`, starting and ending alphanumeric).
fn check_bucket_name(setting: &str, name: &str) -> Result<(), ConfigError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            setting,
            format!("`{name}` is not a valid bucket name (3–63 characters of a-z, 0-9, `.`, `-`)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DEFAULT_RENDITIONS;
    use std::collections::HashMap;

    fn renditions() -> Vec<RenditionSpec> {
        RenditionSpec::parse_list("RENDITIONS", DEFAULT_RENDITIONS).unwrap()
    }

    fn settings(vars: &[(&str, &str)]) -> Result<LambdaSettings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LambdaSettings::from_settings(|k| map.get(k).cloned(), &renditions())
    }

    #[test]
    fn defaults_and_required() {
        let e = settings(&[]).unwrap_err();
        assert_eq!(e.setting, "DEST_BUCKET");
        let s = settings(&[("DEST_BUCKET", "renditions")]).unwrap();
        assert_eq!(s.key_template.as_str(), DEFAULT_KEY_TEMPLATE);
        assert!(s.rejection_reports);
        assert_eq!(s.rejection_prefix, "_rejected/");
        assert_eq!(s.metrics_namespace, "Renditions");
        assert_eq!(s.cache_control, None);
        assert_eq!(s.deadline_margin, Duration::from_secs(5));
        assert_eq!(
            s.destination_prefixes,
            ["_manifest/", "_rejected/", "large/", "medium/", "thumb/"]
        );
        assert_eq!(s.rejection_key("a/b.jpg"), "_rejected/a/b.jpg.json");
        let unsafe_key = s.rejection_key("a/../b.jpg");
        assert!(
            unsafe_key.starts_with("_rejected/unsafe-keys/") && unsafe_key.ends_with(".json"),
            "{unsafe_key}"
        );
        assert!(!unsafe_key.contains(".."));
        assert_eq!(
            s.rejection_key(&"k".repeat(1024)).len(),
            keys::MAX_KEY_BYTES
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("DEST_BUCKET", "Not_A_Bucket"),
            ("REJECTION_REPORTS", "2"),
            ("CACHE_CONTROL", "max-age=1\u{7}, public"),
            ("SOURCE_BUCKETS", "ok-bucket,BAD"),
            ("RECORD_CONCURRENCY", "0"),
            ("DEADLINE_MARGIN_MS", "soon"),
            ("DEADLINE_FALLBACK_MS", "10"),
            ("METRICS_NAMESPACE", "a:b"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots"),
        ] {
            let mut vars = vec![("DEST_BUCKET", "renditions")];
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            let e = settings(&vars).unwrap_err();
            assert_eq!(e.setting, var, "{value}: {e}");
        }
    }

    #[test]
    fn recursion_guard_refuses_dest_in_sources() {
        let e = settings(&[
            ("DEST_BUCKET", "photos"),
            ("SOURCE_BUCKETS", "uploads, photos"),
        ])
        .unwrap_err();
        assert_eq!(e.setting, "DEST_BUCKET");
        assert!(e.problem.contains("SOURCE_BUCKETS"), "{e}");
        let s = settings(&[
            ("DEST_BUCKET", "renditions"),
            ("SOURCE_BUCKETS", "uploads,photos"),
        ])
        .unwrap();
        assert_eq!(s.source_buckets, ["uploads", "photos"]);
    }

    #[test]
    fn recursion_skip_at_runtime() {
        let s = settings(&[("DEST_BUCKET", "renditions")]).unwrap();
        assert!(s.recursion_skip("renditions", "inbox/cat.jpg").is_some());
        assert!(s.recursion_skip("uploads", "large/inbox/cat.jpg").is_some());
        assert!(
            s.recursion_skip("uploads", "_rejected/x.jpg.json")
                .is_some()
        );
        assert!(s.recursion_skip("uploads", "inbox/large/cat.jpg").is_none());
        assert!(s.recursion_skip("uploads", "largest/cat.jpg").is_none());
        let s = settings(&[
            ("DEST_BUCKET", "renditions"),
            ("DEST_KEY_TEMPLATE", "r/{rendition}/{key}.{ext}"),
        ])
        .unwrap();
        assert_eq!(
            s.destination_prefixes,
            [
                "_manifest/",
                "_rejected/",
                "r/large/",
                "r/medium/",
                "r/thumb/"
            ]
        );
        assert!(s.recursion_skip("uploads", "large/cat.jpg").is_none());
    }

    #[test]
    fn concurrency_from_memory() {
        let c = |mb| Concurrency::derive(Some(mb), 2);
        assert_eq!(
            c(128),
            Concurrency {
                records: 1,
                renders: 1
            }
        );
        assert_eq!(
            c(1024),
            Concurrency {
                records: 2,
                renders: 1
            }
        );
        assert_eq!(
            c(1769),
            Concurrency {
                records: 3,
                renders: 1
            }
        );
        assert_eq!(
            c(3008),
            Concurrency {
                records: 5,
                renders: 2
            }
        );
        assert_eq!(
            c(10240),
            Concurrency {
                records: 8,
                renders: 6
            }
        );
        assert_eq!(
            Concurrency::derive(None, 4),
            Concurrency {
                records: 8,
                renders: 4
            }
        );
        let s = settings(&[
            ("DEST_BUCKET", "renditions"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769"),
            ("RECORD_CONCURRENCY", "1"),
        ])
        .unwrap();
        assert_eq!(
            s.concurrency,
            Concurrency {
                records: 1,
                renders: 1
            }
        );
    }
}
