//! Per-invocation metrics written as CloudWatch Embedded Metric Format (EMF) lines on
//! stdout, which Lambda turns into CloudWatch metrics without any API call or SDK.
//!
//! [`Metrics`] is thread-safe (a `Mutex` inside, held only for a few instructions per
//! call), so one instance can be shared (`&Metrics` / `Arc<Metrics>`) by every task of
//! an invocation; `emit` (or `flush`) at the end writes and resets it.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// EMF allows at most 100 metrics per directive and 100 values per metric array.
const EMF_MAX: usize = 100;
/// CloudWatch dimension values are at most 1024 characters.
const MAX_DIMENSION_CHARS: usize = 1024;

/// Accumulates one invocation's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Clone, Debug, Default)]
struct Inner {
    processed: u64,
    unchanged: u64,
    deleted: u64,
    rejected: BTreeMap<String, u64>,
    internal_errors: u64,
    input_bytes: u64,
    output_bytes: u64,
    /// Metric name (`DecodeDuration`) → per-image milliseconds.
    stages: BTreeMap<String, Vec<f64>>,
}

impl Metrics {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave counters inconsistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one image processed successfully (`ImagesProcessed`).
    pub fn image_processed(&self) {
        self.lock().processed += 1;
    }

    /// Counts one image skipped because its renditions are up to date (`ImagesUnchanged`).
    pub fn image_unchanged(&self) {
        self.lock().unchanged += 1;
    }

    /// Counts objects deleted because their source was (`RenditionsDeleted`).
    pub fn renditions_deleted(&self, count: u64) {
        self.lock().deleted += count;
    }

    /// Counts one rejected image (`ImagesRejected`, total and per `RejectionKind`).
    pub fn image_rejected(&self, kind: &str) {
        let kind = dimension_value(kind);
        *self.lock().rejected.entry(kind).or_insert(0) += 1;
    }

    /// Counts one image that failed through a fault of ours, to be retried (`InternalErrors`).
    pub fn internal_error(&self) {
        self.lock().internal_errors += 1;
    }

    /// Adds downloaded source bytes (`InputBytes`).
    pub fn add_input_bytes(&self, bytes: u64) {
        let mut inner = self.lock();
        inner.input_bytes = inner.input_bytes.saturating_add(bytes);
    }

    /// Adds uploaded rendition bytes (`OutputBytes`).
    pub fn add_output_bytes(&self, bytes: u64) {
        let mut inner = self.lock();
        inner.output_bytes = inner.output_bytes.saturating_add(bytes);
    }

    /// Records one image's time in `stage` (any name: `download`, `decode`, `orient`,
    /// `colour`, `resize`, `watermark`, `encode`, `upload`, …) as metric
    /// `<Stage>Duration` in milliseconds.
    pub fn record_stage(&self, stage: &str, elapsed: Duration) {
        self.record_stage_ms(stage, elapsed.as_secs_f64() * 1000.0);
    }

    /// Like [`Metrics::record_stage`] with a value in milliseconds (non-finite or
    /// negative values are ignored).
    pub fn record_stage_ms(&self, stage: &str, ms: f64) {
        if ms.is_finite() && ms >= 0.0 {
            let name = stage_metric_name(stage);
            let ms = (ms * 1000.0).round() / 1000.0;
            self.lock().stages.entry(name).or_default().push(ms);
        }
    }

    /// Runs `f`, recording its duration under `stage`.
    pub fn time_stage<T>(&self, stage: &str, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        self.record_stage(stage, start.elapsed());
        out
    }

    /// EMF lines for what was recorded so far, timestamped now (does not reset).
    pub fn lines(&self, namespace: &str, function_name: &str) -> Vec<String> {
        self.lines_at(namespace, function_name, now_millis())
    }

