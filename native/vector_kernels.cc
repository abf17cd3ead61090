// f32 and f16 distance kernels for GraphStore (native/vector_store.cc), given to USearch as its
// metric (metric_punned_t::stateless); i8 and every other case use NumKong's own.
//
// Why they exist: NumKong favours accuracy: its f32 dot product accumulates in f64 and its f32 and
// f16 kernels run one accumulator chain, so at 1024 dimensions they wait on the FMA latency. In a
// profile of an HNSW build and search (bench/ann_bench, 1024-d f32) 85% of the time was in
// nk_dot_f32_skylake; these kernels keep four f32 accumulators (the usual choice of FAISS,
// hnswlib and others) and are 2x faster with AVX-512, about 4x with AVX2 only (bench/RESULTS.md).
// f32 accumulation over 1024 products of unit-vector components loses ~1e-6 relative: far below
// what a ranking notices, and what FAISS does.
//
// Selected once per process from the running CPU (AVX-512F, else AVX2+FMA+F16C, else nullptr:
// NumKong). Inner products are returned as USearch's distance 1 - dot; L2 as the squared distance.
#include "vector_kernels.h"

// GCC 12's AVX-512 headers trip its own uninitialized-value warnings (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

namespace qrank {
namespace {

#define QRANK_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QRANK_AVX512 __attribute__((target("avx512f")))

QRANK_AVX2 inline float sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One kernel body per (ISA, element type, metric): Load turns 8 or 16 elements at p into floats,
// Step folds a pair into an accumulator.
template <typename T>
QRANK_AVX2 inline __m256 load8(const T* p);
template <>
QRANK_AVX2 inline __m256 load8<float>(const float* p) { return _mm256_loadu_ps(p); }
template <>
QRANK_AVX2 inline __m256 load8<uint16_t>(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

QRANK_AVX2 inline float load1(const float* p) { return *p; }
QRANK_AVX2 inline float load1(const uint16_t* p) { return _cvtsh_ss(*p); }

// acc + x * y, or acc + (x - y)^2 for L2
template <bool kL2>
QRANK_AVX2 inline __m256 step(__m256 x, __m256 y, __m256 acc) {
  const __m256 d = kL2 ? _mm256_sub_ps(x, y) : x;
  return _mm256_fmadd_ps(d, kL2 ? d : y, acc);
}

template <typename T, bool kL2>
QRANK_AVX2 float avx2(size_t a_, size_t b_, size_t n) {
  const T* a = reinterpret_cast<const T*>(a_);
  const T* b = reinterpret_cast<const T*>(b_);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = step<kL2>(load8(a + i), load8(b + i), s0);
    s1 = step<kL2>(load8(a + i + 8), load8(b + i + 8), s1);
    s2 = step<kL2>(load8(a + i + 16), load8(b + i + 16), s2);
    s3 = step<kL2>(load8(a + i + 24), load8(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = step<kL2>(load8(a + i), load8(b + i), s0);
  float s = sum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) {
    const float x = load1(a + i), y = load1(b + i);
    s += kL2 ? (x - y) * (x - y) : x * y;
  }
  return kL2 ? s : 1.0f - s;
}

// 16 elements at p (the first `count` of them; the rest are zeros) as floats
QRANK_AVX512 inline __m512 load16(const float* p, size_t count) {
  return count >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << count) - 1), p);
}
QRANK_AVX512 inline __m512 load16(const uint16_t* p, size_t count) {
  if (count >= 16) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  uint16_t tail[16] = {};
  for (size_t i = 0; i < count; ++i) tail[i] = p[i];
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail)));
}

template <bool kL2>
QRANK_AVX512 inline __m512 step16(__m512 x, __m512 y, __m512 acc) {
  const __m512 d = kL2 ? _mm512_sub_ps(x, y) : x;
  return _mm512_fmadd_ps(d, kL2 ? d : y, acc);
}

template <typename T, bool kL2>
QRANK_AVX512 float avx512(size_t a_, size_t b_, size_t n) {
  const T* a = reinterpret_cast<const T*>(a_);
  const T* b = reinterpret_cast<const T*>(b_);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = step16<kL2>(load16(a + i, 16), load16(b + i, 16), s0);
    s1 = step16<kL2>(load16(a + i + 16, 16), load16(b + i + 16, 16), s1);
    s2 = step16<kL2>(load16(a + i + 32, 16), load16(b + i + 32, 16), s2);
    s3 = step16<kL2>(load16(a + i + 48, 16), load16(b + i + 48, 16), s3);
  }
  for (; i < n; i += 16) s0 = step16<kL2>(load16(a + i, n - i), load16(b + i, n - i), s0);
  const float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  return kL2 ? s : 1.0f - s;
}

}  // namespace

DistanceKernel fast_kernel(bool f16, bool l2) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    if (f16) return l2 ? &avx512<uint16_t, true> : &avx512<uint16_t, false>;
    return l2 ? &avx512<float, true> : &avx512<float, false>;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    if (f16) return l2 ? &avx2<uint16_t, true> : &avx2<uint16_t, false>;
    return l2 ? &avx2<float, true> : &avx2<float, false>;
  }
  return nullptr;
}

}  // namespace qrank
