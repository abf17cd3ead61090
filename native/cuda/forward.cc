#include "cuda/forward.h"

#include <cmath>

#include "cuda/kernels.cuh"

namespace qrank::cuda {

Activations Activations::in(void* base, const ActivationLayout& a) {
  auto* b = static_cast<uint8_t*>(base);
  Activations x;
  x.residual = reinterpret_cast<float*>(b + a.residual);
  x.normed = reinterpret_cast<bf16*>(b + a.normed);
  x.wide = reinterpret_cast<bf16*>(b + a.wide);
  x.narrow = reinterpret_cast<bf16*>(b + a.narrow);
  x.last_residual = reinterpret_cast<float*>(b + a.last_residual);
  x.last_attn = reinterpret_cast<bf16*>(b + a.last_attn);
  x.out = reinterpret_cast<float*>(b + a.out);
  return x;
}

int32_t tile_queries(AttentionKernel kernel) { return kernel == AttentionKernel::kTensorCores ? kAttnMmaQueries : kAttnQueries; }

void Forward::run(const BatchInputs& in, const Activations& act, const std::function<bool()>& should_abort) const {
  embed(in, act);
  const int layers = static_cast<int>(w_.layers.size());
  for (int l = 0; l + 1 < layers; ++l) {
    if (should_abort && should_abort()) throw Error(ErrorCode::kAborted, "aborted");
    layer(l, in, act);
  }
  if (should_abort && should_abort()) throw Error(ErrorCode::kAborted, "aborted");
  last_layer(layers - 1, in, act);
  head(in, act);
}

void Forward::embed(const BatchInputs& in, const Activations& act) const {
  check_cuda(embed_tokens(in.tokens, w_.embeddings, act.residual, in.rows, static_cast<int>(w_.shape.hidden), stream_), "embed_tokens");
}

void Forward::attention_block(int l, const BatchInputs& in, const Activations& act) const {
  const Qwen3Shape& s = w_.shape;
  const LayerWeights& lw = w_.layers[l];
  const int rows = in.rows, hidden = static_cast<int>(s.hidden);
  const float eps = static_cast<float>(s.rms_eps);
  check_cuda(add_rmsnorm(act.residual, nullptr, lw.attn_norm, act.normed, rows, hidden, eps, stream_), "add_rmsnorm (attention)");
  gemm_.linear(act.normed, lw.qkv, act.wide, rows, s.qkv_width(), s.hidden);
  bf16* q = act.narrow;
  bf16* k = q + static_cast<int64_t>(rows) * s.q_width();
  bf16* v = k + static_cast<int64_t>(rows) * s.kv_width();
  const int heads = static_cast<int>(s.heads), kv_heads = static_cast<int>(s.kv_heads), dim = static_cast<int>(s.head_dim);
  check_cuda(qk_norm_rope(act.wide, in.positions, lw.q_norm, lw.k_norm, w_.rope_inv_freq, q, k, v, rows, heads, kv_heads, dim, eps, stream_),
             "qk_norm_rope");
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dim)));
  const auto launch = kernel_ == AttentionKernel::kTensorCores ? attention_mma : attention;
  check_cuda(launch(q, k, v, in.segments, in.tiles, in.n_tiles, act.wide, heads, kv_heads, dim, scale, stream_), "attention");
}

void Forward::ffn(int l, float* residual, int rows, const Activations& act) const {
  const Qwen3Shape& s = w_.shape;
  const LayerWeights& lw = w_.layers[l];
  check_cuda(add_rmsnorm(residual, nullptr, lw.ffn_norm, act.normed, rows, static_cast<int>(s.hidden), static_cast<float>(s.rms_eps), stream_),
             "add_rmsnorm (ffn)");
  gemm_.linear(act.normed, lw.gate_up, act.wide, rows, 2 * s.ffn, s.hidden);
  check_cuda(swiglu(act.wide, act.narrow, rows, static_cast<int>(s.ffn), stream_), "swiglu");
  gemm_.linear_add(act.narrow, lw.down, residual, rows, s.hidden, s.ffn);
}

void Forward::layer(int l, const BatchInputs& in, const Activations& act) const {
  attention_block(l, in, act);
  gemm_.linear_add(act.wide, w_.layers[l].o, act.residual, in.rows, w_.shape.hidden, w_.shape.q_width());
  ffn(l, act.residual, in.rows, act);
}

void Forward::last_layer(int l, const BatchInputs& in, const Activations& act) const {
  const Qwen3Shape& s = w_.shape;
  attention_block(l, in, act);
  check_cuda(gather_rows(act.residual, in.last_rows, act.last_residual, in.outputs, static_cast<int>(s.hidden), stream_), "gather_rows (residual)");
  check_cuda(gather_rows(act.wide, in.last_rows, act.last_attn, in.outputs, static_cast<int>(s.q_width()), stream_), "gather_rows (attention)");
  gemm_.linear_add(act.last_attn, w_.layers[l].o, act.last_residual, in.outputs, s.hidden, s.q_width());
  ffn(l, act.last_residual, in.outputs, act);
}

void Forward::head(const BatchInputs& in, const Activations& act) const {
  const int hidden = static_cast<int>(w_.shape.hidden);
  const float eps = static_cast<float>(w_.shape.rms_eps);
  if (w_.head) {
    check_cuda(yes_no_head(act.last_residual, w_.output_norm, w_.head, act.out, in.outputs, hidden, eps, stream_), "yes_no_head");
  } else {
    check_cuda(embed_output(act.last_residual, w_.output_norm, act.out, in.outputs, hidden, hidden, eps, stream_), "embed_output");
  }
}

}  // namespace qrank::cuda
