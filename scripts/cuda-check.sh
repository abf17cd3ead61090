#!/usr/bin/env bash
# The CUDA kernels' check on a machine with an NVIDIA GPU: native/cuda/kernel_check.cu (every kernel
# against a float64 CPU reference on fresh random inputs), built with the engine library sources as
# the CMake target qrank_kernel_check, is run once with a fresh seed, then under compute-sanitizer
# (memcheck, then racecheck) with a fixed seed on its small cases (kernel_check SEED --small).
# Prints one line per step (PASS / FAIL / SKIP and why).
#
#   bash scripts/cuda-check.sh [seed]
#     QRANK_KERNEL_CHECK=PATH   the binary to run (scripts/gpu-check.sh passes its own build's);
#                               default: build-cuda/qrank_kernel_check, built first by npm run build:cuda
#     QRANK_SANITIZER_TIMEOUT=S each sanitizer run's limit in seconds (default 150)
#     QRANK_SANITIZER_ARGS=...  kernel_check's arguments under the sanitizers (default: 12345 --small)
#     OUT=DIR                   where the sanitizer logs go (the device tool's $OUT; default build-cuda/)
# Exit 0: all passed; 1: a check failed; 77: no GPU here (nothing was run).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build-cuda}"
mkdir -p "$out"
bin="${QRANK_KERNEL_CHECK:-build-cuda/qrank_kernel_check}"
limit="${QRANK_SANITIZER_TIMEOUT:-150}"
read -r -a sanitized_args <<< "${QRANK_SANITIZER_ARGS:-12345 --small}"

if [ -z "${QRANK_KERNEL_CHECK:-}" ]; then
  node scripts/build-core.mjs --cuda --target qrank_kernel_check
fi
if [ ! -x "$bin" ]; then
  echo "FAIL kernel_check: no binary at $bin"
  exit 1
fi

status=0
"$bin" "$@" || status=$?
if [ "$status" -eq 77 ]; then
  echo "SKIP kernel_check: no CUDA device here"
  exit 77
fi
if [ "$status" -ne 0 ]; then
  echo "FAIL kernel_check: exit $status"
  exit 1
fi
echo "PASS kernel_check"

if ! command -v compute-sanitizer > /dev/null; then
  echo "SKIP compute-sanitizer: not installed here"
  exit 0
fi
for tool in memcheck racecheck; do
  log="$out/sanitizer-$tool.log"
  t0=$SECONDS
  if timeout "$limit" compute-sanitizer --tool "$tool" --error-exitcode 1 "$bin" "${sanitized_args[@]}" > "$log" 2>&1; then
    echo "PASS compute-sanitizer $tool: clean ($((SECONDS - t0)) s)"
  else
    rc=$?
    why="errors"
    if [ "$rc" -eq 124 ]; then why="timed out after $limit s"; fi
    echo "FAIL compute-sanitizer $tool: $why (see $log)"
    tail -20 "$log"
    exit 1
  fi
done
