#!/usr/bin/env python3
"""Peer benchmark runner: the same rendition job done by sharp, Pillow and ours.

The job (identical for every tool): decode once, apply EXIF orientation, make
three fit-inside renditions (large 1600, medium 800, thumb 320; aspect kept,
never upscaled), each resized from the previous one, stamp the watermark
bottom-right (1/4 of the rendition width, margin round(0.02 * width), 50 %
opacity), encode baseline JPEG q82 4:2:0 with optimised Huffman tables and no
metadata; alpha is flattened on white. Single-threaded everywhere.

For each tool and input kind (and "all"), one process runs over that kind's
files under `/usr/bin/time -v`, --runs times, after one untimed warm-up run
per tool over all files. Reported: median wall time, images/s, input MP/s,
peak RSS (max over runs), output bytes, and ratios to sharp. The warm-up
outputs are checked (baseline, 4:2:0, optimised Huffman, q82 tables, no
metadata, dimensions) and summed per file.

Stdlib only. Prints Markdown to stdout; --markdown/--json write files too.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TIME_BIN = "/usr/bin/time"
TOOLS = ("sharp", "pillow", "renditions")
KINDS = ("baseline JPEG", "progressive JPEG", "PNG", "WebP")
RENDITIONS = (("large", 1600), ("medium", 800), ("thumb", 320))
RENDITION_SPEC = ",".join(f"{n}:{b}" for n, b in RENDITIONS)
QUALITY = 82


# ---------------------------------------------------------------- corpus ---


def kind_of(row: dict) -> str:
    fmt = row.get("format", "").strip().upper()
    enc = row.get("encoding", "").strip().lower()
    if fmt in ("JPEG", "JPG"):
        if enc.startswith("baseline"):
            return "baseline JPEG"
        if enc.startswith("progressive"):
            return "progressive JPEG"
        return "JPEG (other)"
    if fmt == "PNG":
        return "PNG"
    if fmt == "WEBP":
        return "WebP"
    return fmt or "unknown"


def load_corpus(corpus: Path) -> list[dict]:
    manifest = corpus / "MANIFEST.tsv"
    if not manifest.is_file():
        sys.exit(f"run.py: no MANIFEST.tsv in {corpus}")
    items = []
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            path = corpus / row["file"]
            if not path.is_file():
                print(f"run.py: warning: {path} listed in MANIFEST.tsv but missing", file=sys.stderr)
                continue
            try:
                orientation = int(row.get("orientation") or 1)
            except ValueError:
                orientation = 1
            items.append(
                {
                    "file": row["file"],
                    "path": str(path),
                    "stem": path.stem,
                    "kind": kind_of(row),
                    "width": int(row["width"]),
                    "height": int(row["height"]),
                    "megapixels": float(row["megapixels"]),
                    "bytes": int(row["bytes"]),
                    "orientation": orientation,
                }
            )
    items.sort(key=lambda it: it["file"])
    if not items:
        sys.exit(f"run.py: no input files found via {manifest}")
    return items


def fit_inside(w: int, h: int, box: int) -> tuple[int, int]:
    if w <= box and h <= box:
        return w, h
    if w >= h:
        return box, max(1, int(h * box / w + 0.5))
    return max(1, int(w * box / h + 0.5)), box


def expected_dims(item: dict) -> dict[str, tuple[int, int]]:
    w, h = item["width"], item["height"]
    if item["orientation"] in (5, 6, 7, 8):
        w, h = h, w
    dims = {}
    for name, box in RENDITIONS:
        w, h = fit_inside(w, h, box)
        dims[name] = (w, h)
    return dims


# ----------------------------------------------------------------- tools ---


def run_quiet(argv, cwd=None, timeout=30, env=None) -> str | None:
    try:
        p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    return p.stdout.strip()


class Tool:
    def __init__(self, name, argv_prefix, env, version, skip=None):
        self.name = name
        self.argv_prefix = argv_prefix
        self.env = env
        self.version = version
        self.skip = skip

    def argv(self, watermark: str, out_dir: Path, files: list[str]) -> list[str]:
        if self.name == "renditions":
            return self.argv_prefix + [
                "render", "--threads", "1", "--renditions", RENDITION_SPEC,
                "--format", "jpeg", "--quality", str(QUALITY),
                "--watermark", watermark, "--out", str(out_dir), *files,
            ]
        return self.argv_prefix + ["--watermark", watermark, "--out", str(out_dir), *files]


def make_tool(name: str, bin_path: Path) -> Tool:
    env = dict(os.environ)
    if name == "sharp":
        node = shutil.which("node")
        if not node:
            return Tool(name, [], env, {}, skip="node not found on PATH")
        if not (HERE / "node_modules" / "sharp").is_dir():
            return Tool(name, [], env, {}, skip="sharp not installed: run `bash benches/peers/setup.sh`")
        env["VIPS_CONCURRENCY"] = "1"  # sharp_job.js also calls sharp.concurrency(1)
        out = run_quiet(
            [node, "-e", "const s=require('sharp');console.log(JSON.stringify("
             "{node:process.version,sharp:s.versions.sharp,libvips:s.versions.vips}))"],
            cwd=HERE, env=env,
        )
        if out is None:
            return Tool(name, [], env, {}, skip="`require('sharp')` failed: run `bash benches/peers/setup.sh`")
        return Tool(name, [node, str(HERE / "sharp_job.js")], env, json.loads(out))
    if name == "pillow":
        py = HERE / ".venv" / "bin" / "python"
        if not py.exists():
            return Tool(name, [], env, {}, skip="no venv at benches/peers/.venv: run `bash benches/peers/setup.sh`")
        out = run_quiet(
            [str(py), "-c", "import json,sys,PIL,PIL.features as f;print(json.dumps({'pillow':PIL.__version__,"
             "'libjpeg_turbo':f.version('libjpeg_turbo'),'libwebp':f.version('webp'),"
             "'python':sys.version.split()[0]}))"],
            env=env,
        )
        if out is None:
            return Tool(name, [], env, {}, skip="Pillow import failed: run `bash benches/peers/setup.sh`")
        return Tool(name, [str(py), str(HERE / "pillow_job.py")], env, json.loads(out))
    if name == "renditions":
        if not (bin_path.is_file() and os.access(bin_path, os.X_OK)):
            return Tool(name, [], env, {}, skip=f"binary not found at {bin_path} (build it, or pass --bin)")
        env["RAYON_NUM_THREADS"] = "1"  # belt and braces; --threads 1 is passed too
        version = run_quiet([str(bin_path), "--version"], env=env, timeout=10)
        return Tool(name, [str(bin_path)], env, {"renditions": version or "unknown", "path": str(bin_path)})
    raise ValueError(name)


# ------------------------------------------------------------- measuring ---

_TIME_FIELDS = {
    "Maximum resident set size (kbytes)": ("max_rss_kib", int),
    "User time (seconds)": ("user_s", float),
    "System time (seconds)": ("sys_s", float),
    "Percent of CPU this job got": ("cpu_pct", lambda s: int(s.rstrip("%") or 0)),
    "Exit status": ("exit_status", int),
    "Voluntary context switches": ("vol_ctx", int),
    "Involuntary context switches": ("invol_ctx", int),
}


def parse_time_v(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        key, sep, val = line.strip().rpartition(": ")
        if sep and key in _TIME_FIELDS:
            field, conv = _TIME_FIELDS[key]
            try:
                out[field] = conv(val.strip())
            except ValueError:
                pass
        m = re.match(r"\s*Command terminated by signal (\d+)", line)
        if m:
            out["signal"] = int(m.group(1))
    return out


def scan_outputs(out_dir: Path) -> list[dict]:
    found = []
    for root, _dirs, files in os.walk(out_dir):
        for fn in files:
            p = Path(root) / fn
            try:
                size = p.stat().st_size
            except OSError:
                continue
            found.append({"path": p, "bytes": size})
    return found


def invoke(tool: Tool, files: list[str], watermark: str, out_dir: Path, timeout: float) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    time_file = out_dir.parent / f".{out_dir.name}.time-v"
    argv = [TIME_BIN, "-v", "-o", str(time_file)] + tool.argv(watermark, out_dir, files)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=tool.env, start_new_session=True,
    )
    timed_out = False
    try:
        _stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    try:
        tv = parse_time_v(time_file.read_text(errors="replace"))
    except OSError:
        tv = {}
    outputs = scan_outputs(out_dir)
    jpegs = [o for o in outputs if o["path"].suffix.lower() in (".jpg", ".jpeg")]
    rc = tv.get("exit_status", proc.returncode)
    res = {
        "wall_s": round(wall, 4),
        "rc": rc,
        "timed_out": timed_out,
        "max_rss_kib": tv.get("max_rss_kib"),
        "user_s": tv.get("user_s"),
        "sys_s": tv.get("sys_s"),
        "cpu_pct": tv.get("cpu_pct"),
        "output_files": len(jpegs),
        "output_bytes": sum(o["bytes"] for o in outputs),
    }
    expected = len(files) * len(RENDITIONS)
    problems = []
    if timed_out:
        problems.append(f"timed out after {timeout:g} s")
    elif rc != 0 or "signal" in tv:
        problems.append(f"exit status {rc}" + (f", signal {tv['signal']}" if "signal" in tv else ""))
    if len(jpegs) != expected:
        problems.append(f"{len(jpegs)} JPEG outputs, expected {expected}")
    if problems:
        tail = [ln[:200] + ("…" if len(ln) > 200 else "")
                for ln in stderr.decode(errors="replace").strip().splitlines()[-5:]]
        res["error"] = "; ".join(problems) + (" | stderr: " + " / ".join(tail) if tail else "")
    return res


# ------------------------------------------------------ JPEG inspection ---

_STD_BITS = {
    (0, "dc_l"): bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]),
    (1, "ac_l"): bytes([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]),
    (0, "dc_c"): bytes([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]),
    (1, "ac_c"): bytes([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77]),
}
# libjpeg's Annex K luminance table in zigzag order, scaled like jpeg_set_quality.
_STD_LUMA_ZIGZAG = [
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35, 37,
    29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87,
    95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
]


def _libjpeg_qtable(quality: int) -> list[int]:
    scale = 5000 // quality if quality < 50 else 200 - quality * 2
    return [min(255, max(1, (v * scale + 50) // 100)) for v in _STD_LUMA_ZIGZAG]


_Q82 = _libjpeg_qtable(QUALITY)


def inspect_jpeg(path: Path) -> dict:
    """Tiny marker walk: frame type, size, sampling, Huffman/quant tables, metadata."""
    info = {"ok": False, "metadata": []}
    try:
        data = path.read_bytes()
    except OSError as exc:
        info["error"] = str(exc)
        return info
    if data[:2] != b"\xff\xd8":
        info["error"] = "not a JPEG"
        return info
    i, n = 2, len(data)
    dht_standard = []
    while i + 4 <= n:
        if data[i] != 0xFF:
            info["error"] = f"bad marker at {i}"
            return info
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg_len = int.from_bytes(data[i + 2:i + 4], "big")
        seg = data[i + 4:i + 2 + seg_len]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3):
            info["sof"] = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC3: "lossless"}[marker]
            info["height"] = int.from_bytes(seg[1:3], "big")
            info["width"] = int.from_bytes(seg[3:5], "big")
            ncomp = seg[5]
            samp = [(seg[6 + 3 * k + 1] >> 4, seg[6 + 3 * k + 1] & 15) for k in range(ncomp)]
            info["components"] = ncomp
            if ncomp == 3 and samp[1] == samp[2] == (1, 1):
                info["subsampling"] = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0"}.get(samp[0], str(samp))
            else:
                info["subsampling"] = str(samp)
        elif marker == 0xC4:
            j = 0
            while j + 17 <= len(seg):
                tc = seg[j] >> 4
                bits = seg[j + 1:j + 17]
                nvals = sum(bits)
                dht_standard.append(any(k[0] == tc and v == bits for k, v in _STD_BITS.items()))
                j += 17 + nvals
        elif marker == 0xDB:
            j = 0
            while j < len(seg):
                pq, tq = seg[j] >> 4, seg[j] & 15
                size = 128 if pq else 64
                if tq == 0:
                    raw = seg[j + 1:j + 1 + size]
                    table = list(raw) if not pq else [int.from_bytes(raw[k:k + 2], "big") for k in range(0, 128, 2)]
                    info["q82_tables"] = table == _Q82
                j += 1 + size
        elif marker == 0xE1:
            info["metadata"].append("XMP" if seg.startswith(b"http://ns.adobe.com/xap") else "EXIF" if seg.startswith(b"Exif") else "APP1")
        elif marker == 0xE2:
            info["metadata"].append("ICC" if seg.startswith(b"ICC_PROFILE") else "APP2")
        elif 0xE3 <= marker <= 0xEF:
            info["metadata"].append(f"APP{marker - 0xE0}")
        elif marker == 0xFE:
            info["metadata"].append("COM")
        elif marker == 0xDA:
            break
        i += 2 + seg_len
    info["optimised_huffman"] = bool(dht_standard) and not all(dht_standard)
    info["ok"] = "sof" in info
    return info


def classify_output(path: Path, stems: set[str]) -> tuple[str | None, str | None]:
    """(rendition, stem) of an output file, tolerant of layout."""
    parent = path.parent.name
    stem = path.stem
    names = [n for n, _ in RENDITIONS]
    if parent in names and stem in stems:
        return parent, stem
    for n in names:
        for pat in (f"{stem}", ):
            for sep in ("_", "-", "."):
                if pat.endswith(sep + n) and pat[: -len(sep + n)] in stems:
                    return n, pat[: -len(sep + n)]
    if stem in stems:
        for n in names:
            if n in path.parts:
                return n, stem
    return None, None


def check_outputs(out_dir: Path, items: list[dict]) -> tuple[dict, dict]:
    stems = {it["stem"] for it in items}
    by_stem = {it["stem"]: it for it in items}
    per_file = {s: {"bytes": 0, "dims": {}} for s in stems}
    agg = {"outputs": 0, "expected": len(items) * len(RENDITIONS), "unrecognised": 0,
           "baseline": 0, "subsampling_420": 0, "optimised_huffman": 0, "q82_tables": 0,
           "no_metadata": 0, "dims_ok": 0, "problems": []}
    for o in scan_outputs(out_dir):
        p = o["path"]
        if p.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        agg["outputs"] += 1
        rend, stem = classify_output(p, stems)
        info = inspect_jpeg(p)
        if rend is None:
            agg["unrecognised"] += 1
            agg["problems"].append(f"unrecognised output {p.relative_to(out_dir)}")
            continue
        per_file[stem]["bytes"] += o["bytes"]
        if not info["ok"]:
            agg["problems"].append(f"{stem}/{rend}: {info.get('error', 'unreadable')}")
            continue
        dims = (info["width"], info["height"])
        per_file[stem]["dims"][rend] = dims
        agg["baseline"] += info.get("sof") == "baseline"
        agg["subsampling_420"] += info.get("subsampling") == "4:2:0"
        agg["optimised_huffman"] += info.get("optimised_huffman", False)
        agg["q82_tables"] += info.get("q82_tables", False)
        agg["no_metadata"] += not info["metadata"]
        exp = expected_dims(by_stem[stem])[rend]
        if abs(dims[0] - exp[0]) <= 1 and abs(dims[1] - exp[1]) <= 1:
            agg["dims_ok"] += 1
        else:
            agg["problems"].append(f"{stem}/{rend}: {dims[0]}x{dims[1]}, expected {exp[0]}x{exp[1]}")
    return agg, per_file


# ---------------------------------------------------------------- report ---


def machine_info(tools: dict[str, Tool]) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    node = run_quiet(["node", "--version"]) if shutil.which("node") else None
    info = {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_available": affinity,
        "mem_gib": mem_gib,
        "os": os_name,
        "kernel": platform.release(),
        "runner_python": platform.python_version(),
        "node": node,
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": run_quiet(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
    }
    for t in tools.values():
        for k, v in t.version.items():
            info.setdefault(f"{t.name}.{k}" if k in ("path", "python") else k, v)
    return info


def read_loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def fmt_num(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}"


def fmt_ratio(v):
    return "–" if v is None else f"{v:.2f}×"


def to_markdown(report: dict) -> str:
    m = report["machine"]
    s = report["settings"]
    lines = []
    lines.append("## Peer benchmark: sharp vs Pillow vs renditions")
    lines.append("")
    lines.append(
        "Job (identical for every tool): decode once, EXIF orientation, fit-inside renditions "
        "large 1600 / medium 800 / thumb 320 (aspect kept, no upscaling, each resized from the previous one), "
        "watermark bottom-right at 1/4 of the rendition width, margin round(0.02 × width), 50 % opacity, "
        "JPEG q82 4:2:0 baseline with optimised Huffman tables, metadata stripped, alpha flattened on white. "
        "Single-threaded."
    )
    lines.append("")
    lines.append(
        f"Method: one process per tool per input kind, wrapped in `/usr/bin/time -v`; one untimed warm-up run "
        f"per tool over all files; median wall time of {s['runs']} run(s); peak RSS = max over runs; "
        f"ratios are tool ÷ sharp (speed ratio applies to images/s and MP/s alike). "
        f"Times include process start-up (node + sharp load, Python + Pillow import)."
    )
    lines.append("")
    versions = []
    if m.get("node"):
        versions.append(f"node {m['node']}")
    if m.get("sharp"):
        versions.append(f"sharp {m['sharp']} (libvips {m.get('libvips')})")
    if m.get("pillow"):
        versions.append(f"Pillow {m['pillow']} (libjpeg-turbo {m.get('libjpeg_turbo')}, Python {m.get('pillow.python')})")
    if m.get("renditions"):
        versions.append(f"renditions `{m['renditions']}`")
    lines.append(
        f"Machine: {m['cpu_model']}, {m['cores']} cores"
        + (f" ({m['cores_available']} available)" if m.get("cores_available") not in (None, m["cores"]) else "")
        + (f", {m['mem_gib']} GiB RAM" if m.get("mem_gib") else "")
        + f", {m['os']}, Linux {m['kernel']}. " + "; ".join(versions) + "."
    )
    c = report["corpus"]
    lines.append("")
    lines.append(
        f"Corpus: `{c['path_display']}`, {c['files']} files, {c['megapixels']:.2f} MP in total "
        f"({', '.join(f'{k}: {v}' for k, v in c['kinds'].items())}). {m['date_utc']}"
        + (f", commit {m['git_commit']}" if m.get("git_commit") else "") + "."
        + (f" Load average (1 min) before/after: {m['loadavg_before'][0]:.2f} / {m['loadavg_after'][0]:.2f}"
           + (" – the machine was busy, wall times are inflated; CPU s is the steadier figure."
              if m['loadavg_before'][0] > 0.5 or m['loadavg_after'][0] > 1.5 else ".")
           if m.get("loadavg_before") and m.get("loadavg_after") else "")
    )
    if report["skipped"]:
        lines.append("")
        for name, why in report["skipped"].items():
            lines.append(f"- **{name} skipped**: {why}")
    lines.append("")
    lines.append(
        "| Input | Tool | Images | Wall s (median) | Images/s | Input MP/s | Peak RSS MiB | Output bytes "
        "| CPU s | CPU % | Speed ×sharp | RSS ×sharp | Bytes ×sharp |"
    )
    lines.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in report["results"]:
        if r.get("error") and r.get("median_wall_s") is None:
            lines.append(f"| {r['kind']} | {r['tool']} | {r['images']} | FAILED (see below) |" + " – |" * 9)
            continue
        rat = r.get("ratios_vs_sharp") or {}
        flag = " ⚠" if r.get("error") else ""
        lines.append(
            f"| {r['kind']} | {r['tool']}{flag} | {r['images']} | {fmt_num(r['median_wall_s'], 3)} "
            f"| {fmt_num(r['images_per_s'])} | {fmt_num(r['mp_per_s'], 1)} | {fmt_num(r['peak_rss_mib'], 1)} "
            f"| {fmt_num(r['output_bytes'])} | {fmt_num(r['median_cpu_s'])} | {fmt_num(r['median_cpu_pct'])} "
            f"| {fmt_ratio(rat.get('images_per_s'))} | {fmt_ratio(rat.get('peak_rss_mib'))} "
            f"| {fmt_ratio(rat.get('output_bytes'))} |"
        )
    errs = [r for r in report["results"] if r.get("error")]
    if errs:
        lines.append("")
        for r in errs:
            lines.append(f"- ⚠ {r['tool']} / {r['kind']}: {r['error']}")

    if report["checks"]:
        lines.append("")
        lines.append("Output checks (warm-up run over all files; counts of conforming outputs):")
        lines.append("")
        lines.append("| Tool | JPEGs | Baseline | 4:2:0 | Optimised Huffman | libjpeg q82 tables | No metadata | Dims as expected (±1) |")
        lines.append("|---|--:|--:|--:|--:|--:|--:|--:|")
        for name, a in report["checks"].items():
            lines.append(
                f"| {name} | {a['outputs']}/{a['expected']} | {a['baseline']} | {a['subsampling_420']} "
                f"| {a['optimised_huffman']} | {a['q82_tables']} | {a['no_metadata']} | {a['dims_ok']} |"
            )
        for name, a in report["checks"].items():
            for p in a["problems"][:10]:
                lines.append(f"- {name}: {p}")

    if report["per_file"]:
        tools = list(report["checks"].keys())
        lines.append("")
        lines.append("Per file (warm-up run): output bytes of the three renditions, and the large rendition's size.")
        lines.append("")
        lines.append("| File | Kind | MP | " + " | ".join(f"{t} bytes | {t} large" for t in tools) + " |")
        lines.append("|---|---|--:|" + "--:|--:|" * len(tools))
        totals = {t: 0 for t in tools}
        for row in report["per_file"]:
            cells = []
            for t in tools:
                d = row["tools"].get(t, {})
                totals[t] += d.get("bytes", 0)
                large = d.get("dims", {}).get("large")
                cells.append(f"{fmt_num(d.get('bytes'))} | {f'{large[0]}×{large[1]}' if large else '–'}")
            lines.append(f"| {row['file']} | {row['kind']} | {row['megapixels']:.2f} | " + " | ".join(cells) + " |")
        lines.append(
            f"| **total** | | {sum(r['megapixels'] for r in report['per_file']):.2f} | "
            + " | ".join(f"**{totals[t]:,}** | " for t in tools) + " |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main ---


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Peer benchmark: sharp vs Pillow vs renditions.")
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus" / "photos"),
                    help="directory with MANIFEST.tsv (default: ../shared/corpus/photos from the repo root)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per tool and kind (median reported)")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma list from: " + ",".join(TOOLS))
    ap.add_argument("--kinds", default="all," + ",".join(KINDS),
                    help="comma list of input kinds to time (default: all and every kind)")
    ap.add_argument("--bin", default=os.environ.get("RENDITIONS_BIN", str(REPO / "target" / "release" / "renditions")),
                    help="renditions binary (default: $RENDITIONS_BIN or target/release/renditions)")
    ap.add_argument("--watermark", default=str(REPO / "assets" / "watermark.png"))
    ap.add_argument("--json", help="write the JSON report here")
    ap.add_argument("--markdown", help="write the Markdown report here")
    ap.add_argument("--out-dir", help="where outputs go (default: a new directory under $TMPDIR, kept)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per tool invocation (default 600)")
    args = ap.parse_args(argv)

    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if not os.access(TIME_BIN, os.X_OK):
        sys.exit(f"run.py: {TIME_BIN} not found (apt-get install time)")
    tool_names = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in tool_names:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r} (choose from {', '.join(TOOLS)})")
    watermark = Path(args.watermark).resolve()
    if not watermark.is_file():
        sys.exit(f"run.py: watermark not found: {watermark} (pass --watermark PATH)")
    corpus = Path(args.corpus).resolve()
    items = load_corpus(corpus)
    kind_files: dict[str, list[dict]] = {"all": items}
    for it in items:
        kind_files.setdefault(it["kind"], []).append(it)
    wanted = [k.strip() for k in args.kinds.split(",") if k.strip()]
    kinds = [k for k in wanted if k in kind_files]
    for k in wanted:
        if k not in kind_files:
            print(f"run.py: note: no files of kind {k!r} in the corpus", file=sys.stderr)
    out_root = Path(args.out_dir).resolve() if args.out_dir else Path(tempfile.mkdtemp(prefix="bench-peers-"))
    out_root.mkdir(parents=True, exist_ok=True)

    tools: dict[str, Tool] = {}
    skipped: dict[str, str] = {}
    for name in tool_names:
        t = make_tool(name, Path(args.bin).resolve())
        if t.skip:
            skipped[name] = t.skip
            print(f"run.py: skipping {name}: {t.skip}", file=sys.stderr)
        else:
            tools[name] = t
    if not tools:
        sys.exit("run.py: no tool can run")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    load_before = read_loadavg()
    if load_before and load_before[0] > 0.5:
        log(f"run.py: warning: load average {load_before[0]:.2f} before start; other work on this "
            f"machine will inflate wall times (compare the CPU s column)")
    log(f"run.py: outputs under {out_root}")
    checks, per_tool_files = {}, {}
    all_paths = [it["path"] for it in items]
    for name, t in tools.items():
        log(f"warm-up: {name} over {len(items)} files ...")
        res = invoke(t, all_paths, str(watermark), out_root / "warmup" / name, args.timeout)
        log(f"  {res['wall_s']:.2f} s" + (f"  ERROR {res['error']}" if res.get("error") else ""))
        checks[name], per_tool_files[name] = check_outputs(out_root / "warmup" / name, items)

    runs: dict[tuple[str, str], list[dict]] = {}
    for kind in kinds:
        paths = [it["path"] for it in kind_files[kind]]
        for i in range(args.runs):
            for name, t in tools.items():  # round-robin, so drift hits every tool alike
                d = out_root / kind.replace(" ", "-") / name
                res = invoke(t, paths, str(watermark), d, args.timeout)
                runs.setdefault((name, kind), []).append(res)
                log(f"{kind:>16} run {i + 1}/{args.runs} {name:>10}: {res['wall_s']:.3f} s, "
                    f"RSS {fmt_num((res['max_rss_kib'] or 0) / 1024, 1)} MiB, CPU {res['cpu_pct']}%"
                    + (f"  ERROR {res['error']}" if res.get("error") else ""))

    results = []
    for kind in kinds:
        n = len(kind_files[kind])
        mp = sum(it["megapixels"] for it in kind_files[kind])
        row_by_tool = {}
        for name in tools:
            rs = runs[(name, kind)]
            good = [r for r in rs if not r.get("error")]
            row = {"tool": name, "kind": kind, "images": n, "megapixels": round(mp, 2), "runs": rs}
            errors = sorted({r["error"] for r in rs if r.get("error")})
            if errors:
                row["error"] = f"{len(rs) - len(good)}/{len(rs)} run(s) failed: " + " || ".join(errors)
            if good:
                med = statistics.median(r["wall_s"] for r in good)
                rss = max((r["max_rss_kib"] or 0) for r in good) / 1024
                sizes = {r["output_bytes"] for r in good}
                row.update(
                    median_wall_s=round(med, 4),
                    min_wall_s=round(min(r["wall_s"] for r in good), 4),
                    max_wall_s=round(max(r["wall_s"] for r in good), 4),
                    images_per_s=round(n / med, 3),
                    mp_per_s=round(mp / med, 2),
                    peak_rss_mib=round(rss, 1),
                    output_bytes=good[-1]["output_bytes"],
                    output_bytes_stable=len(sizes) == 1,
                    median_cpu_s=round(statistics.median((r["user_s"] or 0) + (r["sys_s"] or 0) for r in good), 3),
                    median_cpu_pct=statistics.median(r["cpu_pct"] or 0 for r in good),
                )
            else:
                row.update(median_wall_s=None)
            row_by_tool[name] = row
        base = row_by_tool.get("sharp")
        for name, row in row_by_tool.items():
            if base and base.get("median_wall_s") and row.get("median_wall_s"):
                row["ratios_vs_sharp"] = {
                    k: round(row[k] / base[k], 3) if base[k] else None
                    for k in ("images_per_s", "mp_per_s", "peak_rss_mib", "output_bytes", "median_wall_s")
                }
            results.append(row)

    per_file = []
    for it in items:
        per_file.append({
            "file": it["file"], "kind": it["kind"], "megapixels": it["megapixels"],
            "tools": {name: {"bytes": per_tool_files[name][it["stem"]]["bytes"],
                             "dims": per_tool_files[name][it["stem"]]["dims"]} for name in tools},
        })

    try:
        corpus_display = os.path.relpath(corpus, REPO)
    except ValueError:
        corpus_display = str(corpus)
    machine = machine_info(tools)
    machine["loadavg_before"] = load_before
    machine["loadavg_after"] = read_loadavg()
    report = {
        "machine": machine,
        "settings": {"runs": args.runs, "timeout_s": args.timeout, "watermark": str(watermark),
                     "renditions": RENDITION_SPEC, "quality": QUALITY, "out_dir": str(out_root),
                     "tools": {n: t.argv(str(watermark), Path("OUT") / n, ["FILE..."]) for n, t in tools.items()}},
        "corpus": {"path": str(corpus), "path_display": corpus_display, "files": len(items),
                   "megapixels": round(sum(it["megapixels"] for it in items), 2),
                   "kinds": {k: len(v) for k, v in kind_files.items() if k != "all"}},
        "skipped": skipped,
        "results": results,
        "checks": checks,
        "per_file": per_file,
    }
    md = to_markdown(report)
    sys.stdout.write(md)
    if args.markdown:
        Path(args.markdown).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    failed = any(r.get("error") for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
