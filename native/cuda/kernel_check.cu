// Checks the CUDA engine's device code on the GPU against independent references, on fresh random
// inputs each run (seed printed; pass one to repeat it), with outputs poisoned (NaN) before each
// launch so that an unwritten element fails:
//  - weight conversion: bit for bit against the host reference (host/weight_format.h, itself
//    checked against ggml by host_test.cc), NaN matching any NaN;
//  - every element-wise kernel, both attention kernels (with and without shared prefixes, GQA 16/8
//    and 32/8, lengths that are not multiples of the tiles, layouts from the batch planner), the
//    cuBLASLt GEMMs, the yes/no head and the embedding output: against float64 CPU references;
//    the tensor-core attention also against the CUDA-core kernel;
//  - one whole transformer layer (Forward::layer) and the last layer with the head
//    (Forward::last_layer, Forward::head) on random weights against a float64 CPU layer, in a small
//    shape and in Qwen3-0.6B's.
// Bounds, ||out - ref|| / ||ref||: a bf16 result carries one rounding of at most 2^-9 relative
// (4e-3 in the worst case, about 1e-3 RMS), so single-rounding bf16 outputs get 1e-2. fp32 outputs
// of sums over up to a few thousand terms get 1e-5 (1e-4 through cuBLASLt, whose split-K order is
// its own). A whole layer rounds to bf16 about 6 times in series (normed, qkv, q/k, attention,
// gate/up, SwiGLU), each adding ~1e-3 RMS, and softmax passes score errors on at most linearly:
// its residual update (the layer's output minus its input) gets 3e-2, the head's logits and the
// embedding (two layers' worth of rounding before one fp32 reduction) 3e-2.
// Exit 0: all pass; 1: a check failed; 77: no GPU.
//
//   ./kernel_check [seed] [--small]     --small: smaller cases (for compute-sanitizer)
//   ./kernel_check --bench [--json F]   timings instead of checks: the measured bf16 GEMM ceiling,
//       one layer's stages alone, and the whole network (Forward::run per device batch, with the
//       engine's input and output copies) on the benchmark shapes, 0.6B and 4B, random weights
//       filled on the device; F receives the figures as JSON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cuda_fp16.h>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/check_main.h"
#include "cuda/forward.h"
#include "cuda/gemm.h"
#include "cuda/host/batch_plan.h"
#include "cuda/host/model_layout.h"
#include "cuda/host/weight_format.h"
#include "cuda/host/workspace_layout.h"
#include "cuda/kernels.cuh"

using namespace qrank;
using namespace qrank::cuda;