    /// EMF lines with an explicit timestamp (ms since the epoch). The first line has
    /// dimension set `[FunctionName]` with `ImagesProcessed`, `ImagesRejected` (total),
    /// `InternalErrors`, `InputBytes`, `OutputBytes` and the stage arrays; stage arrays longer than 100
    /// continue on further lines; then one `[FunctionName, RejectionKind]` line per kind.
    pub fn lines_at(&self, namespace: &str, function_name: &str, timestamp_ms: u64) -> Vec<String> {
        let inner = self.lock().clone();
        let function_name = dimension_value(function_name);
        let mut lines = Vec::new();

        let rejected_total: u64 = inner.rejected.values().sum();
        let mut round: Vec<(String, &str, Value)> = vec![
            ("ImagesProcessed".into(), "Count", inner.processed.into()),
            ("ImagesRejected".into(), "Count", rejected_total.into()),
            ("ImagesUnchanged".into(), "Count", inner.unchanged.into()),
            ("RenditionsDeleted".into(), "Count", inner.deleted.into()),
            (
                "InternalErrors".into(),
                "Count",
                inner.internal_errors.into(),
            ),
            ("InputBytes".into(), "Bytes", inner.input_bytes.into()),
            ("OutputBytes".into(), "Bytes", inner.output_bytes.into()),
        ];
        let mut chunk = 0;
        loop {
            for (name, values) in &inner.stages {
                if let Some(part) = values.chunks(EMF_MAX).nth(chunk) {
                    round.push((name.clone(), "Milliseconds", json!(part)));
                }
            }
            if round.is_empty() {
                break;
            }
            for group in round.chunks(EMF_MAX) {
                lines.push(emf_line(
                    namespace,
                    timestamp_ms,
                    &[("FunctionName", &function_name)],
                    group,
                ));
            }
            round.clear();
            chunk += 1;
        }

        for (kind, count) in &inner.rejected {
            lines.push(emf_line(
                namespace,
                timestamp_ms,
                &[("FunctionName", &function_name), ("RejectionKind", kind)],
                &[("ImagesRejected".into(), "Count", (*count).into())],
            ));
        }
        lines
    }

    /// Returns the EMF lines and resets the accumulator for the next invocation.
    pub fn flush(&self, namespace: &str, function_name: &str) -> Vec<String> {
        let lines = self.lines(namespace, function_name);
        *self.lock() = Inner::default();
        lines
    }

    /// [`Metrics::flush`] and print each line to stdout, where Lambda picks EMF up.
    /// Write errors are ignored (metrics must never fail an invocation).
    pub fn emit(&self, namespace: &str, function_name: &str) {
        let lines = self.flush(namespace, function_name);
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

fn emf_line(
    namespace: &str,
    timestamp_ms: u64,
    dimensions: &[(&str, &str)],
    metrics: &[(String, &str, Value)],
) -> String {
    let mut root = Map::new();
    let dimension_names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit }))
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimension_names],
                "Metrics": definitions,
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), Value::from(*v));
    }
    for (name, _, value) in metrics {
        root.insert(name.clone(), value.clone());
    }
    Value::Object(root).to_string()
}

/// `decode` → `DecodeDuration`, `watermark-2` → `Watermark_2Duration`.
fn stage_metric_name(stage: &str) -> String {
    let mut name: String = stage
        .trim()
        .chars()
        .take(200)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() {
        name.push_str("Unnamed");
    }
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    name.push_str("Duration");
    name
}

