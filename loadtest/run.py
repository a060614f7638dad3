#!/usr/bin/env python3
"""Load test for renditions-lambda: S3 upload -> S3 notification -> SQS -> emulated Lambda
SQS event-source mapping -> N execution environments (real function processes, each with
its own Runtime API server) -> renditions in the destination bucket. All on 127.0.0.1.

    python3 loadtest/run.py [--n 1000] [--envs 1,2,4] [--s3 localstack|moto] [--rate R]
                            [--out loadtest-report] [--bin target/release/renditions-lambda]
                            [--photos DIR] [--fallback-to-samples]

Exit status: 0 = nothing lost, 1 = something lost (or not verified), 2 = could not run.
See loadtest/README.md.
"""
from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from ltlib import backend as backend_mod, procs, report  # noqa: E402
from ltlib.poller import EventSourceMapping, Tracker, s3_keys_of  # noqa: E402
from ltlib.runtime_api import Environment  # noqa: E402
from ltlib.workload import (  # noqa: E402
    PROFILES, build_uploads, list_photos, materialize, prepare_sources, rendition_key, report_key,
    stage_repo_samples, upload_all)

REGION = "us-east-1"
_log_lock = threading.Lock()
_log_file = None
T_START = time.monotonic()


def log(msg: str) -> None:
    line = f"[loadtest {time.monotonic() - T_START:7.1f}s] {msg}"
    with _log_lock:
        print(line, file=sys.stderr, flush=True)
        if _log_file:
            _log_file.write(line + "\n")
            _log_file.flush()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="uploads per sweep step (default 1000)")
    ap.add_argument("--envs", default="1,2,4", help="comma-separated execution-environment counts (default 1,2,4)")
    ap.add_argument("--s3", choices=["localstack", "moto"], default="localstack", help="S3/SQS emulator")
    ap.add_argument("--rate", type=float, default=None, help="max uploads per second (default: as fast as "
                                                               "--upload-threads allow)")
    ap.add_argument("--out", default=str(ROOT / "loadtest-report"), help="report directory")
    ap.add_argument("--bin", default=str(ROOT / "target/release/renditions-lambda"),
                    help="function binary, or 'fake' for loadtest/fake_function.py (harness self-test)")
    ap.add_argument("--photos", default=str(ROOT.parent / "shared/corpus/photos"),
                    help="source photos (default ../shared/corpus/photos; make: CORPUS=DIR)")
    ap.add_argument("--fallback-to-samples", action="store_true",
                    help="when --photos holds no photos, use the repository's assets/samples plus a few "
                         "images generated with Pillow (the smoke test of `make test`); without it a "
                         "missing corpus is an error")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="mixed",
                    help="mixed = photos downscaled to 1/2/4/8/12 MP (default); full = originals as is")
    ap.add_argument("--batch-size", type=int, default=10, help="ESM batch size (default 10, as template.yaml)")
    ap.add_argument("--window", type=float, default=2.0, help="ESM batching window, s (default 2, as template.yaml)")
    ap.add_argument("--visibility-timeout", type=int, default=10, help="queue visibility timeout, s (default 10)")
    ap.add_argument("--function-timeout", type=float, default=60.0, help="function timeout, s (default 60)")
    ap.add_argument("--memory", type=int, default=1769, help="memory size MB for env + cost (default 1769)")
    ap.add_argument("--renditions", default=os.environ.get("RENDITIONS", "large:1600,medium:800,thumb:320"))
    ap.add_argument("--upload-threads", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=None, help="per-step bound, s (default max(120, 2*N))")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", default=None, help="cache dir for downscaled photos "
                                                  "(default ~/.cache/renditions-loadtest)")
    ap.add_argument("--keep", action="store_true", help="keep buckets and queues after each step")
    ap.add_argument("--replot", action="store_true", help="only rebuild report.md and the charts from "
                                                          "--out's report.json + series.json")
    a = ap.parse_args(argv)
    a.envs_list = [int(x) for x in a.envs.split(",") if x.strip()]
    if not a.envs_list or any(e < 1 or e > 64 for e in a.envs_list) or a.n < 1 or not 1 <= a.batch_size <= 10000:
        ap.error("bad --envs / --n / --batch-size")
    a.timeout = a.timeout or max(120.0, a.n * 2.0)
    return a