namespace {

int failures = 0;
bool small = false;

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
int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    CHECK_CUDA(cudaMalloc(&p, (count ? count : 1) * sizeof(T)));
    poison();
  }
  Dev(const std::vector<T>& h) : Dev(h.size()) { put(h); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void poison() { CHECK_CUDA(cudaMemset(p, 0xff, (n ? n : 1) * sizeof(T))); }  // NaN in bf16, f16 and f32
  void put(const std::vector<T>& h) { CHECK_CUDA(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    CHECK_CUDA(cudaDeviceSynchronize());
    CHECK_CUDA(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

double value(bf16 x) { return __bfloat162float(x); }
std::vector<double> to_double(const std::vector<bf16>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = value(v[i]);
  return out;
}
std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// ||out - ref|| / ||ref||, NaN when any output is not finite.
void report(const std::string& name, const std::vector<double>& out, const std::vector<double>& ref, double bound) {
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
  std::printf("%-52s %-4s rel err %.3e (bound %.0e, %zu values)\n", name.c_str(), ok ? "ok" : "FAIL", rel, bound, out.size());
}

void report_exact(const std::string& name, size_t mismatches, size_t n) {
  if (mismatches) ++failures;
  std::printf("%-52s %-4s %zu of %zu values differ\n", name.c_str(), mismatches ? "FAIL" : "ok", mismatches, n);
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

// --- float64 references ------------------------------------------------------------------------

// y[r, o] = sum_i x[r, i] w[o, i]
std::vector<double> matmul(const std::vector<double>& x, const std::vector<double>& w, int rows, int out, int in) {
  std::vector<double> y(static_cast<size_t>(rows) * out);
  for (int r = 0; r < rows; ++r) {
    const double* xr = &x[static_cast<size_t>(r) * in];
    for (int o = 0; o < out; ++o) {
      const double* wo = &w[static_cast<size_t>(o) * in];
      double acc = 0;
      for (int i = 0; i < in; ++i) acc += xr[i] * wo[i];
      y[static_cast<size_t>(r) * out + o] = acc;
    }
  }
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& w, int rows, int n, double eps) {
  std::vector<double> y(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += x[static_cast<size_t>(r) * n + i] * x[static_cast<size_t>(r) * n + i];
    const double inv = 1.0 / std::sqrt(ss / n + eps);
    for (int i = 0; i < n; ++i) y[static_cast<size_t>(r) * n + i] = x[static_cast<size_t>(r) * n + i] * inv * w[i];
  }
  return y;
}

// Per-head RMSNorm then NeoX RoPE (pairs i, i + d/2) of one head vector, in place.
void norm_rope(double* x, const std::vector<float>& w, int d, int pos, double theta, double eps) {
  double ss = 0;
  for (int i = 0; i < d; ++i) ss += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(ss / d + eps);
  for (int i = 0; i < d; ++i) x[i] *= inv * w[i];
  for (int i = 0; i < d / 2; ++i) {
    const double ang = pos * std::pow(theta, -2.0 * i / d), a = x[i], b = x[i + d / 2];
    x[i] = a * std::cos(ang) - b * std::sin(ang);
    x[i + d / 2] = b * std::cos(ang) + a * std::sin(ang);
  }
}

// Attention by the definition of host/attn_types.h: q [rows, hq, d], k/v [rows, hkv, d] -> [rows, hq, d].
std::vector<double> attention_ref(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                                  const std::vector<AttnSeq>& segments, int rows, int hq, int hkv, int d) {
  std::vector<double> out(static_cast<size_t>(rows) * hq * d, 0.0), sc;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (const AttnSeq& s : segments) {
    const auto key_row = [&](int j) { return j < s.prefix_len ? s.prefix_start + j : s.kv_start + (j - s.prefix_len); };
    for (int i = 0; i < s.q_len; ++i) {
      for (int h = 0; h < hq; ++h) {
        const int hk = h / (hq / hkv), nk = s.prefix_len + i + 1;
        const double* qr = &q[(static_cast<size_t>(s.q_start + i) * hq + h) * d];
        sc.assign(nk, 0);
        double mx = -1e300;
        for (int j = 0; j < nk; ++j) {
          const double* kr = &k[(static_cast<size_t>(key_row(j)) * hkv + hk) * d];
          double dot = 0;
          for (int c = 0; c < d; ++c) dot += qr[c] * kr[c];
          sc[j] = dot * scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int j = 0; j < nk; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        double* o = &out[(static_cast<size_t>(s.q_start + i) * hq + h) * d];
        for (int j = 0; j < nk; ++j) {
          const double* vr = &v[(static_cast<size_t>(key_row(j)) * hkv + hk) * d];
          for (int c = 0; c < d; ++c) o[c] += sc[j] / sum * vr[c];
        }
      }
    }
  }
  return out;
}

// --- packed batches from the planner -----------------------------------------------------------

struct PackedCase {
  std::vector<std::vector<Token>> tokens;
  DeviceBatch batch;
};

// Groups sharing a prefix (computed once) and standalone sequences, random lengths, one device batch.
PackedCase packed_case(int n_seq, int max_len, int max_prefix, bool with_prefix) {
  PackedCase c;
  std::vector<EngineSequence> seqs;
  std::vector<Token> prefixes[2];
  for (auto& p : prefixes) p.assign(uniform_int(1, max_prefix), 1);
  for (int s = 0; s < n_seq; ++s) {
    const int group = with_prefix ? uniform_int(-1, 1) : -1;
    std::vector<Token> t = group >= 0 ? prefixes[group] : std::vector<Token>{};
    const int own = uniform_int(1, max_len);
    for (int i = 0; i < own; ++i) t.push_back(uniform_int(0, 999));
    c.tokens.push_back(std::move(t));
    seqs.push_back(EngineSequence{nullptr, 0, group, group >= 0 ? static_cast<int32_t>(prefixes[group].size()) : 0});
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].tokens = c.tokens[i].data();
    seqs[i].n_tokens = static_cast<int32_t>(c.tokens[i].size());
  }
  auto plan = plan_batches(seqs, PlanLimits{1 << 20, 1 << 20, kAttnMmaQueries, 1000});
  c.batch = std::move(plan.front());
  return c;
}

// --- kernels -----------------------------------------------------------------------------------

uint32_t random_bits() { return static_cast<uint32_t>(rng()); }

template <typename Src>
void check_convert_type(WeightType type, const char* name, const std::vector<Src>& src, int64_t n) {
  std::vector<uint16_t> ref(n);
  convert_to_bf16_host(type, src.data(), ref.data(), n);
  Dev<Src> d_src(src);
  Dev<bf16> d_dst(n);
  CHECK_CUDA(convert_to_bf16(type, d_src.p, d_dst.p, n, 0));
  const std::vector<bf16> out = d_dst.get();
  size_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, &out[i], 2);
    const bool nan_out = (bits & 0x7fffu) > 0x7f80u, nan_ref = (ref[i] & 0x7fffu) > 0x7f80u;
    if (nan_out || nan_ref ? !(nan_out && nan_ref) : bits != ref[i]) ++bad;
  }
  report_exact(name, bad, n);
}

void check_convert() {
  const int64_t n = small ? 32 * 64 : 32 * 4096;
  std::vector<float> f(n);
  for (auto& x : f) x = normal() * std::pow(10.f, uniform(-20.f, 20.f));
  for (int64_t i = 0; i < n / 8; ++i) {  // any bit pattern: NaN, infinities, denormals, ties
    const uint32_t u = random_bits();
    std::memcpy(&f[i], &u, 4);
  }
  check_convert_type(WeightType::F32, "convert F32 -> bf16 (host reference, bits)", f, n);
  std::vector<uint16_t> h(n);
  for (int64_t i = 0; i < n; ++i) h[i] = static_cast<uint16_t>(i < 65536 ? i : random_bits());  // every f16 value first
  check_convert_type(WeightType::F16, "convert F16 -> bf16 (host reference, bits)", h, n);
  std::vector<uint16_t> b(n);
  for (auto& x : b) x = static_cast<uint16_t>(random_bits());
  check_convert_type(WeightType::BF16, "convert BF16 -> bf16 (copy)", b, n);
  std::vector<uint8_t> q(n / kQ8Block * kQ8BlockBytes);
  for (int64_t blk = 0; blk < n / kQ8Block; ++blk) {
    const __half d = __float2half(uniform(0.f, 1.f) < 0.1f ? uniform(1e-7f, 1e-5f) : uniform(0.001f, 0.05f));  // some fp16 denormal scales
    std::memcpy(&q[blk * kQ8BlockBytes], &d, 2);
    for (int j = 0; j < kQ8Block; ++j) q[blk * kQ8BlockBytes + 2 + j] = static_cast<uint8_t>(random_bits());
  }
  check_convert_type(WeightType::Q8_0, "convert Q8_0 -> bf16 (host reference, bits)", q, n);
}

void check_add_rmsnorm(int rows, int hidden) {
  const float eps = 1e-6f;
  auto res = random_f32(static_cast<size_t>(rows) * hidden, -2.f, 2.f);
  auto delta = random_bf16(static_cast<size_t>(rows) * hidden, 0.5f);
  auto w = random_f32(hidden, 0.5f, 1.5f);
  std::vector<double> ref_res(res.size());
  for (size_t i = 0; i < res.size(); ++i) ref_res[i] = static_cast<double>(res[i]) + value(delta[i]);
  const std::vector<double> ref_out = rmsnorm(ref_res, w, rows, hidden, eps);
  Dev<float> d_res(res), d_w(w);
  Dev<bf16> d_delta(delta), d_out(static_cast<size_t>(rows) * hidden);
  CHECK_CUDA(add_rmsnorm(d_res.p, d_delta.p, d_w.p, d_out.p, rows, hidden, eps, 0));
  const std::string shape = std::to_string(rows) + "x" + std::to_string(hidden);
  report("add_rmsnorm residual " + shape, to_double(d_res.get()), ref_res, 1e-6);
  report("add_rmsnorm normed " + shape, to_double(d_out.get()), ref_out, 1e-2);
  // without delta: the residual is read, not written
  Dev<float> d_plain(res);
  d_out.poison();
  CHECK_CUDA(add_rmsnorm(d_plain.p, nullptr, d_w.p, d_out.p, rows, hidden, eps, 0));
  report("rmsnorm (no delta) " + shape, to_double(d_out.get()), rmsnorm(to_double(res), w, rows, hidden, eps), 1e-2);
  report("rmsnorm (no delta) leaves the residual " + shape, to_double(d_plain.get()), to_double(res), 0);
}

void check_embed_tokens() {
  const int vocab = 1000, hidden = 1024, rows = 77;
  auto table = random_bf16(static_cast<size_t>(vocab) * hidden);
  std::vector<int32_t> tokens(rows);
  for (auto& t : tokens) t = uniform_int(0, vocab - 1);
  std::vector<double> ref(static_cast<size_t>(rows) * hidden);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < hidden; ++i) ref[static_cast<size_t>(r) * hidden + i] = value(table[static_cast<size_t>(tokens[r]) * hidden + i]);
  Dev<bf16> d_table(table);
  Dev<int32_t> d_tok(tokens);
  Dev<float> d_res(static_cast<size_t>(rows) * hidden);
  CHECK_CUDA(embed_tokens(d_tok.p, d_table.p, d_res.p, rows, hidden, 0));
  report("embed_tokens", to_double(d_res.get()), ref, 0);
}

void check_qk_norm_rope(int rows, int n_head, int n_head_kv) {
  const int d = 128;
  const double eps = 1e-6, theta = 1e6;
  const int width = (n_head + 2 * n_head_kv) * d;
  auto qkv = random_bf16(static_cast<size_t>(rows) * width, 2.f);
  std::vector<int32_t> pos(rows);
  for (auto& p : pos) p = uniform_int(0, 40959);
  auto qn = random_f32(d, 0.5f, 1.5f), kn = random_f32(d, 0.5f, 1.5f);
  std::vector<double> rq(static_cast<size_t>(rows) * n_head * d), rk(static_cast<size_t>(rows) * n_head_kv * d),
      rv(static_cast<size_t>(rows) * n_head_kv * d);
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < n_head + 2 * n_head_kv; ++h) {
      std::vector<double> x(d);
      for (int i = 0; i < d; ++i) x[i] = value(qkv[static_cast<size_t>(r) * width + static_cast<size_t>(h) * d + i]);
      if (h < n_head + n_head_kv) norm_rope(x.data(), h < n_head ? qn : kn, d, pos[r], theta, eps);
      double* dst = h < n_head ? &rq[(static_cast<size_t>(r) * n_head + h) * d]
                    : h < n_head + n_head_kv ? &rk[(static_cast<size_t>(r) * n_head_kv + (h - n_head)) * d]
                                             : &rv[(static_cast<size_t>(r) * n_head_kv + (h - n_head - n_head_kv)) * d];
      std::copy(x.begin(), x.end(), dst);
    }
  }
  Dev<bf16> d_qkv(qkv), q(static_cast<size_t>(rows) * n_head * d), k(static_cast<size_t>(rows) * n_head_kv * d),
      v(static_cast<size_t>(rows) * n_head_kv * d);
  Dev<int32_t> d_pos(pos);
  Dev<float> d_qn(qn), d_kn(kn), d_freq(rope_inv_freq(theta, d));
  CHECK_CUDA(qk_norm_rope(d_qkv.p, d_pos.p, d_qn.p, d_kn.p, d_freq.p, q.p, k.p, v.p, rows, n_head, n_head_kv, d, static_cast<float>(eps), 0));
  // fp32 angles at positions up to 40k are off by up to ~3e-3 rad (as in llama.cpp and PyTorch)
  const std::string heads = std::to_string(n_head) + "/" + std::to_string(n_head_kv);
  report("qk_norm_rope q " + heads, to_double(q.get()), rq, 1e-2);
  report("qk_norm_rope k " + heads, to_double(k.get()), rk, 1e-2);
  report("qk_norm_rope v " + heads, to_double(v.get()), rv, 0);
}

