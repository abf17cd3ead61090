#!/usr/bin/env bash
# On a machine with nvcc and an NVIDIA GPU (the H100 of the device tool): builds the CUDA kernels'
# check (native/cuda/kernel_check.cu: every kernel against a float64 CPU reference on fresh random
# inputs), runs it, then runs it again under compute-sanitizer (memcheck, then racecheck) with a
# fixed seed. Needs the CUDA runtime only (no cuBLAS, no Node). Exit 77: no GPU here.
#
#   bash scripts/cuda-check.sh [seed]          binaries go to $OUT (the device tool's) or build-cuda/
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build-cuda}"
mkdir -p "$out"
arch="${QRANK_CUDA_ARCH:-90}"
nvcc -std=c++17 -O2 -lineinfo -gencode="arch=compute_${arch},code=sm_${arch}" \
  native/cuda/kernels.cu native/cuda/kernel_check.cu -o "$out/kernel_check"
status=0
"$out/kernel_check" "$@" || status=$?
if [ "$status" -ne 0 ]; then exit "$status"; fi
if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 1 "$out/kernel_check" 12345 > "$out/sanitizer-$tool.log" 2>&1 \
      && echo "compute-sanitizer $tool: clean" || { echo "compute-sanitizer $tool: errors (see $out/sanitizer-$tool.log)"; tail -20 "$out/sanitizer-$tool.log"; exit 1; }
  done
fi
