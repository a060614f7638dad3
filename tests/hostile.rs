//! Hostile uploads: every input here must be rendered or rejected *by rule* — never a crash,
//! never more than 2 s of CPU, never more than 256 MiB peak resident memory.
//!
//! Each input runs in a child process (this test binary, re-executed with `HOSTILE_CHILD_INPUT`
//! set, which runs only [`hostile_child`]) under `RLIMIT_AS` (1 GiB) and `RLIMIT_CPU` (a
//! backstop against a hang); the parent reaps it with `wait4`, so it gets the child's own CPU
//! time, and the child reports its peak RSS (`VmHWM`, which starts afresh at `exec`). The
//! ceilings are resource limits, not benchmarks: healthy inputs use a small fraction of them.
//!
//! The expected outcome of every input is in [`cases`]; docs/hostile-inputs.md has the same
//! table with the reasons. Real photos come from tests/fixtures/hostile/ (see its README.md for
//! sources and licences); everything else is generated here.
#![cfg(all(target_os = "linux", target_pointer_width = "64"))]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use renditions::WatermarkSource;
use renditions::{Pipeline, PipelineConfig, RejectKind};

/// Peak resident memory allowed for one input (the child's whole process).
const MAX_RSS_BYTES: u64 = 256 << 20;
/// CPU time (user + system) allowed for one input, process start-up included.
const MAX_CPU: Duration = Duration::from_secs(2);
/// Address-space cap of the child: a runaway allocation fails instead of swapping the machine.
const CHILD_ADDRESS_SPACE: u64 = 1 << 30;
/// Backstop: the kernel stops a child that spins longer than this (SIGXCPU / SIGKILL).
const CHILD_CPU_SECONDS: u64 = 20;

/// The working-memory budget the hostile runs use (`limits.max_working_bytes`). Peak RSS of an
/// admitted image is roughly twice the budget (decode buffer + colour/flatten copy) plus resize
/// scratch, so 96 MiB keeps every admitted input under the 256 MiB ceiling. The default budget
/// (1 GiB) sizes the Lambda function for 100-megapixel PNGs instead: see docs/hostile-inputs.md.
const HOSTILE_BUDGET: u64 = 96 << 20;

fn hostile_config() -> PipelineConfig {
    let mut c = PipelineConfig::default(); // large:1600, medium:800, thumb:320, auto format
    c.limits.max_working_bytes = HOSTILE_BUDGET;
    c.watermark.source = WatermarkSource::Default;
    c
}

// ---------------------------------------------------------------------------------------------
// The table.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Rendered; optionally with these stored dimensions.
    Ok(Option<(u32, u32)>),
    /// Rejected with this kind, and a reason that contains this text.
    Err(RejectKind, &'static str),
}
use Expect::{Err as Rejected, Ok as Rendered};

const OK: Expect = Rendered(None);