void check_swiglu(int rows, int ffn) {
  auto gu = random_bf16(static_cast<size_t>(rows) * 2 * ffn, 2.f);
  std::vector<double> ref(static_cast<size_t>(rows) * ffn);
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < ffn; ++j) {
      const double g = value(gu[static_cast<size_t>(r) * 2 * ffn + j]), u = value(gu[static_cast<size_t>(r) * 2 * ffn + ffn + j]);
      ref[static_cast<size_t>(r) * ffn + j] = g / (1 + std::exp(-g)) * u;
    }
  Dev<bf16> d_gu(gu), d_act(static_cast<size_t>(rows) * ffn);
  CHECK_CUDA(swiglu(d_gu.p, d_act.p, rows, ffn, 0));
  report("swiglu", to_double(d_act.get()), ref, 1e-2);
}

// Both attention kernels on one packed batch from the planner: against float64 and each other.
void check_attention(int n_head, int n_head_kv, bool with_prefix) {
  const int d = 128;
  PackedCase c = small ? packed_case(3, 70, 40, with_prefix) : packed_case(uniform_int(3, 6), 160, 130, with_prefix);
  DeviceBatch& b = c.batch;
  const int rows = static_cast<int>(b.rows());
  auto q = random_bf16(static_cast<size_t>(rows) * n_head * d), k = random_bf16(static_cast<size_t>(rows) * n_head_kv * d),
       v = random_bf16(static_cast<size_t>(rows) * n_head_kv * d);
  const std::vector<double> ref = attention_ref(to_double(q), to_double(k), to_double(v), b.segments, rows, n_head, n_head_kv, d);
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  Dev<bf16> dq(q), dk(k), dv(v), out_mma(static_cast<size_t>(rows) * n_head * d), out_simple(static_cast<size_t>(rows) * n_head * d);
  Dev<AttnSeq> ds(b.segments);
  Dev<AttnTile> tiles_mma(b.tiles);  // the planner's tiles: kAttnMmaQueries
  make_tiles(b, kAttnQueries);
  Dev<AttnTile> tiles_simple(b.tiles);
  CHECK_CUDA(attention_mma(dq.p, dk.p, dv.p, ds.p, tiles_mma.p, static_cast<int>(tiles_mma.n), out_mma.p, n_head, n_head_kv, d, scale, 0));
  CHECK_CUDA(attention(dq.p, dk.p, dv.p, ds.p, tiles_simple.p, static_cast<int>(tiles_simple.n), out_simple.p, n_head, n_head_kv, d, scale, 0));
  char name[96];
  std::snprintf(name, sizeof name, "%d/%d heads, %d rows, %zu segments%s", n_head, n_head_kv, rows, b.segments.size(),
                b.tokens_reused ? ", prefixes" : "");
  const std::vector<double> mma = to_double(out_mma.get()), simple = to_double(out_simple.get());
  report(std::string("attention_mma ") + name, mma, ref, 1e-2);
  report(std::string("attention (CUDA cores) ") + name, simple, ref, 1e-2);
  report(std::string("attention_mma vs CUDA cores ") + name, mma, simple, 1e-2);
}

void check_gemm(int rows, int out, int in) {
  const auto x = random_bf16(static_cast<size_t>(rows) * in), w = random_bf16(static_cast<size_t>(out) * in, 1.f / std::sqrt(static_cast<float>(in)));
  const auto acc = random_f32(static_cast<size_t>(rows) * out, -1.f, 1.f);
  std::vector<double> ref = matmul(to_double(x), to_double(w), rows, out, in);
  Dev<bf16> dx(x), dw(w), dy(static_cast<size_t>(rows) * out);
  Dev<float> dacc(acc);
  Gemm gemm(0);
  gemm.linear(dx.p, dw.p, dy.p, rows, out, in);
  gemm.linear_add(dx.p, dw.p, dacc.p, rows, out, in);
  const std::string shape = std::to_string(rows) + "x" + std::to_string(in) + " . " + std::to_string(in) + "x" + std::to_string(out);
  report("gemm linear (bf16 out) " + shape, to_double(dy.get()), ref, 1e-2);
  for (size_t i = 0; i < ref.size(); ++i) ref[i] += acc[i];
  report("gemm linear_add (fp32 residual) " + shape, to_double(dacc.get()), ref, 1e-4);
  gemm.linear(dx.p, dw.p, dy.p, rows, out, in);
  if (gemm.plans() != 2) {
    ++failures;
    std::printf("gemm plan cache FAIL: %zu plans for 2 shapes\n", gemm.plans());
  }
}