class XRaySink:
    """A UDP sink on 127.0.0.1 standing in for the X-Ray daemon: counts datagrams."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="xray-sink").start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.sock.recvfrom(65536)
                self.count += 1
            except OSError:
                pass


def clients(endpoint: str):
    import boto3
    from botocore.config import Config
    cfg = Config(region_name=REGION, s3={"addressing_style": "path"}, retries={"max_attempts": 4, "mode": "standard"},
                 max_pool_connections=32, connect_timeout=5, read_timeout=60)
    kw = dict(endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", config=cfg)
    return (lambda: boto3.session.Session().client("s3", **kw)), (lambda: boto3.session.Session().client("sqs", **kw))


def cache_root(base: str | None) -> Path:
    return Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "renditions-loadtest"


def corpus_cache_dir(photos: Path, profile: str, base: str | None) -> Path:
    """Downscaled copies live outside the work tree (kept across fresh clones on the same
    machine), in a folder named after the corpus' file names and sizes."""
    import hashlib
    h = hashlib.sha1()
    if photos.is_dir():
        for p in sorted(photos.iterdir()):
            h.update(f"{p.name}:{p.stat().st_size};".encode())
    return cache_root(base) / f"photos-{profile}-{h.hexdigest()[:10]}"


def choose_photos(args) -> tuple[Path, str]:
    """The photo folder of this run and a description of where it came from: the corpus
    (--photos) when it holds photos, else, with --fallback-to-samples, the repository's samples."""
    photos = Path(args.photos)
    found = list_photos(photos)
    if found:
        log(f"workload: photo corpus {photos} ({len(found)} photos)")
        return photos, f"corpus {photos}"
    if not args.fallback_to_samples:
        raise SystemExit(
            f"no photos in {photos}: this run needs a photo corpus. Point --photos at a folder of "
            f"JPEG/PNG/WebP photos (make: CORPUS=/path/to/photos), or add --fallback-to-samples for a "
            f"smoke run on the repository's assets/samples")
    log(f"workload: no photo corpus at {photos} ({'empty' if photos.is_dir() else 'absent'}); "
        f"falling back to the repository's samples")
    staged = stage_repo_samples(ROOT / "assets" / "samples", cache_root(args.cache) / "repo-samples", log)
    return staged, "repository samples (assets/samples + images generated with Pillow)"


def bin_digest(cmd: list[str]) -> str | None:
    import hashlib
    try:
        return hashlib.sha256(Path(cmd[-1]).read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def function_cmd(args) -> list[str]:
    if args.bin == "fake":
        return [sys.executable, str(HERE / "fake_function.py")]
    b = Path(args.bin)
    if not b.is_file() or not os.access(b, os.X_OK):
        raise SystemExit(f"function binary {b} not found: `cargo build --release --bin renditions-lambda` "
                         f"(or --bin fake to self-test the harness)")
    return [str(b.resolve())]


def setup_wiring(s3, sqs, endpoint: str, tag: str, visibility: int):
    src, dst, qname = f"lt-{tag}-src", f"lt-{tag}-dst", f"lt-{tag}-q"
    s3.create_bucket(Bucket=src)
    s3.create_bucket(Bucket=dst)
    q = sqs.create_queue(QueueName=qname, Attributes={"VisibilityTimeout": str(visibility),
                                                      "MessageRetentionPeriod": "3600"})
    # Queue URLs may name a host that does not resolve offline: keep the path, use our endpoint.
    qurl = endpoint.rstrip("/") + urlparse(q["QueueUrl"]).path
    qarn = sqs.get_queue_attributes(QueueUrl=qurl, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=qurl, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                                                 "Action": "sqs:SendMessage", "Resource": qarn,
                                                 "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{src}"}}}]})})
    s3.put_bucket_notification_configuration(Bucket=src, NotificationConfiguration={"QueueConfigurations": [
        {"Id": "renditions-loadtest", "QueueArn": qarn, "Events": ["s3:ObjectCreated:*"]}]})
    return src, dst, qurl, qarn