struct Case {
    name: &'static str,
    input: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, input: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        input,
        expect,
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/hostile/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn prefix(data: &[u8], percent: usize) -> Vec<u8> {
    data[..data.len() * percent / 100].to_vec()
}

/// Every hostile input with its expected outcome (file or generator → Ok / Err(kind)).
fn cases() -> Vec<Case> {
    use RejectKind::*;
    let jpg = fixture("chelsea.jpg");
    let png = fixture("chelsea.png");
    let webp = fixture("chelsea.webp");
    let mut v = vec![
        // Real files, each exercising one format feature.
        case(
            "chelsea.jpg (baseline 4:2:0)",
            jpg.clone(),
            Rendered(Some((451, 300))),
        ),
        case(
            "chelsea-progressive.jpg",
            fixture("chelsea-progressive.jpg"),
            OK,
        ),
        case(
            "chelsea-cmyk.jpg (Adobe CMYK)",
            fixture("chelsea-cmyk.jpg"),
            OK,
        ),
        case(
            "rocket-icc.jpg (ICC profile)",
            fixture("rocket-icc.jpg"),
            OK,
        ),
        case("chelsea.png", png.clone(), OK),
        case("chelsea.webp", webp.clone(), OK),
        case(
            "chelsea-tiff.jpg (TIFF named .jpg)",
            fixture("chelsea-tiff.jpg"),
            OK,
        ),
        case(
            "chelsea-interlaced.gif",
            fixture("chelsea-interlaced.gif"),
            OK,
        ),
        case("interlaced.png (Adam7)", fixture("interlaced.png"), OK),
        case("chelsea-animated.gif", fixture("chelsea-animated.gif"), OK),
        case(
            "chelsea-animated.webp",
            fixture("chelsea-animated.webp"),
            OK,
        ),
        case(
            "chelsea-animated.png (APNG)",
            fixture("chelsea-animated.png"),
            OK,
        ),
        case("16-bit RGB PNG", png16(64, 48, false), OK),
        case("16-bit gray+alpha PNG", png16(64, 48, true), OK),
        case("16-bit RGB TIFF", tiff16(64, 48), OK),
        // Not images at all.
        case("zero bytes", Vec::new(), Rejected(Empty, "empty (0 bytes)")),
        case(
            "text named .jpg",
            b"hello, this is not a photo\n".to_vec(),
            Rejected(Unsupported, "the content is text"),
        ),
        case(
            "HTML named .jpg",
            b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>".to_vec(),
            Rejected(Unsupported, "the content is HTML"),
        ),
        case(
            "JPEG magic only",
            vec![0xFF, 0xD8, 0xFF],
            Rejected(Truncated, "JPEG ends inside its header"),
        ),
        // Truncated real photos.
        case(
            "chelsea.jpg cut at 10%",
            prefix(&jpg, 10),
            Rejected(
                Truncated,
                "JPEG data ends before the image does (Premature end of JPEG file)",
            ),
        ),
        case(
            "chelsea.jpg cut at 50%",
            prefix(&jpg, 50),
            Rejected(
                Truncated,
                "JPEG data ends before the image does (Premature end of JPEG file)",
            ),
        ),
        case(
            "chelsea.jpg cut at 90%",
            prefix(&jpg, 90),
            Rejected(
                Truncated,
                "JPEG data ends before the image does (Premature end of JPEG file)",
            ),
        ),
        case(
            "chelsea.png cut at 10%",
            prefix(&png, 10),
            Rejected(Truncated, "PNG data ends before the image does"),
        ),
        case(
            "chelsea.png cut at 50%",
            prefix(&png, 50),
            Rejected(Truncated, "PNG data ends before the image does"),
        ),
        case(
            "chelsea.png cut at 90%",
            prefix(&png, 90),
            Rejected(Truncated, "PNG data ends before the image does"),
        ),
        case(
            "chelsea.webp cut at 10%",
            prefix(&webp, 10),
            Rejected(Truncated, "WebP data ends before the image does"),
        ),
        case(
            "chelsea.webp cut at 50%",
            prefix(&webp, 50),
            Rejected(Truncated, "WebP data ends before the image does"),
        ),
        case(
            "chelsea.webp cut at 90%",
            prefix(&webp, 90),
            Rejected(Truncated, "WebP data ends before the image does"),
        ),
        // Corrupt data behind valid headers.
        case(
            "JPEG with corrupt entropy data",
            jpeg_corrupt_entropy(&jpg),
            Rejected(Corrupt, "interrupted by a marker"),
        ),
        case(
            "PNG with a bad zlib stream",
            png_bad_zlib(&png),
            Rejected(Corrupt, "Corrupt deflate stream"),
        ),
        // Absurd declared dimensions.
        case(
            "JPEG declaring 65500x65500",
            jpeg_dims(&jpg, 65500, 65500),
            Rejected(TooLarge, "declares 65500x65500"),
        ),
        case(
            "PNG declaring 1000000x1000000",
            png_zero_bomb(1_000_000, 1_000_000, 1),
            Rejected(TooLarge, "declares 1000000x1000000"),
        ),
        case(
            "PNG 1000000x1000000 header, no IDAT",
            png_zero_bomb(1_000_000, 1_000_000, 0),
            Rejected(Corrupt, "IDAT or fdAT chunk is missing"),
        ),
        case(
            "GIF screen 65535x65535, 1x1 frame",
            gif_screen(65535, 65535),
            Rejected(TooLarge, "declares 65535x65535"),
        ),
        case(
            "GIF screen 10000x10000, 1x1 frame",
            gif_screen(10000, 10000),
            Rejected(TooLarge, "over the memory budget"),
        ),
        case(
            "WebP declaring 16384x16384",
            webp_dims(&webp_lossless_1x1(), 16384, 16384),
            Rejected(TooLarge, "declares 16384x16384"),
        ),
        case(
            "animated WebP, 10000x10000 canvas",
            webp_animated_canvas(10000, 10000),
            Rejected(TooLarge, "over the memory budget"),
        ),
        // Decompression bombs.
        case(
            "PNG bomb 20000x20000 gray (400 MP)",
            png_zero_bomb(20000, 20000, usize::MAX),
            Rejected(TooLarge, "declares 20000x20000"),
        ),
        case(
            "PNG bomb 9000x9000 gray (81 MP)",
            png_zero_bomb(9000, 9000, usize::MAX),
            Rejected(TooLarge, "over the memory budget"),
        ),
        case(
            "PNG bomb 3000x3000 gray (9 MP)",
            png_zero_bomb(3000, 3000, usize::MAX),
            OK,
        ),
        case(
            "GIF bomb 9000x9000 (81 MP)",
            gif_zero_bomb(9000, 9000),
            Rejected(TooLarge, "over the memory budget"),
        ),
        case("GIF bomb 3000x3000 (9 MP)", gif_zero_bomb(3000, 3000), OK),
        case(
            "progressive JPEG with 5000 scans",
            jpeg_many_scans(2048, 2048, 5000),
            Rejected(
                Corrupt,
                "absurd number of scans (refused to bound the decode time) (more than 100 scans)",
            ),
        ),
        // Metadata segments.
        case(
            "EXIF IFD pointing to itself",
            jpeg_with(&jpg, &[app1_exif(exif_self_loop())]),
            OK,
        ),
        case(
            "EXIF with bad IFD offsets",
            jpeg_with(&jpg, &[app1_exif(exif_bad_offsets())]),
            OK,
        ),
        case(
            "EXIF 64 KB with an absurd entry count",
            jpeg_with(&jpg, &[app1_exif(exif_huge())]),
            OK,
        ),
        case(
            "60 APP2 ICC chunks of garbage (3.9 MB)",
            jpeg_with(&jpg, &icc_chunks(60, 65_000)),
            OK,
        ),
        case(
            "ICC profile with 2^32-1 tags",
            jpeg_with(&jpg, &icc_chunks_of(&icc_absurd_tags())),
            OK,
        ),
        case(
            "ICC chunk 1 of 255 only",
            jpeg_with(&jpg, &[icc_chunk(1, 255, &icc_absurd_tags())]),
            OK,
        ),
        case(
            "60 XMP APP1 segments (3.9 MB)",
            jpeg_with(&jpg, &xmp_segments(60, 65_000)),
            OK,
        ),
        case(
            "UltraHDR/MPF: primary + gain map after EOI",
            ultrahdr(&jpg),
            Rendered(Some((451, 300))),
        ),
    ];
    v.retain(|c| std::env::var("HOSTILE_ONLY").map_or(true, |only| c.name.contains(&only)));
    v
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// Child side: renders the file named by `HOSTILE_CHILD_INPUT` and prints one result line and
/// its peak RSS. A no-op in a normal test run.
#[test]
fn hostile_child() {
    let Ok(path) = std::env::var("HOSTILE_CHILD_INPUT") else {
        return;
    };
    let data = std::fs::read(&path).expect("read input");
    let pipeline = Pipeline::new(hostile_config()).expect("config");
    let line = match pipeline.render(&data) {
        Ok(out) => format!("ok {}x{}", out.width, out.height),
        Err(e) => match e.rejection() {
            Some(r) => format!("err {} {}", r.kind.as_str(), r.reason.replace('\n', " ")),
            None => format!("internal {}", e.to_string().replace('\n', " ")),
        },
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(u64::MAX);
    println!("HOSTILE-RESULT {line}");
    println!("HOSTILE-HWM {hwm_kb}");
}

#[repr(C)]
#[derive(Default)]
struct Timeval {
    sec: i64,
    usec: i64,
}

#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    maxrss_kb: i64,
    rest: [i64; 13],
}

#[repr(C)]
struct Rlimit {
    cur: u64,
    max: u64,
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
    fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
}

const RLIMIT_CPU: i32 = 0;
const RLIMIT_AS: i32 = 9;

struct Measured {
    /// `ok WxH` or `err KIND reason`, or how the child died.
    outcome: String,
    cpu: Duration,
    peak_rss: u64,
}

// The child is reaped with wait4 (for its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
fn run_child(input: &Path) -> Measured {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "hostile_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("HOSTILE_CHILD_INPUT", input)
    .env_remove("HOSTILE_ONLY")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches no other state.
    unsafe {
        cmd.pre_exec(|| {
            let as_limit = Rlimit {
                cur: CHILD_ADDRESS_SPACE,
                max: CHILD_ADDRESS_SPACE,
            };
            let cpu = Rlimit {
                cur: CHILD_CPU_SECONDS,
                max: CHILD_CPU_SECONDS + 1,
            };
            if setrlimit(RLIMIT_AS, &as_limit) != 0 || setrlimit(RLIMIT_CPU, &cpu) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn child");
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let _ = err_pipe.read_to_string(&mut stderr);
        stderr
    });
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .ok();
    let stderr = err_reader.join().unwrap_or_default();
    let mut status = 0i32;
    let mut usage = Rusage::default();
    // SAFETY: reaps our own child (std's Child does not wait on drop); plain out-parameters.
    let pid = unsafe { wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let cpu = Duration::from_micros(
        (usage.utime.sec * 1_000_000
            + usage.utime.usec
            + usage.stime.sec * 1_000_000
            + usage.stime.usec) as u64,
    );
    let find = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(tag).map(|(_, rest)| rest.trim()))
            .map(str::to_owned)
    };
    let peak_rss = find("HOSTILE-HWM ")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(u64::MAX, |kb| kb * 1024);
    let outcome = match find("HOSTILE-RESULT ") {
        Some(line) if status == 0 => line,
        _ => {
            let how = if status & 0x7f != 0 {
                format!("killed by signal {}", status & 0x7f)
            } else {
                format!("exit status {}", (status >> 8) & 0xff)
            };
            let tail: String = stderr.lines().rev().take(6).collect::<Vec<_>>().join(" | ");
            format!("CRASH ({how}): {tail}")
        }
    };
    Measured {
        outcome,
        cpu,
        peak_rss,
    }
}

fn matches(expect: Expect, outcome: &str) -> bool {
    match expect {
        Rendered(None) => outcome.starts_with("ok "),
        Rendered(Some((w, h))) => outcome == format!("ok {w}x{h}"),
        Rejected(kind, reason) => {
            outcome.starts_with(&format!("err {} ", kind.as_str())) && outcome.contains(reason)
        }
    }
}

#[test]
fn hostile_inputs_are_rendered_or_rejected_within_limits() {
    let dir = std::env::temp_dir().join(format!("renditions-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = cases();
    if let Ok(dump) = std::env::var("HOSTILE_DUMP") {
        // Writes every input to a folder (to try them with another build or tool).
        std::fs::create_dir_all(&dump).unwrap();
        for (i, c) in cases.iter().enumerate() {
            let name: String = c
                .name
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || ch == '.' || ch == '-' {
                        ch
                    } else {
                        '_'
                    }
                })
                .collect();
            std::fs::write(Path::new(&dump).join(format!("{i:02}-{name}")), &c.input).unwrap();
        }
    }
    let files: Vec<(usize, PathBuf)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = dir.join(format!("case-{i:02}"));
            std::fs::write(&p, &c.input).unwrap();
            (i, p)
        })
        .collect();
    // Two children at a time (the machine has two cores); each is measured on its own.
    let queue = Mutex::new(files.into_iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((i, path)) = next else { break };
                    let m = run_child(&path);
                    results.lock().unwrap().push((i, m));
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut failures = Vec::new();
    println!(
        "{:<46} {:>9} {:>7} {:>8}  outcome",
        "input", "bytes", "cpu ms", "rss MiB"
    );
    for (i, m) in &results {
        let c = &cases[*i];
        let rss_mib = m.peak_rss as f64 / (1 << 20) as f64;
        println!(
            "{:<46} {:>9} {:>7} {:>8.1}  {}",
            c.name,
            c.input.len(),
            m.cpu.as_millis(),
            rss_mib,
            m.outcome
        );
        if !matches(c.expect, &m.outcome) {
            failures.push(format!(
                "{}: expected {:?}, got {}",
                c.name, c.expect, m.outcome
            ));
        }
        if m.cpu > MAX_CPU {
            failures.push(format!(
                "{}: {} ms of CPU (limit {:?})",
                c.name,
                m.cpu.as_millis(),
                MAX_CPU
            ));
        }
        if m.peak_rss > MAX_RSS_BYTES {
            failures.push(format!(
                "{}: peak RSS {rss_mib:.1} MiB (limit 256 MiB)",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "hostile inputs broke the rules:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Generators: checksums.

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
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

// ---------------------------------------------------------------------------------------------
// Generators: PNG.

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// LSB-first bit writer for deflate.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn new() -> Self {
        Bits {
            out: Vec::new(),
            acc: 0,
            n: 0,
        }
    }
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// Huffman codes are sent most-significant bit first.
    fn put_code(&mut self, code: u32, bits: u32) {
        let mut rev = 0;
        for i in 0..bits {
            rev |= ((code >> i) & 1) << (bits - 1 - i);
        }
        self.put(rev, bits);
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A zlib stream of `n` zero bytes in one fixed-Huffman block: a literal 0, then matches of
/// length 258 at distance 1 (13 bits per 258 bytes, about 1:160).
fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut b = Bits::new();
    b.put(1, 1); // BFINAL
    b.put(1, 2); // BTYPE = fixed Huffman
    let lit0 = |b: &mut Bits| b.put_code(0x30, 8); // literal 0: codes 0x30.. (8 bits)
    let mut left = n;
    if left > 0 {
        lit0(&mut b);
        left -= 1;
    }
    while left >= 258 {
        b.put_code(0b1100_0101, 8); // length code 285 = 258
        b.put_code(0, 5); // distance code 0 = 1
        left -= 258;
    }
    while left >= 3 {
        // Length codes 257..=264 are lengths 3..=10 (7-bit codes 1..=8).
        let len = left.min(10);
        b.put_code((len - 2) as u32, 7);
        b.put_code(0, 5);
        left -= len;
    }
    for _ in 0..left {
        lit0(&mut b);
    }
    b.put_code(0, 7); // end of block (256)
    let mut z = vec![0x78, 0x01];
    z.extend(b.finish());
    let (a, s) = (1u64, (n as u64) % 65521); // Adler-32 of n zeros: a = 1, b = n
    z.extend_from_slice(&(((s << 16) | a) as u32).to_be_bytes());
    z
}

/// An 8-bit grayscale PNG of `w`×`h` zeros whose IDAT holds the first `rows` rows (all of them
/// with `usize::MAX`; none with 0: a header-only file).
fn png_zero_bomb(w: u32, h: u32, rows: usize) -> Vec<u8> {
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray, deflate, filter 0, no interlace
    png_chunk(&mut f, b"IHDR", &ihdr);
    let rows = rows.min(h as usize);
    if rows > 0 {
        png_chunk(&mut f, b"IDAT", &zlib_zeros(rows * (w as usize + 1)));
    }
    png_chunk(&mut f, b"IEND", &[]);
    f
}

/// Replaces the IDAT payload of `png` (a single-IDAT file) with bytes that are not a zlib
/// stream but keep a correct CRC, so only the inflater can object.
fn png_bad_zlib(png: &[u8]) -> Vec<u8> {
    let mut out = png[..8].to_vec();
    let mut pos = 8;
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = png[pos + 4..pos + 8].try_into().unwrap();
        let body = &png[pos + 8..pos + 8 + len];
        if &kind == b"IDAT" {
            let mut bad = body.to_vec();
            // Keep the zlib header; make the first block a reserved block type (BTYPE = 3).
            bad[2] = 0xFF;
            for b in bad[3..].iter_mut().take(64) {
                *b ^= 0xA5;
            }
            png_chunk(&mut out, &kind, &bad);
        } else {
            png_chunk(&mut out, &kind, body);
        }
        pos += 12 + len;
    }
    out
}

fn png16(w: u32, h: u32, gray_alpha: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    use image::ImageEncoder;
    if gray_alpha {
        let px: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let v = (i * 997 % 65536) as u16;
                let a = if i % 7 == 0 { 0u16 } else { 65535 };
                [v.to_ne_bytes(), a.to_ne_bytes()].concat()
            })
            .collect();
        enc.write_image(&px, w, h, image::ExtendedColorType::La16)
            .unwrap();
    } else {
        let px: Vec<u8> = (0..w * h * 3)
            .flat_map(|i| ((i * 4099 % 65536) as u16).to_ne_bytes())
            .collect();
        enc.write_image(&px, w, h, image::ExtendedColorType::Rgb16)
            .unwrap();
    }
    out
}

fn tiff16(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(w, h, |x, y| {
        image::Rgb([(x * 1000) as u16, (y * 1300) as u16, 30000])
    });
    img.write_to(&mut out, image::ImageFormat::Tiff).unwrap();
    out.into_inner()
}

// ---------------------------------------------------------------------------------------------
// Generators: GIF.

fn gif_header(w: u16, h: u16) -> Vec<u8> {
    let mut f = b"GIF89a".to_vec();
    f.extend_from_slice(&w.to_le_bytes());
    f.extend_from_slice(&h.to_le_bytes());
    f.extend_from_slice(&[0x80, 0, 0]); // global colour table of 2 entries
    f.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    f
}

fn gif_frame(f: &mut Vec<u8>, w: u16, h: u16, lzw: &[u8]) {
    f.push(0x2C);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&w.to_le_bytes());
    f.extend_from_slice(&h.to_le_bytes());
    f.push(0);
    f.push(2); // LZW minimum code size
    for chunk in lzw.chunks(255) {
        f.push(chunk.len() as u8);
        f.extend_from_slice(chunk);
    }
    f.push(0);
}

/// GIF LZW (minimum code size 2) of `n` zero pixels: runs of growing length, each new run one
/// dictionary entry; once the table is full, runs of the longest length.
fn lzw_zeros(n: usize) -> Vec<u8> {
    let (clear, eoi, first) = (4u32, 5u32, 6u32);
    let mut b = Bits::new();
    let mut width = 3u32;
    let mut next = first; // next code to assign
    b.put(clear, width);
    let mut left = n;
    let mut run = 1usize; // the longest run the table knows is `next - first + 1`
    while left > 0 {
        let max_known = (next - first + 1) as usize;
        let len = run.min(max_known).min(left);
        let code = if len == 1 { 0 } else { first + len as u32 - 2 };
        b.put(code, width);
        left -= len;
        if next >= 1 << width && width < 12 {
            width += 1;
        }
        if next < 4096 {
            next += 1; // the entry for a run of len + 1
        }
        run = len + 1;
    }
    b.put(eoi, width);
    b.finish()
}

fn gif_screen(w: u16, h: u16) -> Vec<u8> {
    let mut f = gif_header(w, h);
    gif_frame(&mut f, 1, 1, &lzw_zeros(1));
    f.push(0x3B);
    f
}

fn gif_zero_bomb(w: u16, h: u16) -> Vec<u8> {
    let mut f = gif_header(w, h);
    gif_frame(&mut f, w, h, &lzw_zeros(w as usize * h as usize));
    f.push(0x3B);
    f
}

// ---------------------------------------------------------------------------------------------
// Generators: WebP.

fn webp_lossless_1x1() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbaImage::from_pixel(1, 1, image::Rgba([10, 20, 30, 255]))
        .write_to(&mut out, image::ImageFormat::WebP)
        .unwrap();
    out.into_inner()
}

