// Checks every kernel of kernels.cu on the GPU against a float64 CPU reference, on fresh random
// inputs each run (seed printed; pass one to repeat it), with outputs poisoned (NaN) before each
// launch so that an unwritten element fails. Relative error ||out - ref|| / ||ref|| must stay under
// the bound its arithmetic allows: bf16 outputs (8-bit mantissa) 1e-2, fp32 outputs 1e-5 (1e-4 for
// attention-free sums over thousands of terms). Exit 0: all pass; 1: a check failed; 77: no GPU.
//
//   nvcc -std=c++17 -O2 -gencode=arch=compute_90,code=sm_90 native/cuda/kernels.cu native/cuda/kernel_check.cu -o kernel_check
//   ./kernel_check [seed]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cuda_fp16.h>
#include <random>
#include <string>
#include <vector>

#include "kernels.cuh"

using namespace qrank::cuda;
using bf16 = __nv_bfloat16;

namespace {

int failures = 0;

#define CHECK_CUDA(call)                                                                         \
  do {                                                                                           \
    cudaError_t e_ = (call);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

std::mt19937_64 rng;
float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }
float normal() { return std::normal_distribution<float>(0.f, 1.f)(rng); }


template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    CHECK_CUDA(cudaMalloc(&p, (count ? count : 1) * sizeof(T)));
    poison();
  }
  Dev(const std::vector<T>& h) : Dev(h.size()) { CHECK_CUDA(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice)); }
  ~Dev() { cudaFree(p); }
  void poison() { CHECK_CUDA(cudaMemset(p, 0xff, (n ? n : 1) * sizeof(T))); }  // NaN in bf16, f16 and f32
  std::vector<T> get() const {
    std::vector<T> h(n);
    CHECK_CUDA(cudaDeviceSynchronize());
    CHECK_CUDA(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

std::vector<double> to_double(const std::vector<bf16>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(v[i]);
  return out;
}
std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// ||out - ref|| / ||ref||, NaN when any output is not finite.
void report(const char* name, const std::vector<double>& out, const std::vector<double>& ref, double bound) {
  double num = 0, den = 0;
  bool finite = out.size() == ref.size();
  for (size_t i = 0; finite && i < out.size(); ++i) {
    if (!std::isfinite(out[i])) finite = false;
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  const double rel = finite ? std::sqrt(num / (den > 0 ? den : 1)) : NAN;
  const bool ok = finite && rel <= bound;
  if (!ok) ++failures;
  std::printf("%-34s %-4s rel err %.3e (bound %.0e, %zu values)\n", name, ok ? "ok" : "FAIL", rel, bound, out.size());
}

std::vector<bf16> random_bf16(size_t n, float scale = 1.f) {
  std::vector<bf16> v(n);
  for (auto& x : v) x = __float2bfloat16(normal() * scale);
  return v;
}
std::vector<float> random_f32(size_t n, float lo, float hi) {
  std::vector<float> v(n);
  for (auto& x : v) x = uniform(lo, hi);
  return v;
}

void check_convert() {
  const int64_t n = 32 * 1000 + 32 * 7;
  std::vector<float> f(n);
  for (auto& x : f) x = normal() * 3.f;
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = f[i];
  {
    Dev<float> src(f);
    Dev<bf16> dst(n);
    CHECK_CUDA(convert_to_bf16(WeightType::F32, src.p, dst.p, n, 0));
    report("convert F32 -> bf16", to_double(dst.get()), ref, 1e-2);
  }
  {
    std::vector<__half> h(n);
    for (int64_t i = 0; i < n; ++i) h[i] = __float2half(f[i]);
    std::vector<double> r(n);
    for (int64_t i = 0; i < n; ++i) r[i] = __half2float(h[i]);
    Dev<__half> src(h);
    Dev<bf16> dst(n);
    CHECK_CUDA(convert_to_bf16(WeightType::F16, src.p, dst.p, n, 0));
    report("convert F16 -> bf16", to_double(dst.get()), r, 1e-2);
  }
  {
    std::vector<uint8_t> q(n / 32 * 34);
    std::vector<double> r(n);
    for (int64_t b = 0; b < n / 32; ++b) {
      const __half d = __float2half(uniform(0.001f, 0.05f));
      std::memcpy(&q[b * 34], &d, 2);
      for (int j = 0; j < 32; ++j) {
        const int8_t v = static_cast<int8_t>(std::uniform_int_distribution<int>(-127, 127)(rng));
        q[b * 34 + 2 + j] = static_cast<uint8_t>(v);
        r[b * 32 + j] = static_cast<double>(__half2float(d)) * v;
      }
    }
    Dev<uint8_t> src(q);
    Dev<bf16> dst(n);
    CHECK_CUDA(convert_to_bf16(WeightType::Q8_0, src.p, dst.p, n, 0));
    report("convert Q8_0 -> bf16", to_double(dst.get()), r, 1e-2);
  }
}

void check_add_rmsnorm(int rows, int hidden) {
  const float eps = 1e-6f;
  auto res = random_f32((size_t)rows * hidden, -2.f, 2.f);
  auto delta = random_bf16((size_t)rows * hidden, 0.5f);
  auto w = random_f32(hidden, 0.5f, 1.5f);
  std::vector<double> ref_res(res.size()), ref_out(res.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < hidden; ++i) {
      const double x = (double)res[(size_t)r * hidden + i] + __bfloat162float(delta[(size_t)r * hidden + i]);
      ref_res[(size_t)r * hidden + i] = x;
      ss += x * x;
    }
    const double inv = 1.0 / std::sqrt(ss / hidden + eps);
    for (int i = 0; i < hidden; ++i) ref_out[(size_t)r * hidden + i] = ref_res[(size_t)r * hidden + i] * inv * w[i];
  }
  Dev<float> d_res(res);
  Dev<bf16> d_delta(delta), d_out((size_t)rows * hidden);
  Dev<float> d_w(w);
  CHECK_CUDA(add_rmsnorm(d_res.p, d_delta.p, d_w.p, d_out.p, rows, hidden, eps, 0));
  report(("add_rmsnorm residual " + std::to_string(rows) + "x" + std::to_string(hidden)).c_str(), to_double(d_res.get()), ref_res, 1e-6);
  report(("add_rmsnorm normed " + std::to_string(rows) + "x" + std::to_string(hidden)).c_str(), to_double(d_out.get()), ref_out, 1e-2);
}

void check_embed_tokens() {
  const int vocab = 1000, hidden = 1024, rows = 77;
  auto table = random_bf16((size_t)vocab * hidden);
  std::vector<int32_t> tokens(rows);
  for (auto& t : tokens) t = std::uniform_int_distribution<int>(0, vocab - 1)(rng);
  std::vector<double> ref((size_t)rows * hidden);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < hidden; ++i) ref[(size_t)r * hidden + i] = __bfloat162float(table[(size_t)tokens[r] * hidden + i]);
  Dev<bf16> d_table(table);
  Dev<int32_t> d_tok(tokens);
  Dev<float> d_res((size_t)rows * hidden);
  CHECK_CUDA(embed_tokens(d_tok.p, d_table.p, d_res.p, rows, hidden, 0));
  report("embed_tokens", to_double(d_res.get()), ref, 0);
}

void check_qk_norm_rope(int rows, int n_head, int n_head_kv, int d) {
  const float eps = 1e-6f, theta = 1e6f;
  const int width = (n_head + 2 * n_head_kv) * d, half = d / 2;
  auto qkv = random_bf16((size_t)rows * width, 2.f);
  std::vector<int32_t> pos(rows);
  for (auto& p : pos) p = std::uniform_int_distribution<int>(0, 8191)(rng);
  auto qn = random_f32(d, 0.5f, 1.5f), kn = random_f32(d, 0.5f, 1.5f);
  std::vector<double> rq((size_t)rows * n_head * d), rk((size_t)rows * n_head_kv * d), rv((size_t)rows * n_head_kv * d);
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < n_head + 2 * n_head_kv; ++h) {
      const bf16* src = &qkv[(size_t)r * width + (size_t)h * d];
      if (h >= n_head + n_head_kv) {
        for (int i = 0; i < d; ++i) rv[((size_t)r * n_head_kv + (h - n_head - n_head_kv)) * d + i] = __bfloat162float(src[i]);
        continue;
      }
      const bool is_q = h < n_head;
      const std::vector<float>& w = is_q ? qn : kn;
      double ss = 0;
      for (int i = 0; i < d; ++i) ss += (double)__bfloat162float(src[i]) * __bfloat162float(src[i]);
      const double inv = 1.0 / std::sqrt(ss / d + eps);
      double* dst = is_q ? &rq[((size_t)r * n_head + h) * d] : &rk[((size_t)r * n_head_kv + (h - n_head)) * d];
      for (int i = 0; i < half; ++i) {
        const double a = __bfloat162float(src[i]) * inv * w[i], b = __bfloat162float(src[i + half]) * inv * w[i + half];
        const double ang = pos[r] * std::pow((double)theta, -2.0 * i / d);
        dst[i] = a * std::cos(ang) - b * std::sin(ang);
        dst[i + half] = b * std::cos(ang) + a * std::sin(ang);
      }
    }
  }
  Dev<bf16> d_qkv(qkv), q((size_t)rows * n_head * d), k((size_t)rows * n_head_kv * d), v((size_t)rows * n_head_kv * d);
  Dev<int32_t> d_pos(pos);
  Dev<float> d_qn(qn), d_kn(kn);
  CHECK_CUDA(qk_norm_rope(d_qkv.p, d_pos.p, d_qn.p, d_kn.p, q.p, k.p, v.p, rows, n_head, n_head_kv, d, eps, theta, 0));
  // float32 angles at positions up to 8k: the angle itself is off by up to ~5e-4 rad (as in llama.cpp and PyTorch)
  report("qk_norm_rope q", to_double(q.get()), rq, 1e-2);
  report("qk_norm_rope k", to_double(k.get()), rk, 1e-2);
  report("qk_norm_rope v", to_double(v.get()), rv, 0);
}