void check_heads(int n, int hidden) {
  const double eps = 1e-6;
  auto rows = random_f32(static_cast<size_t>(n) * hidden, -3.f, 3.f);
  auto norm = random_f32(hidden, 0.5f, 1.5f);
  auto head = random_f32(2 * static_cast<size_t>(hidden), -0.05f, 0.05f);
  const std::vector<double> y = rmsnorm(to_double(rows), norm, n, hidden, eps);
  std::vector<double> ref_logits(n), ref_full(static_cast<size_t>(n) * hidden), ref_half;
  const int dims = hidden / 2;
  ref_half.resize(static_cast<size_t>(n) * dims);
  for (int r = 0; r < n; ++r) {
    const double* yr = &y[static_cast<size_t>(r) * hidden];
    double logit = 0, all = 0, half = 0;
    for (int i = 0; i < hidden; ++i) logit += yr[i] * (static_cast<double>(head[i]) - head[hidden + i]);
    for (int i = 0; i < hidden; ++i) all += yr[i] * yr[i];
    for (int i = 0; i < dims; ++i) half += yr[i] * yr[i];
    ref_logits[r] = logit;
    for (int i = 0; i < hidden; ++i) ref_full[static_cast<size_t>(r) * hidden + i] = yr[i] / std::sqrt(all);
    for (int i = 0; i < dims; ++i) ref_half[static_cast<size_t>(r) * dims + i] = yr[i] / std::sqrt(half);
  }
  Dev<float> d_rows(rows), d_norm(norm), d_head(head), d_logits(n), d_full(static_cast<size_t>(n) * hidden), d_half(static_cast<size_t>(n) * dims);
  CHECK_CUDA(yes_no_head(d_rows.p, d_norm.p, d_head.p, d_logits.p, n, hidden, static_cast<float>(eps), 0));
  CHECK_CUDA(embed_output(d_rows.p, d_norm.p, d_full.p, n, hidden, hidden, static_cast<float>(eps), 0));
  CHECK_CUDA(embed_output(d_rows.p, d_norm.p, d_half.p, n, hidden, dims, static_cast<float>(eps), 0));
  report("yes_no_head (logit row 0 - row 1)", to_double(d_logits.get()), ref_logits, 1e-5);
  report("embed_output (full width)", to_double(d_full.get()), ref_full, 1e-5);
  report("embed_output (dims = hidden / 2)", to_double(d_half.get()), ref_half, 1e-5);

  std::vector<int32_t> index(n);
  for (auto& x : index) x = uniform_int(0, n - 1);
  std::vector<double> ref_g(static_cast<size_t>(n) * hidden);
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < hidden; ++i) ref_g[static_cast<size_t>(r) * hidden + i] = rows[static_cast<size_t>(index[r]) * hidden + i];
  Dev<int32_t> d_index(index);
  Dev<float> d_g(static_cast<size_t>(n) * hidden);
  CHECK_CUDA(gather_rows(d_rows.p, d_index.p, d_g.p, n, hidden, 0));
  report("gather_rows fp32", to_double(d_g.get()), ref_g, 0);
  const auto b = random_bf16(static_cast<size_t>(n) * hidden);
  std::vector<double> ref_b(static_cast<size_t>(n) * hidden);
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < hidden; ++i) ref_b[static_cast<size_t>(r) * hidden + i] = value(b[static_cast<size_t>(index[r]) * hidden + i]);
  Dev<bf16> d_b(b), d_gb(static_cast<size_t>(n) * hidden);
  CHECK_CUDA(gather_rows(d_b.p, d_index.p, d_gb.p, n, hidden, 0));
  report("gather_rows bf16", to_double(d_gb.get()), ref_b, 0);
}

// --- one transformer layer ---------------------------------------------------------------------

struct HostLayer {
  std::vector<bf16> qkv, o, gate_up, down;
  std::vector<float> attn_norm, q_norm, k_norm, ffn_norm;
};

HostLayer random_layer(const Qwen3Shape& s) {
  const int h = static_cast<int>(s.hidden), f = static_cast<int>(s.ffn);
  HostLayer l;
  l.qkv = random_bf16(static_cast<size_t>(s.qkv_width()) * h, 1.f / std::sqrt(static_cast<float>(h)));
  l.o = random_bf16(static_cast<size_t>(h) * s.q_width(), 1.f / std::sqrt(static_cast<float>(s.q_width())));
  l.gate_up = random_bf16(static_cast<size_t>(2 * f) * h, 1.f / std::sqrt(static_cast<float>(h)));
  l.down = random_bf16(static_cast<size_t>(h) * f, 1.f / std::sqrt(static_cast<float>(f)));
  l.attn_norm = random_f32(h, 0.5f, 1.5f);
  l.ffn_norm = random_f32(h, 0.5f, 1.5f);
  l.q_norm = random_f32(s.head_dim, 0.5f, 1.5f);
  l.k_norm = random_f32(s.head_dim, 0.5f, 1.5f);
  return l;
}

// The attention half of a layer: residual + attention(...) Wo^T, all in float64.
std::vector<double> attention_half(const Qwen3Shape& s, const HostLayer& l, const DeviceBatch& b, const std::vector<double>& res) {
  const int rows = static_cast<int>(b.rows()), h = static_cast<int>(s.hidden), d = static_cast<int>(s.head_dim);
  const int hq = static_cast<int>(s.heads), hkv = static_cast<int>(s.kv_heads);
  const std::vector<double> qkv = matmul(rmsnorm(res, l.attn_norm, rows, h, s.rms_eps), to_double(l.qkv), rows, static_cast<int>(s.qkv_width()), h);
  std::vector<double> q(static_cast<size_t>(rows) * hq * d), k(static_cast<size_t>(rows) * hkv * d), v(k.size());
  for (int r = 0; r < rows; ++r) {
    const double* src = &qkv[static_cast<size_t>(r) * s.qkv_width()];
    for (int hh = 0; hh < hq + 2 * hkv; ++hh) {
      double* dst = hh < hq ? &q[(static_cast<size_t>(r) * hq + hh) * d]
                    : hh < hq + hkv ? &k[(static_cast<size_t>(r) * hkv + hh - hq) * d]
                                    : &v[(static_cast<size_t>(r) * hkv + hh - hq - hkv) * d];
      std::copy(src + static_cast<size_t>(hh) * d, src + static_cast<size_t>(hh + 1) * d, dst);
      if (hh < hq + hkv) norm_rope(dst, hh < hq ? l.q_norm : l.k_norm, d, b.positions[r], s.rope_theta, s.rms_eps);
    }
  }
  const std::vector<double> attn = attention_ref(q, k, v, b.segments, rows, hq, hkv, d);
  std::vector<double> out = matmul(attn, to_double(l.o), rows, h, static_cast<int>(s.q_width()));
  for (size_t i = 0; i < out.size(); ++i) out[i] += res[i];
  return out;
}

// residual + SwiGLU FFN of rmsnorm(residual), in float64.
std::vector<double> ffn_half(const Qwen3Shape& s, const HostLayer& l, const std::vector<double>& res, int rows) {
  const int h = static_cast<int>(s.hidden), f = static_cast<int>(s.ffn);
  const std::vector<double> gu = matmul(rmsnorm(res, l.ffn_norm, rows, h, s.rms_eps), to_double(l.gate_up), rows, 2 * f, h);
  std::vector<double> act(static_cast<size_t>(rows) * f);
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < f; ++j) {
      const double g = gu[static_cast<size_t>(r) * 2 * f + j], u = gu[static_cast<size_t>(r) * 2 * f + f + j];
      act[static_cast<size_t>(r) * f + j] = g / (1 + std::exp(-g)) * u;
    }
  std::vector<double> out = matmul(act, to_double(l.down), rows, h, f);
  for (size_t i = 0; i < out.size(); ++i) out[i] += res[i];
  return out;
}