def probe_notifications(s3, sqs, src: str, qurl: str) -> bool:
    """Does the emulator deliver S3 -> SQS notifications? Put a probe object, wait for its
    event, then drain the queue (probe + s3:TestEvent) so the measured load starts clean."""
    key = f"_probe/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=src, Key=key, Body=b"probe")
    seen, end = False, time.monotonic() + 15
    while time.monotonic() < end and not seen:
        r = sqs.receive_message(QueueUrl=qurl, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in r.get("Messages") or []:
            seen |= key in s3_keys_of(m["Body"])     # emulators encode keys differently
            sqs.delete_message(QueueUrl=qurl, ReceiptHandle=m["ReceiptHandle"])
    for _ in range(3):  # drain leftovers (bounded)
        r = sqs.receive_message(QueueUrl=qurl, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for m in r.get("Messages") or []:
            sqs.delete_message(QueueUrl=qurl, ReceiptHandle=m["ReceiptHandle"])
    s3.delete_object(Bucket=src, Key=key)
    return seen


def list_keys(s3, bucket: str) -> dict[str, dict]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"MaxItems": 10**6}):
        for o in page.get("Contents") or []:
            out[o["Key"]] = o
    return out


def verify(uploads, dst_keys: dict, rendition_names: list[str], s3=None, bucket: str | None = None):
    """Lost-check: each upload must have every rendition (`<rendition>/<key>`, the default
    DEST_KEY_TEMPLATE) or a rejection report.
    Keys missing from the listing are confirmed with HEAD (LocalStack 4.13.1's ListObjects
    skips non-ASCII keys after a page boundary); `listing_misses` counts keys only HEAD found."""
    res = {}
    n_objects = 0
    listing_misses: list[str] = []

    def exists(k: str) -> bool:
        if k in dst_keys:
            return True
        if s3 is None:
            return False
        try:
            s3.head_object(Bucket=bucket, Key=k)
        except Exception:  # noqa: BLE001 (404 or error: not confirmed)
            return False
        dst_keys[k] = {}
        listing_misses.append(k)
        return True

    for u in uploads:
        found = [k if exists(k := rendition_key(r, u.key)) else None for r in rendition_names]
        if all(found):
            res[u.key] = "rendered"
            n_objects += len(found)
        elif exists(report_key(u.key)):
            res[u.key] = "rejected"
        else:
            res[u.key] = "lost" + (f" (partial: {sum(1 for f in found if f)}/{len(found)} renditions)"
                                   if any(found) else "")
    return res, n_objects, listing_misses


def parse_function_logs(logdir: Path) -> tuple[dict, dict, list[str]]:
    """The function's EMF lines (JSON with _aws.CloudWatchMetrics; metrics keyed by name and
    dimension set, per-image timing arrays summarised) and its ERROR-level log lines counted
    by message (e.g. "image rejected" is an expected ERROR for the bad files)."""
    lines = 0
    metrics: dict[str, dict] = {}
    values: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    samples: list[str] = []
    for f in sorted(logdir.glob("*.log")):
        with open(f, "rb") as fh:
            for raw in fh:
                try:
                    doc = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(doc, dict):
                    continue
                aws = doc.get("_aws")
                if isinstance(aws, dict) and aws.get("CloudWatchMetrics"):
                    lines += 1
                    for d in aws["CloudWatchMetrics"]:
                        dims = ",".join(sorted({x for ds in d.get("Dimensions") or [] for x in ds}))
                        for m in d.get("Metrics") or []:
                            name = m.get("Name")
                            key = f"{name}{{{dims}}}" if dims and dims != "FunctionName" else name
                            v = doc.get(name)
                            vals = [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, (int, float))]
                            agg = metrics.setdefault(key, {"unit": m.get("Unit"), "sum": 0.0, "count": 0})
                            agg["sum"] += sum(vals)
                            agg["count"] += len(vals)
                            if m.get("Unit") == "Milliseconds":
                                values[key].extend(vals)
                level = str(doc.get("level") or doc.get("log_level") or "").upper()
                if level in ("ERROR", "FATAL"):
                    msg = str(doc.get("message") or doc.get("msg") or "?")[:120]
                    errors[msg] += 1
                    if msg != "image rejected" and len(samples) < 5:
                        samples.append(raw.decode("utf-8", "replace")[:500])
    for key, m in metrics.items():
        m["sum"] = round(m["sum"], 3)
        if key in values and values[key]:
            m.update({q: round(report.pct(values[key], int(q[1:])), 2) for q in ("p50", "p90", "p99")})
            m["mean"] = round(sum(values[key]) / len(values[key]), 2)
    return {"lines": lines, "metrics": metrics}, dict(errors), samples


