// Causal variable-length attention on tensor cores (see kernels.cuh for the contract), in the
// FlashAttention-2 manner: one block of 4 warps per (tile of 64 queries, query head); each warp
// owns 16 query rows. Keys and values go through shared memory 64 rows at a time, double buffered
// with cp.async; S = Q K^T and O += P V are mma.sync m16n8k16 (bf16 operands, fp32 accumulators),
// with the online softmax in registers between them (exp2 with log2(e) folded into the scale).
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16; g = lane / 4, t = lane % 4):
//   A 16x16 (row-major): a0 (row g, cols 2t, 2t+1), a1 (row g+8, same cols), a2 (row g, cols 2t+8,
//     2t+9), a3 (row g+8, cols 2t+8, 2t+9)
//   B 16x8 (k x n):      b0 (k 2t, 2t+1; n g), b1 (k 2t+8, 2t+9; n g)
//   C/D 16x8 fp32:       c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same cols)
// so the S accumulators of two adjacent 8-key tiles are exactly the A fragment of P for 16 keys.
// Q (A) and K (B, keys as n) come from row-major shared tiles with ldmatrix; V (B, keys as k) with
// ldmatrix.trans. Shared rows are padded to 136 values (272 bytes): the 8 row addresses of one
// 8x8 ldmatrix fall in 8 different 16-byte bank groups.
//
// Masking: query i of a segment sees keys 0 .. prefix_len + i; a tile's last query bounds the keys
// loaded; rows past the segment's end are computed on zeros and never stored. Every row sees key
// 0 in the first step, so its running maximum is finite from then on.
#include <cmath>

#include "kernels.cuh"

namespace qrank::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr unsigned kFull = 0xffffffffu;
constexpr int kD = 128;
constexpr int kBlockQ = kAttnMmaQueries;  // 64
constexpr int kWarps = kBlockQ / 16;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockK = 64;
constexpr int kStride = kD + 8;  // padded shared row, in bf16 values
constexpr int kTile = kBlockK * kStride;
constexpr size_t kSmemBytes = static_cast<size_t>(kBlockQ + 4 * kBlockK) * kStride * sizeof(bf16);  // Q, then 2 stages of K and of V
constexpr float kLog2e = 1.4426950408889634f;

static_assert(kBlockQ % 16 == 0 && kBlockK % 16 == 0, "whole mma tiles");

__device__ __forceinline__ uint32_t smem_address(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// 16 bytes global -> shared, asynchronously; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// d += a b (m16n8k16, bf16 operands, fp32 accumulators)
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &b, sizeof u);
  return u;
}

// Rows [0, kRows) of a shared tile from global rows row_of(r) (row_stride values apart, starting
// at base); rows r >= count are zeros.
template <int kRows, typename RowOf>
__device__ __forceinline__ void load_tile(bf16* tile, const bf16* base, int64_t row_stride, int count, RowOf row_of) {
  constexpr int kChunks = kD / 8;  // 16-byte chunks per row
  for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool valid = r < count;
    const bf16* src = valid ? base + static_cast<int64_t>(row_of(r)) * row_stride + col : base;
    cp_async16(smem_address(tile + r * kStride + col), src, valid);
  }
}