std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

void check_layer(const char* label, const Qwen3Shape& s, int n_seq, int max_len, int max_prefix) {
  const PackedCase c = packed_case(n_seq, max_len, max_prefix, true);
  const DeviceBatch& b = c.batch;
  const int rows = static_cast<int>(b.rows()), outs = static_cast<int>(b.n_outputs()), h = static_cast<int>(s.hidden);
  const HostLayer l = random_layer(s);
  const std::vector<float> res = random_f32(static_cast<size_t>(rows) * h, -1.f, 1.f);
  const auto head = random_f32(2 * static_cast<size_t>(h), -0.05f, 0.05f);
  const auto out_norm = random_f32(h, 0.5f, 1.5f);

  Dev<bf16> qkv(l.qkv), o(l.o), gate_up(l.gate_up), down(l.down);
  Dev<float> attn_norm(l.attn_norm), q_norm(l.q_norm), k_norm(l.k_norm), ffn_norm(l.ffn_norm), d_head(head), d_out_norm(out_norm),
      d_freq(rope_inv_freq(s.rope_theta, s.head_dim));
  ModelWeights w;
  w.shape = s;
  w.layers.push_back(LayerWeights{qkv.p, o.p, gate_up.p, down.p, attn_norm.p, q_norm.p, k_norm.p, ffn_norm.p});
  w.output_norm = d_out_norm.p;
  w.rope_inv_freq = d_freq.p;
  w.head = d_head.p;

  const InputLayout il = input_layout(b);
  std::vector<uint8_t> packed(il.bytes);
  pack_inputs(b, il, packed.data());
  Dev<uint8_t> d_in(packed);
  BatchInputs in;
  in.tokens = reinterpret_cast<const int32_t*>(d_in.p + il.tokens);
  in.positions = reinterpret_cast<const int32_t*>(d_in.p + il.positions);
  in.segments = reinterpret_cast<const AttnSeq*>(d_in.p + il.segments);
  in.tiles = reinterpret_cast<const AttnTile*>(d_in.p + il.tiles);
  in.last_rows = reinterpret_cast<const int32_t*>(d_in.p + il.last_rows);
  in.rows = rows;
  in.outputs = outs;
  in.n_tiles = static_cast<int32_t>(b.tiles.size());
  const ActivationLayout layout = activation_layout(s, rows, outs, h);
  Dev<uint8_t> workspace(layout.bytes);
  const Activations act = Activations::in(workspace.p, layout);
  Gemm gemm(0);
  const Forward forward(w, gemm, AttentionKernel::kTensorCores, 0);

  // float64: the whole layer over every row, and the output rows' hidden state
  const std::vector<double> res_in = to_double(res);
  const std::vector<double> ref = ffn_half(s, l, attention_half(s, l, b, res_in), rows);
  std::vector<double> ref_last(static_cast<size_t>(outs) * h), ref_in_last(ref_last.size());
  for (int k = 0; k < outs; ++k) {
    std::copy_n(&ref[static_cast<size_t>(b.last_rows[k]) * h], h, &ref_last[static_cast<size_t>(k) * h]);
    std::copy_n(&res_in[static_cast<size_t>(b.last_rows[k]) * h], h, &ref_in_last[static_cast<size_t>(k) * h]);
  }
  const std::vector<double> y = rmsnorm(ref_last, out_norm, outs, h, s.rms_eps);
  std::vector<double> ref_logits(outs), ref_embedding(y.size());
  for (int k = 0; k < outs; ++k) {
    double logit = 0, ss = 0;
    for (int i = 0; i < h; ++i) logit += y[static_cast<size_t>(k) * h + i] * (static_cast<double>(head[i]) - head[h + i]);
    for (int i = 0; i < h; ++i) ss += y[static_cast<size_t>(k) * h + i] * y[static_cast<size_t>(k) * h + i];
    ref_logits[k] = logit;
    for (int i = 0; i < h; ++i) ref_embedding[static_cast<size_t>(k) * h + i] = y[static_cast<size_t>(k) * h + i] / std::sqrt(ss);
  }

  char name[128];
  std::snprintf(name, sizeof name, "%s: %d rows, %d outputs, %zu segments", label, rows, outs, b.segments.size());
  CHECK_CUDA(cudaMemcpy(act.residual, res.data(), res.size() * sizeof(float), cudaMemcpyHostToDevice));
  forward.layer(0, in, act);
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> got(res.size());
  CHECK_CUDA(cudaMemcpy(got.data(), act.residual, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
  report(std::string("layer residual ") + name, to_double(got), ref, 1e-2);
  report(std::string("layer update (out - in) ") + name, minus(to_double(got), res_in), minus(ref, res_in), 3e-2);

  // the last layer: O and the FFN on the output rows only, then the head
  CHECK_CUDA(cudaMemcpy(act.residual, res.data(), res.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemset(act.out, 0xff, static_cast<size_t>(outs) * h * sizeof(float)));
  forward.last_layer(0, in, act);
  forward.head(in, act);
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> last(ref_last.size()), logits(outs);
  CHECK_CUDA(cudaMemcpy(last.data(), act.last_residual, last.size() * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(logits.data(), act.out, logits.size() * sizeof(float), cudaMemcpyDeviceToHost));
  report(std::string("last layer update (output rows) ") + name, minus(to_double(last), ref_in_last), minus(ref_last, ref_in_last), 3e-2);
  report(std::string("last layer + yes/no head logits ") + name, to_double(logits), ref_logits, 3e-2);
  w.head = nullptr;
  const Forward embedder(w, gemm, AttentionKernel::kTensorCores, 0);
  CHECK_CUDA(cudaMemset(act.out, 0xff, static_cast<size_t>(outs) * h * sizeof(float)));
  embedder.head(in, act);
  std::vector<float> emb(ref_embedding.size());
  CHECK_CUDA(cudaDeviceSynchronize());
  CHECK_CUDA(cudaMemcpy(emb.data(), act.out, emb.size() * sizeof(float), cudaMemcpyDeviceToHost));
  report(std::string("last layer + embedding ") + name, to_double(emb), ref_embedding, 3e-2);
}

Qwen3Shape layer_shape(int64_t hidden, int64_t heads, int64_t kv_heads, int64_t ffn) {
  Qwen3Shape s;
  s.hidden = hidden;
  s.layers = 1;
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.head_dim = 128;
  s.ffn = ffn;
  s.vocab = 1000;
  s.rope_theta = 1e6;
  s.rms_eps = 1e-6;
  return s;
}


// --- --bench: timings on the device, random weights filled on the GPU ---------------------------

__global__ void k_fill_bf16(bf16* p, size_t n, uint64_t seed, float std) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;  // splitmix64
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    const float u = static_cast<float>(x >> 40) * (2.f / 16777216.f) - 1.f;  // uniform [-1, 1): std 1/sqrt(3)
    p[i] = __float2bfloat16(u * std * 1.7320508f);
  }
}

__global__ void k_fill_f32(float* p, size_t n, float v) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) p[i] = v;
}

