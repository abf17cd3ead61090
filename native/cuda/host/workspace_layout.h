// Byte layouts of the CUDA engine's device memory for one packed batch, computed on the host (pure
// arithmetic, checked by host_test.cc): the activation workspace and the per-batch inputs that
// travel in one asynchronous copy. Every region starts on a kAlign boundary.
//
// Activations for R rows and S output sequences (bf16 unless noted):
//   residual       fp32 [R, H]   the residual stream
//   normed         [R, H]        RMSNorm output, input of the QKV and gate+up GEMMs
//   wide           [R, max(qkv, 2F, Hq D)]   the QKV GEMM output, then attention's output, then gate+up
//   narrow         [R, max(qkv, F)]          q [R, Hq, D] | k [R, Hkv, D] | v [R, Hkv, D], then SwiGLU's output
//   last_residual  fp32 [S, H]   the last layer after attention runs on the output rows only
//   last_attn      [S, Hq D]     (gathered rows of the residual and of attention's output)
//   out            fp32 [S, W]   what run() returns (W = EngineOutput::width)
// Inputs of one batch (int32 unless noted): tokens [R], positions [R], segments (AttnSeq),
// tiles (AttnTile), last_rows [S].
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/host/batch_plan.h"
#include "cuda/host/model_layout.h"
#include "qrank/engine.h"

namespace qrank::cuda {

constexpr size_t kAlign = 256;

struct ActivationLayout {
  int64_t rows = 0;
  int64_t outputs = 0;
  int64_t wide_cols = 0;
  int64_t narrow_cols = 0;
  size_t residual = 0, normed = 0, wide = 0, narrow = 0, last_residual = 0, last_attn = 0, out = 0;
  size_t bytes = 0;
};

ActivationLayout activation_layout(const Qwen3Shape& shape, int64_t rows, int64_t outputs, int64_t out_width);

struct InputLayout {
  size_t tokens = 0, positions = 0, segments = 0, tiles = 0, last_rows = 0;
  size_t bytes = 0;
};

InputLayout input_layout(const DeviceBatch& batch);
// An upper bound of input_layout(b).bytes for any batch of `rows` rows and `outputs` outputs cut in
// tiles of at least kAttnQueries (at most 2 segments per output: each part of a prefix group has
// one prefix segment and at least one member), for buffers sized ahead of the batches.
size_t input_bytes_bound(int64_t rows, int64_t outputs);
// Writes the batch's inputs at their offsets into dst (input_layout(batch).bytes bytes).
void pack_inputs(const DeviceBatch& batch, const InputLayout& layout, void* dst);

// What the CUDA engine writes per sequence for `spec`: the relevance logit (row 0 - row 1) of a
// 2-row head, or the L2-normalised last hidden state (full width). Error(kUnsupported) otherwise.
EngineOutput cuda_output(const OutputSpec& spec, int64_t hidden);

}  // namespace qrank::cuda
