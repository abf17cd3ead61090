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
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cuda_fp16.h>
#include <random>
#include <string>
#include <vector>

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

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: nothing checked\n");
    return 77;
  }
  unsigned long long seed = static_cast<unsigned long long>(std::time(nullptr));
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--small") == 0) {
      small = true;
    } else {
      seed = std::strtoull(argv[i], nullptr, 10);
    }
  }
  rng.seed(seed);
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s (sm_%d%d), seed %llu%s\n", prop.name, prop.major, prop.minor, seed, small ? ", small cases" : "");
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
