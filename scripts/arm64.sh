#!/usr/bin/env bash
# Test renditions for aarch64 (AWS Lambda Graviton) without Docker: plain GNU cross gcc for the C
# code (mozjpeg/libjpeg-turbo NEON, libwebp NEON, aws-lc) and qemu-user to run the aarch64 test
# binaries. See docs/arm64.md. (The arm64 Lambda package itself is built by `make build-arm64`
# with cargo-lambda and zig.)
#
#   scripts/arm64.sh test    pipeline/cli/lib tests under qemu + one real photo through the CLI
#
# Everything is passed through environment variables (no .cargo/config.toml), so native builds in
# the same checkout are untouched, and it uses its own target dir so it never blocks them.
# Environment: ARM64_TARGET_DIR (default: <repo>/../target-arm64), CORPUS (default:
# <repo>/../shared/corpus/photos), ARM64_TEST_FEATURES (default: --no-default-features).
# Idempotent; exits 0 with "SKIP:" when the toolchain can't be provisioned (e.g. x86_64 CI
# without root/apt), so that CI stays green.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET=aarch64-unknown-linux-gnu
CROSS=aarch64-linux-gnu
SYSROOT=/usr/$CROSS
TARGET_DIR="${ARM64_TARGET_DIR:-$(cd "$ROOT/.." && pwd)/target-arm64}"
CORPUS="${CORPUS:-$ROOT/../shared/corpus/photos}"
TEST_FEATURES="${ARM64_TEST_FEATURES:---no-default-features}"
CMD="${1:-test}"

log() { printf '==> %s\n' "$*" >&2; }
skip() { printf 'SKIP: arm64: %s\n' "$*"; exit 0; }

# ---------------------------------------------------------------------------------------------
# Toolchain provisioning (idempotent)
# ---------------------------------------------------------------------------------------------
ensure_apt() {
  local missing=()
  command -v "$CROSS-gcc" >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
  command -v "$CROSS-objdump" >/dev/null 2>&1 || missing+=(binutils-aarch64-linux-gnu)
  [[ -e $SYSROOT/lib/crt1.o ]] || missing+=(libc6-dev-arm64-cross)
  command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  local sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo=(sudo -n) ||
      skip "missing ${missing[*]} and not root (apt-get install -y ${missing[*]})"
  fi
  command -v apt-get >/dev/null 2>&1 || skip "missing ${missing[*]} and no apt-get"
  { "${sudo[@]}" apt-get update -qq || true; } >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2 ||
    skip "apt-get install ${missing[*]} failed"
}

ensure_rust_target() {
  if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then return 0; fi
  command -v rustup >/dev/null 2>&1 || skip "rustup not found; cannot add $TARGET"
  log "rustup target add $TARGET"
  rustup target add "$TARGET" >&2 || skip "rustup target add $TARGET failed (offline?)"
}

# tests/cli.rs (and the lambda tests) spawn the aarch64 `renditions` binary from inside the
# emulated test process. qemu-user does not intercept execve: the host kernel must know how to run
# aarch64 ELF files (binfmt_misc, what systemd-binfmt sets up from qemu-user-static at boot).
# Without it the child exits 127 with empty stderr. Register it when we can (root); opt out with
# ARM64_BINFMT=0. Sets HAVE_BINFMT=yes|no.
ensure_binfmt() {
  HAVE_BINFMT=no
  local bf=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  if [[ -e $bf/qemu-aarch64 ]] && grep -qx enabled "$bf/qemu-aarch64"; then HAVE_BINFMT=yes; return 0; fi
  [[ ${ARM64_BINFMT:-1} != 0 && $(id -u) == 0 ]] || return 0
  [[ -e $bf/register ]] || mount -t binfmt_misc binfmt_misc "$bf" 2>/dev/null || return 0
  if [[ ! -e $bf/qemu-aarch64 ]]; then
    [[ -f $conf ]] || return 0
    log "registering qemu-aarch64 with binfmt_misc ($conf)"
    cat "$conf" >"$bf/register" 2>/dev/null || return 0
  fi
  echo 1 >"$bf/qemu-aarch64" 2>/dev/null || true
  grep -qx enabled "$bf/qemu-aarch64" 2>/dev/null && HAVE_BINFMT=yes
  return 0
}

setup_env() {
  export CARGO_TARGET_DIR="$TARGET_DIR"
  # cc-rs (mozjpeg-sys, libwebp-sys, aws-lc-sys) and the final link.
  export CC_aarch64_unknown_linux_gnu="$CROSS-gcc"
  export CXX_aarch64_unknown_linux_gnu="$CROSS-g++"
  export AR_aarch64_unknown_linux_gnu="$CROSS-ar"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$CROSS-gcc"
  # `cargo test --target` runs the aarch64 test binaries through qemu-user.
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L $SYSROOT"
  export QEMU_LD_PREFIX="$SYSROOT" # for binaries we exec ourselves (e.g. tests spawning the CLI)
}

