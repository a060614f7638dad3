//! Deadlines through the real binary and the Runtime API: a render cut off at the invocation's
//! deadline stops itself (its render slot and memory are free for the next invocation), and a
//! made-up deadline from before the process started (what `cargo lambda watch` sends) is
//! treated as unknown instead of failing every record.

mod support;

use std::time::Duration;

use renditions::stages::libjpeg;
use serde_json::Value;
use support::*;

const SRC: &str = "uploads";
const DEST: &str = "renditions";

/// A 48 MP progressive JPEG with some texture (so entropy decoding has real work to do).
fn big_progressive_jpeg() -> Vec<u8> {
    let (w, h) = (8000u32, 6000u32);
    let mut state = 0x2545_f491_u32;
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 27) as u8; // 0..31
            rgb.extend_from_slice(&[(x / 32) as u8, (y / 24) as u8, ((x + y) / 64) as u8 ^ noise]);
        }
    }
    libjpeg::encode_rgb(w, h, &rgb, 90, true).unwrap()
}

fn field(line: &Value, name: &str) -> Option<u64> {
    line.get(name)
        .or_else(|| line.get("fields").and_then(|f| f.get(name)))
        .and_then(Value::as_u64)
}

fn message(line: &Value) -> &str {
    line.get("message")
        .or_else(|| line.get("fields").and_then(|f| f.get("message")))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_cut_off_at_the_deadline_stops_and_frees_its_slot() {
    let s3 = s3_with_buckets("deadline_cut", &[SRC, DEST]).await;
    put(&s3, SRC, "big.jpg", big_progressive_jpeg()).await;
    put(&s3, SRC, "small.jpg", sample("ladybird.jpg")).await;
    let api = RuntimeApi::start().await;
    // 1,769 MB: one render slot, as in production. Twenty renditions of about 12 MP each, every
    // one resized from the full decode and encoded: seconds of work, far past the deadline.
    let renditions: Vec<String> = (0..20).map(|i| format!("r{i}:{}", 4000 - i)).collect();
    let f = Function::start(
        &api,
        Some(&s3),
        &[
            ("RENDITIONS", &renditions.join(",")),
            ("CASCADE", "false"),
            ("SHRINK_ON_LOAD", "false"),
            ("DEADLINE_MARGIN_MS", "0"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769"),
        ],
    );
    // 1.5 s to the deadline: the record is cut off 0.5 s before it, and the invocation retried.
    let cut = api
        .invoke_with_deadline(
            &s3_event(SRC, &["big.jpg"]),
            None,
            Duration::from_millis(1500),
        )
        .await
        .error();
    assert!(
        cut.to_string().contains("cut off"),
        "the big render must be cut off: {cut}"
    );

    // The next invocation needs the render slot the cut-off render held.
    let answer = api
        .invoke(&s3_event(SRC, &["small.jpg"]), None)
        .await
        .response();
    assert_eq!(answer["rendered"], 1, "{answer}");

    let lines = f.json_lines();
    let cancelled = lines
        .iter()
        .position(|l| message(l).starts_with("render cancelled at the deadline"))
        .unwrap_or_else(|| panic!("the cut-off render never stopped: {lines:#?}"));
    let small_done = lines
        .iter()
        .position(|l| message(l) == "object rendered")
        .expect("the small image rendered");
    // The big render gave up its slot before the small image could render: it stopped instead
    // of running on, and it never finished.
    assert!(cancelled < small_done, "{lines:#?}");
    assert!(
        !lines
            .iter()
            .any(|l| message(l) == "object rendered" && l.to_string().contains("big.jpg")),
        "the cut-off render ran to completion"
    );
    // Without checks inside the render it would run on for seconds past the cut-off; it stops
    // within one rendition's resize or encode, or one batch of JPEG rows.
    let late = field(&lines[cancelled], "stopped_after_deadline_ms").unwrap();
    assert!(late < 1000, "stopped {late} ms after the deadline");
    // Nothing of the big image was written.
    let written = keys(&s3, DEST).await;
    assert!(
        written.iter().all(|k| !k.ends_with("big.jpg")),
        "{written:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_before_the_process_started_is_treated_as_unknown() {
    let s3 = s3_with_buckets("deadline_1970", &[SRC, DEST]).await;
    put(&s3, SRC, "a.jpg", jpeg(120, 80)).await;
    let api = RuntimeApi::start().await;
    let f = Function::start(&api, Some(&s3), &[("RENDITIONS", "s:40")]);
    // `cargo lambda watch` sends Lambda-Runtime-Deadline-Ms: 600000 (1970-01-01T00:10:00Z).
    let answer = api
        .invoke_with_deadline_ms(&s3_event(SRC, &["a.jpg"]), None, 600_000)
        .await
        .response();
    assert_eq!(answer["rendered"], 1, "{answer}");
    assert_eq!(keys(&s3, DEST).await, ["_manifest/a.jpg.json", "s/a.jpg"]);
    // Said once, at WARN, with the fallback budget used.
    let again = api
        .invoke_with_deadline_ms(&s3_event(SRC, &["a.jpg"]), None, 600_000)
        .await
        .response();
    assert_eq!(again["rendered"], 1, "{again}");
    let warnings: Vec<Value> = f
        .json_lines()
        .into_iter()
        .filter(|l| message(l).contains("deadline before this process started"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["level"], "WARN", "{}", warnings[0]);
    assert_eq!(field(&warnings[0], "fallback_ms"), Some(60_000));
}
