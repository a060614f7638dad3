#!/usr/bin/env python3
"""Cold-start bench of `renditions-lambda` binaries: init time and memory, on loopback only.

For each binary, RUNS times: serve a Lambda Runtime API on 127.0.0.1, start the binary with a
valid configuration, and measure the time from exec to its first `GET /runtime/invocation/next`
(what Lambda reports as Init Duration: config, pipeline, watermark, S3 client, telemetry), and its
resident memory at that moment. The binary then gets one small S3 event for a bucket nobody
serves, so it answers an error, and is stopped by PID. Nothing leaves the machine: the S3
endpoint is a closed loopback port.

    python3 benches/coldstart.py --runs 20 target/release/renditions-lambda other/renditions-lambda

Prints a Markdown table (size, init median / p90, RSS); `--json FILE` writes the raw numbers.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import statistics
import subprocess
import threading
import time


class RuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.first_next = threading.Event()
        self.t_next = None
        self.answered = threading.Event()
        self.served = False


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        srv: RuntimeApi = self.server  # type: ignore[assignment]
        if self.path.endswith("/runtime/invocation/next"):
            if srv.t_next is None:
                srv.t_next = time.perf_counter()
                srv.first_next.set()
            if srv.served:
                # Hold the second poll until the process is stopped (bounded).
                srv.answered.wait(30)
                self.send_response(500)
                self.end_headers()
                return
            srv.served = True
            body = json.dumps({"Records": [{
                "eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": "us-east-1",
                "s3": {"bucket": {"name": "coldstart-src"}, "object": {"key": "x.jpg", "size": 1}}}]}).encode()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "coldstart-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 10_000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:cs")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()

    def do_POST(self):  # noqa: N802
        srv: RuntimeApi = self.server  # type: ignore[assignment]
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.send_response(202)
        self.end_headers()
        srv.answered.set()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def one_run(binary: str) -> tuple[float, int | None]:
    api = RuntimeApi()
    t = threading.Thread(target=api.serve_forever, daemon=True)
    t.start()
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "coldstart",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}",
        "S3_FORCE_PATH_STYLE": "true", "S3_MAX_ATTEMPTS": "1",
        "DEST_BUCKET": "coldstart-dst",
        "WATERMARK": "default",
    }
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not api.first_next.wait(30):
            raise RuntimeError(f"{binary}: no /next within 30 s")
        init_ms = (api.t_next - t0) * 1000
        rss = rss_kib(p.pid)
        api.answered.wait(15)
    finally:
        p.kill()  # this process only, by PID
        p.wait(10)
        api.answered.set()
        api.shutdown()
        api.server_close()
    return init_ms, rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    results = {}
    for b in args.binaries:
        one_run(b)  # warm the page cache: Lambda's cold start reads the binary from a warm cache too
    for i in range(args.runs):
        for b in args.binaries:  # interleaved, so that machine noise hits every binary alike
            ms, rss = one_run(b)
            r = results.setdefault(b, {"init_ms": [], "rss_kib": []})
            r["init_ms"].append(ms)
            if rss:
                r["rss_kib"].append(rss)
    print("| binary | size (bytes) | init median (ms) | init p90 (ms) | RSS after init (MiB) |")
    print("|---|--:|--:|--:|--:|")
    for b, r in results.items():
        ms = sorted(r["init_ms"])
        p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
        rss = statistics.median(r["rss_kib"]) / 1024 if r["rss_kib"] else float("nan")
        print(f"| `{b}` | {os.path.getsize(b):,} | {statistics.median(ms):.1f} | {p90:.1f} | {rss:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
