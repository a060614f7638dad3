"""The upload set: real photos (downscaled once into a cache), repo-local fixtures, and a
few bad files that must be rejected; plus the concurrent, rate-limited uploader."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"}
# Default profile "mixed": every photo at these sizes (megapixels), when smaller than the
# original. 1-12 MP covers web uploads up to phone-camera photos and keeps N=1000 to a few
# minutes per ENVS step on 2 cores. Profile "full" uploads the 20 originals (0.2-6.7 MB,
# 2.6-24 MP) as they are: a heavier, camera-original profile.
PROFILES = {"mixed": (1, 2, 4, 8, 12), "full": None}


@dataclass
class Source:
    path: Path
    kind: str              # jpeg-baseline | jpeg-progressive | png-alpha | png | webp | bad-*
    megapixels: float
    expect: str            # "rendered" | "rejected"
    origin: Path | None = None   # the photo a downscaled variant is made from


@dataclass
class Upload:
    key: str
    source: Source
    put_started: float = 0.0
    put_done: float = 0.0   # wall clock: the object exists in S3 from here on
    error: str | None = None


def _kind_of(im, path: Path) -> str:
    fmt = (im.format or "").upper()
    if fmt in ("JPEG", "MPO"):
        return "jpeg-progressive" if im.info.get("progressive") or im.info.get("progression") else "jpeg-baseline"
    if fmt == "PNG":
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            alpha = im.getchannel("A") if "A" in im.getbands() else None
            if alpha is None or alpha.getextrema()[0] < 255:
                return "png-alpha"
        return "png"
    if fmt == "WEBP":
        return "webp"
    return fmt.lower() or path.suffix.lstrip(".")


def _downscale(args) -> list[str]:
    """All variants of one photo from a single decode, each written to `.tmp` and renamed,
    so an interrupted run leaves no half-written variant."""
    src, jobs = args
    from PIL import Image, JpegImagePlugin
    t0 = time.time()
    with Image.open(src) as im:
        w, h = im.size
        fmt, info = im.format, dict(im.info)
        sampling = JpegImagePlugin.get_sampling(im) if fmt == "JPEG" else None
        progressive = bool(info.get("progressive") or info.get("progression"))
        todo = []
        for dst, mp in jobs:
            scale = (mp * 1e6 / (w * h)) ** 0.5
            if scale < 0.98:
                todo.append((Path(dst), (max(1, round(w * scale)), max(1, round(h * scale)))))
        if not todo:
            return []
        biggest = max(sz for _, sz in todo)
        if fmt == "JPEG":
            im.draft(im.mode, biggest)         # DCT-domain shrink on load: fast
        base = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P", "PA") and fmt != "JPEG" else im.mode)
    kw = {}
    if info.get("icc_profile"):
        kw["icc_profile"] = info["icc_profile"]
    if info.get("exif"):
        kw["exif"] = info["exif"]              # keeps EXIF Orientation (p15 stays orientation 6)
    written = []
    for dst, size in sorted(todo, key=lambda t: -t[1][0]):
        out = base.resize(size, Image.LANCZOS, reducing_gap=3.0)
        tmp = dst.with_suffix(dst.suffix + ".tmp")
        if fmt == "JPEG":
            out.save(tmp, "JPEG", quality=90, progressive=progressive,
                     subsampling=sampling if sampling in (0, 1, 2) else 2, **kw)
        elif fmt == "PNG":
            out.save(tmp, "PNG", compress_level=3, **kw)
        elif fmt == "WEBP":
            out.save(tmp, "WEBP", quality=85, method=2, **kw)
        else:
            continue
        os.replace(tmp, dst)
        written.append(str(dst))
        base = out                             # next (smaller) variant from this one
    del t0
    return written


def list_photos(photos: Path) -> list[Path]:
    """The image files (by extension) directly in `photos`; [] when it is not a directory."""
    if not photos.is_dir():
        return []
    return sorted(p for p in photos.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT)


# Images made with Pillow for the repository-only workload, for what assets/samples lacks:
# an opaque PNG (kind "png") and a 6 MP JPEG, big enough for the "mixed" profile to make its
# 1, 2 and 4 MP variants (the samples are 0.2-1.6 MP). Deterministic content (gradients, a
# Mandelbrot, shapes): the same bytes on every run, so the downscaling cache stays valid.
GENERATED = {"generated-opaque.png": (1280, 853), "generated-6mp.jpg": (3000, 2000)}


def _generate(dst: Path, size: tuple[int, int]) -> None:
    from PIL import Image, ImageDraw
    w, h = size
    r = Image.effect_mandelbrot((w, h), (-2.2, -1.2, 0.8, 1.2), 60)
    g = Image.linear_gradient("L").resize((w, h))
    b = Image.radial_gradient("L").resize((w, h))
    im = Image.merge("RGB", (r, g, b))
    draw = ImageDraw.Draw(im)
    for i in range(12):                          # some edges and flat areas for the resampler
        x, y = (i * 7919) % w, (i * 104729) % h
        rad = max(8, min(w, h) // (4 + i))
        draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=((40 * i) % 256, 255 - 20 * i, (90 * i) % 256))
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    if dst.suffix == ".png":
        im.save(tmp, "PNG", compress_level=6)
    else:
        im.save(tmp, "JPEG", quality=90, subsampling=2)
    os.replace(tmp, dst)


def stage_repo_samples(samples: Path, dest: Path, log) -> Path:
    """The photo folder used when there is no corpus (`run.py --fallback-to-samples`): the
    repository's sample photos in `samples` (assets/samples: baseline JPEG, progressive JPEG with
    EXIF orientation 6, lossy WebP, PNG with alpha) that Pillow opens, copied into `dest`, plus the
    GENERATED images, written there once. Files that are not images (assets/samples/not-a-photo.jpg)
    are left out: the run makes its own bad files."""
    from PIL import Image, UnidentifiedImageError
    dest.mkdir(parents=True, exist_ok=True)
    copied, skipped = [], []
    for p in list_photos(samples):
        try:
            with Image.open(p) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError):
            skipped.append(p.name)
            continue
        target = dest / p.name
        if not target.exists() or target.stat().st_size != p.stat().st_size:
            shutil.copyfile(p, target)
        copied.append(p.name)
    for name, size in GENERATED.items():
        if not (dest / name).exists():
            _generate(dest / name, size)
    wanted = set(copied) | set(GENERATED)
    for stale in list_photos(dest):              # a sample removed from the repository
        if stale.name not in wanted:
            stale.unlink()
    if not copied:
        raise SystemExit(f"no sample photos in {samples} either")
    log(f"workload: {len(copied)} repository samples from {samples} ({', '.join(copied)}) + "
        f"{len(GENERATED)} images generated with Pillow ({', '.join(GENERATED)}), staged in {dest}"
        + (f"; not images, left out: {', '.join(skipped)}" if skipped else ""))
    return dest


def prepare_sources(photos: Path, cache: Path, profile: str, fixtures: list[Path], log) -> list[Source]:
    """Every candidate source. With a downscaling profile, variants are only planned here
    (from the photos' headers); `materialize()` writes the ones a run actually uses."""
    from PIL import Image
    cache.mkdir(parents=True, exist_ok=True)
    originals = list_photos(photos)
    if not originals:
        raise SystemExit(f"no photos in {photos} (use --photos DIR)")
    kinds_file = cache / "kinds.json"
    known = json.loads(kinds_file.read_text()) if kinds_file.exists() else {}
    info = {}
    for p in list(originals) + list(fixtures):
        k = known.get(str(p))
        if not k or k[3] != p.stat().st_size:
            with Image.open(p) as im:
                k = [_kind_of(im, p), im.size[0], im.size[1], p.stat().st_size]
            known[str(p)] = k
        info[p] = k
    kinds_file.write_text(json.dumps(known))
    sources: list[Source] = []
    targets = PROFILES[profile]
    for p in originals:
        kind, w, h, _ = info[p]
        variants = [mp for mp in (targets or ()) if (mp * 1e6 / (w * h)) ** 0.5 < 0.98]
        for mp in variants:
            sources.append(Source(cache / f"{p.stem}-{mp}mp{p.suffix.lower()}", kind, float(mp), "rendered", p))
        if not variants:                         # "full" profile, or a photo below every target
            sources.append(Source(p, kind, round(w * h / 1e6, 2), "rendered"))
    for p in fixtures:
        kind, w, h, _ = info[p]
        sources.append(Source(p, "fixture-" + kind, round(w * h / 1e6, 2), "rendered"))
    sources += make_bad_files(cache, originals)
    return sources


def materialize(sources: list[Source], log) -> None:
    """Write the downscaled variants among `sources` that are not in the cache yet: one
    decode per photo, 2 processes."""
    by_origin: dict[Path, list] = {}
    for s in sources:
        if s.origin is not None and not s.path.exists():
            by_origin.setdefault(s.origin, [])
            if (str(s.path), s.megapixels) not in by_origin[s.origin]:
                by_origin[s.origin].append((str(s.path), s.megapixels))
    if not by_origin:
        return
    t0 = time.time()
    dest = Path(next(iter(by_origin.values()))[0][0]).parent
    log(f"downscaling {sum(map(len, by_origin.values()))} variants of {len(by_origin)} photos into "
        f"{dest} (once; cached)")
    from concurrent.futures import ProcessPoolExecutor
    jobs = sorted(((str(o), j) for o, j in by_origin.items()), key=lambda j: -os.path.getsize(j[0]))
    with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 2)) as ex:
        list(ex.map(_downscale, jobs))
    missing = [s.path for s in sources if s.origin is not None and not s.path.exists()]
    if missing:
        raise RuntimeError(f"downscaling did not produce {missing[:3]}")
    log(f"downscaled in {time.time() - t0:.1f} s")


