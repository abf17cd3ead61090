#!/usr/bin/env bash
# The one GPU call (issue 11): on a bare GPU machine (nvcc, cuBLAS beside PyTorch, PyTorch +
# transformers, CMake; no Node, no FAISS, no llama.cpp) it builds the CUDA engine, checks it and
# benchmarks it beside PyTorch in one run, within a time budget, and writes its figures into $OUT.
#
# Prepare here, then call the device tool once:
#   npm run build:native && npm run build:cuda && npm run build && bash scripts/gpu-pack.sh
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu-pack"], timeout_s=480)
# gpu-check.json in $OUT is rewritten after every step, so a call cut short still returns what ran.
# Dry run on a machine without a GPU (the same steps on the CPU engine, the tiny models and small
# shapes; what needs a GPU says SKIP):
#   QRANK_GPU_CHECK_DRY_RUN=1 QRANK_CUBLAS_DIR=<cuBLAS> bash scripts/gpu-check.sh
#
# Steps, one line each (PASS / FAIL / SKIP: why, seconds), in order of importance so that the budget
# (QRANK_GPU_CHECK_BUDGET, default 420 s: no step starts past it, and every step's limits are cut to
# end within 60 s of it; the device call needs timeout_s >= 500) cuts the least useful:
#   environment  GPU, nvcc, PyTorch, cuBLAS            unpack    .gpu-pack (node, dist, addon, llama.cpp)
#   models       synthetic models generated here (tiny ones against golden.json's hashes; 0.6b and 4b
#                in the background)
#   build        CMake: QRANK_CUDA=ON, no FAISS, the carried llama.cpp libraries; warnings as errors
#   host-test    native/cuda/host/host_test.cc         kernels   scripts/cuda-check.sh (kernel_check,
#                                                                compute-sanitizer memcheck + racecheck)
#   golden-*     the engine on the tiny models against test/fixtures/golden.json (float64); SKIP, with
#                the engine's reason, when it does not serve their shape (16-value heads)
#   ref-reranker a few thousand random pairs, fresh every run (seed printed): the engine against
#                scripts/torch_qwen3.py float32 on the token ids the engine ran; Kendall tau >= 0.99
#   same-*       prefix reuse and packing against one pair per call, one call at a time
#   ref-embedder embeddings (whole and cut to `dimensions`) against torch_qwen3.py float32
#   bench-*      qrank_bench and torch_qwen3.py bench (bf16, sdpa) on the same model and shapes;
#                node-api: Reranker through Node within 10% of the C++ bench; the 4b shapes; last,
#                kernel-bench: kernel_check --bench (cuBLASLt's GEMM ceiling, each stage alone)
#   vector-gpu   qrank_vector_check (native/cuda/vector_check.cu): GPU flat f16/f32 and IVF-flat against a
#                float64 CPU reference, then 1M x 1024 realistic data, batches of 1, 32, 1024: QPS and
#                recall@10 against exact (at most 60 s, and vector-api 30 s; measurements skipped when the budget is short)
#   vector-api   scripts/gpu-vector-api.mjs: VectorIndex device 'cuda' through Node against the CPU index
#                (flat f16/f32, ivf; batching, filters, writes beside searches, save/load across devices)
# Tolerances are derived in scripts/gpu_check.py's docstring (bf16 operands, fp32 accumulation).
# Outputs in $OUT: gpu-check.json (every step and number), gpu-check.log, gpu-bench.png (or .svg),
# sanitizer-memcheck.log, sanitizer-racecheck.log. Exit status 1 when a step failed.
#
# Settings: QRANK_GPU_CHECK_SEED (default: fresh), QRANK_GPU_CHECK_4B=0 (skip the 4b shapes),
# QRANK_TORCH_QWEN3 (default scripts/torch_qwen3.py), QRANK_GPU_WORK (default /tmp/qrank-gpu).
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
REPO=$PWD
START=$SECONDS
DRY=${QRANK_GPU_CHECK_DRY_RUN:-0}
BUDGET=${QRANK_GPU_CHECK_BUDGET:-420}
GRACE=60  # the last step started within the budget may run this much past it
OUT=${OUT:-/tmp/qrank-gpu-out}
WORK=${QRANK_GPU_WORK:-/tmp/qrank-gpu}
PACK=$REPO/.gpu-pack
LOG=$OUT/gpu-check.log
SEED=${QRANK_GPU_CHECK_SEED:-$(od -An -N3 -tu4 /dev/urandom | tr -d ' ')}
TORCH_QWEN3=${QRANK_TORCH_QWEN3:-$REPO/scripts/torch_qwen3.py}
rm -rf "$WORK"
mkdir -p "$OUT" "$WORK/results" "$WORK/models" "$WORK/io"
: > "$LOG"
: > "$WORK/steps.jsonl"
R=$WORK/results
IO=$WORK/io
M=$WORK/models
B=$WORK/build
BENCH=$B/qrank_bench
NODE=$WORK/bin/node