/// Rewrites the 14-bit width and height fields of a VP8L (lossless) bitstream header.
fn webp_dims(lossless: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut f = lossless.to_vec();
    assert_eq!(&f[12..16], b"VP8L");
    let bits = u32::from_le_bytes(f[21..25].try_into().unwrap());
    let bits = (bits & !0x0FFF_FFFF) | (w - 1) | ((h - 1) << 14);
    f[21..25].copy_from_slice(&bits.to_le_bytes());
    f
}

fn riff_chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(kind);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
}

fn u24(v: u32) -> [u8; 3] {
    [v as u8, (v >> 8) as u8, (v >> 16) as u8]
}

/// An animated WebP whose canvas is `w`×`h` but whose only frame is 1×1 (the decoder allocates
/// the canvas, twice).
fn webp_animated_canvas(w: u32, h: u32) -> Vec<u8> {
    let still = webp_lossless_1x1();
    let frame_chunk = &still[12..]; // the VP8L chunk, header included
    let mut body = Vec::new();
    let mut vp8x = vec![0x02 | 0x10, 0, 0, 0]; // animation + alpha
    vp8x.extend_from_slice(&u24(w - 1));
    vp8x.extend_from_slice(&u24(h - 1));
    riff_chunk(&mut body, b"VP8X", &vp8x);
    riff_chunk(&mut body, b"ANIM", &[0, 0, 0, 0, 0, 0]);
    let mut anmf = Vec::new();
    anmf.extend_from_slice(&u24(0));
    anmf.extend_from_slice(&u24(0));
    anmf.extend_from_slice(&u24(0)); // frame width - 1
    anmf.extend_from_slice(&u24(0)); // frame height - 1
    anmf.extend_from_slice(&u24(100)); // duration
    anmf.push(0);
    anmf.extend_from_slice(frame_chunk);
    riff_chunk(&mut body, b"ANMF", &anmf);
    let mut f = b"RIFF".to_vec();
    f.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
    f.extend_from_slice(b"WEBP");
    f.extend(body);
    f
}

