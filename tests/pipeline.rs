//! Pipeline behaviour on generated and real images: orientation, geometry, alpha, colour,
//! bit depth, animation, watermark, metadata stripping and rejections.

use std::sync::Arc;

use renditions::stages;
use renditions::stages::exif;
use renditions::stages::{libjpeg, libwebp};
use renditions::{Bitmap, Channels};
use renditions::{Fit, OutputFormat, RenditionSpec, WatermarkSource};
use renditions::{Pipeline, PipelineConfig, RejectKind};

fn config(spec: &str) -> PipelineConfig {
    let mut c = PipelineConfig {
        renditions: RenditionSpec::parse_list("RENDITIONS", spec).unwrap(),
        ..PipelineConfig::default()
    };
    c.watermark.source = WatermarkSource::None;
    c
}

fn pipeline(spec: &str) -> Pipeline {
    Pipeline::new(config(spec)).unwrap()
}

fn decode(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes).unwrap().to_rgba8()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Display image 96x64: quadrants red (TL), green (TR), blue (BL), white (BR).
fn quadrants(w: u32, h: u32) -> Bitmap {
    let mut b = Bitmap::new(w, h, Channels::Rgb);
    for y in 0..h {
        for x in 0..w {
            let c = match (x < w / 2, y < h / 2) {
                (true, true) => [255, 0, 0],
                (false, true) => [0, 255, 0],
                (true, false) => [0, 0, 255],
                (false, false) => [255, 255, 255],
            };
            let i = ((y * w + x) * 3) as usize;
            b.data[i..i + 3].copy_from_slice(&c);
        }
    }
    b
}

fn inverse(o: u16) -> u16 {
    match o {
        6 => 8,
        8 => 6,
        other => other,
    }
}

/// Stores `display` so that applying EXIF orientation `o` shows it upright.
fn stored_for(display: &Bitmap, o: u16) -> Bitmap {
    stages::orient(
        display.clone(),
        exif::Orientation::from_exif(inverse(o)).unwrap(),
    )
}

fn jpeg(b: &Bitmap) -> Vec<u8> {
    libjpeg::encode_rgb(b.width, b.height, &b.data, 95, false).unwrap()
}

fn with_jpeg_segment(jpeg: &[u8], marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn png(b: &Bitmap) -> Vec<u8> {
    let mut out = Vec::new();
    let color = match b.channels {
        Channels::Rgb => image::ExtendedColorType::Rgb8,
        Channels::Rgba => image::ExtendedColorType::Rgba8,
    };
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut out),
        &b.data,
        b.width,
        b.height,
        color,
    )
    .unwrap();
    out
}

