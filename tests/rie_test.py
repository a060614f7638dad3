"""End to end under AWS's own Lambda Runtime Interface Emulator (RIE), with the release
bootstrap that users deploy.

What runs:
- the x86_64 `bootstrap` from `make build-x86_64` (`cargo lambda build --release --x86-64
  --output-format zip`), unzipped from the very zip that would be uploaded;
- `aws-lambda-rie-x86_64` from the aws-sam-cli wheel (`make deploy-deps`), bound to 127.0.0.1
  only, which starts the bootstrap, serves it the Runtime API with real deadlines and prints
  Lambda's START/END/REPORT lines;
- moto's S3 server on 127.0.0.1 as the buckets.

Events are the official fixtures of the `aws_lambda_events` crate, read from its source folder
(found with `cargo metadata`), with bucket/key/eTag/size rewritten to objects uploaded here (the
function reads with If-Match on the event's eTag, so the fixture's made-up eTag would make it
skip). Then every hostile input of tests/hostile.rs goes through the same process: it must
survive them all (same runtime PID before and after, no runtime exit in the RIE log), reject
the bad ones with a report under `_rejected/`, and still render a good image afterwards.

Prerequisites (a clear skip otherwise; RIE_REQUIRED=1, set by `make test-rie`, turns the skips
into failures):
- RIE_BOOTSTRAP: the bootstrap or its zip (default target/lambda/x86_64/renditions-lambda/bootstrap.zip).
  An aarch64 bootstrap (`make test-rie-arm64`: the zip of `make build-arm64`, the binary `sam build`
  packs) runs under qemu-user (qemu-aarch64-static, with the glibc of libc6-arm64-cross in
  QEMU_LD_PREFIX, default /usr/aarch64-linux-gnu), the emulator itself natively;
- RIE_BIN: the emulator (default: found in the deploy venv, ~/.cache/renditions/deploy);
- HOSTILE_INPUTS: a folder written by tests/hostile.rs with HOSTILE_DUMP (default
  target/hostile-inputs; made with `cargo test --test hostile` when missing).
Every wait is bounded; every process started here is stopped by its PID.
"""

from __future__ import annotations

import copy
import glob
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = ROOT / "target/lambda/x86_64/renditions-lambda/bootstrap.zip"
DEPLOY_VENV = Path(
    os.environ.get("DEPLOY_VENV")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "renditions/deploy"
)
REQUIRED = os.environ.get("RIE_REQUIRED") == "1"

SRC = "sourcebucket"  # the bucket name of the crate's S3 fixtures, kept as is
DEST = "renditions"
# Default renditions (the function runs with its defaults): fit inside these squares.
RENDITIONS = {"large": 1600, "medium": 800, "thumb": 320}
# The working-memory budget of tests/hostile.rs is 96 MiB; the function derives its budget from
# the memory size: 242 MB - 96 MB reserve - 50 MiB input cap = 96 MiB, so outcomes match.
MEMORY_MB = "242"

WAIT_S = 20  # any start-up wait
INVOKE_TIMEOUT_S = 60  # one invocation


def _skip(reason: str):
    if REQUIRED:
        pytest.fail(reason + " (RIE_REQUIRED=1)")
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------------
# Locating things.


def _find_rie() -> Path | None:
    if os.environ.get("RIE_BIN"):
        return Path(os.environ["RIE_BIN"])
    pattern = str(DEPLOY_VENV / "lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")
    found = sorted(glob.glob(pattern))
    if found:
        return Path(found[-1])
    try:
        import importlib.util

        spec = importlib.util.find_spec("samcli")
        if spec and spec.submodule_search_locations:
            p = Path(list(spec.submodule_search_locations)[0]) / "local/rapid/aws-lambda-rie-x86_64"
            if p.exists():
                return p
    except (ImportError, ValueError):
        pass
    return None


