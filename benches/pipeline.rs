//! Criterion benches: each pipeline stage on its own, and the whole job per input kind.
//!
//! Inputs come from the team corpus (`../shared/corpus/photos`, or `RENDITIONS_CORPUS`); without
//! it, a generated 12-megapixel image stands in. Run with `make bench`; BENCHMARKS.md records the
//! numbers and the machine.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use renditions::stages;
use renditions::stages::Crop;
use renditions::stages::libjpeg;
use renditions::{Bitmap, Channels};
use renditions::{OutputFormat, WatermarkSpec};
use renditions::{Pipeline, PipelineConfig};

fn corpus() -> PathBuf {
    std::env::var_os("RENDITIONS_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/corpus/photos"
            ))
        })
}

fn load(name: &str) -> Option<Vec<u8>> {
    std::fs::read(corpus().join(name)).ok()
}

fn synthetic(w: u32, h: u32) -> Bitmap {
    let mut b = Bitmap::new(w, h, Channels::Rgb);
    for (i, p) in b.data.chunks_exact_mut(3).enumerate() {
        let (x, y) = ((i as u32) % w, (i as u32) / w);
        p.copy_from_slice(&[(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 256) as u8]);
    }
    b
}

/// Inputs per kind: (label, bytes).
fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let picks = [
        ("baseline-jpeg-24mp", "p14-cam24mp-sunset-UPSCALED.jpg"),
        ("progressive-jpeg-13mp", "p04-dragonfly.jpg"),
        ("png-rgba-15mp", "p16-icecold-rgba.png"),
        ("webp-8mp", "p20-picos-RECODED.webp"),
    ];
    let mut v: Vec<(&str, Vec<u8>)> = picks
        .iter()
        .filter_map(|(l, f)| load(f).map(|d| (*l, d)))
        .collect();
    if v.is_empty() {
        let s = synthetic(4000, 3000);
        v.push((
            "synthetic-jpeg-12mp",
            libjpeg::encode_rgb(s.width, s.height, &s.data, 90, false).unwrap_or_default(),
        ));
    }
    v
}

fn job_config() -> PipelineConfig {
    PipelineConfig {
        format: OutputFormat::Jpeg,
        ..PipelineConfig::default()
    }
}

fn end_to_end(c: &mut Criterion) {
    let pipeline = Pipeline::new(job_config()).expect("default config is valid");
    let mut g = c.benchmark_group("end_to_end");
    g.sample_size(10);
    for (label, data) in inputs() {
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(label), &data, |b, d| {
            b.iter(|| black_box(pipeline.render(d).map(|o| o.renditions.len()).unwrap_or(0)))
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let Some(data) = load("p14-cam24mp-sunset-UPSCALED.jpg") else {
        return;
    };
    let mut g = c.benchmark_group("decode_jpeg_24mp");
    g.sample_size(10);
    for n in [8u8, 4, 3, 2, 1] {
        g.bench_with_input(BenchmarkId::new("scale_eighths", n), &n, |b, &n| {
            b.iter(|| {
                black_box(
                    libjpeg::decode(&data, n, 1 << 31, &renditions::Cancel::never())
                        .map(|d| d.data.len())
                        .unwrap_or(0),
                )
            })
        });
    }
    g.finish();
}

fn resize_stage(c: &mut Criterion) {
    let src = synthetic(2250, 1500);
    let full = Crop {
        x: 0.0,
        y: 0.0,
        width: 2250.0,
        height: 1500.0,
    };
    let mut g = c.benchmark_group("resize_lanczos3");
    g.sample_size(20);
    g.bench_function("rgb_2250x1500_to_1600x1067", |b| {
        b.iter(|| {
            black_box(
                stages::resize(&src, full, 1600, 1067)
                    .map(|r| r.data.len())
                    .unwrap_or(0),
            )
        })
    });
    let large = stages::resize(&src, full, 1600, 1067).expect("resize works");
    let lfull = Crop {
        x: 0.0,
        y: 0.0,
        width: 1600.0,
        height: 1067.0,
    };
    g.bench_function("rgb_1600x1067_to_800x533_cascade", |b| {
        b.iter(|| {
            black_box(
                stages::resize(&large, lfull, 800, 533)
                    .map(|r| r.data.len())
                    .unwrap_or(0),
            )
        })
    });
    g.finish();
}

fn encode_and_watermark(c: &mut Criterion) {
    let img = synthetic(1600, 1067);
    let mut g = c.benchmark_group("encode_watermark");
    g.sample_size(20);
    g.bench_function("jpeg_q82_420_1600x1067", |b| {
        b.iter(|| {
            black_box(
                libjpeg::encode_rgb(1600, 1067, &img.data, 82, false)
                    .map(|v| v.len())
                    .unwrap_or(0),
            )
        })
    });
    let wm = stages::Watermark::new(&WatermarkSpec::default())
        .ok()
        .flatten();
    if let Some(wm) = wm {
        g.bench_function("watermark_1600x1067", |b| {
            b.iter_batched(
                || img.clone(),
                |mut i| black_box(wm.stamp(&mut i)),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// What the manifest's placeholders cost per image: ThumbHash, BlurHash and both colours from the
/// smallest rendition (320×213 with the default renditions).
fn placeholders(c: &mut Criterion) {
    let thumb = synthetic(320, 213);
    let mut g = c.benchmark_group("placeholders");
    g.bench_function("thumbhash_blurhash_colours_320x213", |b| {
        b.iter(|| black_box(stages::Placeholder::of(&thumb)))
    });
    g.finish();
}

criterion_group!(
    benches,
    end_to_end,
    decode,
    resize_stage,
    encode_and_watermark,
    placeholders
);
criterion_main!(benches);