# What the run is on: the GPU and the real shapes, or (dry run) the CPU, the tiny models, small shapes.
SHAPE_NAMES=(docs100_len256 docs1000_len128 queries32_docs100_len256 titles1000_len40)
if [ "$DRY" = 1 ]; then
  DEVICE=cpu TORCH_DEVICE=cpu SIZE=tiny DIMS=32
  SHAPES=(1x10x64 1x40x32 4x10x64 1x40x30-50)
  PAIRS=120 PAIR_QUERIES=8 TEXTS=16 REPEAT=1 LATENCY_RUNS=5 NODE_REPEAT=2
else
  DEVICE=cuda TORCH_DEVICE=cuda SIZE=0.6b DIMS=256
  SHAPES=(1x100x256 1x1000x128 32x100x256 1x1000x30-50)
  PAIRS=2000 PAIR_QUERIES=50 TEXTS=200 REPEAT=5 LATENCY_RUNS=50 NODE_REPEAT=10
fi
shape_flags() {  # --shape NAME=SPEC for the first $1 shapes (all by default)
  local n=${1:-${#SHAPES[@]}} i
  for ((i = 0; i < n; i++)); do printf -- '--shape %s=%s ' "${SHAPE_NAMES[$i]}" "${SHAPES[$i]}"; done
}

# --- step machinery ---------------------------------------------------------------------------------

say() { printf '%s' "$*" > "$WORK/detail"; }
record() {  # status name detail seconds
  printf '%s %s: %s (%s s)\n' "$1" "$2" "$3" "$4" | tee -a "$LOG"
  python3 -c 'import json,sys; print(json.dumps(dict(status=sys.argv[1], name=sys.argv[2], detail=sys.argv[3], seconds=int(sys.argv[4]))))' \
    "$1" "$2" "$3" "$4" >> "$WORK/steps.jsonl"
}
# run_step NAME FUNCTION...: the function returns 0 (PASS), 77 (SKIP) or else (FAIL), and says why.
run_step() {
  local name=$1 used=$((SECONDS - START)) t0=$SECONDS rc=0 status
  shift
  if [ "$used" -ge "$BUDGET" ]; then
    record SKIP "$name" "not started: $used s of the $BUDGET s budget used" 0
    return
  fi
  : > "$WORK/detail"
  echo "=== $name" >> "$LOG"
  "$@" >> "$LOG" 2>&1 || rc=$?
  case $rc in 0) status=PASS ;; 77) status=SKIP ;; *) status=FAIL ;; esac
  record "$status" "$name" "$(cat "$WORK/detail")" $((SECONDS - t0))
  # gpu-check.json as it stands, so that a run cut short by the device tool still brings figures back
  python3 "$REPO/scripts/gpu_check.py" report --work "$WORK" --out "$OUT" --quiet $([ "$DRY" = 1 ] && echo --dry-run) >> "$LOG" 2>&1
}
# cap SECONDS: a step's own limit, cut to what the budget leaves (plus GRACE for the last step)
cap() {
  local left=$((BUDGET + GRACE - (SECONDS - START)))
  [ "$left" -lt 5 ] && left=5
  [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}
# check ARGS...: a scripts/gpu_check.py check; its verdict line becomes the step's detail.
check() {
  local rc=0
  python3 "$REPO/scripts/gpu_check.py" "$@" > "$WORK/check.txt" || rc=$?
  cat "$WORK/check.txt"
  local line
  line=$(tail -1 "$WORK/check.txt")
  say "${line#*: }"
  return $rc
}
need() {  # need FILE WHAT: SKIP the step when an earlier one did not make FILE
  [ -e "$1" ] && return 0
  say "no $2 (an earlier step failed)"
  return 77
}
bench() { timeout "$(cap "${BENCH_TIMEOUT:-240}")" "$BENCH" "$@"; }
torch_qwen3() { timeout "$(cap "${TORCH_TIMEOUT:-240}")" python3 "$TORCH_QWEN3" "$@"; }
# The token-ids flag of torch_qwen3.py score/embed: --inputs (the contract) or --input (its first draft).
torch_inputs_flag() {
  if python3 "$TORCH_QWEN3" score --help 2> /dev/null | grep -q -- '--inputs'; then echo --inputs; else echo --input; fi
}
source_hash() { find "$@" -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16; }

# --- steps ------------------------------------------------------------------------------------------

step_environment() {
  local gpu
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2> /dev/null | head -1)
  nvidia-smi 2>&1 | head -15
  local cuda
  cuda=$(cmake -P scripts/find-cuda.cmake 2>&1)
  echo "$cuda"
  CUBLAS_LIB_DIR=$(dirname "$(sed -n 's/^QRANK_CUBLASLT_LIBRARY=//p' <<< "$cuda")")
  python3 - "$R/environment.json" "$gpu" "$DRY" "$SEED" << 'EOF'
import json, platform, subprocess, sys
out, gpu, dry, seed = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
env = dict(gpu=gpu or None, dry_run=dry, seed=seed, python=platform.python_version(), platform=platform.platform())
try:
    import torch, transformers
    env.update(torch=torch.__version__, transformers=transformers.__version__, torch_cuda=torch.version.cuda,
               torch_sees_gpu=torch.cuda.is_available())
except Exception as e:  # noqa: BLE001
    env["torch_error"] = str(e)
for tool, args in (("nvcc", ["nvcc", "--version"]), ("cmake", ["cmake", "--version"])):
    try:
        env[tool] = subprocess.run(args, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    except Exception:  # noqa: BLE001
        env[tool] = None
json.dump(env, open(out, "w"), indent=1)
print(json.dumps(env))
EOF
  if [ "$DRY" = 1 ]; then
    say "dry run on $(nproc) CPU cores, seed $SEED; ${gpu:-no GPU}"
    return 0
  fi
  if [ -z "$gpu" ]; then
    say "no GPU visible (nvidia-smi); seed $SEED"
    return 1
  fi
  say "$gpu; seed $SEED; cuBLAS in $CUBLAS_LIB_DIR"
}

step_unpack() {
  if [ ! -f "$PACK/MANIFEST" ]; then
    say ".gpu-pack is not here: run scripts/gpu-pack.sh and carry .gpu-pack"
    return 1
  fi
  mkdir -p "$WORK/bin" "$WORK/js" "$WORK/addon" "$WORK/llama"
  xz -dc "$PACK/node.xz" > "$NODE" && chmod +x "$NODE" || return 1
  tar -C "$WORK/js" -xJf "$PACK/js.tar.xz" && tar -C "$WORK/addon" -xJf "$PACK/addon.tar.xz" &&
    tar -C "$WORK/llama" -xJf "$PACK/llama.tar.xz" || return 1
  cat "$PACK/MANIFEST"
  ADDON_STALE=""
  [ "$(sed -n 's/^addon_sources //p' "$PACK/MANIFEST")" = "$(source_hash native addon)" ] || ADDON_STALE="native/ or addon/"
  [ "$(sed -n 's/^dist_sources //p' "$PACK/MANIFEST")" = "$(source_hash lib)" ] || ADDON_STALE="$ADDON_STALE lib/"
  python3 -c "import gguf" 2> /dev/null || export PYTHONPATH="$WORK/llama/src/gguf-py${PYTHONPATH:+:$PYTHONPATH}"
  export QRANK_VOCAB_GGUF=$WORK/llama/src/models/ggml-vocab-qwen2.gguf
  local v
  v=$("$NODE" --version) || { say "the carried node does not run here"; return 1; }
  say "node $v; addon and dist ${ADDON_STALE:+NOT }from these sources${ADDON_STALE:+ (changed: $ADDON_STALE; run scripts/gpu-pack.sh)}"
}

make_model() {  # kind shape file: the synthetic model, deterministic (lib/synthetic/model.ts)
  "$NODE" -e "require(process.argv[1]).makeTestModel({ kind: process.argv[2], shape: process.argv[3], out: process.argv[4] })
    .then((r) => console.log(r.sha256), (e) => { console.error(e.message); process.exit(1); })" \
    "$WORK/js/dist/synthetic/model.js" "$1" "$2" "$3"
}
start_model() {  # kind shape: generated in the background; wait_model waits for it
  local f=$M/$2-$1.gguf
  (make_model "$1" "$2" "$f" > "$f.log" 2>&1 && touch "$f.done" || touch "$f.failed") &
}
wait_model() {  # kind shape [seconds]
  local f=$M/$2-$1.gguf t=${3:-240}
  while [ ! -e "$f.done" ] && [ ! -e "$f.failed" ] && [ "$t" -gt 0 ]; do sleep 1; t=$((t - 1)); done
  [ -e "$f.done" ]
}

step_models() {
  [ -x "$NODE" ] || { say "no node"; return 77; }
  local kind sums=""
  for kind in reranker causal embedder; do
    make_model "$kind" tiny "$M/tiny-$kind.gguf" > "$M/tiny-$kind.sha256" || { say "tiny $kind: generation failed"; return 1; }
    sums="$sums $kind=$(cat "$M/tiny-$kind.sha256")"
  done
  if [ "$DRY" != 1 ]; then
    start_model reranker 0.6b
    start_model embedder 0.6b
    [ "${QRANK_GPU_CHECK_4B:-1}" = 0 ] || start_model reranker 4b
  fi
  python3 - $sums << 'EOF' || { say "the tiny models differ from those golden.json was computed from"; return 1; }
import json, sys
golden = json.load(open("test/fixtures/golden.json"))["models"]
bad = [kv for kv in sys.argv[1:] if golden[kv.split("=")[0]]["sha256"] != kv.split("=")[1]]
sys.exit(1 if bad else 0)
EOF
  say "tiny models match golden.json's; $([ "$DRY" = 1 ] && echo "dry run: no 0.6b/4b" || echo "0.6b reranker and embedder$([ "${QRANK_GPU_CHECK_4B:-1}" = 0 ] || echo ", 4b reranker") generating in the background")"
}

step_build() {
  need "$WORK/llama/libs/src/libllama.a" "carried llama.cpp" || return 77
  cmake -S "$REPO" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQRANK_CUDA=ON -DQRANK_VECTOR_INDEX=OFF -DQRANK_WERROR=ON \
    -DQRANK_LLAMA_LIBS="$WORK/llama/libs" -DQRANK_LLAMA_DIR="$WORK/llama/src" || { say "CMake configuration failed (see the log)"; return 1; }
  cmake --build "$B" --parallel "$(nproc)" || { say "the build failed (see the log)"; return 1; }
  local engine
  engine=$(python3 -c "import json; print(json.load(open('$B/qrank-build.json'))['cudaEngine'])")
  say "CUDA engine $([ "$engine" = True ] && echo built || echo "NOT in native/cuda/ yet (no_cuda.cc)"), $(ls "$B" | grep -c '^qrank_') programs"
}

step_host_test() {
  need "$B/qrank-build.json" "build" || return 77
  if [ ! -x "$B/qrank_cuda_host_test" ]; then say "no native/cuda/host/host_test.cc"; return 77; fi
  "$B/qrank_cuda_host_test" > "$WORK/host.txt" 2>&1
  local rc=$?
  cat "$WORK/host.txt"
  say "$(tail -1 "$WORK/host.txt")"
  return $rc
}

step_kernels() {
  need "$B/qrank_kernel_check" "kernel_check" || return 77
  local rc=0
  QRANK_KERNEL_CHECK=$B/qrank_kernel_check QRANK_SANITIZER_TIMEOUT=$(cap "${QRANK_SANITIZER_TIMEOUT:-60}") OUT=$OUT \
    bash scripts/cuda-check.sh "$SEED" > "$WORK/kernels.txt" 2>&1 || rc=$?
  cat "$WORK/kernels.txt"
  say "$(grep -E '^(PASS|FAIL|SKIP)' "$WORK/kernels.txt" | tr '\n' ';' | sed 's/;$//')"
  [ "$rc" -eq 77 ] && return 77
  return $rc
}

# engine_inputs ROLE MODEL INPUTS OUT [more qrank_bench flags]: the engine on fixed inputs.
engine_inputs() {
  local role=$1 model=$2 inputs=$3 out=$4
  shift 4
  bench --model "$model" --role "$role" --device "$DEVICE" --inputs "$inputs" --out "$out" "$@" || {
    say "the engine failed: $(tail -1 "$LOG" | cut -c1-300)"
    return 1
  }
}

step_golden() {  # role: reranker, causal or embedder
  local role=$1 model=$M/tiny-$1.gguf bench_role=reranker
  need "$BENCH" "qrank_bench" || return 77
  need "$model" "tiny $role model" || return 77
  [ "$role" = embedder ] && bench_role=embedder
  python3 scripts/gpu_check.py golden-inputs --role "$role" --out "$IO/golden-$role.json"
  if ! engine_inputs "$bench_role" "$model" "$IO/golden-$role.json" "$IO/golden-$role.out.json"; then
    # the engine may not serve the tiny models' shape (16-value heads): then their golden values
    # are the CPU engine's check (test/golden.test.ts) and the PyTorch steps below are this engine's
    if grep -q "UNSUPPORTED" "$WORK/detail" && ! grep -q "no CUDA device" "$WORK/detail"; then
      say "the engine does not serve the tiny $role: $(sed 's/.*cannot serve [^:]*: //; s/; and this build.*//' "$WORK/detail")"
      return 77
    fi
    return 1
  fi
  check check-golden --name "golden-$role" --role "$role" --engine "$IO/golden-$role.out.json" --model "$model" --result "$R/golden-$role.json"
}

# torch_ref KIND MODEL TOKENS OUT DTYPE: scripts/torch_qwen3.py on the token ids the engine ran.
torch_ref() {
  torch_qwen3 "$1" --model "$2" "$TORCH_INPUTS" "$3" --out "$4" --device "$TORCH_DEVICE" --dtype "$5" --attn sdpa
}

# model_ready ROLE [SHAPE [SECONDS]]: qrank_bench is built and the synthetic model generated (a dry run
# does not wait); status 77 (skipped) without the binary, 1 without the model.
model_ready() {
  local shape=${2:-$SIZE}
  need "$BENCH" "qrank_bench" || return 77
  [ "$DRY" = 1 ] || wait_model "$1" "$shape" ${3:+"$3"} || { say "the $shape $1 was not generated"; return 1; }
}

# torch_ready: the PyTorch reference is there; sets TORCH_INPUTS for torch_ref.
torch_ready() {
  [ -f "$TORCH_QWEN3" ] || { say "no $TORCH_QWEN3 (the PyTorch reference)"; return 1; }
  TORCH_INPUTS=$(torch_inputs_flag)
}

step_ref() {  # role: the engine on fresh random inputs against torch_qwen3.py (float32; bf16 beside it)
  local role=$1 model=$M/$SIZE-$1.gguf in task
  model_ready "$role" || return $?
  torch_ready || return 1
  if [ "$role" = reranker ]; then
    in=$IO/pairs task=score
    python3 scripts/gpu_check.py pairs --n "$PAIRS" --queries "$PAIR_QUERIES" --seed "$SEED" --out "$in.json"
    engine_inputs reranker "$model" "$in.json" "$in.out.json" --dump-tokens "$in.tokens.json" || return 1
  else
    in=$IO/texts task=embed
    python3 scripts/gpu_check.py texts --n "$TEXTS" --dimensions "$DIMS" --seed "$SEED" --out "$in.json"
    engine_inputs embedder "$model" "$in.json" "$in.out.json" --dump-tokens "$in.tokens-all.json" || return 1
    # the second half repeats the first with `dimensions`: the reference runs the first half
    python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sequences']; json.dump(dict(sequences=s[:len(s)//2]), open(sys.argv[2],'w'))" \
      "$in.tokens-all.json" "$in.tokens.json"
  fi
  torch_ref "$task" "$model" "$in.tokens.json" "$in.torch32.json" float32 || { say "torch_qwen3.py $task (float32) failed"; return 1; }
  torch_ref "$task" "$model" "$in.tokens.json" "$in.torch16.json" bfloat16 || echo "torch bf16 failed: compared with float32 only"
  check check-ref --name "ref-$role" --role "$role" --engine "$in.out.json" --ref "$in.torch32.json" \
    --ref-bf16 "$in.torch16.json" --inputs "$in.json" --model "$model" --result "$R/ref-$role.json"
}

step_same() {  # role: grouped calls (prefix reuse, packing) against one input per call, one at a time
  local role=$1 model=$M/$SIZE-$1.gguf inputs
  model_ready "$role" || return $?
  if [ "$role" = reranker ]; then
    inputs=$IO/pairs-same.json
    python3 scripts/gpu_check.py pairs --n 192 --queries 12 --seed $((SEED + 1)) --out "$inputs"
  else
    inputs=$IO/texts-same.json
    python3 scripts/gpu_check.py texts --n 48 --dimensions "$DIMS" --seed $((SEED + 1)) --out "$inputs"
  fi
  engine_inputs "$role" "$model" "$inputs" "$IO/same-$role.grouped.json" --submit grouped || return 1
  engine_inputs "$role" "$model" "$inputs" "$IO/same-$role.single.json" --submit single || return 1
  check check-same --name "same-$role" --a "$IO/same-$role.grouped.json" --b "$IO/same-$role.single.json" \
    --model "$model" --result "$R/same-$role.json"
}


step_bench_qrank() {  # size [number of shapes]
  local size=$1 model=$M/$1-reranker.gguf
  model_ready reranker "$size" 300 || return $?
  # shellcheck disable=SC2046
  bench --model "$model" --device "$DEVICE" $(shape_flags "${2:-}") --repeat "$REPEAT" --latency-runs "$LATENCY_RUNS" \
    --seed "$SEED" --dump-prompts "$IO/prompts-$size.tsv" > "$IO/bench-qrank-$size.json" || {
    say "qrank_bench failed: $(tail -1 "$LOG" | cut -c1-300)"
    return 1
  }
  mv "$IO/bench-qrank-$size.json" "$R/bench-qrank-$size.json"
  python3 - "$R/bench-qrank-$size.json" << 'EOF' > "$WORK/detail"
import json, sys
b = json.load(open(sys.argv[1]))
shapes = ", ".join(f"{s['name']} {s['tokens_per_s'] / 1000:.0f}k tok/s" for s in b["shapes"])
lat = b.get("latency") or {}
print(f"{b['backend']}: {shapes}; one {lat.get('docs', '-')}-doc request p50 {lat.get('p50_ms', 0):.1f} ms p99 {lat.get('p99_ms', 0):.1f} ms; "
      f"peak device memory {b['device_peak_bytes'] / 2**30:.2f} GiB", end="")
EOF
}

step_bench_torch() {  # size [number of shapes]
  local size=$1 model=$M/$1-reranker.gguf n=${2:-${#SHAPES[@]}} flags=() i
  [ -f "$TORCH_QWEN3" ] || { say "no $TORCH_QWEN3 (the PyTorch baseline)"; return 1; }
  need "$model" "$size reranker" || return 77
  local help
  help=$(python3 "$TORCH_QWEN3" bench --help 2>&1)
  if grep -q -- '--shape' <<< "$help"; then
    for ((i = 0; i < n; i++)); do flags+=(--shape "${SHAPE_NAMES[$i]}=${SHAPES[$i]}"); done
  fi
  if grep -q -- '--frame' <<< "$help"; then
    # the same prompt frame as the engine's (system prompt, instruction, query; suffix) around the documents
    python3 - "$IO/frame-pairs.json" << 'EOF'
import json, sys
pairs = [dict(query=f"query {i} auriculares bluetooth", document=d) for i in range(32) for d in ("wireless headphones", "刀具 套装")]
json.dump(dict(pairs=pairs), open(sys.argv[1], "w"))
EOF
    engine_inputs reranker "$model" "$IO/frame-pairs.json" "$IO/frame-pairs.out.json" --device auto || return 1
    python3 scripts/gpu_check.py frame --engine "$IO/frame-pairs.out.json" --out "$IO/frame.json"
    flags+=(--frame "$IO/frame.json")
  fi
  # fewer batch sizes to sweep and fewer latency runs than its defaults, where it takes them
  local sizes=32,64,128,256 reps=3 latency=30
  [ "$DRY" = 1 ] && sizes=4,8 reps=1 latency=5
  grep -q -- '--batch-sizes' <<< "$help" && flags+=(--batch-sizes "$sizes")
  grep -q -- '--reps' <<< "$help" && flags+=(--reps "$reps")
  grep -q -- '--latency-reps' <<< "$help" && flags+=(--latency-reps "$latency")
  TORCH_TIMEOUT=${TORCH_BENCH_TIMEOUT:-200} torch_qwen3 bench --model "$model" --out "$IO/bench-torch-$size.json" \
    --device "$TORCH_DEVICE" --dtype bfloat16 --attn sdpa "${flags[@]}" || { say "torch_qwen3.py bench failed or timed out: $(tail -1 "$LOG" | cut -c1-200)"; return 1; }
  mv "$IO/bench-torch-$size.json" "$R/bench-torch-$size.json"
  python3 - "$R/bench-torch-$size.json" << 'EOF' > "$WORK/detail"
import json, sys
b = json.load(open(sys.argv[1]))
print(", ".join(f"{s.get('name')} {s.get('tokens_per_s', 0) / 1000:.0f}k tok/s" for s in b.get("shapes", [])), end="")
EOF
}

step_node() {
  local model=$M/$SIZE-reranker.gguf docs
  need "$R/bench-qrank-$SIZE.json" "C++ bench of this shape" || return 77
  if [ -n "${ADDON_STALE:-}" ]; then say "the carried addon or dist/ was built from other sources ($ADDON_STALE): run scripts/gpu-pack.sh"; return 1; fi
  docs=$(cut -dx -f2 <<< "${SHAPES[0]}")
  QRANK_PREBUILD=$WORK/addon LD_LIBRARY_PATH="$WORK/addon/lib:${CUBLAS_LIB_DIR:-}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    timeout "$(cap 200)" "$NODE" bench/node-bench.mjs --model "$model" --prompts "$IO/prompts-$SIZE.tsv" --queries 1 --docs "$docs" \
    --device "$DEVICE" --repeat "$NODE_REPEAT" --dist "$WORK/js/dist" > "$IO/node-api.json" || { say "the Node bench failed: $(tail -1 "$LOG" | cut -c1-300)"; return 1; }
  check check-node --name node-api --node "$IO/node-api.json" --cpp "$R/bench-qrank-$SIZE.json" --shape "${SHAPE_NAMES[0]}" --result "$R/node-check.json"
}

step_vector_gpu() {  # qrank_vector_check: the GPU vector search against float64, then 1M x 1024 measured (at most 60 s)
  [ "$DRY" = 1 ] && { say "dry run: no GPU"; return 77; }
  need "$B/qrank_vector_check" "qrank_vector_check" || return 77
  local rc=0 limit measure=()
  limit=$(cap "${VECTOR_CHECK_TIMEOUT:-60}")
  # the measurements (data generation, exact truth, flat f16/f32, IVF) only when the budget leaves room
  [ "$limit" -ge 40 ] && measure=(--json "$IO/vector-gpu.json" --budget $((limit - 25)))
  timeout "$limit" "$B/qrank_vector_check" "$SEED" "${measure[@]}" > "$WORK/vector.txt" 2>&1 || rc=$?
  cat "$WORK/vector.txt"
  [ "$rc" -eq 77 ] && { say "no CUDA device here"; return 77; }
  [ -f "$IO/vector-gpu.json" ] && mv "$IO/vector-gpu.json" "$R/vector-gpu.json"
  say "$(grep -E '^(PASS|FAIL)' "$WORK/vector.txt" | head -3 | tr '\n' ' ')$(grep -c 'QPS' "$WORK/vector.txt") measurements$([ "$rc" -eq 124 ] && echo ', cut by the time limit')"
  [ "$rc" -eq 0 ]
}

step_vector_api() {  # VectorIndex device: 'cuda' through Node against the CPU index (scripts/gpu-vector-api.mjs)
  [ "$DRY" = 1 ] && { say "dry run: no GPU"; return 77; }
  [ -x "$NODE" ] || { say "no node"; return 77; }
  if [ -n "${ADDON_STALE:-}" ]; then say "the carried addon or dist/ was built from other sources ($ADDON_STALE): run scripts/gpu-pack.sh"; return 1; fi
  local rc=0
  QRANK_PREBUILD=$WORK/addon LD_LIBRARY_PATH="$WORK/addon/lib:${CUBLAS_LIB_DIR:-}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    timeout "$(cap 30)" "$NODE" scripts/gpu-vector-api.mjs --dist "$WORK/js/dist" > "$WORK/vector-api.txt" 2>&1 || rc=$?
  cat "$WORK/vector-api.txt"
  say "$(grep -E '^FAIL' "$WORK/vector-api.txt" | head -2 | tr '\n' ' ')$(tail -1 "$WORK/vector-api.txt")"
  [ "$rc" -eq 0 ]
}

step_kernel_bench() {  # kernel_check --bench: the GEMM ceiling through cuBLASLt, each stage alone, the network
  [ "$DRY" = 1 ] && { say "dry run: no GPU"; return 77; }
  need "$B/qrank_kernel_check" "kernel_check" || return 77
  grep -q -- '--bench' native/cuda/kernel_check.cu || { say "this kernel_check has no --bench"; return 77; }
  local rc=0
  timeout "$(cap "${KERNEL_BENCH_TIMEOUT:-120}")" "$B/qrank_kernel_check" --bench --json "$IO/kernel-bench.json" || rc=$?
  [ "$rc" -eq 77 ] && { say "no CUDA device here"; return 77; }
  [ "$rc" -eq 0 ] || { say "kernel_check --bench failed (exit $rc; 124: timed out)"; return 1; }
  mv "$IO/kernel-bench.json" "$R/kernel-bench.json"
  say "figures in gpu-check.json (results.kernel-bench)"
}

step_4b() {  # which: qrank or torch
  [ "$DRY" = 1 ] && { say "dry run: no 4b model"; return 77; }
  [ "${QRANK_GPU_CHECK_4B:-1}" = 0 ] && { say "QRANK_GPU_CHECK_4B=0"; return 77; }
  if [ "$1" = qrank ]; then step_bench_qrank 4b 2; else step_bench_torch 4b 1; fi
}

# --- the run ----------------------------------------------------------------------------------------

echo "qrank gpu-check: $([ "$DRY" = 1 ] && echo "DRY RUN (CPU engine, tiny models, small shapes)" || echo "GPU run") seed $SEED, budget $BUDGET s, out $OUT"
run_step environment step_environment
run_step unpack step_unpack
run_step models step_models
run_step build step_build
run_step host-test step_host_test
run_step kernels step_kernels
run_step golden-reranker step_golden reranker
run_step golden-causal step_golden causal
run_step golden-embedder step_golden embedder
run_step ref-reranker step_ref reranker
run_step same-reranker step_same reranker
run_step ref-embedder step_ref embedder
run_step same-embedder step_same embedder
run_step "bench-qrank-$SIZE" step_bench_qrank "$SIZE"
run_step "bench-torch-$SIZE" step_bench_torch "$SIZE"
run_step node-api step_node
run_step vector-gpu step_vector_gpu
run_step vector-api step_vector_api
run_step bench-qrank-4b step_4b qrank
run_step bench-torch-4b step_4b torch
run_step kernel-bench step_kernel_bench
for job in $(jobs -p); do kill "$job" 2> /dev/null; done  # model generation the budget left unused
python3 scripts/gpu_check.py report --work "$WORK" --out "$OUT" $([ "$DRY" = 1 ] && echo --dry-run) | tee -a "$LOG"
echo "qrank gpu-check: $((SECONDS - START)) s; outputs in $OUT: $(ls "$OUT" | tr '\n' ' ')"
! grep -q '"status": "FAIL"' "$WORK/steps.jsonl"