struct BenchModel {
  std::vector<std::unique_ptr<Dev<bf16>>> matrices;
  std::vector<std::unique_ptr<Dev<float>>> vectors;
  ModelWeights w;

  const bf16* matrix(size_t n, float std) {
    matrices.push_back(std::make_unique<Dev<bf16>>(n));
    k_fill_bf16<<<1024, 256>>>(matrices.back()->p, n, rng(), std);
    CHECK_CUDA(cudaGetLastError());
    return matrices.back()->p;
  }
  const float* ones(size_t n) {
    vectors.push_back(std::make_unique<Dev<float>>(n));
    k_fill_f32<<<64, 256>>>(vectors.back()->p, n, 1.f);
    CHECK_CUDA(cudaGetLastError());
    return vectors.back()->p;
  }

  BenchModel(const Qwen3Shape& s, bool reranker) {
    const size_t h = static_cast<size_t>(s.hidden), f = static_cast<size_t>(s.ffn);
    w.shape = s;
    w.embeddings = matrix(static_cast<size_t>(s.vocab) * h, 0.02f);
    for (int64_t l = 0; l < s.layers; ++l) {
      LayerWeights lw;
      lw.qkv = matrix(static_cast<size_t>(s.qkv_width()) * h, 1.f / std::sqrt(static_cast<float>(h)));
      lw.o = matrix(h * static_cast<size_t>(s.q_width()), 1.f / std::sqrt(static_cast<float>(s.q_width())));
      lw.gate_up = matrix(2 * f * h, 1.f / std::sqrt(static_cast<float>(h)));
      lw.down = matrix(h * f, 1.f / std::sqrt(static_cast<float>(f)));
      lw.attn_norm = ones(h);
      lw.ffn_norm = ones(h);
      lw.q_norm = ones(s.head_dim);
      lw.k_norm = ones(s.head_dim);
      w.layers.push_back(lw);
    }
    w.output_norm = ones(h);
    vectors.push_back(std::make_unique<Dev<float>>(rope_inv_freq(s.rope_theta, s.head_dim)));
    w.rope_inv_freq = vectors.back()->p;
    if (reranker) {
      vectors.push_back(std::make_unique<Dev<float>>(random_f32(2 * h, -0.05f, 0.05f)));
      w.head = vectors.back()->p;
    }
    CHECK_CUDA(cudaDeviceSynchronize());
  }
};

template <typename F>
std::vector<float> times_ms(int reps, F run) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  run();  // warm-up: plans, module loads
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> t(reps);
  for (float& ms : t) {
    CHECK_CUDA(cudaEventRecord(start));
    run();
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(t.begin(), t.end());
  return t;
}

double median(const std::vector<float>& sorted) { return sorted[sorted.size() / 2]; }
double percentile(const std::vector<float>& sorted, double p) {
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size())))];
}

// A request of `docs` sequences of `prefix + own` tokens (members of one prefix group when prefix >
// 0), `queries` times over: the engine's device batches for it (defaults 32768 rows, 1024 outputs).
struct BenchCase {
  std::string name;
  int64_t pair_tokens = 0;  // tokens of every sequence (what a padding-free engine without reuse would run)
  int64_t pairs = 0;
  std::vector<std::vector<Token>> tokens;
  std::vector<DeviceBatch> batches;
};

BenchCase bench_case(const std::string& name, int queries, int docs, int prefix, int own) {
  BenchCase c;
  c.name = name;
  std::vector<EngineSequence> seqs;
  for (int q = 0; q < queries; ++q) {
    std::vector<Token> head(prefix);
    for (auto& t : head) t = uniform_int(0, 150000);
    for (int d = 0; d < docs; ++d) {
      std::vector<Token> t = head;
      for (int i = 0; i < own; ++i) t.push_back(uniform_int(0, 150000));
      c.tokens.push_back(std::move(t));
      seqs.push_back(EngineSequence{nullptr, 0, prefix > 0 ? q : -1, prefix});
    }
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].tokens = c.tokens[i].data();
    seqs[i].n_tokens = static_cast<int32_t>(c.tokens[i].size());
    c.pair_tokens += seqs[i].n_tokens;
  }
  c.pairs = static_cast<int64_t>(seqs.size());
  c.batches = plan_batches(seqs, PlanLimits{32768, 1024, kAttnMmaQueries, 151936});
  return c;
}

// The device side of the engine's run(): per device batch, inputs from pinned memory in one copy,
// the network, the outputs back.
class BenchRunner {
 public:
  BenchRunner(const ModelWeights& w, const BenchCase& c) : gemm_(0), forward_(w, gemm_, AttentionKernel::kTensorCores, 0) {
    int64_t rows = 1, outs = 1;
    size_t in_bytes = 0;
    for (const DeviceBatch& b : c.batches) {
      rows = std::max(rows, b.rows());
      outs = std::max(outs, b.n_outputs());
      in_bytes = std::max(in_bytes, input_layout(b).bytes);
    }
    const int64_t width = w.head ? 1 : w.shape.hidden;
    workspace_bytes_ = activation_layout(w.shape, rows, outs, width).bytes;
    workspace_ = std::make_unique<Dev<uint8_t>>(workspace_bytes_);
    device_in_ = std::make_unique<Dev<uint8_t>>(in_bytes * c.batches.size());
    CHECK_CUDA(cudaMallocHost(&pinned_in_, in_bytes * c.batches.size()));
    CHECK_CUDA(cudaMallocHost(&pinned_out_, static_cast<size_t>(outs) * width * sizeof(float)));
    for (size_t i = 0; i < c.batches.size(); ++i) {
      const DeviceBatch& b = c.batches[i];
      const InputLayout il = input_layout(b);
      const size_t at = i * in_bytes;
      pack_inputs(b, il, static_cast<uint8_t*>(pinned_in_) + at);
      Job j;
      j.at = at;
      j.bytes = il.bytes;
      j.in.tokens = reinterpret_cast<const int32_t*>(device_in_->p + at + il.tokens);
      j.in.positions = reinterpret_cast<const int32_t*>(device_in_->p + at + il.positions);
      j.in.segments = reinterpret_cast<const AttnSeq*>(device_in_->p + at + il.segments);
      j.in.tiles = reinterpret_cast<const AttnTile*>(device_in_->p + at + il.tiles);
      j.in.last_rows = reinterpret_cast<const int32_t*>(device_in_->p + at + il.last_rows);
      j.in.rows = static_cast<int32_t>(b.rows());
      j.in.outputs = static_cast<int32_t>(b.n_outputs());
      j.in.n_tiles = static_cast<int32_t>(b.tiles.size());
      j.act = Activations::in(workspace_->p, activation_layout(w.shape, b.rows(), b.n_outputs(), width));
      j.out_bytes = static_cast<size_t>(b.n_outputs()) * width * sizeof(float);
      jobs_.push_back(j);
    }
  }
  ~BenchRunner() {
    cudaFreeHost(pinned_in_);
    cudaFreeHost(pinned_out_);
  }

