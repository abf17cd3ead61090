#!/usr/bin/env bash
# One command from a fresh machine: system packages (Debian/Ubuntu), npm dependencies, the native
# build (llama.cpp from the npm registry), then the main job (`npm start`). --no-run stops after
# the build. Needs root (or sudo) for apt-get; skips it when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# build: cmake ninja-build g++ make git python3; FAISS: libfaiss-dev libopenblas-dev;
# chromium: only the web UI's browser test uses it (it is skipped without one)
PACKAGES=(cmake ninja-build g++ make git python3 libfaiss-dev libopenblas-dev chromium)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "qrank: installing system packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

npm ci --no-audit --no-fund

if [ "${1:-}" != "--no-run" ]; then
  npm start
fi