def make_bad_files(cache: Path, originals: list[Path]) -> list[Source]:
    bad = cache / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    text = bad / "not-an-image.jpg"
    text.write_text("This is a text file named .jpg, not a JPEG.\n" * 20)
    empty = bad / "empty.jpg"
    empty.write_bytes(b"")
    jpeg = min((p for p in originals if p.suffix.lower() in (".jpg", ".jpeg")), key=lambda p: p.stat().st_size)
    data = jpeg.read_bytes()
    trunc = bad / "truncated.jpg"
    trunc.write_bytes(data[: max(2048, len(data) * 2 // 5)])   # header + part of the scan, no EOI
    return [Source(text, "bad-text-as-jpg", 0, "rejected"), Source(trunc, "bad-truncated-jpeg", 0, "rejected"),
            Source(empty, "bad-empty", 0, "rejected")]


def build_uploads(sources: list[Source], n: int, seed: int = 1, every: list[Source] = ()) -> list[Upload]:
    """N uploads with unique keys: photos drawn at random (fixed seed, so every ENVS step
    and every run gets the same set), bad files spread through the run, ~10% of keys with
    spaces, ~10% with non-ASCII characters and 2% exactly 1,024 bytes long (S3's maximum: their
    rendition keys are shortened by the function, see `rendition_key`). Each source in `every`
    is uploaded at least once when N allows (the small repository-samples workload)."""
    rng = random.Random(seed)
    good = [s for s in sources if s.expect == "rendered"]
    bad = [s for s in sources if s.expect == "rejected"]
    n_bad = min(n, max(len(bad), n // 100 // len(bad) * len(bad))) if n >= len(bad) else n
    must = [s for s in every if s.expect == "rendered"][: n - n_bad]
    picks = must + [rng.choice(good) for _ in range(n - n_bad - len(must))]
    picks += [bad[i % len(bad)] for i in range(n_bad)]
    rng.shuffle(picks)
    ups = []
    for i, s in enumerate(picks):
        stem, ext = s.path.stem, s.path.suffix.lower()
        if i % 50 == 11:
            head = f"long keys/{i:05d}-{stem}-"
            key = head + "k" * (1024 - len(head.encode()) - len(ext.encode())) + ext
        elif i % 10 == 3:
            key = f"holiday photos/{i:05d} {stem} copy{ext}"
        elif i % 10 == 7:
            key = f"fotos/été-{i:05d}-Ünïcødé ☀ 写真 {stem}{ext}"
        else:
            key = f"uploads/{i:05d}-{stem}{ext}"
        ups.append(Upload(key, s))
    return ups


MAX_KEY_BYTES = 1024


def fit_key(key: str) -> str:
    """The function's key policy (src/event/keys.rs `fit`): a key over 1,024 UTF-8 bytes becomes
    its longest prefix (on a character boundary) that fits with `~` + 32 hex digits of SHA-256."""
    b = key.encode()
    if len(b) <= MAX_KEY_BYTES:
        return key
    end = MAX_KEY_BYTES - 33
    while end > 0 and (b[end] & 0xC0) == 0x80:
        end -= 1
    return b[:end].decode() + "~" + hashlib.sha256(b).hexdigest()[:32]


def rendition_key(rendition: str, key: str) -> str:
    """Where the function writes `rendition` of `key` (default DEST_KEY_TEMPLATE)."""
    return fit_key(f"{rendition}/{key}")


def report_key(key: str) -> str:
    """Where the function writes the rejection report of `key`."""
    return fit_key(f"_rejected/{key}.json")


def s3_event(bucket: str, key: str, size: int, etag: str, region: str) -> str:
    """The S3 ObjectCreated:Put notification as AWS writes it to SQS (key URL-encoded, '+'
    for spaces). Used only when the emulator's own S3 -> SQS notifications do not work."""
    now = time.gmtime()
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region,
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", now), "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:LOADTEST"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "renditions-loadtest",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "LOADTEST"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag.strip('"'),
                          "sequencer": f"{time.time_ns():016X}"}}}]})