def _fixtures_dir() -> Path:
    """`src/fixtures` of the aws_lambda_events crate this project resolves (cargo metadata)."""
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    meta = json.loads(out.stdout)
    for p in meta["packages"]:
        if p["name"] == "aws_lambda_events":
            d = Path(p["manifest_path"]).parent / "src/fixtures"
            assert d.is_dir(), f"{d} missing"
            return d
    raise AssertionError("aws_lambda_events is not in cargo metadata")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    until = time.monotonic() + WAIT_S
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before listening:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {WAIT_S}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc/*/stat)."""
    kids: list[int] = []
    for f in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(f).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(f.split("/")[2]))
    return sorted(kids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# ---------------------------------------------------------------------------------------------
# The environment: moto S3, the RIE running the bootstrap.


class MotoS3:
    """moto's S3 server on 127.0.0.1 with the SRC and DEST buckets (stopped by PID in `stop`)."""

    def __init__(self, tmp: Path):
        import boto3

        tmp.mkdir(parents=True, exist_ok=True)
        self.s3_port = _free_port()
        self.moto_log = tmp / "moto.log"
        self.moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)],
            stdout=self.moto_log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            _wait_port(self.s3_port, self.moto, self.moto_log)
            self.endpoint = f"http://127.0.0.1:{self.s3_port}"
            self.s3 = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
            for b in (SRC, DEST):
                self.s3.create_bucket(Bucket=b)
        except BaseException:
            _stop(self.moto)
            raise

    def stop(self) -> None:
        _stop(self.moto)

    def function_env(self) -> dict[str, str]:
        """The function's variables for this S3: endpoint, fake credentials, buckets, JSON logs."""
        return {
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            "S3_FORCE_PATH_STYLE": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "DEST_BUCKET": DEST,
            "SOURCE_BUCKETS": SRC,
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "RUST_LOG": "info",
        }

    def put(self, key: str, data: bytes) -> str:
        """Uploads; the real ETag (unquoted), as S3 puts it in the event."""
        return self.s3.put_object(Bucket=SRC, Key=key, Body=data)["ETag"].strip('"')

    def get(self, key: str) -> tuple[bytes, str]:
        out = self.s3.get_object(Bucket=DEST, Key=key)
        return out["Body"].read(), out.get("ContentType", "")


class Env(MotoS3):
    def __init__(self, tmp: Path, bootstrap: Path, rie: Path, extra_env: dict | None = None):
        super().__init__(tmp)
        self.tmp = tmp
        self.rie_port, self.api_port = _free_port(), _free_port()
        self.rie = None
        try:
            env = {
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp),
                # The RIE passes its environment on to the runtime and sets the AWS_LAMBDA_*
                # variables itself (function name, memory size from this one, runtime API).
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": MEMORY_MB,
                "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
                **self.function_env(),
                **(extra_env or {}),
            }
            self.rie_log = tmp / "rie.log"
            self.rie = subprocess.Popen(
                [
                    str(rie),
                    # Both addresses on loopback: the emulator's default is 0.0.0.0:8080.
                    "--runtime-interface-emulator-address",
                    f"127.0.0.1:{self.rie_port}",
                    "--runtime-api-address",
                    f"127.0.0.1:{self.api_port}",
                    str(bootstrap),
                ],
                cwd=tmp,
                env=env,
                stdout=self.rie_log.open("wb"),
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            _wait_port(self.rie_port, self.rie, self.rie_log)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        runtimes = _children(self.rie.pid) if self.rie else []
        if self.rie:
            _stop(self.rie)
        for pid in runtimes:  # the RIE stops its runtime; make sure, by PID
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        _stop(self.moto)

    def runtime_pids(self) -> list[int]:
        return [p for p in _children(self.rie.pid) if _alive(p)]

    def log(self) -> str:
        return self.rie_log.read_text(errors="replace")

    def invoke(self, event: dict, headers: dict | None = None) -> dict:
        url = f"http://127.0.0.1:{self.rie_port}/2015-03-31/functions/function/invocations"
        req = urllib.request.Request(
            url, data=json.dumps(event).encode(), method="POST", headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=INVOKE_TIMEOUT_S) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:  # the RIE answers function errors with 200 too
            body = e.read()
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON: {body[:500]!r}\n{self.log()[-3000:]}")

    def keys(self) -> list[str]:
        keys, token = [], None
        for _ in range(100):
            kw = {"Bucket": DEST, **({"ContinuationToken": token} if token else {})}
            out = self.s3.list_objects_v2(**kw)
            keys += [o["Key"] for o in out.get("Contents", [])]
            token = out.get("NextContinuationToken")
            if not token:
                break
        return sorted(keys)



@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """(scratch folder, bootstrap to run, RIE binary), or a skip saying what is missing."""
    if platform.machine() not in ("x86_64", "AMD64"):
        _skip(f"the RIE test runs the x86_64 bootstrap; this machine is {platform.machine()}")
    source = Path(os.environ.get("RIE_BOOTSTRAP") or DEFAULT_ZIP)
    if not source.exists():
        _skip(
            f"no cargo-lambda bootstrap at {source}: run `make build-x86_64` first "
            "(cold: ~8 min on 2 cores) or `make test-rie`"
        )
    rie = _find_rie()
    if rie is None or not rie.exists():
        _skip("no aws-lambda-rie-x86_64 (aws-sam-cli): run `make deploy-deps` or set RIE_BIN")
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as e:
        _skip(f"{e.name} missing: run `make py-deps`")
    tmp = tmp_path_factory.mktemp("rie")
    bootstrap = tmp / "bootstrap"
    if source.suffix == ".zip":
        with zipfile.ZipFile(source) as z:
            assert z.namelist() == ["bootstrap"], z.namelist()
            info = z.getinfo("bootstrap")
            assert (info.external_attr >> 16) & 0o111, "bootstrap is not executable in the zip"
            bootstrap.write_bytes(z.read("bootstrap"))
    else:
        shutil.copyfile(source, bootstrap)
    bootstrap.chmod(0o755)
    machine = int.from_bytes(bootstrap.read_bytes()[18:20], "little")  # ELF e_machine
    if machine == 183:  # EM_AARCH64: under qemu-user, through a wrapper the RIE execs
        qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
        sysroot = Path(os.environ.get("QEMU_LD_PREFIX") or "/usr/aarch64-linux-gnu")
        if platform.machine() != "aarch64":
            if not qemu or not (sysroot / "lib/ld-linux-aarch64.so.1").exists():
                _skip(
                    "an aarch64 bootstrap needs qemu-user and an aarch64 glibc: "
                    "apt-get install qemu-user-static libc6-arm64-cross"
                )
            wrapper = tmp / "bootstrap-qemu"
            wrapper.write_text(f'#!/bin/sh\nexec "{qemu}" -L "{sysroot}" "{bootstrap}" "$@"\n')
            wrapper.chmod(0o755)
            bootstrap = wrapper
    elif machine != 62:  # EM_X86_64
        pytest.fail(f"{source}: not an x86_64 or aarch64 ELF (e_machine {machine})")
    return tmp, bootstrap, rie


@pytest.fixture(scope="module")
def env(runtime):
    tmp, bootstrap, rie = runtime
    e = Env(tmp / "default", bootstrap, rie)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture(scope="module")
def fixtures():
    return _fixtures_dir()


def _load(fixtures: Path, name: str) -> dict:
    return json.loads((fixtures / name).read_text())


# ---------------------------------------------------------------------------------------------
# Images and sizes.


def _jpeg(w: int, h: int) -> bytes:
    from PIL import Image

    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def _fit(w: int, h: int, side: int) -> tuple[int, int]:
    s = min(1.0, side / max(w, h))
    return round(w * s), round(h * s)


def _assert_renditions(env: Env, key: str, display: tuple[int, int], content_type: str) -> None:
    from PIL import Image

    for name, side in RENDITIONS.items():
        data, ct = env.get(f"{name}/{key}")
        assert ct == content_type, (name, key, ct)
        got = Image.open(io.BytesIO(data)).size
        want = _fit(*display, side)
        assert max(got) == max(want) and abs(got[0] - want[0]) + abs(got[1] - want[1]) <= 1, (
            f"{name}/{key}: {got}, expected {want} (fit {display} inside {side})"
        )


def _sample(name: str) -> bytes:
    return (ROOT / "assets/samples" / name).read_bytes()


def _s3_event(fixtures: Path, fixture: str, key: str, etag: str, size: int) -> dict:
    """The crate's S3 put fixture with bucket/key/eTag/size of a real object."""
    ev = _load(fixtures, fixture)
    rec = ev["Records"][0]
    rec["s3"]["bucket"]["name"] = SRC
    obj = rec["s3"]["object"]
    obj["key"] = urllib.parse.quote_plus(key, safe="/")  # S3's form-style encoding
    obj["eTag"], obj["size"] = etag, size
    obj.pop("versionId", None)  # unversioned bucket here
    obj.pop("urlDecodedKey", None)
    return ev


# ---------------------------------------------------------------------------------------------
# The official fixtures.


def test_s3_put_fixture_renders_every_rendition(env, fixtures):
    ev = _load(fixtures, "example-s3-event.json")
    obj = ev["Records"][0]["s3"]["object"]
    # Keep the fixture's own bucket and key ("Happy%20Face.jpg"): upload an object there.
    assert ev["Records"][0]["s3"]["bucket"]["name"] == SRC
    key = urllib.parse.unquote_plus(obj["key"])
    data = _jpeg(3000, 2000)
    obj["eTag"], obj["size"] = env.put(key, data), len(data)
    obj.pop("versionId", None)
    answer = env.invoke(ev)
    assert answer.get("rendered") == 1 and answer.get("trigger") == "s3", answer
    _assert_renditions(env, key, (3000, 2000), "image/jpeg")

    # The made-up eTag of the stock fixture: the object "changed since the event", so the
    # function skips it (If-Match) and writes nothing new.
    stock = _load(fixtures, "example-s3-event-with-decoded.json")
    stock["Records"][0]["s3"]["object"].pop("versionId", None)
    before = env.keys()
    answer = env.invoke(stock)
    assert answer.get("skipped") == 1 and answer.get("rendered") == 0, answer
    assert env.keys() == before


def test_sqs_fixture_wrapping_s3_events(env, fixtures):
    sqs = _load(fixtures, "example-sqs-event.json")
    template = sqs["Records"][0]
    png = _sample("flower-alpha.png")
    key = "sqs/fleur café (1).png"
    ok = _s3_event(fixtures, "example-s3-event.json", key, env.put(key, png), len(png))
    missing = _s3_event(fixtures, "example-s3-event.json", "sqs/never-uploaded.jpg", "0" * 32, 10)
    records = []
    for i, body in enumerate([ok, missing], start=1):
        r = copy.deepcopy(template)
        r["messageId"] = f"MessageID_{i}"
        r["body"] = json.dumps(body)
        records.append(r)
    sqs["Records"] = records
    answer = env.invoke(sqs)
    # The missing object is retryable: only its message is reported back to SQS.
    assert answer == {"batchItemFailures": [{"itemIdentifier": "MessageID_2"}]}, answer
    _assert_renditions(env, key, (520, 391), "image/png")  # real transparency stays PNG


def test_eventbridge_object_created(env, fixtures):
    # The crate's only EventBridge fixture is an EC2 event: keep its envelope, make it S3's
    # "Object Created" (the shape S3 sends to EventBridge).
    ev = _load(fixtures, "example-eventbridge-event-obj.json")
    jpg = _sample("dune-exif-rotated.jpg")  # stored 875x1400, EXIF orientation 6
    key = "eventbridge/IMG 0001.JPG"
    etag = env.put(key, jpg)
    ev.update(
        {
            "source": "aws.s3",
            "detail-type": "Object Created",
            "resources": [f"arn:aws:s3:::{SRC}"],
            "detail": {
                "version": "0",
                "bucket": {"name": SRC},
                "object": {"key": key, "size": len(jpg), "etag": etag, "sequencer": "617f08299329d189"},
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "127.0.0.1",
                "reason": "PutObject",
            },
        }
    )
    answer = env.invoke(ev)
    assert answer.get("trigger") == "eventbridge" and answer.get("rendered") == 1, answer
    _assert_renditions(env, key, (1400, 875), "image/jpeg")

    # The stock EC2 fixture itself is acknowledged and ignored.
    answer = env.invoke(_load(fixtures, "example-eventbridge-event-obj.json"))
    assert answer.get("ignored") == 1 and answer.get("rendered") == 0, answer


# ---------------------------------------------------------------------------------------------
# Hostile inputs through the real process.

# Expected outcome per input of tests/hostile.rs, by its dump name (HOSTILE_DUMP writes
# `NN-<name with [^A-Za-z0-9.-] as _>`): "ok", ("ok", (w, h)) or a rejection kind.
HOSTILE = {
    "chelsea.jpg__baseline_4_2_0_": ("ok", (451, 300)),
    "chelsea-progressive.jpg": "ok",
    "chelsea-cmyk.jpg__Adobe_CMYK_": "ok",
    "rocket-icc.jpg__ICC_profile_": "ok",
    "chelsea.png": "ok",
    "chelsea.webp": "ok",
    "chelsea-tiff.jpg__TIFF_named_.jpg_": "ok",
    "chelsea-interlaced.gif": "ok",
    "interlaced.png__Adam7_": "ok",
    "chelsea-animated.gif": "ok",
    "chelsea-animated.webp": "ok",
    "chelsea-animated.png__APNG_": "ok",
    "16-bit_RGB_PNG": "ok",
    "16-bit_gray_alpha_PNG": "ok",
    "16-bit_RGB_TIFF": "ok",
    "zero_bytes": "empty",
    "text_named_.jpg": "unsupported",
    "HTML_named_.jpg": "unsupported",
    "JPEG_magic_only": "truncated",
    "chelsea.jpg_cut_at_10_": "truncated",
    "chelsea.jpg_cut_at_50_": "truncated",
    "chelsea.jpg_cut_at_90_": "truncated",
    "chelsea.png_cut_at_10_": "truncated",
    "chelsea.png_cut_at_50_": "truncated",
    "chelsea.png_cut_at_90_": "truncated",
    "chelsea.webp_cut_at_10_": "truncated",
    "chelsea.webp_cut_at_50_": "truncated",
    "chelsea.webp_cut_at_90_": "truncated",
    "JPEG_with_corrupt_entropy_data": "corrupt",
    "PNG_with_a_bad_zlib_stream": "corrupt",
    "JPEG_declaring_65500x65500": "too-large",
    "PNG_declaring_1000000x1000000": "too-large",
    "PNG_1000000x1000000_header__no_IDAT": "corrupt",
    "GIF_screen_65535x65535__1x1_frame": "too-large",
    "GIF_screen_10000x10000__1x1_frame": "too-large",
    "WebP_declaring_16384x16384": "too-large",
    "animated_WebP__10000x10000_canvas": "too-large",
    "PNG_bomb_20000x20000_gray__400_MP_": "too-large",
    "PNG_bomb_9000x9000_gray__81_MP_": "too-large",
    "PNG_bomb_3000x3000_gray__9_MP_": "ok",
    "GIF_bomb_9000x9000__81_MP_": "too-large",
    "GIF_bomb_3000x3000__9_MP_": "ok",
    "progressive_JPEG_with_5000_scans": "corrupt",
    "EXIF_IFD_pointing_to_itself": "ok",
    "EXIF_with_bad_IFD_offsets": "ok",
    "EXIF_64_KB_with_an_absurd_entry_count": "ok",
    "60_APP2_ICC_chunks_of_garbage__3.9_MB_": "ok",
    "ICC_profile_with_2_32-1_tags": "ok",
    "ICC_chunk_1_of_255_only": "ok",
    "60_XMP_APP1_segments__3.9_MB_": "ok",
    "UltraHDR_MPF__primary___gain_map_after_EOI": ("ok", (451, 300)),
}


def _hostile_inputs(tmp: Path) -> dict[str, bytes]:
    """name → bytes of every input of tests/hostile.rs (its HOSTILE_DUMP)."""
    folder = Path(os.environ.get("HOSTILE_INPUTS") or ROOT / "target/hostile-inputs")
    if not any(folder.glob("[0-9][0-9]-*")):
        folder = tmp / "hostile-inputs"
        cmd = [
            "cargo", "test", "--locked", "--test", "hostile", "--",
            "--exact", "hostile_inputs_are_rendered_or_rejected_within_limits",
        ]
        out = subprocess.run(
            cmd, cwd=ROOT, env={**os.environ, "HOSTILE_DUMP": str(folder)},
            capture_output=True, text=True, timeout=3600,
        )
        assert out.returncode == 0 and any(folder.glob("[0-9][0-9]-*")), (
            f"{' '.join(cmd)} with HOSTILE_DUMP failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        )
    inputs = {}
    for f in sorted(folder.glob("[0-9][0-9]-*")):
        inputs[f.name.split("-", 1)[1]] = f.read_bytes()
    return inputs


def test_hostile_inputs_never_kill_the_runtime(env, fixtures, tmp_path):
    inputs = _hostile_inputs(tmp_path)
    unknown = sorted(set(inputs) - set(HOSTILE))
    assert not unknown, f"tests/hostile.rs has inputs this table lacks (add them to HOSTILE): {unknown}"
    missing = sorted(set(HOSTILE) - set(inputs))
    assert not missing, f"inputs gone from tests/hostile.rs (remove them from HOSTILE): {missing}"

    # Warm the runtime up so it has a PID to compare against.
    good = _jpeg(1000, 750)
    key = "hostile/_before.jpg"
    assert env.invoke(_s3_event(fixtures, "example-s3-event.json", key, env.put(key, good), len(good)))[
        "rendered"
    ] == 1
    pids = env.runtime_pids()
    assert len(pids) == 1, f"runtime processes under the RIE: {pids}"
    log_start = len(env.log())

    from PIL import Image

    failures, rows = [], []
    for name, data in inputs.items():
        key = f"hostile/{name}"
        ev = _s3_event(fixtures, "example-s3-event.json", key, env.put(key, data), len(data))
        t0 = time.monotonic()
        answer = env.invoke(ev)
        ms = (time.monotonic() - t0) * 1000
        expect = HOSTILE[name]
        if "errorType" in answer or answer.get("internal") or answer.get("failed"):
            outcome = f"error {answer}"
        elif answer.get("rendered") == 1:
            sizes = {}
            for r in RENDITIONS:
                data_out, _ = env.get(f"{r}/{key}")
                sizes[r] = Image.open(io.BytesIO(data_out)).size
            outcome = f"ok {sizes['large'][0]}x{sizes['large'][1]}"
            for r, side in RENDITIONS.items():
                if max(sizes[r]) > side:
                    failures.append(f"{name}: {r} is {sizes[r]}, over {side}")
        elif answer.get("rejected") == 1:
            report = json.loads(env.get(f"_rejected/{key}.json")[0])
            outcome = f"err {report['kind']} {report['reason']}"
        else:
            outcome = f"? {answer}"
        rows.append(f"{name:<46} {len(data):>9} {ms:>8.0f}  {outcome[:90]}")
        if isinstance(expect, tuple):
            ok = outcome == f"ok {expect[1][0]}x{expect[1][1]}"
        elif expect == "ok":
            ok = outcome.startswith("ok ")
        else:
            ok = outcome.startswith(f"err {expect} ")
        if not ok:
            failures.append(f"{name}: expected {expect}, got {outcome}")
        if not env.runtime_pids() == pids:
            failures.append(f"{name}: the runtime process changed: {pids} -> {env.runtime_pids()}")
            pids = env.runtime_pids()
    print(f"\n{'input':<46} {'bytes':>9} {'ms':>8}  outcome (bootstrap under the RIE)")
    print("\n".join(rows))

    # Still the same process, still rendering.
    key = "hostile/_after.jpg"
    answer = env.invoke(_s3_event(fixtures, "example-s3-event.json", key, env.put(key, good), len(good)))
    assert answer.get("rendered") == 1, answer
    _assert_renditions(env, key, (1000, 750), "image/jpeg")
    assert env.rie.poll() is None, "the RIE exited"
    log = env.log()[log_start:]
    for needle in ("Runtime exited", "signal: aborted", "RuntimeExitError", "INIT START"):
        if needle in log:
            failures.append(f"RIE log after warm-up has {needle!r}: the runtime died and was restarted")
    assert not failures, "\n".join(failures) + "\n\nRIE log tail:\n" + log[-4000:]
    rejected = [k for k in env.keys() if k.startswith("_rejected/hostile/")]
    assert len(rejected) == sum(1 for e in HOSTILE.values() if isinstance(e, str) and e != "ok")
    assert re.search(r"REPORT RequestId: \S+\s+Duration: ", log), "no REPORT lines from the RIE"


# ---------------------------------------------------------------------------------------------
# TRACES=otlp: the same bootstrap exports its spans to an OTLP/HTTP receiver on 127.0.0.1, and
# every request body parses as OpenTelemetry's own ExportTraceServiceRequest (opentelemetry-proto).


class Collector:
    """An OTLP/HTTP receiver on 127.0.0.1 keeping each POST's path, headers and body."""

    def __init__(self):
        import http.server
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _parse_otlp_json(body: bytes):
    """Parses an OTLP/JSON body with opentelemetry-proto. OTLP/JSON differs from protobuf's
    canonical JSON only in ids (hex, not base64), so those are converted first; anything else
    off-schema (unknown fields, wrong types, bad enums) fails the parse."""
    import base64

    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    doc = json.loads(body)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in span:
                        span[k] = base64.b64encode(bytes.fromhex(span[k])).decode()
    return json_format.Parse(json.dumps(doc), ExportTraceServiceRequest())


@pytest.fixture(scope="module")
def otlp_env(runtime):
    try:
        import opentelemetry.proto  # noqa: F401
    except ImportError:
        _skip("opentelemetry-proto missing: run `make py-deps`")
    tmp, bootstrap, rie = runtime
    collector = Collector()
    e = Env(
        tmp / "otlp",
        bootstrap,
        rie,
        {"TRACES": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "rie-otlp"},
    )
    try:
        yield e, collector
    finally:
        e.close()
        collector.close()


def test_otlp_spans_parse_as_opentelemetry_protobuf(otlp_env, fixtures):
    env, collector = otlp_env
    data = _jpeg(1200, 900)
    key = "otlp/traced.jpg"
    ev = _s3_event(fixtures, "example-s3-event.json", key, env.put(key, data), len(data))
    before = int(time.time())
    answer = env.invoke(ev)
    assert answer.get("rendered") == 1, answer
    # Flushed before the answer: the request is already here.
    assert len(collector.received) == 1, collector.received
    path, headers, body = collector.received[0]
    headers = {k.lower(): v for k, v in headers.items()}
    assert path == "/v1/traces"
    assert headers.get("content-type") == "application/json"
    assert headers.get("user-agent", "").startswith("renditions/"), headers
    request = _parse_otlp_json(body)
    [rs] = request.resource_spans
    resource = {a.key: a.value.string_value for a in rs.resource.attributes}
    assert resource["service.name"] == "rie-otlp"
    assert resource["cloud.platform"] == "aws_lambda"
    spans = [s for ss in rs.scope_spans for s in ss.spans]
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans) >= 10, [s.name for s in spans]
    # The RIE hands out no trace header (no X-Ray here): the invocation is a trace of its own,
    # in X-Ray's id format (epoch seconds first), with the object span as its root.
    [trace_id] = {s.trace_id.hex() for s in spans}
    assert before <= int(trace_id[:8], 16) <= before + 60, trace_id
    [obj] = [s for s in spans if s.name == "object"]
    assert obj.parent_span_id == b"", obj
    assert obj.kind == obj.SPAN_KIND_INTERNAL
    for s in spans:
        assert s is obj or s.parent_span_id in by_id, s
        assert s.end_time_unix_nano >= s.start_time_unix_nano > 1_600_000_000 * 10**9
    names = sorted({s.name for s in spans})
    for stage in ("download", "decode", "colour", "resize", "orient", "watermark", "encode", "upload", "S3"):
        assert stage in names, names
    calls = [s for s in spans if s.name == "S3"]
    methods = sorted({a.value.string_value for s in calls for a in s.attributes if a.key == "rpc.method"})
    assert methods == ["GetObject", "PutObject"], methods
    assert all(s.kind == s.SPAN_KIND_CLIENT for s in calls)
    assert all(s.status.code != s.status.STATUS_CODE_ERROR for s in spans), [
        (s.name, s.status) for s in spans if s.status.code
    ]