def run_step(args, k: int, s3f, sqsf, be, cmd, uploads_tmpl, rnames, xray: XRaySink, run_tag: str, out: Path):
    import copy
    s3, sqs = s3f(), sqsf()
    tag = f"{run_tag}-e{k}"
    src, dst, qurl, qarn = setup_wiring(s3, sqs, be.endpoint, tag, args.visibility_timeout)
    native = probe_notifications(s3, sqs, src, qurl)
    notif = "S3 → SQS notifications by the emulator" if native else \
        "S3 → SQS notifications EMULATED (the uploader sends the S3 event JSON to SQS itself)"
    log(f"ENVS={k}: buckets {src} → {dst}, queue {qurl}; {notif}")
    uploads = copy.deepcopy(uploads_tmpl)
    logdir = out / "logs" / f"envs-{k}"
    logdir.mkdir(parents=True, exist_ok=True)
    fenv = backend_mod.aws_env(be.endpoint, REGION)
    fenv.update({"DEST_BUCKET": dst, "RENDITIONS": args.renditions, "AWS_LAMBDA_LOG_FORMAT": "JSON",
                 "REJECTION_REPORTS": "true", "METRICS_NAMESPACE": "Renditions",
                 "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{xray.port}", "RUST_BACKTRACE": "1"})
    envs = [Environment(f"env-{i}", cmd, fenv, logdir, "renditions-loadtest", args.memory,
                        args.function_timeout, REGION, log) for i in range(k)]
    tracker = Tracker(expected={u.key for u in uploads})
    esm = EventSourceMapping(sqsf, qurl, qarn, REGION, envs, args.batch_size, args.window, tracker, log)
    xray0 = xray.count
    load_samples, load_stop = [], threading.Event()

    def sample_load():                        # the machine is shared: record how busy it was
        while not load_stop.wait(2.0):
            load_samples.append(os.getloadavg()[0])
    threading.Thread(target=sample_load, daemon=True, name="loadavg").start()
    deadline = time.time() + args.timeout
    t0 = time.time()
    timed_out = False
    try:
        esm.start()
        log(f"ENVS={k}: uploading {len(uploads)} objects ({args.upload_threads} threads, "
            f"rate {args.rate or 'unlimited'}), bound {args.timeout:.0f} s")
        upload_all(s3f, uploads, src, threads=args.upload_threads, rate=args.rate, deadline=deadline,
                   emulate_sqs=None if native else (sqsf, qurl), region=REGION, log=log)
        failed_up = [u for u in uploads if u.error]
        with tracker.lock:
            tracker.expected -= {u.key for u in failed_up}
            if len(tracker.completed) >= len(tracker.expected):
                tracker.all_done.set()
        log(f"ENVS={k}: uploads done in {time.time() - t0:.1f} s ({len(failed_up)} failed); waiting for the function")
        last_report = time.time()
        while not tracker.all_done.wait(1.0):
            if time.time() > deadline:
                timed_out = True
                log(f"ENVS={k}: step bound of {args.timeout:.0f} s reached; stopping")
                break
            if time.time() - last_report > 10:
                last_report = time.time()
                log(f"ENVS={k}: {len(tracker.completed)}/{len(tracker.expected)} done")
            if esm.stop_event.is_set() or all(not t.is_alive() for t in esm._threads):
                log(f"ENVS={k}: every ESM worker stopped; giving up")
                break
    finally:
        esm.stop(join_timeout=args.function_timeout + 5)
        env_summaries = []
        for e in envs:
            e.stop()                          # reads VmHWM + CPU time first, then stops by PID
            env_summaries.append(e.summary())
            e.close()
    t_end = time.time()
    load_stop.set()
    load_samples = load_samples or [os.getloadavg()[0]]
    queue_left = {}
    try:
        a = sqs.get_queue_attributes(QueueUrl=qurl, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        queue_left = {"visible": int(a.get("ApproximateNumberOfMessages", 0)),
                      "in_flight": int(a.get("ApproximateNumberOfMessagesNotVisible", 0))}
    except Exception as e:  # noqa: BLE001
        queue_left = {"error": str(e)}
    dst_keys = list_keys(s3, dst)
    outcome, n_objects, listing_misses = verify(uploads, dst_keys, rnames, s3, dst)
    if listing_misses:
        log(f"ENVS={k}: {len(listing_misses)} objects missing from the emulator's ListObjectsV2 but present "
            f"(HEAD), e.g. {listing_misses[0]!r}")
    for u in uploads:
        if u.error:
            outcome[u.key] = f"lost (upload failed: {u.error})"
    lost = {key: v for key, v in outcome.items() if v.startswith("lost")}
    unexpected = [{"key": u.key, "kind": u.source.kind, "expected": u.source.expect, "got": outcome[u.key]}
                  for u in uploads if not outcome[u.key].startswith("lost") and outcome[u.key] != u.source.expect]
    reject_sample = None
    rej = next((u for u in uploads if outcome[u.key] == "rejected"), None)
    if rej:
        try:
            reject_sample = json.loads(s3.get_object(Bucket=dst, Key=f"_rejected/{rej.key}.json")["Body"].read())
        except Exception as e:  # noqa: BLE001
            reject_sample = {"error": str(e)}
    # --- numbers ------------------------------------------------------------------------
    first_put = min((u.put_started for u in uploads if u.put_started), default=t0)
    lat = {u.key: (tracker.completed[u.key] - u.put_done) * 1000 for u in uploads
           if u.key in tracker.completed and u.put_done}
    comp_times = sorted(tracker.completed.values())
    span = (comp_times[-1] - first_put) if comp_times else None
    images_per_s = len(comp_times) / span if span else None
    recs = esm.records
    durations = [r.duration_ms if r.duration_ms is not None else (r.ended - r.started) * 1000 for r in recs]
    cpu_total = sum(e["cpu_s"] for e in env_summaries)
    per_kind = {}
    for kind in sorted({u.source.kind for u in uploads}):
        us = [u for u in uploads if u.source.kind == kind]
        per_kind[kind] = {"uploads": len(us), "lost": sum(1 for u in us if u.key in lost),
                          "unexpected": sum(1 for x in unexpected if x["kind"] == kind),
                          "latency_ms": report.pcts([lat.get(u.key) for u in us])}
    emf, log_errors, error_samples = parse_function_logs(logdir)
    inits = [x for e in env_summaries for x in e["init_ms"]]
    rss = [e["peak_rss_mib"] for e in env_summaries if e["peak_rss_mib"] is not None]
    step = {
        "envs": k,
        "uploads": len(uploads),
        "renditions": n_objects,
        "rendered_uploads": sum(1 for v in outcome.values() if v == "rendered"),
        "rejected": sum(1 for v in outcome.values() if v == "rejected"),
        "lost": len(lost),
        "lost_keys": dict(list(lost.items())[:50]),
        "unexpected": unexpected[:50],
        "images_per_s": round(images_per_s, 2) if images_per_s else None,
        "latency_ms": report.pcts(lat.values()),
        "invocation_ms": report.pcts(durations),
        "invocations": len(recs),
        "batch_size_mean": round(sum(r.batch for r in recs) / len(recs), 2) if recs else None,
        "failed_items": sum(r.failed for r in recs),
        "redelivered": sum(r.redelivered for r in recs),
        "outcomes": dict(Counter(r.outcome for r in recs)),
        "cold_start_init_ms": {"per_env": [round(x, 1) for x in inits],
                               "p50": round(report.pct(inits, 50), 1) if inits else None,
                               "max": round(max(inits), 1) if inits else None},
        "peak_rss_mib": {"per_env": rss, "max": max(rss) if rss else None},
        "cpu_s_total": round(cpu_total, 2),
        "cpu_ms_per_image": round(cpu_total * 1000 / len(comp_times), 1) if comp_times else None,
        "cost_per_million_images": report.cost_per_million(durations, len(comp_times), args.memory),
        "env_restarts": sum(e["restarts"] for e in env_summaries),
        "environments": env_summaries,
        "wall_s": round(t_end - first_put, 1),
        "timed_out": timed_out,
        "timeout_s": args.timeout,
        "queue_left": queue_left,
        "machine_load_1min": {"mean": round(sum(load_samples) / len(load_samples), 2),
                              "max": round(max(load_samples), 2),
                              "cpus": os.cpu_count(),
                              "note": "load from everything on the machine, this test included (~2-4 of it)"},
        "listing_misses": {"count": len(listing_misses), "sample": listing_misses[:5]},
        "notifications_native": native,
        "emf": emf,
        "log_errors_by_message": log_errors,
        "log_error_samples": error_samples,
        "xray_datagrams": xray.count - xray0,
        "rejection_report_sample": reject_sample,
        "per_kind": per_kind,
        "harness_errors": esm.errors[:20],
        "upload_errors": [u.error for u in uploads if u.error][:10],
        "_latencies_ms": list(lat.values()),
        "_completions_s": [round(t - first_put, 3) for t in comp_times],
        "_wall_s": t_end - first_put,
        "_invocations": [(r.ended - first_put, d, r.batch, r.env) for r, d in zip(recs, durations)],
    }
    log(f"ENVS={k}: {step['rendered_uploads']} rendered, {step['rejected']} rejected, LOST {step['lost']}, "
        f"{step['images_per_s']} images/s, latency p50 {step['latency_ms']['p50']} ms p99 {step['latency_ms']['p99']} ms, "
        f"init {step['cold_start_init_ms']['per_env']} ms, peak RSS {rss} MiB")
    if not args.keep:
        cleanup(s3, sqs, [src, dst], qurl, extra={dst: listing_misses})
    return step


def cleanup(s3, sqs, buckets, qurl, extra=None):
    for b in buckets:
        try:
            for _round in range(5):            # bounded: listings can miss keys (see verify)
                keys = list(list_keys(s3, b)) + list((extra or {}).get(b, []) if _round == 0 else [])
                for i in range(0, len(keys), 1000):
                    s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": x} for x in keys[i:i + 1000]],
                                                        "Quiet": True})
                if not keys:
                    break
            s3.delete_bucket(Bucket=b)
        except Exception as e:  # noqa: BLE001
            log(f"cleanup of {b}: {e}")
    try:
        sqs.delete_queue(QueueUrl=qurl)
    except Exception as e:  # noqa: BLE001
        log(f"cleanup of queue: {e}")