  void run() {
    for (const Job& j : jobs_) {
      CHECK_CUDA(cudaMemcpyAsync(device_in_->p + j.at, static_cast<uint8_t*>(pinned_in_) + j.at, j.bytes, cudaMemcpyHostToDevice, 0));
      forward_.run(j.in, j.act, nullptr);
      CHECK_CUDA(cudaMemcpyAsync(pinned_out_, j.act.out, j.out_bytes, cudaMemcpyDeviceToHost, 0));
      CHECK_CUDA(cudaStreamSynchronize(0));  // the engine's one sync per device batch
    }
  }
  size_t workspace_bytes() const { return workspace_bytes_; }

 private:
  struct Job {
    size_t at = 0, bytes = 0, out_bytes = 0;
    BatchInputs in;
    Activations act;
  };
  Gemm gemm_;
  Forward forward_;
  size_t workspace_bytes_ = 0;
  std::unique_ptr<Dev<uint8_t>> workspace_, device_in_;
  void* pinned_in_ = nullptr;
  void* pinned_out_ = nullptr;
  std::vector<Job> jobs_;
};

// GEMM FLOPs of the network for a batch: every row through every layer but the last, whose O and
// FFN run on the output rows only.
double network_gemm_flops(const Qwen3Shape& s, int64_t rows, int64_t outputs) {
  const double h = static_cast<double>(s.hidden), f = static_cast<double>(s.ffn);
  const double qkv = 2.0 * h * static_cast<double>(s.qkv_width()), rest = 2.0 * (static_cast<double>(s.q_width()) * h + 2 * f * h + f * h);
  return static_cast<double>(s.layers) * static_cast<double>(rows) * qkv + (static_cast<double>(s.layers - 1) * static_cast<double>(rows) + static_cast<double>(outputs)) * rest;
}

struct JsonOut {
  std::string text = "{\n  \"cases\": [";
  bool first = true;
  void add(const std::string& fields) {
    text += (first ? "\n    {" : ",\n    {") + fields + "}";
    first = false;
  }
};

std::string json_field(const char* key, double v) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "\"%s\": %.6g", key, v);
  return buf;
}

double bench_gemm_ceiling() {
  const int n = 8192;
  Dev<bf16> a(static_cast<size_t>(n) * n), b(static_cast<size_t>(n) * n), c(static_cast<size_t>(n) * n);
  k_fill_bf16<<<1024, 256>>>(a.p, a.n, 1, 1.f);
  k_fill_bf16<<<1024, 256>>>(b.p, b.n, 2, 1.f);
  Gemm gemm(0);
  const auto t = times_ms(20, [&] { gemm.linear(a.p, b.p, c.p, n, n, n); });
  const double tflops = 2.0 * n * n * static_cast<double>(n) / (median(t) * 1e-3) / 1e12;
  std::printf("bf16 GEMM ceiling (cuBLASLt, %d^3, random data): %.0f TFLOP/s\n", n, tflops);
  return tflops;
}

// One layer's stages, timed alone on the case's first device batch.
void bench_stages(const ModelWeights& w, const BenchCase& c) {
  const Qwen3Shape& s = w.shape;
  DeviceBatch b = c.batches.front();
  const int rows = static_cast<int>(b.rows());
  Gemm gemm(0);
  const InputLayout il = input_layout(b);
  std::vector<uint8_t> packed(il.bytes);
  pack_inputs(b, il, packed.data());
  Dev<uint8_t> d_in(packed);
  const ActivationLayout layout = activation_layout(s, rows, b.n_outputs(), 1);
  Dev<uint8_t> ws(layout.bytes);
  const Activations act = Activations::in(ws.p, layout);
  k_fill_f32<<<1024, 256>>>(act.residual, static_cast<size_t>(rows) * s.hidden, 0.5f);
  k_fill_bf16<<<1024, 256>>>(act.wide, static_cast<size_t>(rows) * layout.wide_cols, 3, 1.f);
  k_fill_bf16<<<1024, 256>>>(act.narrow, static_cast<size_t>(rows) * layout.narrow_cols, 4, 1.f);
  k_fill_bf16<<<1024, 256>>>(act.normed, static_cast<size_t>(rows) * s.hidden, 5, 1.f);
  const auto* positions = reinterpret_cast<const int32_t*>(d_in.p + il.positions);
  const auto* segments = reinterpret_cast<const AttnSeq*>(d_in.p + il.segments);
  const auto* tiles = reinterpret_cast<const AttnTile*>(d_in.p + il.tiles);
  const int mma_tiles = static_cast<int>(b.tiles.size());  // the planner's, packed above
  make_tiles(b, kAttnQueries);
  Dev<AttnTile> small_tiles(b.tiles);
  const LayerWeights& lw = w.layers[0];
  const int h = static_cast<int>(s.hidden), f = static_cast<int>(s.ffn), hq = static_cast<int>(s.heads), hkv = static_cast<int>(s.kv_heads);
  bf16* q = act.narrow;
  bf16* k = q + static_cast<int64_t>(rows) * s.q_width();
  bf16* v = k + static_cast<int64_t>(rows) * s.kv_width();
  double keys = 0;
  for (const AttnSeq& seg : b.segments) keys += static_cast<double>(seg.q_len) * seg.prefix_len + 0.5 * seg.q_len * (seg.q_len + 1.0);
  const double attn_flops = 4.0 * 128 * hq * keys;
  const float scale = 1.f / std::sqrt(128.f);
  struct Stage {
    const char* name;
    double flops, bytes;
    std::function<void()> run;
  };
  const double r = rows;
  const std::vector<Stage> stages = {
      {"rmsnorm", 0, r * h * 6, [&] { CHECK_CUDA(add_rmsnorm(act.residual, nullptr, lw.attn_norm, act.normed, rows, h, 1e-6f, 0)); }},
      {"QKV GEMM", 2 * r * h * s.qkv_width(), 0, [&] { gemm.linear(act.normed, lw.qkv, act.wide, rows, s.qkv_width(), h); }},
      {"q/k norm + RoPE", 0, r * s.qkv_width() * 4,
       [&] { CHECK_CUDA(qk_norm_rope(act.wide, positions, lw.q_norm, lw.k_norm, w.rope_inv_freq, q, k, v, rows, hq, hkv, 128, 1e-6f, 0)); }},
      {"attention (tensor cores)", attn_flops, 0,
       [&] { CHECK_CUDA(attention_mma(q, k, v, segments, tiles, mma_tiles, act.wide, hq, hkv, 128, scale, 0)); }},
      {"attention (CUDA cores)", attn_flops, 0,
       [&] { CHECK_CUDA(attention(q, k, v, segments, small_tiles.p, static_cast<int>(small_tiles.n), act.wide, hq, hkv, 128, scale, 0)); }},
      {"O GEMM + residual", 2 * r * h * s.q_width(), 0, [&] { gemm.linear_add(act.wide, lw.o, act.residual, rows, h, s.q_width()); }},
      {"gate+up GEMM", 2 * r * h * 2 * f, 0, [&] { gemm.linear(act.normed, lw.gate_up, act.wide, rows, 2 * f, h); }},
      {"SwiGLU", 0, r * f * 6, [&] { CHECK_CUDA(swiglu(act.wide, act.narrow, rows, f, 0)); }},
      {"down GEMM + residual", 2 * r * h * f, 0, [&] { gemm.linear_add(act.narrow, lw.down, act.residual, rows, h, f); }},
  };
  std::printf("  stages of one layer, %d rows (%s):\n", rows, c.name.c_str());
  double sum = 0;
  for (const Stage& st : stages) {
    const double ms = median(times_ms(10, st.run));
    if (std::strstr(st.name, "CUDA cores") == nullptr) sum += ms;
    if (st.flops > 0) {
      std::printf("    %-26s %8.3f ms  %7.1f TFLOP/s\n", st.name, ms, st.flops / (ms * 1e-3) / 1e12);
    } else {
      std::printf("    %-26s %8.3f ms  %7.0f GB/s\n", st.name, ms, st.bytes / (ms * 1e-3) / 1e9);
    }
  }
  std::printf("    %-26s %8.3f ms  (x %lld layers = %.1f ms)\n", "sum (tensor cores)", sum, static_cast<long long>(s.layers), sum * s.layers);
}

