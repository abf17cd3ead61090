#!/usr/bin/env bash
# One command from a fresh machine: system packages (Debian/Ubuntu), npm dependencies, the native
# build (llama.cpp from the npm registry), then the main job (`npm start`). --no-run stops after
# the build. Needs root (or sudo) for apt-get; skips it when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# build: cmake ninja-build g++ make git python3; FAISS: libfaiss-dev libopenblas-dev
PACKAGES=(cmake ninja-build g++ make git python3 libfaiss-dev libopenblas-dev)
# only the web page's browser test uses Chromium (the test is skipped without it); it is installed
# with its recommended packages (fonts, Mesa), as on the machines where the test was seen to work
BROWSER=(chromium)

missing() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
apt_install() {  # apt_install [--no-install-recommends] packages...
  local SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "qrank: installing system packages: $*" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}
need=($(missing "${PACKAGES[@]}"))
if ((${#need[@]})); then apt_install --no-install-recommends "${need[@]}"; fi
need=($(missing "${BROWSER[@]}"))
if ((${#need[@]})); then apt_install "${need[@]}"; fi

npm ci --no-audit --no-fund

if [ "${1:-}" != "--no-run" ]; then
  npm start
fi
