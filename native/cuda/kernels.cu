// The CUDA engine's element-wise and attention kernels: see kernels.cuh for layouts. First,
// correct versions (METHOD.md: correct first); each is checked against a float64 CPU reference by
// kernel_check.cu on the GPU machine before any tuning.
#include <cmath>
#include <cuda_fp16.h>

#include "kernels.cuh"

namespace qrank::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < (blockDim.x >> 5) ? partial[lane] : 0.f;
    w = warp_sum(w);
    if (lane == 0) total = w;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();  // partial/total may be reused by a following call
  return r;
}

__global__ void k_f32_to_bf16(const float* __restrict__ s, __nv_bfloat16* __restrict__ d, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) d[i] = __float2bfloat16(s[i]);
}

__global__ void k_f16_to_bf16(const __half* __restrict__ s, __nv_bfloat16* __restrict__ d, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) d[i] = __float2bfloat16(__half2float(s[i]));
}

// Q8_0: blocks of 34 bytes, an fp16 scale then 32 int8 values.
__global__ void k_q80_to_bf16(const uint8_t* __restrict__ s, __nv_bfloat16* __restrict__ d, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const uint8_t* block = s + (i >> 5) * 34;
    const float scale = __half2float(*reinterpret_cast<const __half*>(block));
    d[i] = __float2bfloat16(scale * static_cast<float>(static_cast<int8_t>(block[2 + (i & 31)])));
  }
}

__global__ void k_add_rmsnorm(float* __restrict__ residual, const __nv_bfloat16* __restrict__ delta, const float* __restrict__ weight,
                              __nv_bfloat16* __restrict__ normed, int hidden, float eps) {
  float* x = residual + (int64_t)blockIdx.x * hidden;
  const __nv_bfloat16* dx = delta ? delta + (int64_t)blockIdx.x * hidden : nullptr;
  float ss = 0.f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = x[i];
    if (dx) {
      v += __bfloat162float(dx[i]);
      x[i] = v;
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / hidden + eps);
  __nv_bfloat16* y = normed + (int64_t)blockIdx.x * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) y[i] = __float2bfloat16(x[i] * inv * weight[i]);
}

__global__ void k_embed_tokens(const int32_t* __restrict__ tokens, const __nv_bfloat16* __restrict__ table, float* __restrict__ residual, int hidden) {
  const __nv_bfloat16* row = table + (int64_t)tokens[blockIdx.x] * hidden;
  float* out = residual + (int64_t)blockIdx.x * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = __bfloat162float(row[i]);
}

// One block of head_dim / 2 threads per (token, head); thread i holds the pair (i, i + D/2).
// blockIdx.y: q heads, then k heads, then v heads (copied).
__global__ void k_qk_norm_rope(const __nv_bfloat16* __restrict__ qkv, const int32_t* __restrict__ positions, const float* __restrict__ q_norm,
                               const float* __restrict__ k_norm, __nv_bfloat16* __restrict__ q, __nv_bfloat16* __restrict__ k,
                               __nv_bfloat16* __restrict__ v, int n_head, int n_head_kv, int head_dim, float eps, float rope_theta) {
  const int row = blockIdx.x, head = blockIdx.y, i = threadIdx.x, half = head_dim / 2;
  const __nv_bfloat16* src = qkv + (int64_t)row * (n_head + 2 * n_head_kv) * head_dim + (int64_t)head * head_dim;
  float a = __bfloat162float(src[i]), b = __bfloat162float(src[i + half]);
  if (head >= n_head + n_head_kv) {  // v: a plain copy
    __nv_bfloat16* dst = v + ((int64_t)row * n_head_kv + (head - n_head - n_head_kv)) * head_dim;
    dst[i] = src[i];
    dst[i + half] = src[i + half];
    return;
  }
  const bool is_q = head < n_head;
  const float* w = is_q ? q_norm : k_norm;
  const float inv = rsqrtf(block_sum(a * a + b * b) / head_dim + eps);
  a *= inv * w[i];
  b *= inv * w[i + half];
  const float freq = powf(rope_theta, -2.0f * i / head_dim);
  float sn, cs;
  sincosf(positions[row] * freq, &sn, &cs);
  __nv_bfloat16* dst = is_q ? q + ((int64_t)row * n_head + head) * head_dim : k + ((int64_t)row * n_head_kv + (head - n_head)) * head_dim;
  dst[i] = __float2bfloat16(a * cs - b * sn);
  dst[i + half] = __float2bfloat16(b * cs + a * sn);
}

