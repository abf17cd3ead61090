// What the CUDA engine serves and where every weight of a Qwen3 GGUF goes on the device.
//
// The model's facts (hidden, layers, heads, kv_heads, head_dim, ffn_length, vocab, rope_theta,
// rms_eps) come from the GGUF metadata (ModelInfo). plan_weights() checks every tensor the
// engine reads against them and refuses the file with Error(kBadModel) on a missing tensor or a
// shape that does not match, Error(kUnsupported) on a weight format the engine cannot read.
//
// GGUF shapes: ne[0] is the input (contiguous) dimension, so a linear weight with ne = [in, out]
// is a row-major [out, in] matrix, y = W x. Qwen3 in llama.cpp uses NeoX RoPE: q/k rows are in
// Hugging Face's order, never permuted. No biases.
//
// Device layouts (bf16, row-major [rows, cols], cols = the input dimension), per layer:
//   qkv      [(Hq + 2 Hkv) D, H]   rows of attn_q, then attn_k, then attn_v
//   o        [H, Hq D]             attn_output
//   gate_up  [2 F, H]              rows of ffn_gate, then ffn_up
//   down     [H, F]                ffn_down
// and the token embeddings [vocab rows, H]. Norm weights (attn_norm, attn_q_norm, attn_k_norm,
// ffn_norm, output_norm) stay fp32 vectors. The output head is not here: OutputSpec names its rows
// and the engine reads them with GgufFile::rows (fp32).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qrank/gguf_file.h"
#include "qrank/model.h"
#include "qrank/recipe.h"

namespace qrank::cuda {

constexpr int64_t kHeadDim = 128;  // the attention kernels' head size (every Qwen3 model)

struct Qwen3Shape {
  int64_t hidden = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn = 0;
  int64_t vocab = 0;
  double rope_theta = 0;
  double rms_eps = 0;

  int64_t q_width() const { return heads * head_dim; }
  int64_t kv_width() const { return kv_heads * head_dim; }
  int64_t qkv_width() const { return q_width() + 2 * kv_width(); }
};

// Why the CUDA engine cannot serve a model with these facts in this role ("" when it can). Only
// the model is judged here; the device is cuda_status()'s business.
std::string model_unsupported_reason(const ModelInfo& info, Role role);

// The shape from the facts; Error(kUnsupported) with model_unsupported_reason when not servable.
Qwen3Shape qwen3_shape(const ModelInfo& info, Role role);

// RoPE's inverse frequencies theta^(-2i / D) for i < D / 2, computed in double, rounded to fp32 (as
// Hugging Face computes them in fp32).
std::vector<float> rope_inv_freq(double theta, int64_t head_dim);

// One GGUF tensor copied into rows [first_row, first_row + tensor.ne[1]) of a fused matrix.
struct MatrixPart {
  TensorInfo tensor;
  int64_t first_row = 0;
};

struct FusedMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<MatrixPart> parts;
  uint64_t elements() const { return static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols); }
};

struct LayerPlan {
  FusedMatrix qkv, o, gate_up, down;
  TensorInfo attn_norm, q_norm, k_norm, ffn_norm;  // fp32 vectors of H, D, D, H values
};

struct WeightPlan {
  FusedMatrix embeddings;  // [vocab rows of the table, H]
  std::vector<LayerPlan> layers;
  TensorInfo output_norm;
  uint64_t device_bytes() const;  // bf16 matrices + fp32 vectors
  uint64_t source_bytes() const;  // bytes read from the file
};

WeightPlan plan_weights(const Qwen3Shape& shape, const std::vector<TensorInfo>& tensors);

}  // namespace qrank::cuda
