"""Statistics, report.json, report.md and the matplotlib charts."""
from __future__ import annotations

import json
import math
from pathlib import Path

# Lambda arm64 prices (us-east-1): duration per GB-second and per request.
PRICE_GB_S_ARM64 = 0.0000133334
PRICE_PER_REQUEST = 0.20 / 1e6


def pct(values, q: float):
    """Percentile with linear interpolation (q in 0..100); None for no data."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def pcts(values, qs=(50, 90, 99)) -> dict:
    vals = [v for v in values if v is not None]
    out = {f"p{q}": (round(pct(vals, q), 1) if vals else None) for q in qs}
    out["max"] = round(max(vals), 1) if vals else None
    out["count"] = len(vals)
    return out


def cost_per_million(invocation_durations_ms: list[float], images: int, memory_mb: int) -> dict:
    """Lambda cost for 1M images if each invocation took what it took here: billed duration
    = ceil(ms) per invocation, GB-s = MB/1024 x s, plus the request charge. Failed and
    retried invocations are included, as they are billed on AWS too."""
    if not images or not invocation_durations_ms:
        return {"usd": None}
    billed_s = sum(math.ceil(d) for d in invocation_durations_ms) / 1000
    gb_s = memory_mb / 1024 * billed_s
    scale = 1e6 / images
    duration_usd = gb_s * PRICE_GB_S_ARM64 * scale
    request_usd = len(invocation_durations_ms) * PRICE_PER_REQUEST * scale
    return {"usd": round(duration_usd + request_usd, 2), "duration_usd": round(duration_usd, 2),
            "requests_usd": round(request_usd, 2), "invocations_per_million": round(len(invocation_durations_ms) * scale),
            "gb_s_per_million": round(gb_s * scale, 1), "memory_mb": memory_mb,
            "prices": {"arm64_usd_per_gb_s": PRICE_GB_S_ARM64, "usd_per_1m_requests": 0.20},
            "label": "duration measured on this x86-64 machine (2 cores shared with the S3/SQS emulator "
                     "and the harness), priced as Lambda arm64; an estimate, not a quote"}


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _fmt(v, nd=0, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float):
        v = round(v, nd)
        v = int(v) if nd == 0 else v
    return f"{v}{unit}"


def rolling_rate(rel: list[float], wall: float, win: float, step: float = 0.5) -> list[tuple[float, float]]:
    """Completions per second in a trailing `win`-second window, sampled every `step` s."""
    rel = sorted(rel)
    out, j0, j1 = [], 0, 0
    for i in range(int(wall / step) + 2):
        x = i * step
        while j1 < len(rel) and rel[j1] <= x:
            j1 += 1
        while j0 < j1 and rel[j0] <= x - win:
            j0 += 1
        out.append((x, (j1 - j0) / min(win, max(x, step))))
    return out


SERIES = ("_latencies_ms", "_completions_s", "_wall_s", "_invocations")


def write_all(out: Path, doc: dict) -> None:
    """report.json (public fields), series.json (raw per-step series), charts, report.md."""
    steps = doc["envs"]
    public = dict(doc, envs=[{k: v for k, v in s.items() if not k.startswith("_")} for s in steps])
    write_json(out / "report.json", public)
    (out / "series.json").write_text(json.dumps([{k: s.get(k) for k in ("envs",) + SERIES} for s in steps]))
    files = charts(out, steps)
    (out / "report.md").write_text(markdown(public, files))


def replot(out: Path) -> None:
    doc = json.loads((out / "report.json").read_text())
    series = {s["envs"]: s for s in json.loads((out / "series.json").read_text())}
    for s in doc["envs"]:
        s.update({k: v for k, v in series.get(s["envs"], {}).items() if k != "envs"})
    write_all(out, doc)


def charts(out: Path, steps: list[dict]) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # 1. throughput over time
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    win = min(15.0, max(5.0, round(max((s.get("_wall_s") or 0) for s in steps) / 15))) if steps else 5.0
    for i, s in enumerate(steps):
        tl = rolling_rate(s.get("_completions_s") or [], s.get("_wall_s") or 0, win)
        if not tl:
            continue
        xs = [t for t, _ in tl]
        ys = [v for _, v in tl]
        ax.plot(xs, ys, color=colors[i % len(colors)], lw=1.6,
                label=f"ENVS={s['envs']}  ({_fmt(s['images_per_s'], 1)} images/s overall)")
    ax.set_xlabel("seconds since the first upload")
    ax.set_ylabel(f"images completed per second\n(trailing {win:g} s window)")
    ax.set_title("Throughput over time, per number of execution environments")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "throughput.png")
    plt.close(fig)
    files.append("throughput.png")
    # 2. latency CDF
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    for i, s in enumerate(steps):
        lat = sorted(x / 1000 for x in s.get("_latencies_ms") or [])
        if not lat:
            continue
        ys = [(k + 1) / len(lat) * 100 for k in range(len(lat))]
        c = colors[i % len(colors)]
        p = s["latency_ms"]
        ax.plot(lat, ys, color=c, lw=1.8, drawstyle="steps-post",
                label=f"ENVS={s['envs']}  p50 {_fmt(p['p50'] / 1000, 1)} s, p99 {_fmt(p['p99'] / 1000, 1)} s")
        for q in ("p50", "p99"):
            ax.plot([p[q] / 1000], [int(q[1:])], "o", color=c, ms=5)
    ax.set_xlabel("end-to-end latency, seconds (upload done → ESM saw the batch succeed)")
    ax.set_ylabel("% of uploads completed within")
    ax.set_title("Latency distribution (CDF), per number of execution environments")
    ax.set_ylim(0, 101)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "latency.png")
    plt.close(fig)
    files.append("latency.png")
    # 3. invocation durations over time
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    for i, s in enumerate(steps):
        inv = s.get("_invocations") or []
        if inv:
            ax.scatter([t for t, *_ in inv], [d / 1000 for _, d, *_ in inv], s=[8 + 2.5 * b for _, _, b, _ in inv],
                       alpha=0.55, color=colors[i % len(colors)],
                       label=f"ENVS={s['envs']}  p50 {_fmt(s['invocation_ms']['p50'])} ms, "
                             f"p99 {_fmt(s['invocation_ms']['p99'])} ms")
    ax.set_xlabel("seconds since the first upload (invocation end)")
    ax.set_ylabel("invocation duration, s")
    ax.set_title("Invocations over time (dot size = messages in the batch)")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "invocations.png")
    plt.close(fig)
    files.append("invocations.png")
    return files


def markdown(doc: dict, chart_files: list[str]) -> str:
    cfg, steps = doc["config"], doc["envs"]
    lost_total = doc["lost"]
    L = []
    L.append("# renditions-lambda load test\n")
    L.append(f"{doc['started_utc']} · binary `{cfg['bin']}` · S3/SQS: **{doc['backend']['kind']}** "
             f"({doc['notifications']}) · {cfg['n']} uploads per step (profile `{cfg['profile']}`, photos: "
             f"{cfg.get('photos_source') or cfg.get('photos')}) · "
             f"batch size {cfg['batch_size']}, batching window {cfg['window_s']} s, visibility timeout "
             f"{cfg['visibility_timeout_s']} s · memory setting {cfg['memory_mb']} MB · "
             f"upload rate {cfg['rate'] or 'unlimited'} /s with {cfg['upload_threads']} threads\n")
    verdict = "**lost = 0**" if lost_total == 0 else f"**LOST = {lost_total}** ❌"
    L.append(f"Result: {verdict} — every upload ended with all its renditions or a rejection report"
             if lost_total == 0 else f"Result: {verdict} — some uploads have neither all renditions nor a "
                                     f"rejection report (see `lost_keys` in report.json)")
    L.append("")
    L.append("| ENVS | uploads | rendered | rejected | **lost** | images/s | latency p50 / p90 / p99 (s) "
             "| invocation p50 / p90 / p99 (ms) | batch mean | cold start (ms) | peak RSS / env (MiB) "
             "| CPU ms / image | $ per 1M images* |")
    L.append("|---:|---:|---:|---:|---:|---:|---|---|---:|---|---:|---:|---:|")
    for s in steps:
        lat, inv = s["latency_ms"], s["invocation_ms"]
        s_ = lambda v: _fmt(v / 1000 if v is not None else None, 2)
        cold = s["cold_start_init_ms"]
        L.append(f"| {s['envs']} | {s['uploads']} | {s['rendered_uploads']} | {s['rejected']} | **{s['lost']}** | "
                 f"{_fmt(s['images_per_s'], 1)} | {s_(lat['p50'])} / {s_(lat['p90'])} / {s_(lat['p99'])} | "
                 f"{_fmt(inv['p50'])} / {_fmt(inv['p90'])} / {_fmt(inv['p99'])} | {_fmt(s['batch_size_mean'], 1)} | "
                 f"{', '.join(_fmt(x) for x in cold['per_env']) or '–'} | {_fmt(s['peak_rss_mib']['max'], 1)} | "
                 f"{_fmt(s['cpu_ms_per_image'])} | {_fmt(s['cost_per_million_images']['usd'], 2)} |")
    L.append("")
    loads = [s["machine_load_1min"]["mean"] for s in steps if s.get("machine_load_1min")]
    if loads and max(loads) > 2 * (doc["config"]["machine"]["cpus"] or 2):
        L.append(f"⚠ The machine was busy with other work during this run (mean 1-min load up to {max(loads)} on "
                 f"{doc['config']['machine']['cpus']} cores): throughput, latency and durations are pessimistic.\n")
    L.append(f"\\* Lambda arm64 prices (${PRICE_GB_S_ARM64:.10f} per GB-s, $0.20 per 1M requests) at "
             f"{cfg['memory_mb']} MB, applied to the invocation durations **measured on this x86-64 machine** "
             f"(2 cores shared by the function processes, the emulator and the harness): an estimate only.\n")
    L.append(f"All steps: {doc['uploads']} uploads, {doc['renditions']} rendition objects, "
             f"{doc['rejected']} rejection reports, lost **{lost_total}**; best throughput "
             f"{_fmt(doc['images_per_s'], 1)} images/s; latency p50 {_fmt(doc['latency_ms']['p50'] / 1000 if doc['latency_ms']['p50'] is not None else None, 2)} s, "
             f"p90 {_fmt(doc['latency_ms']['p90'] / 1000 if doc['latency_ms']['p90'] is not None else None, 2)} s, "
             f"p99 {_fmt(doc['latency_ms']['p99'] / 1000 if doc['latency_ms']['p99'] is not None else None, 2)} s.\n")
    for f, title in zip(chart_files, ("Throughput", "Latency", "Invocations")):
        L.append(f"![{title}]({f})\n")
    L.append("## Per input kind\n")
    L.append("Latency here is per upload but measured per batch (a batch completes as a whole), so it mostly "
             "reflects the batch an upload landed in.\n")
    L.append("| ENVS | kind | uploads | lost | unexpected | latency p50 / p99 (s) |")
    L.append("|---:|---|---:|---:|---:|---|")
    for s in steps:
        for kind, k in sorted(s["per_kind"].items()):
            p50 = _fmt(k["latency_ms"]["p50"] / 1000 if k["latency_ms"]["p50"] is not None else None, 2)
            p99 = _fmt(k["latency_ms"]["p99"] / 1000 if k["latency_ms"]["p99"] is not None else None, 2)
            L.append(f"| {s['envs']} | {kind} | {k['uploads']} | {k['lost']} | {k['unexpected']} | {p50} / {p99} |")
    L.append("")
    stages = [m for m in ("DownloadDuration", "DecodeDuration", "OrientDuration", "ColourDuration", "ResizeDuration",
                          "WatermarkDuration", "EncodeDuration", "UploadDuration")
              if any(m in s["emf"]["metrics"] for s in steps)]
    if stages:
        L.append("## Per-image stage timings (from the function's EMF metrics)\n")
        L.append("p50 / p99 in ms, per image.\n")
        L.append("| ENVS | " + " | ".join(m.removesuffix("Duration").lower() for m in stages) + " |")
        L.append("|---:|" + "---|" * len(stages))
        for s in steps:
            mm = s["emf"]["metrics"]
            L.append(f"| {s['envs']} | " + " | ".join(
                f"{_fmt(mm[m].get('p50'), 1)} / {_fmt(mm[m].get('p99'), 1)}" if m in mm else "–" for m in stages) + " |")
        L.append("")
    L.append("## Details per step\n")
    for s in steps:
        L.append(f"- **ENVS={s['envs']}**: wall {s['wall_s']} s; machine load (1 min) "
                 f"mean {s['machine_load_1min']['mean']}, max {s['machine_load_1min']['max']} on {s['machine_load_1min']['cpus']} cores; "
                 f"{s['invocations']} invocations "
                 f"(outcomes {s['outcomes']}), {s['failed_items']} failed items, {s['redelivered']} redeliveries; "
                 f"restarts {s['env_restarts']}; EMF lines {s['emf']['lines']}; ERROR log lines {s['log_errors_by_message'] or 0}; "
                 f"X-Ray datagrams {s['xray_datagrams']}; queue left {s['queue_left']}; "
                 f"objects the emulator's listing missed (found by HEAD) {s['listing_misses']['count']}; "
                 f"unexpected outcomes {len(s['unexpected'])}; harness errors {len(s['harness_errors'])}"
                 + (f"; **timed out after {s['timeout_s']} s**" if s["timed_out"] else ""))
    L.append("")
    L.append("Definitions and limitations: `loadtest/README.md`. Raw numbers: `report.json`; "
             "function logs: `logs/`.\n")
    return "\n".join(L)