def upload_all(make_s3, uploads: list[Upload], bucket: str, *, threads: int, rate: float | None,
               deadline: float, emulate_sqs=None, region: str = "us-east-1", log=print) -> None:
    """PUT every upload with `threads` concurrent clients; `rate` caps uploads/s. Each
    upload gets its put_started / put_done wall-clock times."""
    blobs: dict[Path, bytes] = {}
    for u in uploads:
        if u.source.path not in blobs:
            blobs[u.source.path] = u.source.path.read_bytes()
    local = threading.local()
    t0 = time.time() + 0.05

    def put(i_u):
        i, u = i_u
        if rate:
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        if time.time() > deadline:
            u.error = "not uploaded: step deadline"
            return
        if not hasattr(local, "s3"):
            local.s3, local.sqs = make_s3(), (emulate_sqs[0]() if emulate_sqs else None)
        body = blobs[u.source.path]
        ctype = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}.get(u.source.path.suffix.lower(),
                                                                                         "application/octet-stream")
        u.put_started = time.time()
        for attempt in range(3):
            try:
                r = local.s3.put_object(Bucket=bucket, Key=u.key, Body=body, ContentType=ctype)
                u.put_done = time.time()
                u.error = None
                if emulate_sqs:
                    local.sqs.send_message(QueueUrl=emulate_sqs[1],
                                           MessageBody=s3_event(bucket, u.key, len(body), r.get("ETag", ""), region))
                return
            except Exception as e:                # bounded retries
                u.error = f"{type(e).__name__}: {e}"
                time.sleep(0.5 * (attempt + 1))
        log(f"upload failed: {u.key}: {u.error}")

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="upload") as ex:
        list(ex.map(put, enumerate(uploads)))
