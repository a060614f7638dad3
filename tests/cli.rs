//! The `renditions` CLI as a user runs it: the real binary, real files, exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use renditions::stages::libjpeg;
use renditions::{Bitmap, Channels};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_renditions"))
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("renditions-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 1200x800 photo-like JPEG: a smooth gradient.
fn write_jpeg(dir: &Path, name: &str) -> PathBuf {
    let (w, h) = (1200u32, 800u32);
    let mut b = Bitmap::new(w, h, Channels::Rgb);
    for (i, p) in b.data.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i as u32 % w, i as u32 / w);
        p.copy_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 128]);
    }
    let path = dir.join(name);
    std::fs::write(
        &path,
        libjpeg::encode_rgb(w, h, &b.data, 90, false).unwrap(),
    )
    .unwrap();
    path
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("binary runs")
}

#[test]
fn renders_files_into_rendition_folders() {
    let dir = tempdir("render");
    let a = write_jpeg(&dir, "cat photo.jpg");
    let out = dir.join("out");
    let o = run(bin()
        .args(["render", "--threads", "1", "--out"])
        .arg(&out)
        .arg(&a));
    assert_eq!(
        o.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for (name, w, h) in [
        ("large", 1200, 800),
        ("medium", 800, 533),
        ("thumb", 320, 213),
    ] {
        let p = out.join(name).join("cat photo.jpg");
        let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!((img.width(), img.height()), (w, h), "{name}");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("large 1200x800") && stdout.contains("ms"),
        "{stdout}"
    );
}

#[test]
fn a_rejected_file_does_not_stop_the_others_and_exits_1() {
    let dir = tempdir("reject");
    let good1 = write_jpeg(&dir, "one.jpg");
    let bad = dir.join("notes.jpg");
    std::fs::write(&bad, "this is text, not a JPEG").unwrap();
    let good2 = write_jpeg(&dir, "two.jpg");
    let out = dir.join("out");
    let o = run(bin()
        .args(["render", "--threads", "2", "--renditions", "t:100", "--out"])
        .arg(&out)
        .args([&good1, &bad, &good2]));
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("{}: rejected: unsupported", bad.display())),
        "{stderr}"
    );
    assert!(out.join("t/one.jpg").exists() && out.join("t/two.jpg").exists());
    assert!(!out.join("t/notes.jpg").exists());
}

#[test]
fn json_lines_carry_stage_timings() {
    let dir = tempdir("json");
    let a = write_jpeg(&dir, "a.jpg");
    let bad = dir.join("empty.png");
    std::fs::write(&bad, b"").unwrap();
    let o = run(bin()
        .args(["render", "--json", "--threads", "1", "--out"])
        .arg(dir.join("out"))
        .args([&a, &bad]));
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    let t = &lines[0]["timings_ms"];
    for stage in [
        "decode",
        "orient",
        "colour",
        "resize",
        "watermark",
        "encode",
    ] {
        assert!(t[stage].as_f64().is_some(), "missing {stage} in {t}");
    }
    assert_eq!(lines[0]["renditions"].as_array().unwrap().len(), 3);
    assert_eq!(lines[1]["rejected"]["kind"], "empty");
}

#[test]
fn usage_and_configuration_errors_exit_2_and_name_the_option() {
    let dir = tempdir("usage");
    let a = write_jpeg(&dir, "a.jpg");
    let o = run(bin().args(["render"]).arg(&a));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out"));
    let o = run(bin()
        .args(["render", "--quality", "0", "--out"])
        .arg(dir.join("o"))
        .arg(&a));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--quality"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(bin()
        .args(["render", "--renditions", "big", "--out"])
        .arg(dir.join("o"))
        .arg(&a));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--renditions"));
    let o = run(bin()
        .args(["render", "--watermark", "/nonexistent.png", "--out"])
        .arg(dir.join("o"))
        .arg(&a));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--watermark"));
    let o = run(bin().args(["frobnicate"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn watermark_none_leaves_the_corner_clean() {
    let dir = tempdir("wm");
    let a = write_jpeg(&dir, "a.jpg");
    let args = |wm: &str, out: &str| {
        let mut c = bin();
        c.args([
            "render",
            "--format",
            "png",
            "--renditions",
            "r:800",
            "--watermark",
            wm,
            "--out",
        ])
        .arg(dir.join(out))
        .arg(&a);
        c
    };
    assert_eq!(run(&mut args("none", "plain")).status.code(), Some(0));
    assert_eq!(run(&mut args("default", "marked")).status.code(), Some(0));
    let p = image::open(dir.join("plain/r/a.png")).unwrap().to_rgba8();
    let m = image::open(dir.join("marked/r/a.png")).unwrap().to_rgba8();
    let (w, h) = p.dimensions();
    let region_differs = |x0: u32, y0: u32| {
        (y0..y0 + h / 2).any(|y| (x0..x0 + w / 2).any(|x| p.get_pixel(x, y) != m.get_pixel(x, y)))
    };
    assert!(!region_differs(0, 0));
    assert!(region_differs(w / 2, h / 2));
}

#[test]
fn manifest_flag_writes_the_functions_manifest_next_to_the_outputs() {
    let dir = tempdir("manifest");
    let src = write_jpeg(&dir, "gradient.jpg");
    let out = dir.join("out");
    let status = run(bin()
        .args([
            "render",
            "--renditions",
            "large:600,thumb:90",
            "--watermark",
            "none",
            "--manifest",
            "--out",
        ])
        .arg(&out)
        .arg(&src));
    assert!(status.status.success(), "{status:?}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest/gradient.jpg.json")).unwrap())
            .unwrap();
    assert_eq!(doc["version"], 1);
    assert!(doc["source"]["bucket"].is_null());
    assert_eq!(
        (
            doc["source"]["width"].as_u64(),
            doc["source"]["height"].as_u64()
        ),
        (Some(1200), Some(800))
    );
    let renditions = doc["renditions"].as_array().unwrap();
    assert_eq!(renditions.len(), 2);
    for r in renditions {
        let path = out.join(r["key"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            r["bytes"].as_u64().unwrap() as usize,
            bytes.len(),
            "{path:?}"
        );
    }
    assert_eq!(
        (
            renditions[0]["width"].as_u64(),
            renditions[0]["height"].as_u64()
        ),
        (Some(600), Some(400))
    );
    assert_eq!(doc["config_digest"].as_str().unwrap().len(), 16);
    assert!(
        doc["placeholders"]["blurhash"]
            .as_str()
            .unwrap()
            .starts_with('L')
    );
}