/// Inserts a PNG chunk right after IHDR.
fn with_png_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let ihdr_end = 8 + 8 + 13 + 4;
    let mut out = png[..ihdr_end].to_vec();
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc_input);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out.extend_from_slice(&png[ihdr_end..]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Wraps a simple lossy WebP into an extended (VP8X) file with an EXIF chunk.
fn webp_with_exif(b: &Bitmap, exif: &[u8]) -> Vec<u8> {
    let simple = libwebp::encode(b.width, b.height, &b.data, false, 95).unwrap();
    let vp8 = &simple[12..]; // the VP8 chunk
    let mut body = b"WEBP".to_vec();
    let mut vp8x = vec![0u8; 10];
    vp8x[0] = 0x08; // EXIF flag
    let (w1, h1) = (b.width - 1, b.height - 1);
    vp8x[4..7].copy_from_slice(&w1.to_le_bytes()[..3]);
    vp8x[7..10].copy_from_slice(&h1.to_le_bytes()[..3]);
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&vp8x);
    body.extend_from_slice(vp8);
    body.extend_from_slice(b"EXIF");
    body.extend_from_slice(&(exif.len() as u32).to_le_bytes());
    body.extend_from_slice(exif);
    if exif.len() % 2 == 1 {
        body.push(0);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn assert_close(px: [u8; 4], want: [u8; 3], tol: i32, what: &str) {
    for c in 0..3 {
        assert!(
            (px[c] as i32 - want[c] as i32).abs() <= tol,
            "{what}: got {px:?}, want {want:?}"
        );
    }
}

fn assert_quadrants(img: &image::RgbaImage, what: &str) {
    let (w, h) = img.dimensions();
    let at = |x: u32, y: u32| img.get_pixel(x, y).0;
    assert_close(
        at(w / 8, h / 8),
        [255, 0, 0],
        40,
        &format!("{what} top-left"),
    );
    assert_close(
        at(w - 1 - w / 8, h / 8),
        [0, 255, 0],
        40,
        &format!("{what} top-right"),
    );
    assert_close(
        at(w / 8, h - 1 - h / 8),
        [0, 0, 255],
        40,
        &format!("{what} bottom-left"),
    );
    assert_close(
        at(w - 1 - w / 8, h - 1 - h / 8),
        [255, 255, 255],
        40,
        &format!("{what} bottom-right"),
    );
}

#[test]
fn every_jpeg_orientation_shows_upright() {
    let display = quadrants(96, 64);
    let p = pipeline("r:48");
    for o in 1..=8u16 {
        let stored = stored_for(&display, o);
        let file = with_jpeg_segment(
            &jpeg(&stored),
            0xE1,
            &exif::build_orientation_exif(o, o % 2 == 0),
        );
        let out = p.render(&file).unwrap();
        assert_eq!(out.orientation, o as u8);
        let r = &out.renditions[0];
        assert_eq!((r.width, r.height), (48, 32), "orientation {o}");
        assert_quadrants(&decode(&r.bytes), &format!("JPEG orientation {o}"));
    }
}

#[test]
fn png_exif_and_webp_exif_orientation_are_honoured() {
    let display = quadrants(96, 64);
    let stored = stored_for(&display, 6);
    let exif_block = exif::build_orientation_exif(6, false);
    let p = pipeline("r:48");
    // PNG eXIf holds the TIFF structure without the "Exif\0\0" prefix.
    let png_file = with_png_chunk(&png(&stored), b"eXIf", &exif_block[6..]);
    let out = p.render(&png_file).unwrap();
    assert_eq!(out.orientation, 6);
    assert_quadrants(&decode(&out.renditions[0].bytes), "PNG eXIf 6");
    // WebP EXIF chunks, with and without the JPEG-style prefix (the `image` crate ignores the
    // prefixed form; sharp and Pillow honour it, and so do we).
    for (label, block) in [("prefixed", &exif_block[..]), ("bare", &exif_block[6..])] {
        let out = p.render(&webp_with_exif(&stored, block)).unwrap();
        assert_eq!(out.orientation, 6, "WebP {label}");
        assert_quadrants(
            &decode(&out.renditions[0].bytes),
            &format!("WebP EXIF {label}"),
        );
    }
}

#[test]
fn malformed_exif_is_ignored_not_fatal() {
    let display = quadrants(96, 64);
    let mut bad = exif::build_orientation_exif(6, false);
    bad[10] = 0xF0; // IFD0 offset far past the end
    let file = with_jpeg_segment(&jpeg(&display), 0xE1, &bad);
    let out = pipeline("r:48").render(&file).unwrap();
    assert_eq!(out.orientation, 1);
    assert_quadrants(&decode(&out.renditions[0].bytes), "bad EXIF");
}

#[test]
fn fit_cover_and_never_upscale() {
    let src = jpeg(&quadrants(300, 200));
    let out = pipeline("big:1600,box:100x40,card:100x100:cover,tall:50x200:cover")
        .render(&src)
        .unwrap();
    let dims: Vec<(u32, u32)> = out.renditions.iter().map(|r| (r.width, r.height)).collect();
    assert_eq!(dims, vec![(300, 200), (60, 40), (100, 100), (50, 200)]);
    for r in &out.renditions {
        let img = decode(&r.bytes);
        assert_eq!(img.dimensions(), (r.width, r.height), "{}", r.name);
    }
    // The cover crop is centred: the 100x100 card's left edge is red/blue, right edge green/white.
    let card = decode(&out.renditions[2].bytes);
    assert_close(card.get_pixel(5, 5).0, [255, 0, 0], 40, "card top-left");
    assert_close(
        card.get_pixel(94, 94).0,
        [255, 255, 255],
        40,
        "card bottom-right",
    );
    // A cover box larger than the source keeps the box's aspect at source resolution.
    assert_eq!(
        (out.renditions[3].width, out.renditions[3].height),
        (50, 200)
    );
}

#[test]
fn cascade_stays_close_to_resizing_from_the_source() {
    // A detailed synthetic image: the cascaded thumb must match the direct one closely.
    let (w, h) = (1200u32, 900u32);
    let mut b = Bitmap::new(w, h, Channels::Rgb);
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            b.data[i] = ((x * 7 + y * 3) % 256) as u8;
            b.data[i + 1] = (((x / 9) ^ (y / 7)) % 256) as u8;
            b.data[i + 2] = ((x * y / 97) % 256) as u8;
        }
    }
    let src = png(&b);
    let mut c = config("a:800,b:400,c:160");
    c.format = OutputFormat::Png;
    let cascaded = Pipeline::new(c.clone()).unwrap().render(&src).unwrap();
    c.cascade_min_ratio = None;
    let direct = Pipeline::new(c).unwrap().render(&src).unwrap();
    for (a, d) in cascaded.renditions.iter().zip(&direct.renditions) {
        let (ia, id) = (decode(&a.bytes), decode(&d.bytes));
        let mse: f64 = ia
            .as_raw()
            .iter()
            .zip(id.as_raw())
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            / ia.as_raw().len() as f64;
        let psnr = if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0f64 * 255.0 / mse).log10()
        };
        assert!(psnr > 30.0, "{}: cascade PSNR {psnr:.1} dB", a.name);
    }
}

