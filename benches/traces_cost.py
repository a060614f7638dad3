#!/usr/bin/env python3
"""What each `TRACES` mode costs the function: cold start and time per invocation, on loopback.

For each mode (`off`, `xray`: datagrams to a UDP socket read by this script, `otlp`: OTLP/HTTP to
a collector in this script that answers 200), ROUNDS times, interleaved: serve a Lambda Runtime
API on 127.0.0.1, start the binary, measure init (exec → first `GET /runtime/invocation/next`),
then INVOKES invocations of one real S3 event (a 1000×750 JPEG in moto's S3 server on
127.0.0.1, default renditions: about 15 spans each), each timed from the moment the event is
handed out to the moment the answer arrives (what Lambda bills as Duration, the OTLP flush
included). Every trace header is sampled. Every process is stopped by its PID.

    python3 benches/traces_cost.py target/release/renditions-lambda --rounds 3 --invokes 40

Needs boto3, moto[server] and Pillow (`make py-deps`). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import http.server
import io
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = "1-6751b2c4-0123456789abcdef01234567"
PARENT = "53995c3f42cd8ad8"


class RuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a killed function resets its socket
        pass

    def __init__(self, event: bytes):
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.event = event
        self.first_next: float | None = None
        self.ready = threading.Event()
        self.go: queue.Queue[int] = queue.Queue()
        self.handed_out: dict[str, float] = {}
        self.answered: queue.Queue[tuple[str, float, bytes]] = queue.Queue()


class RuntimeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        srv: RuntimeApi = self.server  # type: ignore[assignment]
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if srv.first_next is None:
            srv.first_next = time.perf_counter()
            srv.ready.set()
        try:
            n = srv.go.get(timeout=120)
        except queue.Empty:
            n = -1
        if n < 0:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rid = f"req-{n}"
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", rid)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:t")
        self.send_header("Lambda-Runtime-Trace-Id", f"Root={ROOT};Parent={PARENT};Sampled=1")
        self.send_header("Content-Length", str(len(srv.event)))
        self.end_headers()
        srv.handed_out[rid] = time.perf_counter()
        self.wfile.write(srv.event)

    def do_POST(self):  # noqa: N802
        srv: RuntimeApi = self.server  # type: ignore[assignment]
        t = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path.split("/")
        rid = parts[-2] if len(parts) >= 2 else ""
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        srv.answered.put((rid, t, body))


class Collector(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a killed function resets its socket
        pass

    def __init__(self):
        super().__init__(("127.0.0.1", 0), CollectorHandler)
        self.requests = 0
        self.spans = 0


class CollectorHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        srv: Collector = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        srv.requests += 1
        srv.spans += sum(len(ss["spans"]) for rs in body["resourceSpans"] for ss in rs["scopeSpans"])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto did not start within 30 s")


def one_round(binary: str, mode: str, s3_url: str, event: bytes, invokes: int) -> dict:
    api = RuntimeApi(event)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "traces-cost",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_ENDPOINT_URL": s3_url, "S3_FORCE_PATH_STYLE": "true",
        "DEST_BUCKET": "dst", "SOURCE_BUCKETS": "src",
        "TRACES": mode,
    }
    udp = collector = None
    if mode == "xray":
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.2)
        env["AWS_XRAY_DAEMON_ADDRESS"] = f"127.0.0.1:{udp.getsockname()[1]}"
        datagrams = [0]

        def drain():
            while udp is not None:
                try:
                    udp.recv(65536)
                    datagrams[0] += 1
                except OSError:
                    if udp.fileno() < 0:
                        return
        threading.Thread(target=drain, daemon=True).start()
    elif mode == "otlp":
        collector = Collector()
        threading.Thread(target=collector.serve_forever, daemon=True).start()
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{collector.server_address[1]}"
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not api.ready.wait(30):
            raise RuntimeError(f"{mode}: no /next within 30 s")
        init_ms = (api.first_next - t0) * 1000
        durations = []
        for n in range(invokes + 3):  # 3 warm-up invocations, not counted
            api.go.put(n)
            rid, t_end, body = api.answered.get(timeout=60)
            answer = json.loads(body)
            if answer.get("rendered") != 1:
                raise RuntimeError(f"{mode}: {answer}")
            if n >= 3:
                durations.append((t_end - api.handed_out[rid]) * 1000)
    finally:
        api.go.put(-1)
        proc.kill()  # this process only, by PID
        proc.wait(10)
        api.shutdown()
        api.server_close()
        if collector:
            collector.shutdown()
            collector.server_close()
        if udp:
            u, udp = udp, None
            u.close()
    out = {"init_ms": init_ms, "durations": durations}
    if collector:
        out["spans_per_invocation"] = collector.spans / max(1, collector.requests)
        out["requests"] = collector.requests
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--invokes", type=int, default=40)
    ap.add_argument("--modes", default="off,xray,otlp")
    args = ap.parse_args()
    import boto3
    from PIL import Image

    moto, s3_url = start_moto()
    try:
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        for b in ("src", "dst"):
            s3.create_bucket(Bucket=b)
        buf = io.BytesIO()
        Image.radial_gradient("L").resize((1000, 750)).convert("RGB").save(buf, "JPEG", quality=90)
        etag = s3.put_object(Bucket="src", Key="bench.jpg", Body=buf.getvalue())["ETag"].strip('"')
        event = json.dumps({"Records": [{
            "eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": "us-east-1",
            "s3": {"bucket": {"name": "src"},
                   "object": {"key": "bench.jpg", "size": len(buf.getvalue()), "eTag": etag}}}]}).encode()
        modes = args.modes.split(",")
        results: dict[str, dict] = {m: {"init_ms": [], "durations": []} for m in modes}
        for _ in range(args.rounds):
            for m in modes:  # interleaved: machine noise hits every mode alike
                r = one_round(args.binary, m, s3_url, event, args.invokes)
                results[m]["init_ms"].append(r["init_ms"])
                results[m]["durations"] += r["durations"]
                if "spans_per_invocation" in r:
                    results[m]["spans"] = r["spans_per_invocation"]
    finally:
        moto.kill()  # by PID
        moto.wait(10)

    def p(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

    base = statistics.median(results[modes[0]]["durations"])
    print(f"binary `{args.binary}` ({os.path.getsize(args.binary):,} bytes), "
          f"{args.rounds} rounds × {args.invokes} invocations per mode")
    print()
    print(f"| TRACES | init median (ms) | invocation p50 (ms) | p90 (ms) | p50 vs {modes[0]} (ms) |")
    print("|---|--:|--:|--:|--:|")
    for m in modes:
        r = results[m]
        d50 = statistics.median(r["durations"])
        print(f"| `{m}` | {statistics.median(r['init_ms']):.1f} | {d50:.2f} | {p(r['durations'], 0.9):.2f} "
              f"| {d50 - base:+.2f} |")
    if "otlp" in results and "spans" in results["otlp"]:
        print(f"\nOTLP: {results['otlp']['spans']:.0f} spans per invocation, one request each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
