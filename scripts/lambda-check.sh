#!/usr/bin/env bash
# Checks a Lambda package for provided.al2023: a bootstrap (or a zip holding only `bootstrap`,
# mode 0755) that is an ELF for the expected architecture and needs no glibc newer than 2.34.
# Prints architecture, sizes and the highest GLIBC symbol version. readelf reads any ELF
# architecture, so an aarch64 bootstrap is checked on an x86_64 host too.
#
#   scripts/lambda-check.sh target/lambda/arm64/renditions-lambda/bootstrap.zip arm64
#   scripts/lambda-check.sh .aws-sam/build/RenditionsFunction/bootstrap arm64
set -euo pipefail

pkg=${1:?usage: $0 BOOTSTRAP|bootstrap.zip x86_64|arm64}
arch=${2:?usage: $0 BOOTSTRAP|bootstrap.zip x86_64|arm64}
max_glibc=2.34 # provided.al2023
case $arch in
  x86_64) machine='X86-64' ;;
  arm64 | aarch64) machine='AArch64' ;;
  *) echo "unknown architecture $arch" >&2; exit 2 ;;
esac
command -v readelf >/dev/null || { echo "readelf (binutils) is needed" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$pkg
if [[ $pkg == *.zip ]]; then
  python3 - "$pkg" "$tmp/bootstrap" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
if names != ["bootstrap"]:
    sys.exit(f"the zip must hold only `bootstrap`, it holds {names}")
mode = z.getinfo("bootstrap").external_attr >> 16
if not mode & 0o100:
    sys.exit(f"bootstrap is not executable in the zip (mode {oct(mode)})")
open(sys.argv[2], "wb").write(z.read("bootstrap"))
PY
  bin=$tmp/bootstrap
fi

got=$(readelf -h "$bin" | awk -F: '/Machine/ {sub(/^ +/, "", $2); print $2}')
glibc=$(readelf -V --wide "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
size=$(stat -c %s "$bin")
mib() { awk -v b="$1" 'BEGIN { printf "%d bytes (%.1f MiB)", b, b / 1048576 }'; }
printf '%s: %s, bootstrap %s' "$pkg" "$got" "$(mib "$size")"
if [[ $pkg == *.zip ]]; then printf ', zip %s' "$(mib "$(stat -c %s "$pkg")")"; fi
printf ', max %s\n' "$glibc"

fail=0
[[ $got == *"$machine"* ]] || { echo "ERROR: expected a $machine ELF, got $got" >&2; fail=1; }
v=${glibc#GLIBC_}
if [[ -z $v || $(printf '%s\n%s\n' "$v" "$max_glibc" | sort -V | tail -1) != "$max_glibc" ]]; then
  echo "ERROR: needs ${glibc:-no glibc?}, newer than provided.al2023's $max_glibc" >&2
  fail=1
fi
exit $fail
