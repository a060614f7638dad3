#!/usr/bin/env bash
# Idempotent environment setup for the load test.
#   bash loadtest/setup.sh [moto|localstack]
# Creates loadtest/.venv (boto3, matplotlib, Pillow, moto server, pytest for tests/peerfix_test.py) and, for S3=localstack,
# loadtest/.venv-localstack (localstack-core 4.13.1, the newest that runs on Python 3.11).
# Re-running is cheap: each venv is (re)installed only when its stamp file is missing or
# the pinned requirement list changed.
set -euo pipefail
S3="${1:-moto}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"

MAIN_REQS="boto3>=1.34,<2 matplotlib>=3.8,<4 Pillow>=10,<12 moto[server]==5.2.1 pytest>=7"
LS_REQS="localstack-core[runtime]==4.13.1 cbor2<6 pyopenssl==24.3.0 cryptography<45"

ensure_venv() {  # dir, requirements
  local dir="$1" reqs="$2" stamp="$1/.loadtest-stamp"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$reqs" && -x "$dir/bin/python" ]]; then
    echo "setup: $dir up to date"
    return
  fi
  echo "setup: installing into $dir: $reqs"
  [[ -x "$dir/bin/python" ]] || "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  local -a args; set -f; read -r -a args <<<"$reqs"; set +f   # no globbing of "moto[server]"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}"
  printf "%s" "$reqs" > "$stamp"
}

ensure_venv "$HERE/.venv" "$MAIN_REQS"
case "$S3" in
  localstack)
    if [[ -n "${LOCALSTACK_ENDPOINT:-}" ]]; then
      echo "setup: LOCALSTACK_ENDPOINT=$LOCALSTACK_ENDPOINT given, not installing LocalStack"
    else
      ensure_venv "$HERE/.venv-localstack" "$LS_REQS"
    fi ;;
  moto) ;;
  *) echo "setup: unknown S3 backend '$S3' (moto|localstack)" >&2; exit 2 ;;
esac
echo "setup: done ($S3)"