#[test]
fn white_on_transparent_has_no_dark_fringe_and_stays_png() {
    // A white disc on fully transparent black.
    let (w, h) = (400u32, 400u32);
    let mut b = Bitmap::new(w, h, Channels::Rgba);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f64 - 200.0, y as f64 - 200.0);
            if dx * dx + dy * dy < 150.0 * 150.0 {
                let i = ((y * w + x) * 4) as usize;
                b.data[i..i + 4].copy_from_slice(&[255, 255, 255, 255]);
            }
        }
    }
    let out = pipeline("r:77").render(&png(&b)).unwrap();
    assert!(out.has_alpha);
    let r = &out.renditions[0];
    assert_eq!(r.encoding, renditions::Encoding::Png);
    let img = decode(&r.bytes);
    let mut edge = 0;
    for p in img.pixels() {
        let [r, g, bl, a] = p.0;
        if a > 0 && a < 255 {
            edge += 1;
        }
        if a > 10 {
            assert!(
                r > 245 && g > 245 && bl > 245,
                "dark fringe pixel {:?}",
                p.0
            );
        }
    }
    assert!(edge > 0, "expected antialiased edge pixels");
}

#[test]
fn forced_jpeg_flattens_alpha_on_the_background() {
    let mut b = Bitmap::new(64, 64, Channels::Rgba); // fully transparent
    b.data
        .chunks_exact_mut(4)
        .take(64 * 32)
        .for_each(|p| p.copy_from_slice(&[0, 0, 0, 255]));
    let mut c = config("r:32");
    c.format = OutputFormat::Jpeg;
    c.background = [255, 0, 0];
    let out = Pipeline::new(c).unwrap().render(&png(&b)).unwrap();
    let img = decode(&out.renditions[0].bytes);
    assert_close(img.get_pixel(16, 4).0, [0, 0, 0], 20, "opaque black half");
    assert_close(
        img.get_pixel(16, 28).0,
        [255, 0, 0],
        30,
        "transparent half flattened",
    );
}

#[test]
fn display_p3_patch_converts_to_srgb() {
    // P3 (200, 60, 60) is a saturated red; in sRGB its red channel is higher and green lower.
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let mut b = Bitmap::new(64, 64, Channels::Rgb);
    b.data
        .chunks_exact_mut(3)
        .for_each(|p| p.copy_from_slice(&[200, 60, 60]));
    let mut seg = b"ICC_PROFILE\0\x01\x01".to_vec();
    seg.extend_from_slice(&p3);
    let file = with_jpeg_segment(&jpeg(&b), 0xE2, &seg);
    let out = pipeline("r:32").render(&file).unwrap();
    assert!(out.icc_converted);
    let px = decode(&out.renditions[0].bytes).get_pixel(16, 16).0;
    // Reference: moxcms P3→sRGB of (200,60,60) ≈ (217, 48, 51); allow JPEG error.
    let t = moxcms::ColorProfile::new_display_p3()
        .create_transform_8bit(
            moxcms::Layout::Rgb,
            &moxcms::ColorProfile::new_srgb(),
            moxcms::Layout::Rgb,
            moxcms::TransformOptions::default(),
        )
        .unwrap();
    let mut want = [0u8; 3];
    t.transform(&[200, 60, 60], &mut want).unwrap();
    assert!(
        want[0] > 205 && want[1] < 58,
        "reference conversion {want:?}"
    );
    assert_close(px, want, 6, "P3 patch");
}

