//! The memory budget under a real memory limit: the `renditions-lambda` binary runs as a
//! 512 MB function (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512`) inside a 512 MiB memory cgroup, which
//! is how Lambda enforces memory (the kernel kills the process past the limit), and is handed
//! 100-megapixel JPEGs. A baseline JPEG must render (shrink-on-load decodes it at 1/4); a
//! progressive 4:4:4 JPEG, whose decoder would need ~600 MB of coefficients, must be rejected as
//! too large for this memory size; a progressive 4:2:0 one (~300 MB of coefficients) fits the
//! budget and must render inside the limit (peak ~320 MiB); the process must survive all three
//! and answer the next event. With a 256 MiB cgroup the same run is killed, so the limit bites.
//!
//! Where no memory cgroup can be created (not root, no cgroup fs), the child gets `RLIMIT_AS`
//! of 512 MiB instead (stricter: it counts address space, not resident memory).
//! `MEMORY_LIMIT_TEST=rlimit` forces that path.

#![cfg(all(feature = "lambda", target_os = "linux"))]

mod support;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use renditions::stages::libjpeg::{self, Chroma};
use serde_json::Value;
use support::*;

const SRC: &str = "uploads";
const DEST: &str = "renditions";
const LIMIT_BYTES: u64 = 512 << 20;
const SIDE: u32 = 10_000; // 100 megapixels

/// A 10000×10000 JPEG with detail everywhere (so the decoder really works), quality 70.
fn jpeg_100mp(progressive: bool, subsampled: bool) -> Vec<u8> {
    let (w, h) = (SIDE, SIDE);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    for (y, row) in rgb.chunks_exact_mut(w as usize * 3).enumerate() {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let (x, y) = (x as u32, y as u32);
            px[0] = (x / 7 + y / 13) as u8;
            px[1] = (((x >> 5) ^ (y >> 5)) * 37) as u8;
            px[2] = (y / 5) as u8;
        }
    }
    let chroma = if subsampled {
        Chroma::Subsampled
    } else {
        Chroma::Full
    };
    libjpeg::encode_rgb_with(w, h, &rgb, 70, progressive, chroma).expect("encode 100 MP JPEG")
}