// ---------------------------------------------------------------------------------------------
// Generators: JPEG.

fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() + 2 <= 0xFFFF);
    let mut v = vec![0xFF, marker];
    v.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// `jpg` with `segments` inserted right after SOI.
fn jpeg_with(jpg: &[u8], segments: &[Vec<u8>]) -> Vec<u8> {
    let mut f = jpg[..2].to_vec();
    for s in segments {
        f.extend_from_slice(s);
    }
    f.extend_from_slice(&jpg[2..]);
    f
}

/// Offsets of the markers of `jpg` up to SOS: (marker, offset of 0xFF).
fn markers(jpg: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut pos = 2;
    while pos + 4 <= jpg.len() && jpg[pos] == 0xFF {
        let m = jpg[pos + 1];
        out.push((m, pos));
        if m == 0xDA {
            break;
        }
        pos += 2 + u16::from_be_bytes([jpg[pos + 2], jpg[pos + 3]]) as usize;
    }
    out
}

fn jpeg_dims(jpg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut f = jpg.to_vec();
    let (_, sof) = *markers(jpg).iter().find(|(m, _)| *m == 0xC0).expect("SOF0");
    f[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    f[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    f
}

fn jpeg_corrupt_entropy(jpg: &[u8]) -> Vec<u8> {
    let mut f = jpg.to_vec();
    let (_, sos) = *markers(jpg).iter().find(|(m, _)| *m == 0xDA).unwrap();
    let start = sos + 2 + u16::from_be_bytes([f[sos + 2], f[sos + 3]]) as usize;
    let end = f.len() - 2;
    // Overwrite a stretch of the scan with bytes no Huffman table decodes cleanly (no 0xFF, so
    // no fake markers): libjpeg sees bad codes, not a truncation.
    let mid = start + (end - start) / 3;
    for (i, b) in f[mid..mid + 2048].iter_mut().enumerate() {
        *b = [0xFE, 0xFD, 0x00, 0x7F][i % 4];
    }
    f
}

fn tiff_ifd_le(entries: &[(u16, u16, u32, u32)], next: u32) -> Vec<u8> {
    let mut v = (entries.len() as u16).to_le_bytes().to_vec();
    for &(tag, ty, count, value) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&count.to_le_bytes());
        v.extend_from_slice(&value.to_le_bytes());
    }
    v.extend_from_slice(&next.to_le_bytes());
    v
}

