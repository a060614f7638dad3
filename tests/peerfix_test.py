"""The peer fixtures (../shared/corpus/peerfix, 80 files from sharp, libvips, image-rs and others)
through `renditions render`, each compared with what Pillow + littleCMS make of it: orientation
applied, colour converted to sRGB, the same size. MANIFEST.tsv says per file whether it must render
(`process`), must be refused (`reject`) or may do either (`either`).

Run by `make test` with the load-test venv's Python (it has Pillow); skipped when the corpus or
Pillow is missing. `python tests/peerfix_test.py` prints the whole table.

Known differences from the reference are listed in KNOWN with the reason; they are still checked
against a looser bound, so a regression shows.
"""

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERFIX = Path(os.environ.get("PEERFIX", ROOT.parent / "shared" / "corpus" / "peerfix"))
BIN = Path(os.environ.get("RENDITIONS_BIN", ROOT / "target" / "debug" / "renditions"))
SIDE = 256

PIL = pytest.importorskip("PIL", reason="Pillow is not installed (the load-test venv has it)")
from PIL import Image, ImageCms, ImageOps  # noqa: E402

# Mean absolute difference (0-255) allowed between our rendition and the reference's. Both resize
# with Lanczos3 but not identically: we decode JPEGs at a reduced DCT scale when the rendition
# allows (shrink-on-load) and premultiply alpha; on sharp's drawn 450x600 portraits (hard edges,
# a digit on a flat background) that alone is 3.8-4.4 levels, on photos under 2.
MEAN_TOLERANCE = 5.0

# Files whose reference we do not follow exactly, and why; value = the looser mean bound (each a
# little above what was measured on 2026-12-07, so a regression still fails).
KNOWN = {
    # No profile: Pillow's CMYK→RGB is the additive 255 - (C + K) clipped, ours the multiplicative
    # (255 - C)(255 - K)/255; sharp/libvips use a default CMYK profile instead. None is "right"
    # (manifest: REFERENCE DOUBTFUL). Measured 11.96.
    "sharp-cmyk-noprofile.jpg": 13.0,
    # U.S. Web Coated (SWOP) v2, a LUT profile: moxcms's perceptual CMYK→sRGB lands 2-3 levels
    # darker than lcms2 in the mid-tones (e.g. (116, 121, 113) vs (118, 124, 118)). Measured 10.57.
    # Left for a moxcms/lcms2 comparison upstream.
    "sharp-cmyk-swop.jpg": 12.0,
    # littleCMS's LUT-only check image: handled (the "does support" text shows, the "NOT" text is
    # hidden, as in the reference); the rest is the resampled outlines of the hidden text. 6.24.
    "nico-check-lut.jpg": 7.0,
}


def manifest():
    rows = []
    path = PEERFIX / "MANIFEST.tsv"
    if not path.exists():
        return rows
    with path.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            rows.append(row)
    return rows


def reference(path: Path, size):
    """Pillow + lcms2: first frame, EXIF orientation, ICC → sRGB, flattened on white, resized."""
    im = Image.open(path)
    im.seek(0)
    im = ImageOps.exif_transpose(im)
    icc = im.info.get("icc_profile") or bmp_profile(path)
    alpha = None
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        alpha = im.getchannel("A")
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 257).convert("L")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            im = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # noqa: BLE001 (an unusable profile is ignored, as we do)
            pass
    im = im.convert("RGB")
    if alpha is not None:
        im.putalpha(alpha)
    im = im.convert("RGBA")
    flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
    flat.alpha_composite(im)
    return flat.convert("RGB").resize(size, Image.LANCZOS)


def bmp_profile(path: Path):
    """Pillow ignores a BMP V5 header's embedded profile (bV5CSType 'MBED'); read it here."""
    data = path.read_bytes()
    if data[:2] != b"BM" or int.from_bytes(data[14:18], "little") < 124 or data[70:74] != b"DEBM":
        return None
    offset = int.from_bytes(data[126:130], "little")
    size = int.from_bytes(data[130:134], "little")
    return data[14 + offset:14 + offset + size]


def ours(path: Path, out: Path):
    proc = subprocess.run(
        [str(BIN), "render", "--json", "--format", "png", "--watermark", "none",
         "--renditions", f"r:{SIDE}", "--out", str(out), str(path)],
        capture_output=True, text=True, timeout=120)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("{")), None)
    return json.loads(line) if line else {"error": proc.stderr.strip()}


def mean_diff(a, b):
    da, db = a.tobytes(), b.tobytes()
    return sum(abs(x - y) for x, y in zip(da, db)) / len(da)


def check(row, out: Path):
    name, expect = row["file"], row["expectation"]
    result = ours(PEERFIX / name, out)
    if "rejected" in result or "error" in result:
        why = result.get("rejected") or result.get("error")
        ok = expect in ("reject", "either")
        return ok, f"refused: {why}"
    if expect == "reject":
        return False, "rendered, but the manifest says reject"
    rendition = result["renditions"][0]
    got = Image.open(rendition["path"])
    got = got.convert("RGBA")
    flat = Image.new("RGBA", got.size, (255, 255, 255, 255))
    flat.alpha_composite(got)
    got = flat.convert("RGB")
    try:
        ref = reference(PEERFIX / name, got.size)
    except Exception as e:  # noqa: BLE001 (Pillow cannot read some fixtures: dims only)
        return True, f"rendered {got.size}; reference unavailable ({e})"
    diff = mean_diff(got, ref)
    bound = KNOWN.get(name, MEAN_TOLERANCE)
    return diff <= bound, f"rendered {got.size}, mean difference {diff:.2f} (bound {bound})"


ROWS = manifest()


@pytest.mark.skipif(not ROWS, reason=f"no peer fixtures at {PEERFIX}")
@pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} is not built (cargo build)")
@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_peer_fixture(row, tmp_path):
    ok, detail = check(row, tmp_path)
    assert ok, f"{row['file']} ({row['category']}, expected {row['expectation']}): {detail}"


if __name__ == "__main__":
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, row in enumerate(ROWS):
            ok, detail = check(row, Path(tmp) / str(i))
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {row['file']:<40} {row['expectation']:<8} {detail}")
    print(f"{len(ROWS) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)
