#!/usr/bin/env bash
# Packs, on this machine, what scripts/gpu-check.sh needs on the GPU machine and cannot get there (it
# has nvcc, cuBLAS, PyTorch and CMake; no Node, no npm registry, no FAISS, no llama.cpp), into
# .gpu-pack/ (git-ignored), which the device tool's run carries:
#   node.xz          this machine's node binary (it needs glibc and libstdc++ only)
#   js.tar.xz        dist/ (the compiled lib/) and the node_modules it loads
#   addon.tar.xz     the CUDA build's addon (build-cuda/build/Release/qrank.node) and the shared
#                    libraries it needs that the GPU machine lacks (FAISS's BLAS, LAPACK, OpenMP)
#   llama.tar.xz     the CPU build's llama.cpp static libraries, llama.cpp's headers, nlohmann/json,
#                    gguf-py (for scripts/torch_qwen3.py) and the Qwen vocabulary the synthetic
#                    models are generated with
#   MANIFEST         what was packed, from which sources (hashes gpu-check.sh compares), and sizes
# Needs: the CPU build (build-core/), the CUDA build (npm run build:cuda), dist/ (npm run build).
#
#   bash scripts/gpu-pack.sh          then: run(command="bash scripts/gpu-check.sh", carry=[".gpu-pack"])
set -euo pipefail
cd "$(dirname "$0")/.."
pack=.gpu-pack
limit=$((64 * 1024 * 1024))  # the device tool carries 64 MiB in all, the working tree included
llama=deps/llama.cpp
addon=build-cuda/build/Release/qrank.node

for need in build-core/llama.cpp/src/libllama.a "$addon" dist/index.js "$llama/include/llama.h"; do
  [ -e "$need" ] || { echo "gpu-pack: $need is missing: run npm run build:native, npm run build:cuda and npm run build first" >&2; exit 1; }
done
rm -rf "$pack"
mkdir -p "$pack"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The hash of the sources a packed piece was built from; gpu-check.sh recomputes it over its tree.
source_hash() { find "$@" -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16; }

t0=$SECONDS
xz -T0 -6 -c "$(command -v node)" > "$pack/node.xz"

mkdir -p "$stage/js/node_modules"
cp -r dist "$stage/js/dist"
cp package.json "$stage/js/"  # node-gyp-build reads the package name (QRANK_PREBUILD) from it
for m in node-gyp-build zod lru-cache csv-parse stream-json stream-chain; do
  cp -rL "node_modules/$m" "$stage/js/node_modules/$m"
done
tar -C "$stage/js" -cJf "$pack/js.tar.xz" .

mkdir -p "$stage/addon/build/Release" "$stage/addon/lib"
cp "$addon" "$stage/addon/build/Release/"
# the addon's shared libraries but those every Linux has and cuBLASLt (PyTorch's, found there)
ldd "$addon" | awk '/=> \// {print $1, $3}' | while read -r name path; do
  case "$name" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libcublasLt.so*|libcublas.so*) ;;
    *) cp -L "$path" "$stage/addon/lib/$name" ;;
  esac
done
tar -C "$stage/addon" -cJf "$pack/addon.tar.xz" .

mkdir -p "$stage/llama/libs/src" "$stage/llama/libs/ggml/src" "$stage/llama/src/ggml" "$stage/llama/src/vendor" "$stage/llama/src/models"
cp build-core/llama.cpp/src/libllama.a "$stage/llama/libs/src/"
cp build-core/llama.cpp/ggml/src/libggml*.a "$stage/llama/libs/ggml/src/"
cp -r "$llama/include" "$stage/llama/src/include"
cp -r "$llama/ggml/include" "$stage/llama/src/ggml/include"
cp -r "$llama/vendor/nlohmann" "$stage/llama/src/vendor/nlohmann"
cp -r "$llama/gguf-py" "$stage/llama/src/gguf-py"
cp "$llama/models/ggml-vocab-qwen2.gguf" "$stage/llama/src/models/"
tar -C "$stage/llama" -cJf "$pack/llama.tar.xz" .

{
  echo "packed $(date -u +%FT%TZ) on $(uname -n) in $((SECONDS - t0)) s"
  echo "node $(node --version)"
  echo "addon_sources $(source_hash native addon)"
  echo "dist_sources $(source_hash lib)"
  echo "addon_libs $(ls "$stage/addon/lib" | tr '\n' ' ')"
  (cd "$pack" && ls -l --block-size=1 node.xz js.tar.xz addon.tar.xz llama.tar.xz | awk '{print "size", $NF, $5}')
} > "$pack/MANIFEST"

packed=$(du -cb "$pack" | tail -1 | cut -f1)
tree=$({ git ls-files -co --exclude-standard -z 2> /dev/null || true; } | xargs -0 -r du -cb 2> /dev/null | tail -1 | cut -f1)
tree=${tree:-0}
cat "$pack/MANIFEST"
echo "gpu-pack: $((packed / 1024 / 1024)) MiB packed + $((tree / 1024 / 1024)) MiB working tree = $(((packed + tree) / 1024 / 1024)) MiB of the 64 MiB a run carries"
if [ $((packed + tree)) -gt "$limit" ]; then
  echo "gpu-pack: over the device tool's 64 MiB" >&2
  exit 1
fi
