// The CUDA engine's element-wise and attention kernels (issue 5), launched on a caller's stream.
// They need the CUDA runtime only (no cuBLAS): the GEMMs between them are cuBLASLt's. Layouts are
// those of one packed batch of T tokens (sequences end to end, no padding):
//   residual  float [T, H]          the residual stream, kept in fp32
//   normed    bf16  [T, H]          input of a GEMM
//   qkv       bf16  [T, (Hq + 2 Hkv) D]   output of the fused QKV GEMM
//   q         bf16  [T, Hq, D]      k, v bf16 [T, Hkv, D]
// Nothing here synchronises the device: each launcher queues work on `stream` and returns.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qrank::cuda {

// GGUF tensor element types the engine accepts as weights (ggml_type values).
enum class WeightType : int { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };

// Converts n elements of a GGUF tensor (already on the device) to bf16. Q8_0: n is a multiple of 32.
cudaError_t convert_to_bf16(WeightType type, const void* src, __nv_bfloat16* dst, int64_t n, cudaStream_t stream);

// residual += delta (when delta is not null), then normed = rmsnorm(residual) * weight, per row.
cudaError_t add_rmsnorm(float* residual, const __nv_bfloat16* delta, const float* weight, __nv_bfloat16* normed, int rows, int hidden,
                        float eps, cudaStream_t stream);

// residual = embedding rows of `tokens` (bf16 table [vocab, H]) as fp32.
cudaError_t embed_tokens(const int32_t* tokens, const __nv_bfloat16* table, float* residual, int rows, int hidden, cudaStream_t stream);

// Splits the fused QKV output, applies Qwen3's per-head RMSNorm to q and k (weights [D]) and
// NeoX-style RoPE (pairs i, i + D/2; theta^(-2i/D)) at each token's position, and writes q, k, v.
cudaError_t qk_norm_rope(const __nv_bfloat16* qkv, const int32_t* positions, const float* q_norm, const float* k_norm,
                         __nv_bfloat16* q, __nv_bfloat16* k, __nv_bfloat16* v, int rows, int n_head, int n_head_kv, int head_dim,
                         float eps, float rope_theta, cudaStream_t stream);

// act = silu(gate) * up, from the fused gate+up GEMM output [T, 2F] (gate first).
cudaError_t swiglu(const __nv_bfloat16* gate_up, __nv_bfloat16* act, int rows, int ffn, cudaStream_t stream);

// One sequence of a packed batch, for attention. Its queries are rows [q_start, q_start + q_len)
// of q; its keys are a shared prefix (rows [prefix_start, prefix_start + prefix_len) of k/v, empty
// when prefix_len is 0) followed by its own rows [kv_start, kv_start + q_len). Query i sees the
// whole prefix and its own keys 0..i (causal).
struct AttnSeq {
  int32_t q_start;
  int32_t q_len;
  int32_t prefix_start;
  int32_t prefix_len;
  int32_t kv_start;
};

// Queries per attention block; the host lists one work item per (sequence, tile of kAttnQueries).
constexpr int kAttnQueries = 8;
struct AttnTile {
  int32_t seq;
  int32_t q_offset;  // first query of the tile, within the sequence
};

// Causal variable-length attention with online softmax, fp32 accumulation: out [T, Hq, D] bf16.
// head_dim must be 128 (Qwen3). First, correct version on CUDA cores; tensor cores come next.
cudaError_t attention(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const AttnSeq* seqs, const AttnTile* tiles,
                      int n_tiles, __nv_bfloat16* out, int n_head, int n_head_kv, int head_dim, float scale, cudaStream_t stream);

// rows[i] = residual[index[i]] (the last token of each sequence), as fp32.
cudaError_t gather_rows(const float* residual, const int32_t* index, float* rows, int n, int hidden, cudaStream_t stream);

// Reranker head: scores[i] = P(yes) = sigmoid(<x, w_yes> - <x, w_no>) with x = rmsnorm(rows[i]) * norm.
// head holds the two rows [no; yes] of the vocabulary head, fp32 [2, H].
cudaError_t yes_no_head(const float* rows, const float* norm, const float* head, float* scores, int n, int hidden, float eps,
                        cudaStream_t stream);

// Embedder output: out[i] = normalise(first `dims` of rmsnorm(rows[i]) * norm), fp32 [n, dims].
cudaError_t embed_output(const float* rows, const float* norm, float* out, int n, int hidden, int dims, float eps, cudaStream_t stream);

}  // namespace qrank::cuda