/// A memory cgroup (v1 or v2) limited to [`LIMIT_BYTES`], removed on drop.
struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    fn create(name: &str) -> Option<MemoryCgroup> {
        let candidates = [
            (PathBuf::from("/sys/fs/cgroup/memory"), false),
            (PathBuf::from("/sys/fs/cgroup/unified"), true),
            (PathBuf::from("/sys/fs/cgroup"), true),
        ];
        for (root, v2) in candidates {
            let limit_file = if v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            if v2 {
                let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
                if !controllers.split_whitespace().any(|c| c == "memory") {
                    continue;
                }
            } else if !root.join(limit_file).exists() {
                continue;
            }
            let dir = root.join(format!("{name}-{}", std::process::id()));
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            let cg = MemoryCgroup { dir, v2 };
            if std::fs::write(cg.dir.join(limit_file), LIMIT_BYTES.to_string()).is_ok() {
                // No swap to spill into (Lambda has none).
                let swap = if v2 {
                    "memory.swap.max"
                } else {
                    "memory.memsw.limit_in_bytes"
                };
                let _ = std::fs::write(
                    cg.dir.join(swap),
                    if v2 {
                        "0".into()
                    } else {
                        LIMIT_BYTES.to_string()
                    },
                );
                return Some(cg);
            }
        }
        None
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .expect("move into the cgroup");
    }

    /// Peak memory charged to the cgroup, if the kernel reports it.
    fn peak(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Out-of-memory kills in the cgroup.
    fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The function is gone by now (its guard is dropped first); a cgroup with no process
        // can be removed. Bounded retry while the kernel finishes the exit.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[repr(C)]
struct Rlimit {
    cur: u64,
    max: u64,
}
unsafe extern "C" {
    fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
}
const RLIMIT_AS: i32 = 9;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_512_mb_function_survives_100_megapixel_jpegs() {
    let s3 = s3_with_buckets("memory_limit", &[SRC, DEST]).await;
    let baseline = jpeg_100mp(false, true);
    let progressive = jpeg_100mp(true, false);
    let progressive_420 = jpeg_100mp(true, true);
    eprintln!(
        "100 MP JPEGs: baseline 4:2:0 {} bytes, progressive 4:4:4 {} bytes, progressive 4:2:0 {} bytes",
        baseline.len(),
        progressive.len(),
        progressive_420.len()
    );
    put(&s3, SRC, "progressive-420-100mp.jpg", progressive_420).await;
    put(&s3, SRC, "baseline-100mp.jpg", baseline).await;
    put(&s3, SRC, "progressive-444-100mp.jpg", progressive).await;
    put(&s3, SRC, "after.jpg", jpeg(800, 600)).await;

    let cgroup = match std::env::var("MEMORY_LIMIT_TEST").as_deref() {
        Ok("rlimit") => None,
        _ => MemoryCgroup::create("renditions-memory-limit"),
    };
    let api = RuntimeApi::start().await;
    let vars = [
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ("RENDITIONS", "large:1600,medium:800,thumb:320"),
        ("MALLOC_ARENA_MAX", "2"),
    ];
    let mut function = Function::start_with(&api, Some(&s3), &vars, |cmd| {
        if cgroup.is_none() {
            // SAFETY: setrlimit is async-signal-safe and touches no other state.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = Rlimit {
                        cur: LIMIT_BYTES,
                        max: LIMIT_BYTES,
                    };
                    if setrlimit(RLIMIT_AS, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    });
    if let Some(cg) = &cgroup {
        cg.add(function.pid());
    }
    eprintln!(
        "memory limit: {}",
        match &cgroup {
            Some(cg) => format!(
                "cgroup {} ({})",
                cg.dir.display(),
                if cg.v2 { "v2" } else { "v1" }
            ),
            None => "RLIMIT_AS (no memory cgroup available)".into(),
        }
    );

    // The baseline JPEG renders: decoded at 1/4 (2500×2500), well inside the budget.
    let answer = api
        .invoke(&s3_event(SRC, &["baseline-100mp.jpg"]), None)
        .await
        .response();
    assert_eq!(answer["rendered"], 1, "{answer}");
    for (name, side) in [("large", 1600), ("medium", 800), ("thumb", 320)] {
        let (bytes, _, _) = get(&s3, DEST, &format!("{name}/baseline-100mp.jpg")).await;
        assert_eq!(size_of(&bytes), (side, side), "{name}");
    }

    // The progressive 4:4:4 JPEG needs its whole coefficient array (~600 MB): refused from the
    // header with a reason that names the memory, and a report.
    let answer = api
        .invoke(&s3_event(SRC, &["progressive-444-100mp.jpg"]), None)
        .await
        .response();
    assert_eq!(answer["rejected"], 1, "{answer}");
    let (report, _, _) = get(&s3, DEST, "_rejected/progressive-444-100mp.jpg.json").await;
    let report: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["kind"], "too-large", "{report}");
    assert!(
        report["reason"].as_str().unwrap().contains("memory"),
        "{report}"
    );

    let answer = api
        .invoke(&s3_event(SRC, &["progressive-420-100mp.jpg"]), None)
        .await
        .response();
    // A progressive 4:2:0 JPEG needs ~300 MB of coefficients: that fits this budget, and
    // renders inside the limit (the cgroup would kill the process otherwise).
    assert_eq!(answer["rendered"], 1, "{answer}");
    let (bytes, _, _) = get(&s3, DEST, "thumb/progressive-420-100mp.jpg").await;
    assert_eq!(size_of(&bytes), (320, 320));

    // Still alive, and still working.
    let answer = api
        .invoke(&s3_event(SRC, &["after.jpg"]), None)
        .await
        .response();
    assert_eq!(answer["rendered"], 1, "{answer}");
    assert!(function.running(), "the function exited");
    if let Some(cg) = &cgroup {
        assert_eq!(cg.oom_kills(), 0, "out-of-memory kill in the cgroup");
        if let Some(peak) = cg.peak() {
            eprintln!(
                "peak memory of the function: {} MiB (limit 512)",
                peak >> 20
            );
            assert!(peak <= LIMIT_BYTES, "{peak}");
        }
    }
    drop(function);
}