void check_swiglu(int rows, int ffn) {
  auto gu = random_bf16((size_t)rows * 2 * ffn, 2.f);
  std::vector<double> ref((size_t)rows * ffn);
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < ffn; ++j) {
      const double g = __bfloat162float(gu[(size_t)r * 2 * ffn + j]), u = __bfloat162float(gu[(size_t)r * 2 * ffn + ffn + j]);
      ref[(size_t)r * ffn + j] = g / (1 + std::exp(-g)) * u;
    }
  Dev<bf16> d_gu(gu), d_act((size_t)rows * ffn);
  CHECK_CUDA(swiglu(d_gu.p, d_act.p, rows, ffn, 0));
  report("swiglu", to_double(d_act.get()), ref, 1e-2);
}

// Sequences of random lengths, some sharing a prefix held by a leader row range (prefix reuse).
void check_attention(int n_head, int n_head_kv, bool with_prefix) {
  const int d = 128;
  std::vector<AttnSeq> seqs;
  int rows = 0;
  int prefix_start = 0, prefix_len = 0;
  if (with_prefix) {  // the shared prefix is evaluated once as its own sequence
    prefix_len = std::uniform_int_distribution<int>(1, 90)(rng);
    seqs.push_back({0, prefix_len, 0, 0, 0});
    rows = prefix_len;
  }
  const int n_seq = std::uniform_int_distribution<int>(3, 9)(rng);
  for (int s = 0; s < n_seq; ++s) {
    const int len = std::uniform_int_distribution<int>(1, 300)(rng);
    seqs.push_back({rows, len, prefix_start, with_prefix ? prefix_len : 0, rows});
    rows += len;
  }
  auto q = random_bf16((size_t)rows * n_head * d), k = random_bf16((size_t)rows * n_head_kv * d), v = random_bf16((size_t)rows * n_head_kv * d);
  const float scale = 1.f / std::sqrt((float)d);
  std::vector<AttnTile> tiles;
  for (int s = 0; s < (int)seqs.size(); ++s)
    for (int o = 0; o < seqs[s].q_len; o += kAttnQueries) tiles.push_back({s, o});
  std::vector<double> ref((size_t)rows * n_head * d);
  std::vector<double> sc;
  for (const AttnSeq& s : seqs) {
    for (int i = 0; i < s.q_len; ++i) {
      for (int h = 0; h < n_head; ++h) {
        const int hk = h / (n_head / n_head_kv);
        const int nk = s.prefix_len + i + 1;
        sc.assign(nk, 0);
        double mx = -1e300;
        for (int j = 0; j < nk; ++j) {
          const int row = j < s.prefix_len ? s.prefix_start + j : s.kv_start + (j - s.prefix_len);
          double dot = 0;
          for (int c = 0; c < d; ++c)
            dot += (double)__bfloat162float(q[((size_t)(s.q_start + i) * n_head + h) * d + c]) * __bfloat162float(k[((size_t)row * n_head_kv + hk) * d + c]);
          sc[j] = dot * scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int j = 0; j < nk; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        for (int c = 0; c < d; ++c) {
          double o = 0;
          for (int j = 0; j < nk; ++j) {
            const int row = j < s.prefix_len ? s.prefix_start + j : s.kv_start + (j - s.prefix_len);
            o += sc[j] * __bfloat162float(v[((size_t)row * n_head_kv + hk) * d + c]);
          }
          ref[((size_t)(s.q_start + i) * n_head + h) * d + c] = o / sum;
        }
      }
    }
  }
  Dev<bf16> dq(q), dk(k), dv(v), out((size_t)rows * n_head * d);
  Dev<AttnSeq> ds(seqs);
  Dev<AttnTile> dt(tiles);
  CHECK_CUDA(attention(dq.p, dk.p, dv.p, ds.p, dt.p, (int)tiles.size(), out.p, n_head, n_head_kv, d, scale, 0));
  char name[96];
  std::snprintf(name, sizeof name, "attention %d/%d heads, %d rows%s", n_head, n_head_kv, rows, with_prefix ? ", prefix" : "");
  report(name, to_double(out.get()), ref, 1e-2);
}

void check_heads(int n, int hidden) {
  const float eps = 1e-6f;
  auto rows = random_f32((size_t)n * hidden, -3.f, 3.f);
  auto norm = random_f32(hidden, 0.5f, 1.5f);
  auto head = random_f32(2 * (size_t)hidden, -0.05f, 0.05f);
  std::vector<double> ref_scores(n), ref_emb;
  const int dims = hidden / 2;
  ref_emb.resize((size_t)n * dims);
  for (int r = 0; r < n; ++r) {
    double ss = 0;
    for (int i = 0; i < hidden; ++i) ss += (double)rows[(size_t)r * hidden + i] * rows[(size_t)r * hidden + i];
    const double inv = 1.0 / std::sqrt(ss / hidden + eps);
    double diff = 0, yy = 0;
    for (int i = 0; i < hidden; ++i) diff += rows[(size_t)r * hidden + i] * inv * norm[i] * ((double)head[hidden + i] - head[i]);
    ref_scores[r] = 1 / (1 + std::exp(-diff));
    for (int i = 0; i < dims; ++i) yy += std::pow(rows[(size_t)r * hidden + i] * inv * norm[i], 2);
    for (int i = 0; i < dims; ++i) ref_emb[(size_t)r * dims + i] = rows[(size_t)r * hidden + i] * inv * norm[i] / std::sqrt(yy);
  }
  Dev<float> d_rows(rows), d_norm(norm), d_head(head), d_scores(n), d_emb((size_t)n * dims);
  CHECK_CUDA(yes_no_head(d_rows.p, d_norm.p, d_head.p, d_scores.p, n, hidden, eps, 0));
  CHECK_CUDA(embed_output(d_rows.p, d_norm.p, d_emb.p, n, hidden, dims, eps, 0));
  report("yes_no_head", to_double(d_scores.get()), ref_scores, 1e-5);
  report("embed_output (dims = hidden / 2)", to_double(d_emb.get()), ref_emb, 1e-5);

  // gather: the last row of each of n "sequences" of random lengths
  std::vector<int32_t> index(n);
  for (auto& x : index) x = std::uniform_int_distribution<int>(0, n - 1)(rng);
  std::vector<double> ref_g((size_t)n * hidden);
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < hidden; ++i) ref_g[(size_t)r * hidden + i] = rows[(size_t)index[r] * hidden + i];
  Dev<int32_t> d_index(index);
  Dev<float> d_g((size_t)n * hidden);
  CHECK_CUDA(gather_rows(d_rows.p, d_index.p, d_g.p, n, hidden, 0));
  report("gather_rows", to_double(d_g.get()), ref_g, 0);
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: nothing checked\n");
    return 77;
  }
  const unsigned long long seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : (unsigned long long)std::time(nullptr);
  rng.seed(seed);
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, seed %llu\n", prop.name, seed);
  check_convert();
  check_add_rmsnorm(37, 1024);
  check_add_rmsnorm(5, 2560);
  check_embed_tokens();
  check_qk_norm_rope(53, 16, 8, 128);
  check_qk_norm_rope(19, 32, 8, 128);
  check_swiglu(41, 3072);
  check_attention(16, 8, false);
  check_attention(16, 8, true);
  check_attention(32, 8, true);
  check_heads(64, 1024);
  CHECK_CUDA(cudaDeviceSynchronize());
  std::printf("%s: %d check(s) failed\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