fn dimension_value(v: &str) -> String {
    let v: String = v.trim().chars().take(MAX_DIMENSION_CHARS).collect();
    if v.is_empty() {
        "unknown".to_owned()
    } else {
        v
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Checks the EMF rules: every declared metric is present as a number or array of
    /// numbers, every dimension key is present as a string, ≤ 100 metrics and values.
    fn assert_valid_emf(v: &Value) {
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert!(v["_aws"]["Timestamp"].is_u64());
        for set in directive["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(v[d.as_str().unwrap()].is_string());
            }
        }
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= EMF_MAX);
        for m in metrics {
            let value = &v[m["Name"].as_str().unwrap()];
            assert!(m["Unit"].is_string());
            match value {
                Value::Number(_) => {}
                Value::Array(a) => {
                    assert!(!a.is_empty() && a.len() <= EMF_MAX);
                    assert!(a.iter().all(Value::is_number));
                }
                other => panic!("bad metric value {other}"),
            }
        }
    }

    #[test]
    fn emf_lines_have_counts_and_structure() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.image_processed();
        }
        m.image_rejected("TooLarge");
        m.image_rejected("TooLarge");
        m.image_rejected("UnsupportedFormat");
        m.add_input_bytes(1000);
        m.add_input_bytes(500);
        m.add_output_bytes(300);
        m.record_stage("decode", Duration::from_micros(12_345));
        m.record_stage_ms("decode", 7.5);
        m.record_stage_ms("resize", 3.0);
        m.record_stage_ms("resize", f64::NAN);
        let lines = parse(&m.lines_at("Renditions", "fn-1", 1_718_000_000_000));
        assert_eq!(lines.len(), 3);
        lines.iter().for_each(assert_valid_emf);

        let main = &lines[0];
        assert_eq!(main["_aws"]["Timestamp"], 1_718_000_000_000u64);
        let d = &main["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "Renditions");
        assert_eq!(d["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(main["FunctionName"], "fn-1");
        assert_eq!(main["ImagesProcessed"], 3);
        assert_eq!(main["ImagesRejected"], 3);
        assert_eq!(main["InputBytes"], 1500);
        assert_eq!(main["OutputBytes"], 300);
        assert_eq!(main["DecodeDuration"], json!([12.345, 7.5]));
        assert_eq!(main["ResizeDuration"], json!([3.0]));
        let units: BTreeMap<String, String> = d["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap().into(),
                    m["Unit"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(units["ImagesProcessed"], "Count");
        assert_eq!(units["InputBytes"], "Bytes");
        assert_eq!(units["DecodeDuration"], "Milliseconds");

        let too_large = &lines[1];
        let d = &too_large["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Dimensions"], json!([["FunctionName", "RejectionKind"]]));
        assert_eq!(
            d["Metrics"],
            json!([{"Name": "ImagesRejected", "Unit": "Count"}])
        );
        assert_eq!(too_large["RejectionKind"], "TooLarge");
        assert_eq!(too_large["ImagesRejected"], 2);
        assert_eq!(lines[2]["RejectionKind"], "UnsupportedFormat");
        assert_eq!(lines[2]["ImagesRejected"], 1);
    }

    #[test]
    fn flush_resets_and_long_arrays_split() {
        let m = Metrics::new();
        for i in 0..250 {
            m.record_stage_ms("encode", f64::from(i));
        }
        let lines = parse(&m.flush("Ns", ""));
        assert_eq!(lines.len(), 3);
        lines.iter().for_each(assert_valid_emf);
        assert_eq!(lines[0]["FunctionName"], "unknown");
        let total: usize = lines
            .iter()
            .map(|l| l["EncodeDuration"].as_array().unwrap().len())
            .sum();
        assert_eq!(total, 250);
        assert!(lines[1].get("ImagesProcessed").is_none());

        let lines = parse(&m.lines_at("Ns", "f", 1));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["ImagesProcessed"], 0);
        assert!(lines[0].get("EncodeDuration").is_none());
    }

    #[test]
    fn many_stages_split_into_directives_of_at_most_100() {
        let m = Metrics::new();
        for i in 0..150 {
            m.record_stage_ms(&format!("stage{i}"), 1.0);
        }
        let lines = parse(&m.lines_at("Ns", "f", 1));
        assert_eq!(lines.len(), 2);
        lines.iter().for_each(assert_valid_emf);
    }

    #[test]
    fn concurrent_recording() {
        let m = Metrics::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        m.image_processed();
                        m.time_stage("upload", || ());
                    }
                });
            }
        });
        let lines = parse(&m.lines_at("Ns", "f", 1));
        assert_eq!(lines[0]["ImagesProcessed"], 400);
        assert_eq!(lines.len(), 4); // 400 upload values → 4 arrays of 100
        assert_eq!(stage_metric_name("watermark-2"), "Watermark_2Duration");
    }
}