fn app1_exif(tiff: Vec<u8>) -> Vec<u8> {
    let mut body = b"Exif\0\0".to_vec();
    body.extend(tiff);
    segment(0xE1, &body)
}

/// IFD0 at offset 8 whose next-IFD pointer and Exif/GPS sub-IFD pointers all point back at 8.
fn exif_self_loop() -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend(tiff_ifd_le(
        &[(0x0112, 3, 1, 6), (0x8769, 4, 1, 8), (0x8825, 4, 1, 8)],
        8,
    ));
    t
}

fn exif_bad_offsets() -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend(tiff_ifd_le(
        &[
            (0x010F, 2, 0xFFFF_FFF0, 0xFFFF_FF00), // Make: huge count at a wild offset
            (0x8769, 4, 1, 0xFFFF_FFFF),
            (0x0112, 3, 0xFFFF, 0xFFFF_FFFF),
        ],
        0x7FFF_FFFF,
    ));
    t
}

fn exif_huge() -> Vec<u8> {
    let mut t = b"MM\0*".to_vec();
    t.extend_from_slice(&8u32.to_be_bytes());
    t.extend_from_slice(&0xFFFFu16.to_be_bytes());
    t.resize(65_000, 0x11);
    t
}

fn icc_chunk(seq: u8, count: u8, data: &[u8]) -> Vec<u8> {
    let mut body = b"ICC_PROFILE\0".to_vec();
    body.push(seq);
    body.push(count);
    body.extend_from_slice(data);
    segment(0xE2, &body)
}