#[test]
fn sixteen_bit_png_is_reduced_with_rounding() {
    let (w, h) = (32u32, 32u32);
    let v: u16 = 257 * 100 + 200; // 100.78 in 8-bit terms → rounds to 101
    let raw: Vec<u16> = std::iter::repeat_n([v, 0, 65535], (w * h) as usize)
        .flatten()
        .collect();
    let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(w, h, raw).unwrap();
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    let mut c = config("r:32");
    c.format = OutputFormat::Png;
    let out = Pipeline::new(c).unwrap().render(&bytes).unwrap();
    let px = decode(&out.renditions[0].bytes).get_pixel(5, 5).0;
    assert_eq!(px, [101, 0, 255, 255]);
}

#[test]
fn gif_renders_its_first_frame() {
    use image::codecs::gif::GifEncoder;
    let frame =
        |c: [u8; 4]| image::Frame::new(image::RgbaImage::from_pixel(40, 30, image::Rgba(c)));
    let mut bytes = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut bytes);
        enc.encode_frames(vec![frame([255, 0, 0, 255]), frame([0, 0, 255, 255])])
            .unwrap();
    }
    let out = pipeline("r:20").render(&bytes).unwrap();
    assert_eq!(out.format.as_str(), "gif");
    assert_close(
        decode(&out.renditions[0].bytes).get_pixel(10, 7).0,
        [255, 0, 0],
        30,
        "GIF first frame",
    );
}

#[test]
fn tiff_bmp_grayscale_and_progressive_decode() {
    let q = quadrants(64, 48);
    let dyn_img =
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(64, 48, q.data.clone()).unwrap());
    for fmt in [image::ImageFormat::Tiff, image::ImageFormat::Bmp] {
        let mut bytes = Vec::new();
        dyn_img
            .write_to(&mut std::io::Cursor::new(&mut bytes), fmt)
            .unwrap();
        let out = pipeline("r:32").render(&bytes).unwrap();
        assert_quadrants(&decode(&out.renditions[0].bytes), &format!("{fmt:?}"));
    }
    let progressive = libjpeg::encode_rgb(64, 48, &q.data, 95, true).unwrap();
    let out = pipeline("r:32").render(&progressive).unwrap();
    assert!(out.detail.starts_with("progressive"), "{}", out.detail);
    assert_quadrants(&decode(&out.renditions[0].bytes), "progressive JPEG");
}

#[test]
fn real_fixtures_decode_as_expected() {
    // (file, expected format, expected colour near the centre of the thumb, tolerance)
    let cases: &[(&str, &str, [u8; 3], i32)] = &[
        ("cmyk-adobe.jpg", "jpeg", [255, 0, 0], 60),
        ("gray.jpg", "jpeg", [128, 128, 128], 12),
        ("interlaced.png", "png", [0, 128, 255], 12),
        ("palette-trns.png", "png", [255, 0, 0], 12),
        ("animated.webp", "webp", [255, 0, 0], 40),
        ("lossless-alpha.webp", "webp", [0, 255, 0], 12),
        ("apng.png", "png", [255, 0, 0], 12),
    ];
    let p = pipeline("r:64");
    for (name, format, colour, tol) in cases {
        let out = p
            .render(&fixture(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.format.as_str(), *format, "{name}");
        let img = decode(&out.renditions[0].bytes);
        let (w, h) = img.dimensions();
        assert_close(img.get_pixel(w / 2, h / 2).0, *colour, *tol, name);
    }
}

#[test]
fn outputs_carry_no_metadata() {
    // A JPEG with EXIF (incl. a GPS IFD pointer), XMP and a comment.
    let mut exif_gps = exif::build_orientation_exif(1, false);
    exif_gps.extend_from_slice(b"GPSLatitude 52.1 N secret place");
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    xmp.extend_from_slice(b"<x:xmpmeta>secret</x:xmpmeta>");
    let mut file = with_jpeg_segment(&jpeg(&quadrants(300, 200)), 0xE1, &exif_gps);
    file = with_jpeg_segment(&file, 0xE1, &xmp);
    file = with_jpeg_segment(&file, 0xFE, b"a private comment");
    let mut c = config("a:200,b:100");
    c.watermark.source = WatermarkSource::Default;
    for format in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
        c.format = format;
        let out = Pipeline::new(c.clone()).unwrap().render(&file).unwrap();
        for r in &out.renditions {
            let hay = &r.bytes;
            for needle in [
                &b"Exif"[..],
                b"GPS",
                b"secret",
                b"xmpmeta",
                b"private comment",
                b"eXIf",
                b"XMP ",
            ] {
                assert!(
                    !hay.windows(needle.len()).any(|w| w == needle),
                    "{format:?} {} contains {:?}",
                    r.name,
                    String::from_utf8_lossy(needle)
                );
            }
            if format == OutputFormat::Jpeg {
                // Only SOI, APP0 (JFIF), DQT, SOF, DHT, SOS … no APP1/APP2/COM.
                let has_marker = |m: u8| hay.windows(2).any(|w| w == [0xFF, m]);
                assert!(
                    !has_marker(0xE1) && !has_marker(0xFE),
                    "{} has APP1/COM",
                    r.name
                );
            }
        }
    }
}