__global__ void k_swiglu(const __nv_bfloat16* __restrict__ gate_up, __nv_bfloat16* __restrict__ act, int64_t rows, int ffn) {
  const int64_t n = rows * ffn;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = idx / ffn, j = idx % ffn;
    const float g = __bfloat162float(gate_up[r * 2 * ffn + j]);
    const float u = __bfloat162float(gate_up[r * 2 * ffn + ffn + j]);
    act[idx] = __float2bfloat16(g / (1.f + expf(-g)) * u);
  }
}

// Attention, one block of kAttnQueries warps per (tile, q head); warp w owns query tile.q_offset + w.
// Keys go through shared memory 32 at a time: lane j scores key j against the warp's query (dot
// products over padded rows: conflict-free), then the tile's softmax weights are broadcast and each
// lane accumulates its 4 of the 128 output dimensions (online softmax, fp32).
constexpr int kHeadDim = 128;
constexpr int kKeys = 32;
constexpr int kWords = kHeadDim / 2;    // bf16 pairs per row
constexpr int kKStride = kWords + 1;    // padded row of K in shared memory (32-bit words)

__global__ void __launch_bounds__(kAttnQueries * 32) k_attention(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                                                                 const __nv_bfloat16* __restrict__ v, const AttnSeq* __restrict__ seqs,
                                                                 const AttnTile* __restrict__ tiles, __nv_bfloat16* __restrict__ out,
                                                                 int n_head, int n_head_kv, float scale) {
  __shared__ uint32_t ks[kKeys * kKStride];
  __shared__ __nv_bfloat162 vs[kKeys * kWords];
  __shared__ float qs[kAttnQueries][kHeadDim];

  const AttnTile tile = tiles[blockIdx.x];
  const AttnSeq s = seqs[tile.seq];
  const int h = blockIdx.y, hk = h / (n_head / n_head_kv);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int qi = tile.q_offset + warp;
  const bool active = qi < s.q_len;

  for (int idx = threadIdx.x; idx < kAttnQueries * kHeadDim; idx += blockDim.x) {
    const int w = idx / kHeadDim, d = idx % kHeadDim, qq = tile.q_offset + w;
    qs[w][d] = qq < s.q_len ? __bfloat162float(q[((int64_t)(s.q_start + qq) * n_head + h) * kHeadDim + d]) * scale : 0.f;
  }

  float m = -INFINITY, l = 0.f, acc[4] = {0.f, 0.f, 0.f, 0.f};
  const int last_q = min(tile.q_offset + kAttnQueries, s.q_len) - 1;
  const int total_keys = s.prefix_len + last_q + 1;  // keys any query of the tile can see
  const int visible = s.prefix_len + qi;              // this warp's query sees keys 0..visible

  for (int k0 = 0; k0 < total_keys; k0 += kKeys) {
    __syncthreads();  // the previous tile is consumed (and qs is written, the first time)
    for (int idx = threadIdx.x; idx < kKeys * kWords; idx += blockDim.x) {
      const int j = idx / kWords, w = idx % kWords, key = k0 + j;
      uint32_t kw = 0;
      __nv_bfloat162 vw = __floats2bfloat162_rn(0.f, 0.f);
      if (key < total_keys) {
        const int row = key < s.prefix_len ? s.prefix_start + key : s.kv_start + (key - s.prefix_len);
        const int64_t at = ((int64_t)row * n_head_kv + hk) * kHeadDim;
        kw = reinterpret_cast<const uint32_t*>(k + at)[w];
        vw = reinterpret_cast<const __nv_bfloat162*>(v + at)[w];
      }
      ks[j * kKStride + w] = kw;
      vs[j * kWords + w] = vw;
    }
    __syncthreads();
    if (!active) continue;  // uniform per warp; every thread still reaches the barriers above

    const int key = k0 + lane;
    float score = -INFINITY;
    if (key < total_keys && key <= visible) {
      const uint32_t* kr = ks + lane * kKStride;
      float dot = 0.f;
#pragma unroll 8
      for (int w = 0; w < kWords; ++w) {
        const uint32_t bits = kr[w];
        const float2 kf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
        dot += qs[warp][2 * w] * kf.x + qs[warp][2 * w + 1] * kf.y;
      }
      score = dot;
    }
    const float m_new = fmaxf(m, warp_max(score));
    if (m_new == -INFINITY) continue;  // nothing visible in this tile yet
    const float p = score == -INFINITY ? 0.f : expf(score - m_new);
    const float corr = m == -INFINITY ? 0.f : expf(m - m_new);
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[c] *= corr;
    for (int j = 0; j < kKeys; ++j) {
      const float pj = __shfl_sync(kFull, p, j);
      if (pj == 0.f) continue;  // the same for the whole warp
      const float2 v0 = __bfloat1622float2(vs[j * kWords + lane * 2]);
      const float2 v1 = __bfloat1622float2(vs[j * kWords + lane * 2 + 1]);
      acc[0] += pj * v0.x;
      acc[1] += pj * v0.y;
      acc[2] += pj * v1.x;
      acc[3] += pj * v1.y;
    }
    m = m_new;
  }
  if (active) {
    __nv_bfloat16* o = out + ((int64_t)(s.q_start + qi) * n_head + h) * kHeadDim + lane * 4;
#pragma unroll
    for (int c = 0; c < 4; ++c) o[c] = __float2bfloat16(acc[c] / l);
  }
}

