// The Qwen3 network over one packed batch, queued on one stream: no host synchronisation, no
// allocation (everything lives in the caller's workspace). Independent of the GGUF loader, so
// kernel_check.cu runs it on random weights against a float64 CPU layer.
//
// Per layer (T rows; the activation regions of host/workspace_layout.h):
//   normed  = rmsnorm(residual) * attn_norm                       add_rmsnorm
//   wide    = normed Wqkv^T                     [T, (Hq + 2 Hkv) D]   cuBLASLt
//   narrow  = q | k | v after q/k RMSNorm and RoPE                 qk_norm_rope
//   wide    = attention(q, k, v)                [T, Hq D]           attention_mma (or the CUDA-core kernel)
//   residual += wide Wo^T                       fp32, through C      cuBLASLt
//   normed  = rmsnorm(residual) * ffn_norm
//   wide    = normed Wgu^T                      [T, 2F]
//   narrow  = silu(gate) * up                   [T, F]               swiglu
//   residual += narrow Wdown^T
// The last layer runs attention over every row (each output's keys), then gathers the output rows
// (last_rows) of the residual and of attention's output and runs O and the FFN on those S rows
// only. The head reads them: the relevance logit rmsnorm(x) * output_norm . (row 0 - row 1), or
// the L2-normalised rmsnorm(x) * output_norm (full width).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "cuda/gemm.h"
#include "cuda/host/attn_types.h"
#include "cuda/host/model_layout.h"
#include "cuda/host/workspace_layout.h"

namespace qrank::cuda {

using bf16 = __nv_bfloat16;

struct LayerWeights {
  const bf16* qkv = nullptr;      // [(Hq + 2 Hkv) D, H]
  const bf16* o = nullptr;        // [H, Hq D]
  const bf16* gate_up = nullptr;  // [2 F, H]
  const bf16* down = nullptr;     // [H, F]
  const float* attn_norm = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  const float* ffn_norm = nullptr;
};

struct ModelWeights {
  Qwen3Shape shape;
  const bf16* embeddings = nullptr;  // [rows >= vocab, H]
  std::vector<LayerWeights> layers;
  const float* output_norm = nullptr;
  const float* rope_inv_freq = nullptr;  // [D / 2]
  const float* head = nullptr;           // fp32 [2, H] (reranker), or null: the normalised embedding
};

// Device pointers of one batch's inputs (host/workspace_layout.h's InputLayout) and its counts.
struct BatchInputs {
  const int32_t* tokens = nullptr;
  const int32_t* positions = nullptr;
  const AttnSeq* segments = nullptr;
  const AttnTile* tiles = nullptr;
  const int32_t* last_rows = nullptr;
  int32_t rows = 0;
  int32_t outputs = 0;
  int32_t n_tiles = 0;
};

struct Activations {
  float* residual = nullptr;
  bf16* normed = nullptr;
  bf16* wide = nullptr;
  bf16* narrow = nullptr;
  float* last_residual = nullptr;
  bf16* last_attn = nullptr;
  float* out = nullptr;

  static Activations in(void* base, const ActivationLayout& layout);
};

enum class AttentionKernel { kTensorCores, kCudaCores };
int32_t tile_queries(AttentionKernel kernel);

class Forward {
 public:
  Forward(const ModelWeights& weights, Gemm& gemm, AttentionKernel kernel, cudaStream_t stream)
      : w_(weights), gemm_(gemm), kernel_(kernel), stream_(stream) {}

  // The whole network; should_abort is polled between layers (Error kAborted).
  void run(const BatchInputs& in, const Activations& act, const std::function<bool()>& should_abort) const;

  // The pieces, for kernel_check.cu.
  void embed(const BatchInputs& in, const Activations& act) const;
  void layer(int l, const BatchInputs& in, const Activations& act) const;       // every row
  void last_layer(int l, const BatchInputs& in, const Activations& act) const;  // output rows after attention
  void head(const BatchInputs& in, const Activations& act) const;               // act.out from act.last_residual

 private:
  void attention_block(int l, const BatchInputs& in, const Activations& act) const;  // act.wide = attention output
  void ffn(int l, float* residual, int rows, const Activations& act) const;

  const ModelWeights& w_;
  Gemm& gemm_;
  AttentionKernel kernel_;
  cudaStream_t stream_;
};

}  // namespace qrank::cuda