#[test]
fn watermark_changes_bottom_right_only() {
    let src = jpeg(&quadrants(1200, 800));
    let mut c = config("r:800");
    c.format = OutputFormat::Png; // lossless, so "identical" is exact
    let plain = Pipeline::new(c.clone()).unwrap().render(&src).unwrap();
    c.watermark.source = WatermarkSource::Default;
    let marked = Pipeline::new(c).unwrap().render(&src).unwrap();
    assert!(marked.renditions[0].watermarked && !plain.renditions[0].watermarked);
    let (a, b) = (
        decode(&plain.renditions[0].bytes),
        decode(&marked.renditions[0].bytes),
    );
    let (w, h) = a.dimensions();
    let differs = |x0: u32, y0: u32| {
        (y0..y0 + h / 2).any(|y| (x0..x0 + w / 2).any(|x| a.get_pixel(x, y) != b.get_pixel(x, y)))
    };
    assert!(!differs(0, 0), "top-left must be identical");
    assert!(differs(w / 2, h / 2), "bottom-right must carry the mark");
}

#[test]
fn watermark_from_text_and_png_bytes() {
    let src = jpeg(&quadrants(800, 600));
    let mut c = config("r:800");
    c.watermark.source = WatermarkSource::Text("hello".into());
    assert!(
        Pipeline::new(c.clone())
            .unwrap()
            .render(&src)
            .unwrap()
            .renditions[0]
            .watermarked
    );
    c.watermark.source =
        WatermarkSource::Image(Arc::new(renditions::stages::DEFAULT_WATERMARK_PNG.to_vec()));
    assert!(Pipeline::new(c).unwrap().render(&src).unwrap().renditions[0].watermarked);
}

fn kind_of(bytes: &[u8]) -> RejectKind {
    match pipeline("r:64").render(bytes) {
        Ok(_) => panic!("expected a rejection"),
        Err(e) => {
            let r = e
                .into_rejection()
                .expect("a rejection, not an internal error");
            assert!(!r.reason.is_empty());
            r.kind
        }
    }
}

#[test]
fn bad_inputs_are_rejected_with_their_kind() {
    let good_jpeg = jpeg(&quadrants(300, 200));
    let good_png = png(&quadrants(300, 200));
    assert_eq!(kind_of(b""), RejectKind::Empty);
    assert_eq!(
        kind_of(b"just some text, not an image\n"),
        RejectKind::Unsupported
    );
    assert_eq!(
        kind_of(b"<!doctype html><html></html>"),
        RejectKind::Unsupported
    );
    for pct in [10, 50, 90] {
        let cut = good_jpeg.len() * pct / 100;
        let k = kind_of(&good_jpeg[..cut]);
        assert!(
            matches!(k, RejectKind::Truncated | RejectKind::Corrupt),
            "JPEG cut at {pct}%: {k:?}"
        );
        let cut = good_png.len() * pct / 100;
        let k = kind_of(&good_png[..cut]);
        assert!(
            matches!(k, RejectKind::Truncated | RejectKind::Corrupt),
            "PNG cut at {pct}%: {k:?}"
        );
    }
    // Corrupt entropy-coded data: flip bytes in the middle of the scan.
    let mut corrupt = good_jpeg.clone();
    let sos = corrupt.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    for i in (sos + 40..corrupt.len() - 10).step_by(7) {
        corrupt[i] = 0xFF;
        if i + 1 < corrupt.len() - 2 {
            corrupt[i + 1] = 0xD3; // RST marker in the wrong place
        }
    }
    let k = kind_of(&corrupt);
    assert!(
        matches!(k, RejectKind::Corrupt | RejectKind::Truncated),
        "corrupt entropy: {k:?}"
    );
    // Bad zlib stream in PNG IDAT.
    let mut bad_zlib = good_png.clone();
    let idat = bad_zlib.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut bad_zlib[idat + 6..idat + 30] {
        *b ^= 0x5A;
    }
    let k = kind_of(&bad_zlib);
    assert!(
        matches!(k, RejectKind::Corrupt | RejectKind::Truncated),
        "bad zlib: {k:?}"
    );
}

