"""One Lambda execution environment = one function process + its own Runtime API server.

The server implements the parts of the Lambda Runtime API (2018-06-01) a custom runtime
uses: GET invocation/next (blocks until there is an event), POST invocation/{id}/response,
POST invocation/{id}/error and POST init/error. It listens on 127.0.0.1:<ephemeral>.
"""
from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import procs

PREFIX = "/2018-06-01/runtime"


@dataclass
class Invocation:
    request_id: str
    event: bytes
    timeout_s: float
    handed_at: float | None = None          # monotonic time /next returned the event
    done_at: float | None = None
    kind: str | None = None                  # "response" | "error" | "timeout" | "crash"
    body: bytes = b""
    error_type: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def duration_ms(self) -> float | None:
        if self.handed_at is None or self.done_at is None:
            return None
        return (self.done_at - self.handed_at) * 1000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"            # keep-alive, as the real Runtime API
    server: "_Server"

    def log_message(self, fmt, *args):       # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        env = self.server.env
        if self.path != f"{PREFIX}/invocation/next":
            return self._send(404, b'{"errorType":"NotFound"}')
        env.on_next()
        q, gen = env.pending, env.generation     # a stale connection of a replaced process
        while True:                              # must never take a new process's event
            try:
                inv = q.get(timeout=0.5)
            except queue.Empty:
                if env.closing.is_set() or gen != env.generation:
                    self.close_connection = True
                    return
                continue
            break
        deadline_ms = int((time.time() + inv.timeout_s) * 1000)
        inv.handed_at = time.monotonic()
        env.current = inv
        self._send(200, inv.event, {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": env.function_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
                                       f"Parent={uuid.uuid4().hex[:16]};Sampled=1",
        })

    def do_POST(self):
        env = self.server.env
        body = self._body()
        parts = self.path[len(PREFIX):].strip("/").split("/") if self.path.startswith(PREFIX) else []
        if parts == ["init", "error"]:
            env.init_error = (self.headers.get("Lambda-Runtime-Function-Error-Type"), body[:4000])
            return self._send(202, b'{"status":"OK"}')
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            inv = env.current
            if inv is None or inv.request_id != parts[1] or inv.done.is_set():
                return self._send(400, b'{"errorType":"InvalidRequestID"}')
            inv.body = body
            inv.kind = parts[2]
            inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            inv.done_at = time.monotonic()
            env.current = None
            inv.done.set()
            return self._send(202, b'{"status":"OK"}')
        return self._send(404, b'{"errorType":"NotFound"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    env: "Environment"


class Environment:
    """A function process driven through its own Runtime API server."""

    def __init__(self, name: str, cmd: list[str], base_env: dict[str, str], logdir: Path,
                 function_name: str, memory_mb: int, timeout_s: float, region: str, log):
        self.name, self.cmd, self.base_env, self.logdir = name, cmd, base_env, logdir
        self.function_name, self.memory_mb, self.timeout_s, self.region = function_name, memory_mb, timeout_s, region
        self.function_arn = f"arn:aws:lambda:{region}:000000000000:function:{function_name}"
        self.log = log
        self.pending: "queue.Queue[Invocation]" = queue.Queue()
        self.current: Invocation | None = None
        self.closing = threading.Event()
        self.init_error = None
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        # measurements
        self.init_ms: list[float] = []           # per (re)start: process start -> first GET /next
        self.peak_rss_mib: list[float] = []      # VmHWM per process generation
        self.cpu_s: list[float] = []
        self.restarts = 0
        self.invocations = 0
        self._started_at = 0.0
        self._first_next: threading.Event = threading.Event()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.env = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                         name=f"rtapi-{name}", daemon=True).start()

    # -- lifecycle ---------------------------------------------------------------------
    def on_next(self):
        if not self._first_next.is_set():
            self.init_ms.append((time.monotonic() - self._started_at) * 1000)
            self._first_next.set()

    def start(self, init_timeout: float = 30.0) -> None:
        self.generation += 1
        self.closing.clear()
        env = dict(self.base_env)
        env.update({
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.port}",
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"loadtest/[$LATEST]{self.name}-{self.generation}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
            "_HANDLER": "bootstrap",
            "LAMBDA_TASK_ROOT": str(Path(self.cmd[-1]).resolve().parent),
            "LAMBDA_RUNTIME_DIR": str(Path(self.cmd[-1]).resolve().parent),
            "TZ": ":UTC",
        })
        self._first_next.clear()
        self.init_error = None
        out = open(self.logdir / f"{self.name}.{self.generation}.stdout.log", "wb")
        err = open(self.logdir / f"{self.name}.{self.generation}.stderr.log", "wb")
        self._started_at = time.monotonic()
        self.proc = procs.start(self.cmd, name=self.name, env=env, stdout=out, stderr=err)
        ok = procs.wait_until(lambda: self._first_next.is_set() or self.proc.poll() is not None
                              or self.init_error is not None, init_timeout, 0.005)
        if not self._first_next.is_set():
            rc = self.proc.poll()
            detail = self.init_error or (f"exit code {rc}" if rc is not None else "timeout")
            self.stop()
            raise RuntimeError(f"{self.name}: init failed ({detail}); "
                               f"see {self.logdir}/{self.name}.{self.generation}.*.log")
        del ok

    def _collect(self):
        if self.proc is not None and self.proc.poll() is None:
            rss = procs.peak_rss_mib(self.proc.pid)
            cpu = procs.cpu_seconds(self.proc.pid)
            if rss is not None:
                self.peak_rss_mib.append(rss)
            if cpu is not None:
                self.cpu_s.append(cpu)

    def stop(self):
        self.closing.set()
        if self.proc is not None:
            self._collect()                       # VmHWM/CPU before the process goes away
            procs.stop(self.proc, grace=2.0)
            self.proc = None

    def close(self):
        self.stop()
        self.server.shutdown()
        self.server.server_close()

    def restart(self, reason: str):
        self.log(f"{self.name}: restarting the environment ({reason})")
        self.stop()
        self.restarts += 1
        # a fresh queue/state: anything left belongs to the dead process
        self.pending = queue.Queue()
        self.current = None
        self.closing.clear()
        self.start()

    # -- invoke ------------------------------------------------------------------------
    def invoke(self, event: dict) -> Invocation:
        """Synchronously invoke the function with `event`. On timeout or a crash the
        environment is replaced (as Lambda does) and the invocation counts as failed."""
        inv = Invocation(request_id=str(uuid.uuid4()), event=json.dumps(event).encode(), timeout_s=self.timeout_s)
        self.invocations += 1
        self.pending.put(inv)
        end = time.monotonic() + self.timeout_s + 1.0
        while not inv.done.wait(0.2):
            if self.proc is None or self.proc.poll() is not None:
                inv.kind, inv.done_at = "crash", time.monotonic()
                rc = self.proc.poll() if self.proc else None
                self.restart(f"process exited with {rc} during an invocation")
                return inv
            if time.monotonic() > end:
                inv.kind, inv.done_at = "timeout", time.monotonic()
                self.restart(f"invocation timed out after {self.timeout_s:.0f} s")
                return inv
        return inv

    def summary(self) -> dict:
        return {"name": self.name, "init_ms": [round(x, 1) for x in self.init_ms],
                "peak_rss_mib": max(self.peak_rss_mib) if self.peak_rss_mib else None,
                "cpu_s": round(sum(self.cpu_s), 3), "invocations": self.invocations,
                "restarts": self.restarts}
