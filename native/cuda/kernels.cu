// The CUDA engine's element-wise kernels and the CUDA-core attention kernel: see kernels.cuh for
// layouts (the tensor-core attention is attention_mma.cu). Correct first (METHOD.md), with 16-byte
// or 8-byte accesses where a row allows them; each is checked against a float64 CPU reference by
// kernel_check.cu on the GPU machine.
#include <cmath>
#include <cuda_fp16.h>

#include "kernels.cuh"

namespace qrank::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kHeadDim = 128;  // attention and qk_norm_rope

__device__ __forceinline__ float2 unpack_bf16x2(uint32_t u) {
  __nv_bfloat162 b;
  memcpy(&b, &u, sizeof b);
  return __bfloat1622float2(b);
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);  // lo in the low half (the lower address)
  uint32_t u;
  memcpy(&u, &b, sizeof u);
  return u;
}

__device__ __forceinline__ float silu(float g) { return g / (1.f + expf(-g)); }

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

// One block per row; each thread takes 4 consecutive values at a time (16-byte fp32 loads, 8-byte
// bf16 loads and stores). The second pass re-reads the row from L1/L2.
__global__ void k_add_rmsnorm(float* __restrict__ residual, const __nv_bfloat16* __restrict__ delta, const float* __restrict__ weight,
                              __nv_bfloat16* __restrict__ normed, int hidden, float eps) {
  const int64_t row = blockIdx.x;
  float4* x = reinterpret_cast<float4*>(residual + row * hidden);
  const uint2* dx = delta ? reinterpret_cast<const uint2*>(delta + row * hidden) : nullptr;
  const int n4 = hidden / 4;
  float ss = 0.f;
  for (int i = threadIdx.x; i < n4; i += blockDim.x) {
    float4 v = x[i];
    if (dx) {
      const uint2 d = dx[i];
      const float2 d0 = unpack_bf16x2(d.x), d1 = unpack_bf16x2(d.y);
      v.x += d0.x;
      v.y += d0.y;
      v.z += d1.x;
      v.w += d1.y;
      x[i] = v;
    }
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  const float inv = rsqrtf(block_sum(ss) / hidden + eps);
  const float4* w4 = reinterpret_cast<const float4*>(weight);
  uint2* y = reinterpret_cast<uint2*>(normed + row * hidden);
  for (int i = threadIdx.x; i < n4; i += blockDim.x) {
    const float4 v = x[i], w = w4[i];
    y[i] = make_uint2(pack_bf16x2(v.x * inv * w.x, v.y * inv * w.y), pack_bf16x2(v.z * inv * w.z, v.w * inv * w.w));
  }
}

__global__ void k_embed_tokens(const int32_t* __restrict__ tokens, const __nv_bfloat16* __restrict__ table, float* __restrict__ residual, int hidden) {
  const uint32_t* row = reinterpret_cast<const uint32_t*>(table + (int64_t)tokens[blockIdx.x] * hidden);
  float2* out = reinterpret_cast<float2*>(residual + (int64_t)blockIdx.x * hidden);
  for (int i = threadIdx.x; i < hidden / 2; i += blockDim.x) out[i] = unpack_bf16x2(row[i]);
}

// One block of 8 warps per token; warp w takes heads w, w + 8, ... (q heads, then k, then v, which
// is copied). Lane l holds dimensions 2l, 2l + 1 and their RoPE partners 2l + 64, 2l + 65, so every
// load and store is 4 bytes wide and a warp covers a head's 256 bytes. The angles depend on the
// token only: computed once per thread for its two frequencies (inv_freq, from the host in double).
constexpr int kRopeWarps = 8;

__global__ void __launch_bounds__(kRopeWarps * 32) k_qk_norm_rope(const __nv_bfloat16* __restrict__ qkv, const int32_t* __restrict__ positions,
                                                                  const float* __restrict__ q_norm, const float* __restrict__ k_norm,
                                                                  const float* __restrict__ inv_freq, __nv_bfloat16* __restrict__ q,
                                                                  __nv_bfloat16* __restrict__ k, __nv_bfloat16* __restrict__ v, int n_head,
                                                                  int n_head_kv, float eps) {
  constexpr int kHalf = kHeadDim / 2;
  const int64_t row = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, d = 2 * lane;
  const int heads = n_head + 2 * n_head_kv;
  const float pos = static_cast<float>(positions[row]);
  float sn0, cs0, sn1, cs1;
  sincosf(pos * inv_freq[d], &sn0, &cs0);
  sincosf(pos * inv_freq[d + 1], &sn1, &cs1);
  const __nv_bfloat16* src_row = qkv + row * heads * kHeadDim;
  for (int h = warp; h < heads; h += kRopeWarps) {
    const uint32_t* src = reinterpret_cast<const uint32_t*>(src_row + (int64_t)h * kHeadDim);
    const uint32_t lo_bits = src[lane], hi_bits = src[lane + kHalf / 2];
    if (h >= n_head + n_head_kv) {  // v: a plain copy
      uint32_t* dst = reinterpret_cast<uint32_t*>(v + (row * n_head_kv + (h - n_head - n_head_kv)) * kHeadDim);
      dst[lane] = lo_bits;
      dst[lane + kHalf / 2] = hi_bits;
      continue;
    }
    const bool is_q = h < n_head;
    const float* w = is_q ? q_norm : k_norm;
    const float2 a = unpack_bf16x2(lo_bits), b = unpack_bf16x2(hi_bits);  // x[d], x[d+1]; x[d+64], x[d+65]
    const float inv = rsqrtf(warp_sum(a.x * a.x + a.y * a.y + b.x * b.x + b.y * b.y) / kHeadDim + eps);
    const float x0 = a.x * inv * w[d], x1 = a.y * inv * w[d + 1];
    const float y0 = b.x * inv * w[d + kHalf], y1 = b.y * inv * w[d + kHalf + 1];
    __nv_bfloat16* dst = is_q ? q + (row * n_head + h) * kHeadDim : k + (row * n_head_kv + (h - n_head)) * kHeadDim;
    uint32_t* out = reinterpret_cast<uint32_t*>(dst);
    out[lane] = pack_bf16x2(x0 * cs0 - y0 * sn0, x1 * cs1 - y1 * sn1);
    out[lane + kHalf / 2] = pack_bf16x2(y0 * cs0 + x0 * sn0, y1 * cs1 + x1 * sn1);
  }
}

// 8 values per thread and step: 16-byte loads of gate and up, a 16-byte store.
__global__ void k_swiglu(const __nv_bfloat16* __restrict__ gate_up, __nv_bfloat16* __restrict__ act, int64_t rows, int ffn) {
  const int per_row = ffn / 8;
  const int64_t n = rows * per_row;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = idx / per_row, j = idx % per_row;
    const uint4 g = *reinterpret_cast<const uint4*>(gate_up + r * 2 * ffn + j * 8);
    const uint4 u = *reinterpret_cast<const uint4*>(gate_up + r * 2 * ffn + ffn + j * 8);
    const uint32_t gw[4] = {g.x, g.y, g.z, g.w}, uw[4] = {u.x, u.y, u.z, u.w};
    uint32_t o[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float2 gg = unpack_bf16x2(gw[c]), uu = unpack_bf16x2(uw[c]);
      o[c] = pack_bf16x2(silu(gg.x) * uu.x, silu(gg.y) * uu.y);
    }
    *reinterpret_cast<uint4*>(act + r * ffn + j * 8) = make_uint4(o[0], o[1], o[2], o[3]);
  }
}

