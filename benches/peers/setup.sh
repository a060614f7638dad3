#!/usr/bin/env bash
# Install the peer-benchmark tools if missing: sharp (npm, from package-lock.json)
# into benches/peers/node_modules, Pillow (PyPI, requirements.txt) into
# benches/peers/.venv. Idempotent; a no-op in well under a second when done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# --- sharp -------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup.sh: node/npm not found; install Node >= 20.9 (sharp 0.34 needs it)" >&2
  exit 1
fi
# Reinstall when sharp cannot load or the lock file changed since the last install.
stamp=node_modules/.bench-peers-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp" \
   && node -e "require('sharp')" >/dev/null 2>&1; then
  :
else
  echo "setup.sh: installing sharp (npm ci) ..." >&2
  npm ci --no-audit --no-fund --loglevel=error
  node -e "require('sharp')"  # fails loudly if the prebuilt binary did not come
  cp package-lock.json "$stamp"
fi

# --- Pillow ------------------------------------------------------------------
py=.venv/bin/python
if [ ! -x "$py" ] || ! "$py" -c "import sys" >/dev/null 2>&1; then
  echo "setup.sh: creating .venv ..." >&2
  rm -rf .venv
  python3 -m venv .venv
fi
want=$(sed -n 's/^Pillow==//p' requirements.txt)
have=$("$py" -c "import PIL; print(PIL.__version__)" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "setup.sh: installing Pillow $want into .venv ..." >&2
  "$py" -m pip install --disable-pip-version-check -q -r requirements.txt
fi

if [ ! -e /usr/bin/time ]; then
  echo "setup.sh: /usr/bin/time missing (apt-get install time)" >&2
  exit 1
fi
echo "setup.sh: ok (sharp $(node -p "require('sharp').versions.sharp"), Pillow $("$py" -c 'import PIL; print(PIL.__version__)'))" >&2