fn icc_chunks(count: u8, size: usize) -> Vec<Vec<u8>> {
    (1..=count)
        .map(|i| icc_chunk(i, count, &vec![i.wrapping_mul(37); size]))
        .collect()
}

fn icc_chunks_of(profile: &[u8]) -> Vec<Vec<u8>> {
    let parts: Vec<&[u8]> = profile.chunks(60_000).collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| icc_chunk(i as u8 + 1, parts.len() as u8, p))
        .collect()
}

/// A 128-byte ICC header (RGB display profile, 'acsp') followed by a tag count of 2^32 - 1 and
/// a few tag entries pointing far outside the profile.
fn icc_absurd_tags() -> Vec<u8> {
    let mut p = vec![0u8; 128];
    p[0..4].copy_from_slice(&1000u32.to_be_bytes()); // declared size
    p[8] = 4; // version 4.3
    p[9] = 0x30;
    p[12..16].copy_from_slice(b"mntr");
    p[16..20].copy_from_slice(b"RGB ");
    p[20..24].copy_from_slice(b"XYZ ");
    p[36..40].copy_from_slice(b"acsp");
    p[68..80].copy_from_slice(&[0, 0, 0xF6, 0xD6, 0, 1, 0, 0, 0, 0, 0xD3, 0x2D]); // D50
    p.extend_from_slice(&u32::MAX.to_be_bytes());
    for tag in [b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"desc", b"A2B0"] {
        p.extend_from_slice(tag);
        p.extend_from_slice(&0xFFFF_FF00u32.to_be_bytes());
        p.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    }
    p.resize(1000, 0);
    p
}

