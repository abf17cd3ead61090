#!/usr/bin/env bash
# One command from a fresh machine: system packages (Debian/Ubuntu), cuBLAS where nvcc is installed
# (for the CUDA build), npm dependencies, the native build (llama.cpp from the npm registry), then
# the main job (`npm start`). --no-run stops after the build.
# Needs root (or sudo) for apt-get; skips it when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# build: cmake ninja-build g++ make git python3; FAISS: libfaiss-dev libopenblas-dev
PACKAGES=(cmake ninja-build g++ make git python3 libfaiss-dev libopenblas-dev)
# only the web page's browser test uses Chromium (the test is skipped without it); it is installed
# with its recommended packages (fonts, Mesa), as on the machines where the test was seen to work
BROWSER=(chromium)
# only the replica test (two qrank servers behind a load balancer) uses haproxy; skipped without it
LOADBALANCER=(haproxy)

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
need=($(missing "${LOADBALANCER[@]}"))
if ((${#need[@]})); then apt_install --no-install-recommends "${need[@]}" || echo "qrank: could not install haproxy: test/replicas.test.ts is skipped" >&2; fi

# The CUDA build (npm run build:cuda, which CI compiles) needs cuBLASLt beside nvcc. Where nvcc is
# installed and cuBLASLt is found nowhere (scripts/find-cuda.cmake), the nvidia-cublas pip package
# goes into .cache/nvidia-cublas, where the build looks: about 10 s from a local package index.
CUBLAS_PIP="nvidia-cublas==13.1.1.3"
if cuda=$(cmake -P scripts/find-cuda.cmake 2>/dev/null); then
  :
elif grep -q "QRANK_CUDA_MISSING=.*cuBLASLt" <<< "$cuda"; then
  echo "qrank: installing cuBLAS ($CUBLAS_PIP) into .cache/nvidia-cublas for the CUDA build" >&2
  python3 -m pip install -q --no-deps --retries 0 --timeout 2 --target .cache/nvidia-cublas "$CUBLAS_PIP" ||
    echo "qrank: could not install $CUBLAS_PIP; the CPU build goes on (npm run build:cuda will say what is missing)" >&2
fi

npm ci --no-audit --no-fund

if [ "${1:-}" != "--no-run" ]; then
  npm start
fi