__global__ void k_gather_rows(const float* __restrict__ residual, const int32_t* __restrict__ index, float* __restrict__ rows, int hidden) {
  const float* src = residual + (int64_t)index[blockIdx.x] * hidden;
  float* dst = rows + (int64_t)blockIdx.x * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
}

__global__ void k_yes_no_head(const float* __restrict__ rows, const float* __restrict__ norm, const float* __restrict__ head, float* __restrict__ scores,
                              int hidden, float eps) {
  const float* x = rows + (int64_t)blockIdx.x * hidden;
  float ss = 0.f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) ss += x[i] * x[i];
  const float inv = rsqrtf(block_sum(ss) / hidden + eps);
  float diff = 0.f;  // <y, w_yes> - <y, w_no>
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) diff += x[i] * inv * norm[i] * (head[hidden + i] - head[i]);
  diff = block_sum(diff);
  if (threadIdx.x == 0) scores[blockIdx.x] = 1.f / (1.f + expf(-diff));
}

__global__ void k_embed_output(const float* __restrict__ rows, const float* __restrict__ norm, float* __restrict__ out, int hidden, int dims, float eps) {
  const float* x = rows + (int64_t)blockIdx.x * hidden;
  float ss = 0.f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) ss += x[i] * x[i];
  const float inv = rsqrtf(block_sum(ss) / hidden + eps);
  float yy = 0.f;
  for (int i = threadIdx.x; i < dims; i += blockDim.x) {
    const float y = x[i] * inv * norm[i];
    yy += y * y;
  }
  const float len = sqrtf(block_sum(yy));
  const float scale = len > 0.f ? 1.f / len : 0.f;
  float* o = out + (int64_t)blockIdx.x * dims;
  for (int i = threadIdx.x; i < dims; i += blockDim.x) o[i] = x[i] * inv * norm[i] * scale;
}

int grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<int>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

}  // namespace

cudaError_t convert_to_bf16(WeightType type, const void* src, __nv_bfloat16* dst, int64_t n, cudaStream_t stream) {
  switch (type) {
    case WeightType::F32:
      k_f32_to_bf16<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const float*>(src), dst, n);
      break;
    case WeightType::F16:
      k_f16_to_bf16<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const __half*>(src), dst, n);
      break;
    case WeightType::BF16:
      return cudaMemcpyAsync(dst, src, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToDevice, stream);
    case WeightType::Q8_0:
      if (n % 32 != 0) return cudaErrorInvalidValue;
      k_q80_to_bf16<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const uint8_t*>(src), dst, n);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t add_rmsnorm(float* residual, const __nv_bfloat16* delta, const float* weight, __nv_bfloat16* normed, int rows, int hidden, float eps,
                        cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  k_add_rmsnorm<<<rows, 256, 0, stream>>>(residual, delta, weight, normed, hidden, eps);
  return cudaGetLastError();
}

cudaError_t embed_tokens(const int32_t* tokens, const __nv_bfloat16* table, float* residual, int rows, int hidden, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  k_embed_tokens<<<rows, 256, 0, stream>>>(tokens, table, residual, hidden);
  return cudaGetLastError();
}

cudaError_t qk_norm_rope(const __nv_bfloat16* qkv, const int32_t* positions, const float* q_norm, const float* k_norm, __nv_bfloat16* q,
                         __nv_bfloat16* k, __nv_bfloat16* v, int rows, int n_head, int n_head_kv, int head_dim, float eps, float rope_theta,
                         cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (head_dim % 64 != 0 || head_dim > 2048) return cudaErrorInvalidValue;  // whole warps of pairs
  k_qk_norm_rope<<<dim3(rows, n_head + 2 * n_head_kv), head_dim / 2, 0, stream>>>(qkv, positions, q_norm, k_norm, q, k, v, n_head, n_head_kv,
                                                                                   head_dim, eps, rope_theta);
  return cudaGetLastError();
}

cudaError_t swiglu(const __nv_bfloat16* gate_up, __nv_bfloat16* act, int rows, int ffn, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  k_swiglu<<<grid_for((int64_t)rows * ffn, 256), 256, 0, stream>>>(gate_up, act, rows, ffn);
  return cudaGetLastError();
}

cudaError_t attention(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const AttnSeq* seqs, const AttnTile* tiles, int n_tiles,
                      __nv_bfloat16* out, int n_head, int n_head_kv, int head_dim, float scale, cudaStream_t stream) {
  if (n_tiles <= 0) return cudaSuccess;
  if (head_dim != kHeadDim || n_head_kv <= 0 || n_head % n_head_kv != 0) return cudaErrorInvalidValue;
  k_attention<<<dim3(n_tiles, n_head), kAttnQueries * 32, 0, stream>>>(q, k, v, seqs, tiles, out, n_head, n_head_kv, scale);
  return cudaGetLastError();
}

cudaError_t gather_rows(const float* residual, const int32_t* index, float* rows, int n, int hidden, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  k_gather_rows<<<n, 256, 0, stream>>>(residual, index, rows, hidden);
  return cudaGetLastError();
}

cudaError_t yes_no_head(const float* rows, const float* norm, const float* head, float* scores, int n, int hidden, float eps, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  k_yes_no_head<<<n, 256, 0, stream>>>(rows, norm, head, scores, hidden, eps);
  return cudaGetLastError();
}

cudaError_t embed_output(const float* rows, const float* norm, float* out, int n, int hidden, int dims, float eps, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (dims <= 0 || dims > hidden) return cudaErrorInvalidValue;
  k_embed_output<<<n, 256, 0, stream>>>(rows, norm, out, hidden, dims, eps);
  return cudaGetLastError();
}

}  // namespace qrank::cuda