fn xmp_segments(count: usize, size: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut body =
                b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x='adobe:ns:meta/'>".to_vec();
            while body.len() < size {
                body.extend_from_slice(format!("<rdf:li>{i}</rdf:li>").as_bytes());
            }
            segment(0xE1, &body)
        })
        .collect()
}

/// An UltraHDR-style file: the primary JPEG with an APP2 MPF index, then a second JPEG (the
/// "gain map", 1/4 size, grayscale) appended after the primary's EOI.
fn ultrahdr(primary: &[u8]) -> Vec<u8> {
    let gain: Vec<u8> = {
        let (w, h) = (112u32, 75u32);
        let px: Vec<u8> = (0..w * h).flat_map(|i| [(i % 251) as u8; 3]).collect();
        renditions::stages::libjpeg::encode_rgb(w, h, &px, 70, false).unwrap()
    };
    // MP header (big-endian TIFF): MPFVersion, NumberOfImages = 2, MPEntry (2 × 16 bytes).
    let build = |primary_len: u32, gain_offset: u32| {
        let mut t = b"MM\0*".to_vec();
        t.extend_from_slice(&8u32.to_be_bytes());
        t.extend_from_slice(&3u16.to_be_bytes());
        let entries_at = 8 + 2 + 3 * 12 + 4;
        for (tag, ty, count, value) in [
            (0xB000u16, 7u16, 4u32, u32::from_be_bytes(*b"0100")),
            (0xB001, 4, 1, 2),
            (0xB002, 7, 32, entries_at as u32),
        ] {
            t.extend_from_slice(&tag.to_be_bytes());
            t.extend_from_slice(&ty.to_be_bytes());
            t.extend_from_slice(&count.to_be_bytes());
            t.extend_from_slice(&value.to_be_bytes());
        }
        t.extend_from_slice(&0u32.to_be_bytes());
        // Entry 1: primary (flags: representative, baseline), size, offset 0.
        t.extend_from_slice(&0x2003_0000u32.to_be_bytes());
        t.extend_from_slice(&primary_len.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        // Entry 2: the gain map, offset relative to the MP header.
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(&(gain.len() as u32).to_be_bytes());
        t.extend_from_slice(&gain_offset.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        let mut body = b"MPF\0".to_vec();
        body.extend(t);
        segment(0xE2, &body)
    };
    let probe = build(0, 0);
    let primary_len = (primary.len() + probe.len()) as u32;
    let mp_header_at = 2 + 4 + 4; // SOI, APP2 marker+length, "MPF\0"
    let app2 = build(primary_len, primary_len - mp_header_at as u32);
    let mut f = jpeg_with(primary, &[app2]);
    f.extend_from_slice(&gain);
    f
}

/// A grayscale progressive JPEG of `w`×`h` whose data is one DC scan followed by `scans`
/// identical AC scans (Ss=1, Se=63, Ah=Al=0) that each skip every block with EOB runs: a few
/// dozen bytes per scan, yet each scan makes the decoder visit every block again.
fn jpeg_many_scans(w: u16, h: u16, scans: usize) -> Vec<u8> {
    let blocks = (w as usize).div_ceil(8) * (h as usize).div_ceil(8);
    let mut f = vec![0xFF, 0xD8];
    // Quantisation table 0: all ones.
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1; 64]);
    f.extend(segment(0xDB, &dqt));
    let mut sof = vec![8];
    sof.extend_from_slice(&h.to_be_bytes());
    sof.extend_from_slice(&w.to_be_bytes());
    sof.extend_from_slice(&[1, 1, 0x11, 0]);
    f.extend(segment(0xC2, &sof));
    // DC table 0: one symbol (category 0) with the 1-bit code "0".
    let mut dht_dc = vec![0x00, 1];
    dht_dc.extend_from_slice(&[0; 15]);
    dht_dc.push(0);
    f.extend(segment(0xC4, &dht_dc));
    // AC table 0: one symbol 0xE0 (EOB run of 2^14 + 14 extra bits) with the code "0".
    let mut dht_ac = vec![0x10, 1];
    dht_ac.extend_from_slice(&[0; 15]);
    dht_ac.push(0xE0);
    f.extend(segment(0xC4, &dht_ac));
    let sos = |ss: u8, se: u8| segment(0xDA, &[1, 1, 0x00, ss, se, 0x00]);
    let stuff = |bytes: Vec<u8>| -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for b in bytes {
            out.push(b);
            if b == 0xFF {
                out.push(0);
            }
        }
        out
    };
    // The DC scan: one "0" bit per block; pad with 1 bits.
    f.extend(sos(0, 0));
    let mut dc = vec![0u8; blocks / 8];
    if !blocks.is_multiple_of(8) {
        dc.push(0xFF >> (blocks % 8));
    }
    f.extend(stuff(dc));
    // One AC scan: EOB runs of up to 32767 blocks, MSB-first bits.
    let ac = {
        let mut bits: Vec<bool> = Vec::new();
        let mut left = blocks;
        while left > 0 {
            let run = left.clamp(1 << 14, 32767).min(left);
            if run < 1 << 14 {
                // Shorter tails need a smaller EOBn symbol we do not have: cover them with a
                // full EOB14 run that overshoots (libjpeg stops at the end of the scan).
            }
            bits.push(false); // the code for 0xE0
            let extra = run.max(1 << 14) - (1 << 14);
            for i in (0..14).rev() {
                bits.push((extra >> i) & 1 == 1);
            }
            left -= run;
        }
        while !bits.len().is_multiple_of(8) {
            bits.push(true);
        }
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |a, &b| (a << 1) | u8::from(b)))
            .collect();
        stuff(bytes)
    };
    for _ in 0..scans {
        f.extend(sos(1, 63));
        f.extend_from_slice(&ac);
    }
    f.extend_from_slice(&[0xFF, 0xD9]);
    f
}