#[test]
fn header_bombs_are_refused_before_decoding() {
    // JPEG declaring 65500x65500 (4.3 gigapixels).
    let mut jpeg_bomb = jpeg(&quadrants(16, 16));
    let sof = jpeg_bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .unwrap();
    jpeg_bomb[sof + 5..sof + 7].copy_from_slice(&65500u16.to_be_bytes());
    jpeg_bomb[sof + 7..sof + 9].copy_from_slice(&65500u16.to_be_bytes());
    assert_eq!(kind_of(&jpeg_bomb), RejectKind::TooLarge);
    // PNG declaring 30000x30000 and 1,000,000 squared.
    for side in [30_000u32, 1_000_000] {
        let mut png_bomb = png(&quadrants(16, 16));
        png_bomb[16..20].copy_from_slice(&side.to_be_bytes());
        png_bomb[20..24].copy_from_slice(&side.to_be_bytes());
        let crc = crc32(&png_bomb[12..29]);
        png_bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(kind_of(&png_bomb), RejectKind::TooLarge, "PNG {side}");
    }
    // GIF whose logical screen is 65535x65535.
    let mut gif = Vec::new();
    image::codecs::gif::GifEncoder::new(&mut gif)
        .encode_frames(vec![image::Frame::new(image::RgbaImage::from_pixel(
            4,
            4,
            image::Rgba([1, 2, 3, 255]),
        ))])
        .unwrap();
    gif[6..8].copy_from_slice(&65535u16.to_le_bytes());
    gif[8..10].copy_from_slice(&65535u16.to_le_bytes());
    assert_eq!(kind_of(&gif), RejectKind::TooLarge);
}

#[test]
fn limits_are_configurable() {
    let src = jpeg(&quadrants(300, 200));
    let mut c = config("r:64");
    c.limits.max_input_pixels = 300 * 200 - 1;
    assert_eq!(
        Pipeline::new(c.clone())
            .unwrap()
            .render(&src)
            .unwrap_err()
            .into_rejection()
            .unwrap()
            .kind,
        RejectKind::TooLarge
    );
    c.limits.max_input_pixels = 300 * 200;
    c.limits.max_input_bytes = src.len() as u64 - 1;
    let err = Pipeline::new(c)
        .unwrap()
        .render(&src)
        .unwrap_err()
        .into_rejection()
        .unwrap();
    assert_eq!(err.kind, RejectKind::TooLarge);
    assert!(err.reason.contains("bytes"), "{}", err.reason);
}

#[test]
fn cover_spec_fit_is_parsed() {
    let r = RenditionSpec::parse_list("RENDITIONS", "sq:10x10:cover").unwrap();
    assert_eq!(r[0].fit, Fit::Cover);
}

#[test]
fn memory_budget_refuses_what_does_not_fit() {
    // A progressive 2000x2000 JPEG keeps ~12 MB of coefficients; a 4 MiB budget refuses it
    // cleanly, a generous one renders it.
    let b = Bitmap::new(2000, 2000, Channels::Rgb);
    let progressive = libjpeg::encode_rgb(2000, 2000, &b.data, 80, true).unwrap();
    let mut c = config("r:200");
    c.limits.max_working_bytes = 4 << 20;
    let err = Pipeline::new(c.clone())
        .unwrap()
        .render(&progressive)
        .unwrap_err()
        .into_rejection()
        .unwrap();
    assert_eq!(err.kind, RejectKind::TooLarge);
    assert!(err.reason.contains("memory budget"), "{}", err.reason);
    c.limits.max_working_bytes = 64 << 20;
    assert!(Pipeline::new(c).unwrap().render(&progressive).is_ok());
}