# Make sure the cargo/rustc on PATH are rustup's (not /usr/bin/cargo from Debian).
[[ -d $HOME/.cargo/bin ]] && PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null 2>&1 || skip "cargo not found"

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# ---------------------------------------------------------------------------------------------
# test: pipeline/cli/lib tests under qemu-user, then one real photo through the aarch64 CLI
# ---------------------------------------------------------------------------------------------
do_test() {
  # shellcheck disable=SC2086
  local args=(--target "$TARGET" --locked $TEST_FEATURES --test pipeline --test cli --lib)
  ensure_binfmt
  if [[ $HAVE_BINFMT != yes ]]; then
    # shellcheck disable=SC2086
    args=(--target "$TARGET" --locked $TEST_FEATURES --test pipeline --lib)
    echo "NOTE: no binfmt_misc handler for aarch64 (needs root): skipping tests/cli.rs, which spawns the aarch64 binary"
  fi
  log "cargo test ${args[*]}   (runner: $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER)"
  local t0 t1 logf="$TARGET_DIR/arm64-test.log"
  mkdir -p "$TARGET_DIR"
  t0=$(now)
  cargo test "${args[@]}" --no-run
  t1=$(now)
  echo "arm64 test build: $(elapsed "$t0" "$t1")s wall"
  t0=$(now)
  local rc=0
  cargo test "${args[@]}" --no-fail-fast 2>&1 | tee "$logf" || rc=${PIPESTATUS[0]}
  t1=$(now)
  local passed failed ignored
  passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$logf" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END{print s+0}')
  failed=$(grep -Eo '[0-9]+ failed' "$logf" | awk '{s+=$1} END{print s+0}')
  ignored=$(grep -Eo '[0-9]+ ignored' "$logf" | awk '{s+=$1} END{print s+0}')
  echo "arm64 tests under qemu: $passed passed, $failed failed, $ignored ignored ($(elapsed "$t0" "$t1")s wall, log: $logf)"
  ((rc == 0)) || { echo "ERROR: aarch64 tests failed (exit $rc)"; return "$rc"; }

  # One real photo through the aarch64 CLI (debug binary built by `cargo test` above is slow, so
  # build the release CLI of the same feature set).
  local photo
  photo=$(ls "$CORPUS"/p15-*.jpg 2>/dev/null | head -1 || true)
  if [[ -z $photo ]]; then
    echo "no corpus photo p15 in $CORPUS: skipped the CLI render"
    return 0
  fi
  # shellcheck disable=SC2086
  cargo build --release --locked --target "$TARGET" $TEST_FEATURES --bin renditions >&2
  local cli="$TARGET_DIR/$TARGET/release/renditions" outdir="$TARGET_DIR/arm64-render"
  rm -rf "$outdir" && mkdir -p "$outdir"
  log "qemu-aarch64-static $cli render --out $outdir $(basename "$photo")"
  t0=$(now)
  qemu-aarch64-static -L "$SYSROOT" "$cli" render --out "$outdir" "$photo"
  t1=$(now)
  echo "arm64 render under qemu (emulated, NOT a performance number): $(elapsed "$t0" "$t1")s wall for $(basename "$photo")"
  local large
  large=$(find "$outdir" -type f -path '*large*' | head -1)
  [[ -n $large ]] || { echo "ERROR: no large rendition in $outdir"; ls -l "$outdir"; return 1; }
  local dims
  dims=$(python3 - "$large" <<'PY'
import struct, sys
p = sys.argv[1]
d = open(p, "rb").read()
if d[:2] == b"\xff\xd8":                      # JPEG: first SOFn
    i = 2
    while i < len(d):
        while d[i] == 0xFF: i += 1
        m = d[i]; i += 1
        if m in (0xD8, 0x01) or 0xD0 <= m <= 0xD7: continue
        L = struct.unpack(">H", d[i:i+2])[0]
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", d[i+3:i+7]); print(f"{w}x{h}"); break
        i += L
elif d[:4] == b"RIFF" and d[8:12] == b"WEBP":  # WebP VP8/VP8L/VP8X
    c = d[12:16]
    if c == b"VP8 ": w, h = struct.unpack("<HH", d[26:30]); print(f"{w & 0x3fff}x{h & 0x3fff}")
    elif c == b"VP8L": b = int.from_bytes(d[21:25], "little"); print(f"{(b & 0x3fff) + 1}x{((b >> 14) & 0x3fff) + 1}")
    else: print(f"{int.from_bytes(d[24:27], 'little') + 1}x{int.from_bytes(d[27:30], 'little') + 1}")
elif d[:8] == b"\x89PNG\r\n\x1a\n":
    w, h = struct.unpack(">II", d[16:24]); print(f"{w}x{h}")
PY
)
  echo "  ${large#"$outdir"/}: $dims (expected 1067x1600: EXIF orientation 6 applied)"
  [[ $dims == 1067x1600 ]] || { echo "ERROR: unexpected large size $dims"; return 1; }
}

ensure_apt
ensure_rust_target
setup_env
case "$CMD" in
  test) do_test ;;
  build) echo "the arm64 package is built with cargo-lambda now: make build-arm64" >&2; exit 2 ;;
  *) echo "usage: $0 [test]" >&2; exit 2 ;;
esac