def main(argv=None) -> int:
    global _log_file
    args = parse_args(argv)
    out = Path(args.out).resolve()
    if args.replot:
        report.replot(out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for old in ["report.json", "report.md", "series.json", "throughput.png", "latency.png", "invocations.png",
                "run.log"]:
        (out / old).unlink(missing_ok=True)
    shutil.rmtree(out / "logs", ignore_errors=True)
    (out / "logs").mkdir()
    _log_file = open(out / "run.log", "w")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(procs.stop_all)

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        cmd = function_cmd(args)
        rnames = [r.split(":")[0].strip() for r in args.renditions.split(",") if r.strip()]
        fixtures_dir = ROOT / "tests" / "fixtures"
        fixtures = sorted(p for p in fixtures_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")) \
            if fixtures_dir.is_dir() else []
        photos, photos_source = choose_photos(args)
        cache = corpus_cache_dir(photos, args.profile, args.cache)
        sources = prepare_sources(photos, cache, args.profile, fixtures, log)
        # Repository samples: few enough to upload each at least once (the corpus' ~100
        # variants are drawn at random only).
        every = [s for s in sources if s.origin is not None or s.path.parent == photos] \
            if photos_source.startswith("repository") else []
        uploads = build_uploads(sources, args.n, args.seed, every=every)
        materialize([u.source for u in uploads], log)
        kinds = Counter(u.source.kind for u in uploads)
        mp = [u.source.megapixels for u in uploads if u.source.expect == "rendered"]
        log(f"{len(uploads)} uploads from {len(sources)} sources ({len(fixtures)} repo fixtures): "
            f"{dict(kinds)}; mean {sum(mp) / max(1, len(mp)):.1f} MP")
        be = backend_mod.make(args.s3, out / "logs", log)
        xray = XRaySink()
        steps = []
        try:
            be.start()
            s3f, sqsf = clients(be.endpoint)
            run_tag = time.strftime("%H%M%S") + uuid.uuid4().hex[:4]
            for k in args.envs_list:
                steps.append(run_step(args, k, s3f, sqsf, be, cmd, uploads, rnames, xray, run_tag, out))
        finally:
            be.stop()
            xray.stop.set()
            procs.stop_all()
        all_lat = [x for s in steps for x in s["_latencies_ms"]]
        doc = {
            "started_utc": started,
            "uploads": sum(s["uploads"] for s in steps),
            "renditions": sum(s["renditions"] for s in steps),
            "rejected": sum(s["rejected"] for s in steps),
            "lost": sum(s["lost"] for s in steps),
            "images_per_s": max((s["images_per_s"] or 0) for s in steps) if steps else None,
            "latency_ms": report.pcts(all_lat),
            "totals_note": "top-level uploads/renditions/rejected/lost are sums over all ENVS steps; "
                           "images_per_s is the best step's; latency_ms pools every step's uploads",
            "backend": be.describe(),
            "notifications": "S3 → SQS by the emulator" if all(s["notifications_native"] for s in steps)
            else "S3 → SQS EMULATED by the uploader (the emulator did not deliver notifications)",
            "config": {"n": args.n, "envs": args.envs_list, "bin": args.bin, "bin_sha256": bin_digest(cmd), "profile": args.profile,
                       "photos": str(photos), "photos_source": photos_source, "batch_size": args.batch_size, "window_s": args.window,
                       "visibility_timeout_s": args.visibility_timeout, "function_timeout_s": args.function_timeout,
                       "memory_mb": args.memory, "renditions": args.renditions, "rate": args.rate,
                       "upload_threads": args.upload_threads, "step_timeout_s": args.timeout, "seed": args.seed,
                       "machine": {"cpus": os.cpu_count(), "arch": os.uname().machine}},
            "upload_set": {"kinds": dict(kinds), "mean_megapixels": round(sum(mp) / max(1, len(mp)), 2),
                           "sources": len(sources), "repo_fixtures": len(fixtures)},
            "envs": steps,
        }
        report.write_all(out, doc)
        log(f"summary: {doc['uploads']} uploads, {doc['renditions']} renditions, {doc['rejected']} rejected, "
            f"lost {doc['lost']}; photos: {photos_source}")
        log(f"report: {out / 'report.md'}; lost = {doc['lost']}")
        incomplete = len(steps) != len(args.envs_list)
        return 1 if doc["lost"] or incomplete else 0
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopped everything this run started")
        return 130
    except SystemExit as e:
        log(f"cannot run: {e}")
        return 2
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        log(f"failed: {type(e).__name__}: {e}")
        return 2
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
