//! Colour on profiled inputs, end to end through `Pipeline::render`: each case checks pixel values
//! against Pillow + littleCMS (the reference the peer fixtures were checked with).
//!
//! The peer fixtures are read from `../shared/corpus/peerfix` (not copied into the repository);
//! in a clone without it those checks say so and pass, the generated ones always run.

use std::path::PathBuf;

use moxcms::{ColorProfile, Layout, TransformOptions};
use renditions::{OutputFormat, Pipeline, PipelineConfig, RenditionSpec, WatermarkSource};

/// Renders at the stored size (no resize), as PNG (no re-encoding error), no watermark.
fn render_png(bytes: &[u8], side: u32) -> image::RgbImage {
    let mut c = PipelineConfig {
        renditions: RenditionSpec::parse_list("RENDITIONS", &format!("r:{side}")).unwrap(),
        format: OutputFormat::Png,
        ..PipelineConfig::default()
    };
    c.watermark.source = WatermarkSource::None;
    let out = Pipeline::new(c).unwrap().render(bytes).unwrap();
    image::load_from_memory(&out.renditions[0].bytes)
        .unwrap()
        .to_rgb8()
}

fn peer(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/peerfix")
        .join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!(
                "not checked: {} is missing (../shared/corpus/peerfix)",
                path.display()
            );
            None
        }
    }
}

fn assert_near(got: [u8; 3], want: [u8; 3], tolerance: u8, what: &str) {
    let close = got
        .iter()
        .zip(want)
        .all(|(&g, w)| g.abs_diff(w) <= tolerance);
    assert!(close, "{what}: got {got:?}, want {want:?} ± {tolerance}");
}

/// sharp's CMYK TIFF with a Coated FOGRA39 profile, C0 M100 Y100 K0: lcms2 gives (227, 6, 20);
/// converting without the profile gives pure red.
#[test]
fn cmyk_tiff_uses_its_embedded_profile() {
    let Some(tif) = peer("sharp-cmyk-fogra39.tif") else {
        return;
    };
    let px = render_png(&tif, 1000);
    assert_eq!(px.dimensions(), (1000, 1000));
    assert_near(px.get_pixel(500, 500).0, [227, 6, 20], 2, "centre");
    assert_near(px.get_pixel(10, 10).0, [227, 6, 20], 2, "corner");
}

/// A greyscale JPEG with a "Gray Gamma 2.2" profile: lcms2 maps 39 → 34 and 27 → 20.
#[test]
fn grey_jpeg_uses_its_gray_profile() {
    let Some(jpg) = peer("sharp-gray-gamma22.jpg") else {
        return;
    };
    let px = render_png(&jpg, 400);
    assert_eq!(px.dimensions(), (400, 267));
    assert_near(px.get_pixel(200, 130).0, [34, 34, 34], 1, "(200, 130)");
    assert_near(px.get_pixel(300, 200).0, [20, 20, 20], 1, "(300, 200)");
}

/// image-rs's BMP V5 whose stored pixels have red and green swapped and whose embedded profile
/// swaps them back: (0, 255, 0) stored is (255, 0, 0) shown.
#[test]
fn bmp_uses_its_embedded_profile() {
    let Some(bmp) = peer("imagers-rgb24prof2.bmp") else {
        return;
    };
    let px = render_png(&bmp, 127);
    assert_eq!(px.dimensions(), (127, 64));
    assert_near(px.get_pixel(0, 0).0, [255, 0, 0], 1, "(0, 0)");
    assert_near(px.get_pixel(20, 20).0, [176, 167, 167], 1, "(20, 20)");
    assert_near(px.get_pixel(100, 50).0, [109, 109, 114], 1, "(100, 50)");
}

/// A 2x1 24-bit BMP with a BITMAPV5HEADER and `profile` embedded (PROFILE_EMBEDDED).
fn bmp_v5_with_profile(pixels: [[u8; 3]; 2], profile: &[u8]) -> Vec<u8> {
    const INFO: u32 = 124;
    let pixel_bytes = 8u32; // one row of 2 × 3 bytes, padded to 4
    let data_offset = 14 + INFO;
    let profile_offset = INFO + pixel_bytes; // from the start of the info header
    let file_size = data_offset + pixel_bytes + profile.len() as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"BM");
    b.extend_from_slice(&file_size.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&data_offset.to_le_bytes());
    let mut info = vec![0u8; INFO as usize];
    info[0..4].copy_from_slice(&INFO.to_le_bytes());
    info[4..8].copy_from_slice(&2i32.to_le_bytes());
    info[8..12].copy_from_slice(&1i32.to_le_bytes());
    info[12..14].copy_from_slice(&1u16.to_le_bytes());
    info[14..16].copy_from_slice(&24u16.to_le_bytes());
    info[20..24].copy_from_slice(&pixel_bytes.to_le_bytes());
    info[24..28].copy_from_slice(&2835u32.to_le_bytes());
    info[28..32].copy_from_slice(&2835u32.to_le_bytes());
    info[56..60].copy_from_slice(&0x4D42_4544u32.to_le_bytes()); // 'MBED'
    info[108..112].copy_from_slice(&4u32.to_le_bytes()); // LCS_GM_IMAGES
    info[112..116].copy_from_slice(&profile_offset.to_le_bytes());
    info[116..120].copy_from_slice(&(profile.len() as u32).to_le_bytes());
    b.extend_from_slice(&info);
    for [r, g, bl] in pixels {
        b.extend_from_slice(&[bl, g, r]);
    }
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(profile);
    b
}

/// The same through a BMP made here: a Display P3 profile embedded in a V5 header is applied.
#[test]
fn generated_bmp_with_an_embedded_p3_profile_is_converted() {
    let p3 = ColorProfile::new_display_p3();
    let icc = p3.encode().unwrap();
    let stored = [[200u8, 100, 50], [40, 180, 90]];
    let px = render_png(&bmp_v5_with_profile(stored, &icc), 2);
    let t = p3
        .create_transform_8bit(
            Layout::Rgb,
            &ColorProfile::new_srgb(),
            Layout::Rgb,
            TransformOptions::default(),
        )
        .unwrap();
    let mut want = [0u8; 6];
    t.transform(stored.as_flattened(), &mut want).unwrap();
    assert_ne!(&want[..3], &stored[0], "P3 must differ from sRGB here");
    assert_near(px.get_pixel(0, 0).0, [want[0], want[1], want[2]], 1, "left");
    assert_near(
        px.get_pixel(1, 0).0,
        [want[3], want[4], want[5]],
        1,
        "right",
    );
}
