"""End to end under `cargo lambda watch`, the Runtime API emulator Rust Lambda developers use
every day, invoked with `cargo lambda invoke --data-file` and the official event fixtures of the
`aws_lambda_events` crate (found with `cargo metadata`), against moto's S3 on 127.0.0.1.

`cargo lambda watch` builds and runs the function itself (`cargo run --bin renditions-lambda`,
the dev profile `cargo test` has already built), binds both its invoke API and its Runtime API to
127.0.0.1 here, and reads the function's variables from an env file. It sends
`Lambda-Runtime-Deadline-Ms: 600000` (a constant: ten minutes after 1970; upstream
cargo-lambda `crates/cargo-lambda-watch/src/runtime/functions_router.rs`), so the function must
treat that deadline as unknown (one WARN, `DEADLINE_FALLBACK_MS`) instead of failing every record
with "0 ms left": this test would fail without that.

Prerequisites (a clear skip otherwise; WATCH_REQUIRED=1, set by `make test-watch`, turns skips
into failures): cargo-lambda in the deploy venv (`make deploy-deps`), moto/boto3/Pillow
(`make py-deps`). Every wait is bounded; the watch process group started here is stopped by its
PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rie_test as shared  # noqa: E402  (the moto, fixture and image helpers)

ROOT = shared.ROOT
REQUIRED = os.environ.get("WATCH_REQUIRED") == "1"
FIRST_INVOKE_S = 900  # the first invoke waits for `cargo run` (a cold dev build is ~9 min here)
INVOKE_S = 60


def _skip(reason: str):
    if REQUIRED:
        pytest.fail(reason + " (WATCH_REQUIRED=1)")
    pytest.skip(reason)


class Watch(shared.MotoS3):
    """moto S3, and `cargo lambda watch` serving the function on 127.0.0.1."""

    def __init__(self, tmp: Path, cargo_lambda: Path):
        super().__init__(tmp)
        self.tmp, self.cargo_lambda = tmp, cargo_lambda
        self.port = shared._free_port()
        self.watch = None
        try:
            env_file = tmp / "function.env"
            env_file.write_text("".join(f"{k}={v}\n" for k, v in self.function_env().items()))
            self.log_path = tmp / "watch.log"
            path = f"{cargo_lambda.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
            self.watch = subprocess.Popen(
                [
                    str(cargo_lambda), "lambda", "watch",
                    "--invoke-address", "127.0.0.1",
                    "--invoke-port", str(self.port),
                    "--env-file", str(env_file),
                    "--ignore-changes",
                    "--quiet",
                ],
                cwd=ROOT,
                env={**os.environ, "PATH": path, "NO_COLOR": "1"},
                stdout=self.log_path.open("wb"),
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: cargo run and the function
            )
            shared._wait_port(self.port, self.watch, self.log_path)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.watch and self.watch.poll() is None:
            # The group we started (watch, the cargo run it spawned, the function), by its PID.
            try:
                os.killpg(self.watch.pid, signal.SIGTERM)
                self.watch.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.watch.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.watch.wait(timeout=10)
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def invoke(self, event: dict, timeout: float = INVOKE_S) -> dict:
        data = self.tmp / f"event-{time.monotonic_ns()}.json"
        data.write_text(json.dumps(event))
        out = subprocess.run(
            [
                str(self.cargo_lambda), "lambda", "invoke", "renditions-lambda",
                "--invoke-address", "127.0.0.1",
                "--invoke-port", str(self.port),
                "--data-file", str(data),
                "--output-format", "json",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, f"invoke failed: {out.stderr[-2000:]}\n{self.log()[-3000:]}"
        return json.loads(out.stdout)



@pytest.fixture(scope="module")
def watch(tmp_path_factory):
    cargo_lambda = Path(os.environ.get("CARGO_LAMBDA") or shared.DEPLOY_VENV / "bin/cargo-lambda")
    if not cargo_lambda.exists():
        _skip(f"no cargo-lambda at {cargo_lambda}: run `make deploy-deps`")
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as e:
        _skip(f"{e.name} missing: run `make py-deps`")
    w = Watch(tmp_path_factory.mktemp("watch"), cargo_lambda)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module")
def fixtures():
    return shared._fixtures_dir()


def test_watch_serves_the_official_fixtures(watch, fixtures):
    # S3 put (the first invoke also waits for `cargo run` to build and start the function).
    data = shared._jpeg(2400, 1600)
    key = "watch/Happy Face.jpg"
    ev = shared._s3_event(fixtures, "example-s3-event.json", key, watch.put(key, data), len(data))
    answer = watch.invoke(ev, timeout=FIRST_INVOKE_S)
    assert answer.get("rendered") == 1 and answer.get("trigger") == "s3", answer
    shared._assert_renditions(watch, key, (2400, 1600), "image/jpeg")

    # The made-up deadline was treated as unknown, once, with the reason in the log.
    log = watch.log()
    warnings = [line for line in log.splitlines() if "deadline before this process started" in line]
    assert len(warnings) == 1, log[-3000:]
    assert '"deadline_epoch_ms":600000' in warnings[0], warnings[0]

    # SQS wrapping S3 records: the good one renders, the missing one is reported for retry.
    sqs = shared._load(fixtures, "example-sqs-event.json")
    template = sqs["Records"][0]
    png = shared._sample("flower-alpha.png")
    key2 = "watch/fleur (1).png"
    ok = shared._s3_event(fixtures, "example-s3-event.json", key2, watch.put(key2, png), len(png))
    missing = shared._s3_event(fixtures, "example-s3-event.json", "watch/never.jpg", "0" * 32, 10)
    records = []
    for i, body in enumerate([ok, missing], start=1):
        r = dict(template)
        r["messageId"] = f"MessageID_{i}"
        r["body"] = json.dumps(body)
        records.append(r)
    sqs["Records"] = records
    answer = watch.invoke(sqs)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "MessageID_2"}]}, answer
    shared._assert_renditions(watch, key2, (520, 391), "image/png")

    # A stock fixture's made-up eTag: skipped (the object "changed since the event"), with a WARN
    # that says so.
    stock = shared._load(fixtures, "example-s3-event-with-decoded.json")
    stock["Records"][0]["s3"]["bucket"]["name"] = shared.SRC
    stock["Records"][0]["s3"]["object"].pop("versionId", None)
    stock["Records"][0]["s3"]["object"]["key"] = "watch/Happy+Face.jpg"
    answer = watch.invoke(stock)
    assert answer.get("skipped") == 1 and answer.get("rendered") == 0, answer
    assert any(
        '"level":"WARN"' in line and "watch/Happy Face.jpg" in line
        for line in watch.log().splitlines()
    ), watch.log()[-3000:]