// Attention, one block of kAttnQueries warps per (tile, q head); warp w owns query tile.q_offset + w.
// Keys go through shared memory 32 at a time: lane j scores key j against the warp's query (dot
// products over padded rows: conflict-free), then the tile's softmax weights are broadcast and each
// lane accumulates its 4 of the 128 output dimensions (online softmax, fp32).
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

template <typename T>
__global__ void k_gather_rows(const T* __restrict__ src, const int32_t* __restrict__ index, T* __restrict__ rows, int width) {
  const T* from = src + (int64_t)index[blockIdx.x] * width;
  T* to = rows + (int64_t)blockIdx.x * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) to[i] = from[i];
}

__global__ void k_yes_no_head(const float* __restrict__ rows, const float* __restrict__ norm, const float* __restrict__ head, float* __restrict__ logits,
                              int hidden, float eps) {
  const float* x = rows + (int64_t)blockIdx.x * hidden;
  float ss = 0.f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) ss += x[i] * x[i];
  const float inv = rsqrtf(block_sum(ss) / hidden + eps);
  float diff = 0.f;  // <y, row 0> - <y, row 1>
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) diff += x[i] * inv * norm[i] * (head[i] - head[hidden + i]);
  diff = block_sum(diff);
  if (threadIdx.x == 0) logits[blockIdx.x] = diff;
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

