//! Measures what the speed shortcuts cost in quality, on real photos:
//! `cargo run --release --example quality [DIR]` (default `../shared/corpus/photos`).
//!
//! For each photo it renders the default renditions (PNG output, no watermark, so only the
//! resize path differs) three ways and reports PSNR and max abs error against the reference
//! (full-resolution decode, every rendition resized directly from the source):
//! - cascade: smaller renditions made from larger ones;
//! - shrink-on-load: JPEG/WebP decoded at reduced scale;
//! - both (the shipping default).

use renditions::{OutputFormat, WatermarkSource};
use renditions::{Pipeline, PipelineConfig};

/// PSNR and max error over premultiplied RGBA (colour under full transparency is meaningless).
fn psnr_and_max(a: &[u8], b: &[u8]) -> (f64, u8) {
    let premul = |p: &[u8]| -> [u8; 4] {
        let al = u32::from(p[3]);
        [0, 1, 2]
            .map(|c| ((u32::from(p[c]) * al + 127) / 255) as u8)
            .into_iter()
            .chain([p[3]])
            .collect::<Vec<_>>()
            .try_into()
            .unwrap_or([0; 4])
    };
    let mut se = 0f64;
    let mut max = 0u8;
    let (pa, pb): (Vec<u8>, Vec<u8>) = a
        .chunks_exact(4)
        .zip(b.chunks_exact(4))
        .flat_map(|(x, y)| premul(x).into_iter().zip(premul(y)))
        .unzip();
    let (a, b) = (&pa[..], &pb[..]);
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        max = max.max(d);
        se += f64::from(d) * f64::from(d);
    }
    let mse = se / a.len().max(1) as f64;
    let psnr = if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    };
    (psnr, max)
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/corpus/photos".into());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e != "tsv"));
    files.sort();
    let make = |cascade: bool, shrink: bool| {
        let mut c = PipelineConfig {
            format: OutputFormat::Png,
            cascade_min_ratio: cascade.then_some(2.0),
            shrink_on_load: shrink,
            ..PipelineConfig::default()
        };
        c.watermark.source = WatermarkSource::None;
        Pipeline::new(c)
    };
    let (Ok(reference), Ok(cascade), Ok(shrink), Ok(both)) = (
        make(false, false),
        make(true, false),
        make(false, true),
        make(true, true),
    ) else {
        eprintln!("quality: bad configuration");
        std::process::exit(2);
    };
    println!(
        "| file | rendition | cascade PSNR dB / max err | shrink-on-load PSNR / max | both PSNR / max |"
    );
    println!("|---|---|---|---|---|");
    let mut worst = [f64::INFINITY; 3];
    for f in files {
        let Ok(data) = std::fs::read(&f) else {
            continue;
        };
        let Ok(r) = reference.render(&data) else {
            continue;
        };
        let others: Vec<_> = [&cascade, &shrink, &both]
            .iter()
            .map(|p| p.render(&data))
            .collect();
        for (i, rend) in r.renditions.iter().enumerate() {
            let base = image::load_from_memory(&rend.bytes).map(|i| i.to_rgba8());
            let Ok(base) = base else { continue };
            let mut cells = Vec::new();
            for (k, o) in others.iter().enumerate() {
                let cell = match o
                    .as_ref()
                    .ok()
                    .and_then(|o| image::load_from_memory(&o.renditions[i].bytes).ok())
                {
                    Some(img) => {
                        let (p, m) = psnr_and_max(base.as_raw(), img.to_rgba8().as_raw());
                        worst[k] = worst[k].min(p);
                        format!("{p:.1} / {m}")
                    }
                    None => "-".into(),
                };
                cells.push(cell);
            }
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            println!(
                "| {name} | {} {}x{} | {} |",
                rend.name,
                rend.width,
                rend.height,
                cells.join(" | ")
            );
        }
    }
    println!(
        "\nworst PSNR: cascade {:.1} dB, shrink-on-load {:.1} dB, both {:.1} dB",
        worst[0], worst[1], worst[2]
    );
}
