#!/usr/bin/env bash
# Fuzz smoke run: builds the cargo-fuzz targets (fuzz/) and runs each for a bounded time.
# Exit status: 0 when every target ran clean (or when cargo-fuzz / a nightly toolchain is not
# installed: then it prints SKIP and does nothing), non-zero on a crash, timeout or OOM.
#
#   scripts/fuzz-smoke.sh                 # render and events, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh render
#
# Findings land in fuzz/artifacts/<target>/ (crash-*, timeout-*, oom-*); reproduce one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# and keep it as a regression fixture in tests/fixtures/hostile/ (see docs/hostile-inputs.md).
# The corpus grown by a run stays outside the work tree (FUZZ_WORK, default /tmp/renditions-fuzz);
# the committed seeds in fuzz/corpus/<target>/ are only read.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
work=${FUZZ_WORK:-/tmp/renditions-fuzz}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(render events)

if ! command -v cargo >/dev/null 2>&1 || ! cargo fuzz --version >/dev/null 2>&1; then
  echo "SKIP fuzz smoke: cargo-fuzz is not installed (cargo install cargo-fuzz)"
  exit 0
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "SKIP fuzz smoke: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi

status=0
# One build for every target (they share the crate build), then a bounded run of each.
echo "== fuzz build ${targets[*]}"
build_start=$(date +%s)
if ! (cd fuzz && cargo +nightly fuzz build -O); then
  echo "FAIL fuzz build"
  exit 1
fi
echo "== fuzz build took $(( $(date +%s) - build_start )) s"
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  echo "== fuzz run $t for ${seconds}s"
  # -timeout: a unit taking > 5 s is a hang; -rss_limit_mb: the whole process (ASan included);
  # -malloc_limit_mb: any single allocation over 512 MiB is a memory blow-up.
  if ! (cd fuzz && cargo +nightly fuzz run -O "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=5 \
        -print_final_stats=1 2>&1 | tail -n 40); then
    echo "FAIL fuzz run $t: see fuzz/artifacts/$t/"
    status=1
  fi
done
exit $status
