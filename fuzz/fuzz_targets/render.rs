//! bytes → `Pipeline::render`, with small renditions and lowered limits so the fuzzer spends its
//! time on parsing and decoding, not on resizing big images. Every path is the real one: sniff,
//! header probe, decode (libjpeg-turbo, libwebp, the `image` crate), colour, resize, encode.
//!
//! A rejection is a fine answer; an internal error (a fault of ours on accepted input), a panic,
//! an abort, a sanitizer report, a timeout or an allocation over `-malloc_limit_mb` is a finding.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use renditions::{RenditionSpec, WatermarkSource};
use renditions::{Pipeline, PipelineConfig, RenderError};

static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let mut config = PipelineConfig::default();
    config.renditions = RenditionSpec::parse_list("renditions", "a:64,b:16").unwrap();
    config.watermark.source = WatermarkSource::None;
    config.limits.max_input_pixels = 4_000_000;
    config.limits.max_input_bytes = 1 << 20;
    config.limits.max_working_bytes = 64 << 20;
    Pipeline::new(config).expect("fuzz pipeline config")
});

fuzz_target!(|data: &[u8]| {
    let rendered = PIPELINE.render(data);
    if let Err(e @ RenderError::Internal { .. }) = &rendered {
        panic!("an internal error on fuzzed input: {e}");
    }
    if let Ok(out) = rendered {
        // Invariants of a successful render.
        assert!(out.width > 0 && out.height > 0);
        assert_eq!(out.renditions.len(), 2);
        for r in &out.renditions {
            assert!(r.width >= 1 && r.width <= 64 && r.height >= 1 && r.height <= 64);
            assert!(!r.bytes.is_empty());
        }
    }
});
