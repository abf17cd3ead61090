// The CUDA engine's element-wise and attention kernels, launched on a caller's stream. They need
// the CUDA runtime only (no cuBLAS): the GEMMs between them are cuBLASLt's (gemm.h). Layouts are
// those of one packed batch of T tokens (sequences end to end, no padding):
//   residual  float [T, H]          the residual stream, kept in fp32
//   normed    bf16  [T, H]          input of a GEMM
//   qkv       bf16  [T, (Hq + 2 Hkv) D]   output of the fused QKV GEMM
//   q         bf16  [T, Hq, D]      k, v bf16 [T, Hkv, D]
// The attention work list (AttnSeq segments, AttnTile tiles) is host/attn_types.h's, written by
// the planner (host/batch_plan.h). Nothing here synchronises the device: each launcher queues work
// on `stream` and returns cudaGetLastError(), or cudaErrorInvalidValue for shapes it cannot run.
// Pointers must be 16-byte aligned (the engine's regions are 256-byte aligned).
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "cuda/host/attn_types.h"
#include "cuda/host/weight_format.h"

namespace qrank::cuda {

// Converts n elements of a GGUF tensor (already on the device) to bf16, rounding to nearest even
// (host/weight_format.h is the reference). Q8_0: n is a multiple of 32.
cudaError_t convert_to_bf16(WeightType type, const void* src, __nv_bfloat16* dst, int64_t n, cudaStream_t stream);

// residual += delta (when delta is not null), then normed = rmsnorm(residual) * weight, per row.
// hidden: a multiple of 4.
cudaError_t add_rmsnorm(float* residual, const __nv_bfloat16* delta, const float* weight, __nv_bfloat16* normed, int rows, int hidden,
                        float eps, cudaStream_t stream);

// residual = embedding rows of `tokens` (bf16 table [vocab, H]) as fp32. hidden: a multiple of 2.
cudaError_t embed_tokens(const int32_t* tokens, const __nv_bfloat16* table, float* residual, int rows, int hidden, cudaStream_t stream);

// Splits the fused QKV output, applies Qwen3's per-head RMSNorm to q and k (weights [D]) and
// NeoX-style RoPE (pairs i, i + D/2 rotated by position * inv_freq[i]) at each token's position,
// and writes q, k, v. inv_freq [D/2]: theta^(-2i / D), computed on the host (host/model_layout.h's
// rope_inv_freq).
// head_dim: 128.
cudaError_t qk_norm_rope(const __nv_bfloat16* qkv, const int32_t* positions, const float* q_norm, const float* k_norm, const float* inv_freq,
                         __nv_bfloat16* q, __nv_bfloat16* k, __nv_bfloat16* v, int rows, int n_head, int n_head_kv, int head_dim,
                         float eps, cudaStream_t stream);

// act = silu(gate) * up, from the fused gate+up GEMM output [T, 2F] (gate first). ffn: a multiple of 8.
cudaError_t swiglu(const __nv_bfloat16* gate_up, __nv_bfloat16* act, int rows, int ffn, cudaStream_t stream);

// Causal variable-length attention with online softmax, fp32 accumulation: out [T, Hq, D] bf16,
// scale 1/sqrt(D), GQA (query head h reads key/value head h / (Hq / Hkv)). head_dim must be 128.
//  attention:     CUDA cores, one warp per query, tiles of kAttnQueries (the simple reference)
//  attention_mma: tensor cores (mma.sync m16n8k16 bf16, fp32 accumulation), FlashAttention-2
//                 style, tiles of kAttnMmaQueries queries, 64 keys per step
cudaError_t attention(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const AttnSeq* seqs, const AttnTile* tiles,
                      int n_tiles, __nv_bfloat16* out, int n_head, int n_head_kv, int head_dim, float scale, cudaStream_t stream);
cudaError_t attention_mma(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const AttnSeq* seqs,
                          const AttnTile* tiles, int n_tiles, __nv_bfloat16* out, int n_head, int n_head_kv, int head_dim, float scale,
                          cudaStream_t stream);

// rows[i] = src[index[i]] for n rows of `width` values (the last token of each sequence).
cudaError_t gather_rows(const float* src, const int32_t* index, float* rows, int n, int width, cudaStream_t stream);
cudaError_t gather_rows(const __nv_bfloat16* src, const int32_t* index, __nv_bfloat16* rows, int n, int width, cudaStream_t stream);

// Reranker head: logits[i] = <x, head row 0> - <x, head row 1> with x = rmsnorm(rows[i]) * norm:
// the relevance logit (yes - no; P(yes) = sigmoid of it). head: fp32 [2, H], rows in OutputSpec order.
cudaError_t yes_no_head(const float* rows, const float* norm, const float* head, float* logits, int n, int hidden, float eps,
                        cudaStream_t stream);

// Embedder output: out[i] = normalise(first `dims` of rmsnorm(rows[i]) * norm), fp32 [n, dims].
cudaError_t embed_output(const float* rows, const float* norm, float* out, int n, int hidden, int dims, float eps, cudaStream_t stream);

// Whether this build's kernels run on the current device (a kernel image for its architecture).
cudaError_t probe_kernels();

}  // namespace qrank::cuda