#[cfg(feature = "avif")]
#[test]
fn avif_output_is_an_avif_file() {
    let mut c = config("r:64");
    c.format = OutputFormat::Avif;
    let out = Pipeline::new(c)
        .unwrap()
        .render(&jpeg(&quadrants(128, 96)))
        .unwrap();
    let r = &out.renditions[0];
    assert_eq!(r.encoding, renditions::Encoding::Avif);
    assert_eq!(&r.bytes[4..12], b"ftypavif", "not an AVIF container");
    // The `ispe` property (image spatial extents): version/flags, then width and height.
    let at = r
        .bytes
        .windows(4)
        .position(|w| w == b"ispe")
        .expect("an ispe box");
    let be = |i: usize| u32::from_be_bytes(r.bytes[i..i + 4].try_into().unwrap());
    assert_eq!((be(at + 8), be(at + 12)), (64, 48), "AVIF dimensions");
    assert_eq!((r.width, r.height), (64, 48));
}

#[test]
fn a_webp_rendition_over_webps_limit_is_an_init_error_naming_renditions() {
    let mut c = config("ok:16383,huge:20000x100");
    c.format = OutputFormat::Webp;
    let err = Pipeline::new(c.clone()).err().expect("refused at init");
    assert_eq!(err.setting, "RENDITIONS");
    assert!(
        err.problem.contains("huge") && err.problem.contains("16383"),
        "{err}"
    );
    // The same boxes are fine for formats without that limit.
    c.format = OutputFormat::Jpeg;
    assert!(Pipeline::new(c).is_ok());
}

/// A PNG whose image data is complete but whose IEND chunk is missing or cut renders (libpng in
/// sharp/libvips and Pillow agree), with the right pixels; one cut inside its data does not.
#[test]
fn a_png_without_its_iend_chunk_renders() {
    let img = image::RgbImage::from_pixel(64, 48, image::Rgb([10, 200, 30]));
    let mut whole = std::io::Cursor::new(Vec::new());
    img.write_to(&mut whole, image::ImageFormat::Png).unwrap();
    let whole = whole.into_inner();
    let mut c = config("r:64");
    c.format = OutputFormat::Png;
    let p = Pipeline::new(c).unwrap();
    for cut in [12, 5] {
        let out = p.render(&whole[..whole.len() - cut]).unwrap();
        assert!(
            out.notes.iter().any(|n| n.contains("IEND")),
            "{:?}",
            out.notes
        );
        let px = image::load_from_memory(&out.renditions[0].bytes)
            .unwrap()
            .to_rgb8();
        assert_eq!(px.dimensions(), (64, 48));
        assert_eq!(px.get_pixel(10, 10).0, [10, 200, 30]);
    }
    let cut_in_data = p.render(&whole[..whole.len() - 30]).unwrap_err();
    assert_eq!(
        cut_in_data.into_rejection().unwrap().kind,
        RejectKind::Truncated
    );
}

/// A GIF with neither a global nor a local colour table renders with a greyscale palette (as
/// Pillow, sharp and libvips do): index v is grey level v, as Pillow's "L" decode gives.
#[test]
fn a_gif_without_a_palette_renders_grey() {
    // 4x3 with the indices below, no colour table anywhere (Pillow's output with its table cut).
    const GIF: [u8; 43] = [
        0x47, 0x49, 0x46, 0x38, 0x37, 0x61, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00,
        0x00, 0x00, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x08, 0x10, 0x00, 0x01, 0xc8, 0x20, 0x83,
        0x4c, 0x01, 0x05, 0x0f, 0x28, 0xfe, 0x01, 0x02, 0x02, 0x22, 0x20, 0x00, 0x3b,
    ];
    const INDICES: [u8; 12] = [0, 50, 100, 200, 10, 20, 30, 40, 255, 128, 64, 32];
    let mut c = config("r:64");
    c.format = OutputFormat::Png;
    let out = Pipeline::new(c).unwrap().render(&GIF).unwrap();
    assert!(
        out.notes.iter().any(|n| n.contains("greyscale")),
        "{:?}",
        out.notes
    );
    let px = image::load_from_memory(&out.renditions[0].bytes)
        .unwrap()
        .to_rgb8();
    assert_eq!(px.dimensions(), (4, 3));
    let grey: Vec<[u8; 3]> = INDICES.iter().map(|&v| [v, v, v]).collect();
    let got: Vec<[u8; 3]> = px.pixels().map(|p| p.0).collect();
    assert_eq!(got, grey);
}