__global__ void k_probe() {}

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
  if (hidden <= 0 || hidden % 4 != 0) return cudaErrorInvalidValue;
  k_add_rmsnorm<<<rows, 256, 0, stream>>>(residual, delta, weight, normed, hidden, eps);
  return cudaGetLastError();
}

cudaError_t embed_tokens(const int32_t* tokens, const __nv_bfloat16* table, float* residual, int rows, int hidden, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (hidden <= 0 || hidden % 2 != 0) return cudaErrorInvalidValue;
  k_embed_tokens<<<rows, 256, 0, stream>>>(tokens, table, residual, hidden);
  return cudaGetLastError();
}

cudaError_t qk_norm_rope(const __nv_bfloat16* qkv, const int32_t* positions, const float* q_norm, const float* k_norm, const float* inv_freq,
                         __nv_bfloat16* q, __nv_bfloat16* k, __nv_bfloat16* v, int rows, int n_head, int n_head_kv, int head_dim, float eps,
                         cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (head_dim != kHeadDim || n_head <= 0 || n_head_kv <= 0) return cudaErrorInvalidValue;
  k_qk_norm_rope<<<rows, kRopeWarps * 32, 0, stream>>>(qkv, positions, q_norm, k_norm, inv_freq, q, k, v, n_head, n_head_kv, eps);
  return cudaGetLastError();
}

cudaError_t swiglu(const __nv_bfloat16* gate_up, __nv_bfloat16* act, int rows, int ffn, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (ffn <= 0 || ffn % 8 != 0) return cudaErrorInvalidValue;
  k_swiglu<<<grid_for((int64_t)rows * (ffn / 8), 256), 256, 0, stream>>>(gate_up, act, rows, ffn);
  return cudaGetLastError();
}

cudaError_t attention(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const AttnSeq* seqs, const AttnTile* tiles, int n_tiles,
                      __nv_bfloat16* out, int n_head, int n_head_kv, int head_dim, float scale, cudaStream_t stream) {
  if (n_tiles <= 0) return cudaSuccess;
  if (head_dim != kHeadDim || n_head_kv <= 0 || n_head % n_head_kv != 0) return cudaErrorInvalidValue;
  k_attention<<<dim3(n_tiles, n_head), kAttnQueries * 32, 0, stream>>>(q, k, v, seqs, tiles, out, n_head, n_head_kv, scale);
  return cudaGetLastError();
}

cudaError_t gather_rows(const float* src, const int32_t* index, float* rows, int n, int width, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  k_gather_rows<<<n, 256, 0, stream>>>(src, index, rows, width);
  return cudaGetLastError();
}

cudaError_t gather_rows(const __nv_bfloat16* src, const int32_t* index, __nv_bfloat16* rows, int n, int width, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  k_gather_rows<<<n, 256, 0, stream>>>(src, index, rows, width);
  return cudaGetLastError();
}

cudaError_t yes_no_head(const float* rows, const float* norm, const float* head, float* logits, int n, int hidden, float eps, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  k_yes_no_head<<<n, 256, 0, stream>>>(rows, norm, head, logits, hidden, eps);
  return cudaGetLastError();
}

cudaError_t embed_output(const float* rows, const float* norm, float* out, int n, int hidden, int dims, float eps, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (dims <= 0 || dims > hidden) return cudaErrorInvalidValue;
  k_embed_output<<<n, 256, 0, stream>>>(rows, norm, out, hidden, dims, eps);
  return cudaGetLastError();
}

cudaError_t probe_kernels() {
  cudaFuncAttributes attributes{};
  return cudaFuncGetAttributes(&attributes, k_probe);
}

}  // namespace qrank::cuda