void bench_case_run(const ModelWeights& w, const BenchCase& c, int reps, double ceiling, JsonOut& json, const char* model) {
  BenchRunner runner(w, c);
  const auto t = times_ms(reps, [&] { runner.run(); });
  int64_t rows = 0, outs = 0;
  double flops = 0;
  for (const DeviceBatch& b : c.batches) {
    rows += b.rows();
    outs += b.n_outputs();
    flops += network_gemm_flops(w.shape, b.rows(), b.n_outputs());
  }
  const double ms = median(t), share = flops / (ms * 1e-3) / 1e12 / ceiling;
  std::printf("  %-44s %6zu batch(es) %8lld rows  p50 %8.2f ms  p99 %8.2f ms  %9.0f tokens/s  %8.0f pairs/s  GEMM %4.1f%% of ceiling\n",
              c.name.c_str(), c.batches.size(), static_cast<long long>(rows), ms, percentile(t, 0.99), c.pair_tokens / (ms * 1e-3),
              c.pairs / (ms * 1e-3), 100 * share);
  json.add("\"model\": \"" + std::string(model) + "\", \"case\": \"" + c.name + "\", " + json_field("device_batches", static_cast<double>(c.batches.size())) +
           ", " + json_field("rows_evaluated", static_cast<double>(rows)) + ", " + json_field("pair_tokens", static_cast<double>(c.pair_tokens)) + ", " +
           json_field("pairs", static_cast<double>(c.pairs)) + ", " + json_field("p50_ms", ms) + ", " + json_field("p99_ms", percentile(t, 0.99)) + ", " +
           json_field("tokens_per_s", c.pair_tokens / (ms * 1e-3)) + ", " + json_field("pairs_per_s", c.pairs / (ms * 1e-3)) + ", " +
           json_field("gemm_share_of_ceiling", share) + ", " + json_field("workspace_bytes", static_cast<double>(runner.workspace_bytes())));
}

Qwen3Shape model_shape(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads, int64_t ffn) {
  Qwen3Shape s = layer_shape(hidden, heads, kv_heads, ffn);
  s.layers = layers;
  s.vocab = 151936;
  return s;
}

int bench(const char* json_path) {
  const double ceiling = bench_gemm_ceiling();
  JsonOut json;
  const struct {
    const char* name;
    Qwen3Shape shape;
  } models[] = {{"0.6b", model_shape(1024, 28, 16, 8, 3072)}, {"4b", model_shape(2560, 36, 32, 8, 9728)}};
  for (const auto& m : models) {
    size_t free_before = 0, total = 0;
    CHECK_CUDA(cudaMemGetInfo(&free_before, &total));
    const BenchModel model(m.shape, true);
    std::printf("%s shape: hidden %lld, %lld layers, %lld/%lld heads, FFN %lld (random bf16 weights)\n", m.name, static_cast<long long>(m.shape.hidden),
                static_cast<long long>(m.shape.layers), static_cast<long long>(m.shape.heads), static_cast<long long>(m.shape.kv_heads),
                static_cast<long long>(m.shape.ffn));
    const bool big = m.shape.hidden > 1024;
    bench_stages(model.w, bench_case("100 x 256", 1, 100, 0, 256));
    bench_case_run(model.w, bench_case("100 x 256 (no shared prefix)", 1, 100, 0, 256), 10, ceiling, json, m.name);
    bench_case_run(model.w, bench_case("100 x 256 (70-token prefix shared)", 1, 100, 70, 186), big ? 10 : 50, ceiling, json, m.name);
    bench_case_run(model.w, bench_case("1000 titles of 53 under one 70-token prefix", 1, 1000, 70, 53), 10, ceiling, json, m.name);
    if (!big) {
      bench_case_run(model.w, bench_case("1000 x 128 (no shared prefix)", 1, 1000, 0, 128), 5, ceiling, json, m.name);
      bench_case_run(model.w, bench_case("32 queries x 100 docs x 256 (prefix 70)", 32, 100, 70, 186), 3, ceiling, json, m.name);
    }
    size_t free_after = 0;
    CHECK_CUDA(cudaMemGetInfo(&free_after, &total));
    std::printf("  weights on the device: %.2f GB\n", (free_before - free_after) / 1e9);
  }
  json.text += "\n  ],\n  " + json_field("gemm_ceiling_tflops", ceiling) + "\n}\n";
  if (json_path) {
    FILE* f = std::fopen(json_path, "w");
    if (!f) {
      std::printf("cannot write %s\n", json_path);
      return 1;
    }
    std::fputs(json.text.c_str(), f);
    std::fclose(f);
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  gpu_check::Options options;
  if (!gpu_check::parse(argc, argv, {{"--small", false, [](const char*) { small = true; }}}, options)) return 2;
  if (!gpu_check::have_device()) return 77;
  const unsigned long long seed = options.seed;
  const bool timing = options.bench;
  const char* json_path = options.json;
  rng.seed(seed);
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s (sm_%d%d), seed %llu%s\n", prop.name, prop.major, prop.minor, seed, small ? ", small cases" : "");
  if (timing) {
    try {
      return bench(json_path);
    } catch (const Error& e) {
      std::printf("FAIL: qrank::Error %d: %s\n", static_cast<int>(e.code()), e.what());
      return 1;
    }
  }
  try {
    check_convert();
    check_add_rmsnorm(37, 1024);
    check_add_rmsnorm(5, 2560);
    check_embed_tokens();
    check_qk_norm_rope(small ? 7 : 53, 16, 8);
    check_qk_norm_rope(small ? 5 : 19, 32, 8);
    check_swiglu(41, 3072);
    check_attention(16, 8, false);
    check_attention(16, 8, true);
    check_attention(32, 8, true);
    check_gemm(small ? 19 : 77, 3072, 1024);
    check_gemm(small ? 8 : 333, 1024, 2048);
    check_heads(64, 1024);
    check_layer("small layer 256/4x2", layer_shape(256, 4, 2, 512), small ? 3 : 6, small ? 40 : 150, small ? 30 : 100);
    if (!small) check_layer("0.6B layer 1024/16x8", layer_shape(1024, 16, 8, 3072), 3, 30, 30);
  } catch (const Error& e) {
    ++failures;
    std::printf("FAIL: qrank::Error %d: %s\n", static_cast<int>(e.code()), e.what());
  }
  CHECK_CUDA(cudaDeviceSynchronize());
  std::printf("%s: %d check(s) failed\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