__global__ void __launch_bounds__(kThreads) k_attention_mma(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                                                            const AttnSeq* __restrict__ seqs, const AttnTile* __restrict__ tiles,
                                                            bf16* __restrict__ out, int n_head, int n_head_kv, float scale_log2) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* q_tile = reinterpret_cast<bf16*>(smem);
  bf16* k_tiles = q_tile + kBlockQ * kStride;  // [2][kBlockK][kStride]
  bf16* v_tiles = k_tiles + 2 * kTile;         // [2][kBlockK][kStride]

  const AttnTile tile = tiles[blockIdx.x];
  const AttnSeq s = seqs[tile.seq];
  const int h = blockIdx.y, hk = h / (n_head / n_head_kv);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int q_count = min(kBlockQ, s.q_len - tile.q_offset);
  const int n_keys = s.prefix_len + tile.q_offset + q_count;  // keys the tile's last query sees
  const int n_steps = (n_keys + kBlockK - 1) / kBlockK;
  const int64_t q_stride = static_cast<int64_t>(n_head) * kD, kv_stride = static_cast<int64_t>(n_head_kv) * kD;
  const bf16* k_base = k + static_cast<int64_t>(hk) * kD;
  const bf16* v_base = v + static_cast<int64_t>(hk) * kD;
  const auto key_row = [&](int j) { return j < s.prefix_len ? s.prefix_start + j : s.kv_start + (j - s.prefix_len); };
  const auto load_keys = [&](int step, int stage) {
    const int first = step * kBlockK, count = min(kBlockK, n_keys - first);
    load_tile<kBlockK>(k_tiles + stage * kTile, k_base, kv_stride, count, [&](int r) { return key_row(first + r); });
    load_tile<kBlockK>(v_tiles + stage * kTile, v_base, kv_stride, count, [&](int r) { return key_row(first + r); });
  };

  const int q_row = s.q_start + tile.q_offset;
  load_tile<kBlockQ>(q_tile, q + static_cast<int64_t>(h) * kD, q_stride, q_count, [&](int r) { return q_row + r; });
  load_keys(0, 0);
  cp_async_commit();

  uint32_t qf[kD / 16][4];         // this warp's 16 query rows as A fragments, 16 dimensions each
  float o[kD / 8][4];              // output accumulators: 16 tiles of 8 dimensions
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};  // rows g and g + 8 (this thread's part of the sum)
#pragma unroll
  for (int d = 0; d < kD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  const int q_first = tile.q_offset + warp * 16 + g;  // this thread's query rows q_first and q_first + 8, within the segment

  for (int step = 0; step < n_steps; ++step) {
    const int stage = step & 1;
    if (step + 1 < n_steps) {
      load_keys(step + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (step == 0) {
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk) {
        const int row = warp * 16 + (lane & 15), col = kk * 16 + (lane >> 4) * 8;
        ldmatrix_x4(qf[kk], smem_address(q_tile + row * kStride + col));
      }
    }
    const bf16* k_tile = k_tiles + stage * kTile;
    const bf16* v_tile = v_tiles + stage * kTile;

    // S = Q K^T for 64 keys: 8 tiles of 8 keys
    float sc[kBlockK / 8][4];
#pragma unroll
    for (int j = 0; j < kBlockK / 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < kBlockK / 16; ++np) {
        // matrices: keys 0-7 x dims 0-7, keys 0-7 x dims 8-15, keys 8-15 x dims 0-7, keys 8-15 x dims 8-15
        const int key = np * 16 + (lane >> 4) * 8 + (lane & 7), col = kk * 16 + ((lane >> 3) & 1) * 8;
        uint32_t b[4];
        ldmatrix_x4(b, smem_address(k_tile + key * kStride + col));
        mma(sc[2 * np], qf[kk], b[0], b[1]);
        mma(sc[2 * np + 1], qf[kk], b[2], b[3]);
      }
    }

    // causal mask, online softmax
    const int first_key = step * kBlockK;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int last_visible = s.prefix_len + q_first + 8 * r;
      float m = row_max[r];
#pragma unroll
      for (int j = 0; j < kBlockK / 8; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int key = first_key + j * 8 + 2 * t + c;
          float& x = sc[j][2 * r + c];
          x = key <= last_visible ? x * scale_log2 : -INFINITY;
          m = fmaxf(m, x);
        }
      }
      m = fmaxf(m, __shfl_xor_sync(kFull, m, 1));
      m = fmaxf(m, __shfl_xor_sync(kFull, m, 2));
      const float base = m == -INFINITY ? 0.f : m;
      const float correction = exp2f(row_max[r] - base);  // 0 while nothing was visible
      row_max[r] = m;
      row_sum[r] *= correction;
#pragma unroll
      for (int d = 0; d < kD / 8; ++d) {
        o[d][2 * r] *= correction;
        o[d][2 * r + 1] *= correction;
      }
#pragma unroll
      for (int j = 0; j < kBlockK / 8; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float p = exp2f(sc[j][2 * r + c] - base);
          sc[j][2 * r + c] = p;
          row_sum[r] += p;
        }
      }
    }

    // O += P V: 4 chunks of 16 keys, 8 pairs of 8-dimension tiles
#pragma unroll
    for (int kc = 0; kc < kBlockK / 16; ++kc) {
      const uint32_t a[4] = {pack_bf16x2(sc[2 * kc][0], sc[2 * kc][1]), pack_bf16x2(sc[2 * kc][2], sc[2 * kc][3]),
                             pack_bf16x2(sc[2 * kc + 1][0], sc[2 * kc + 1][1]), pack_bf16x2(sc[2 * kc + 1][2], sc[2 * kc + 1][3])};
#pragma unroll
      for (int dp = 0; dp < kD / 16; ++dp) {
        // matrices (transposed): keys 0-7 x dims 0-7, keys 8-15 x dims 0-7, keys 0-7 x dims 8-15, keys 8-15 x dims 8-15
        const int key = kc * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), col = dp * 16 + (lane >> 4) * 8;
        uint32_t b[4];
        ldmatrix_x4_trans(b, smem_address(v_tile + key * kStride + col));
        mma(o[2 * dp], a, b[0], b[1]);
        mma(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // the next step's load overwrites this stage
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
    l += __shfl_xor_sync(kFull, l, 1);
    l += __shfl_xor_sync(kFull, l, 2);
    const int qi = q_first + 8 * r;
    if (qi >= s.q_len) continue;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    uint32_t* dst = reinterpret_cast<uint32_t*>(out + (static_cast<int64_t>(s.q_start + qi) * n_head + h) * kD);
#pragma unroll
    for (int d = 0; d < kD / 8; ++d) dst[d * 4 + t] = pack_bf16x2(o[d][2 * r] * inv, o[d][2 * r + 1] * inv);
  }
}

}  // namespace

cudaError_t attention_mma(const bf16* q, const bf16* k, const bf16* v, const AttnSeq* seqs, const AttnTile* tiles, int n_tiles, bf16* out,
                          int n_head, int n_head_kv, int head_dim, float scale, cudaStream_t stream) {
  if (n_tiles <= 0) return cudaSuccess;
  if (head_dim != kD || n_head_kv <= 0 || n_head % n_head_kv != 0 || n_head > 65535) return cudaErrorInvalidValue;
  const cudaError_t e = cudaFuncSetAttribute(k_attention_mma, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmemBytes));
  if (e != cudaSuccess) return e;
  k_attention_mma<<<dim3(n_tiles, n_head), kThreads, kSmemBytes, stream>>>(q, k, v, seqs, tiles, out, n_head, n_head_kv, scale * kLog2e);
  return cudaGetLastError();
}

}  // namespace qrank::cuda
