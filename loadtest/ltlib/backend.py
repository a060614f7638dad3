"""S3 + SQS emulators on 127.0.0.1: moto server or LocalStack (host mode, no Docker),
or a LocalStack the user already runs (LOCALSTACK_ENDPOINT)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from . import procs

HERE = Path(__file__).resolve().parent.parent          # loadtest/

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT of a previous run is fine
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def aws_env(endpoint: str, region: str) -> dict[str, str]:
    """Environment for AWS SDKs (ours and the function's): test credentials, the local
    endpoint, no shared config/credential files, no instance metadata, no proxies."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"))}
    env.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "S3_FORCE_PATH_STYLE": "true",
        "NO_PROXY": "127.0.0.1,localhost",
    })
    return env


def check_loopback(endpoint: str) -> None:
    host = urlparse(endpoint).hostname or ""
    if host not in LOOPBACK and not host.startswith("127."):
        raise SystemExit(f"refusing endpoint {endpoint!r}: the load test only talks to loopback addresses")


class Backend:
    kind = "?"
    endpoint = ""
    proc = None
    started_by_us = False

    def __init__(self, workdir: Path, log):
        self.workdir = workdir
        self.log = log

    def stop(self) -> None:
        if self.proc is not None:
            self.log(f"stopping {self.kind} (pid {self.proc.pid})")
            procs.stop(self.proc, grace=8.0)
            self.proc = None
            shutil.rmtree(self.workdir / "localstack-fs", ignore_errors=True)   # its temp object data

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + path, timeout=2) as r:
                r.read()
                return r.status < 500
        except urllib.error.HTTPError as e:
            return e.code < 500
        except OSError:
            return False

    def describe(self) -> dict:
        return {"kind": self.kind, "endpoint": self.endpoint, "started_by_loadtest": self.started_by_us}


class Moto(Backend):
    kind = "moto"

    def start(self, timeout: float = 60) -> None:
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        py = HERE / ".venv" / "bin" / "python"
        if not py.exists():
            py = Path(sys.executable)
        logf = open(self.workdir / "moto.log", "wb")
        self.proc = procs.start([str(py), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                name="moto", env=aws_env(self.endpoint, "us-east-1"), stdout=logf, stderr=logf)
        self.started_by_us = True
        self.log(f"moto server pid {self.proc.pid} on {self.endpoint}")
        if not procs.wait_until(lambda: self.proc.poll() is not None or self._http_ok("/moto-api/"), timeout, 0.2) \
                or self.proc.poll() is not None:
            raise RuntimeError(f"moto server did not start (see {self.workdir/'moto.log'})")


class LocalStack(Backend):
    kind = "localstack"

    def start(self, timeout: float = 180) -> None:
        ext = os.environ.get("LOCALSTACK_ENDPOINT")
        if ext:
            check_loopback(ext)
            self.endpoint = ext.rstrip("/")
            self.log(f"using the running LocalStack at {self.endpoint} (LOCALSTACK_ENDPOINT)")
            if not self._health():
                raise RuntimeError(f"LOCALSTACK_ENDPOINT={ext} does not answer /_localstack/health")
            return
        py = HERE / ".venv-localstack" / "bin" / "python"
        if not py.exists():
            raise RuntimeError("loadtest/.venv-localstack missing: run `bash loadtest/setup.sh localstack`")
        port = 4566 if port_free(4566) else free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        root = self.workdir / "localstack-fs"
        root.mkdir(parents=True, exist_ok=True)
        env = aws_env(self.endpoint, "us-east-1")
        for k in list(env):                       # a user's LocalStack settings must not leak in
            if k.startswith(("LOCALSTACK_", "GATEWAY_", "EDGE_", "DOCKER_")):
                env.pop(k)
        env.update({
            "OVERRIDE_IN_DOCKER": "0", "FILESYSTEM_ROOT": str(root), "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": f"127.0.0.1:{port}", "DNS_ADDRESS": "0", "DISABLE_EVENTS": "1",
            "SERVICES": "s3,sqs", "SKIP_SSL_CERT_DOWNLOAD": "1", "SKIP_INFRA_DOWNLOADS": "1",
            "LOCALSTACK_HOST": f"127.0.0.1:{port}", "SQS_ENDPOINT_STRATEGY": "path",
        })
        env.pop("AWS_ENDPOINT_URL", None)
        logf = open(self.workdir / "localstack.log", "wb")
        self.proc = procs.start([str(py), "-m", "localstack.runtime.main"], name="localstack",
                                env=env, stdout=logf, stderr=logf, cwd=str(self.workdir))
        self.started_by_us = True
        self.log(f"LocalStack pid {self.proc.pid} on {self.endpoint} (starting, up to {timeout:.0f} s)")
        ok = procs.wait_until(lambda: self.proc.poll() is not None or self._health(), timeout, 0.5)
        if not ok or self.proc.poll() is not None:
            raise RuntimeError(f"LocalStack did not become ready (see {self.workdir/'localstack.log'})")

    def _health(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/_localstack/health", timeout=2) as r:
                services = json.loads(r.read()).get("services", {})
            return all(services.get(s) in ("available", "running") for s in ("s3", "sqs"))
        except (OSError, ValueError):
            return False


def make(kind: str, workdir: Path, log) -> Backend:
    return {"moto": Moto, "localstack": LocalStack}[kind](workdir, log)
