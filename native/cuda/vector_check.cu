// Checks and measures the GPU vector search (native/cuda/vector_gpu.h) on the GPU machine.
//
// Checks, on fresh random inputs (seed printed; pass one to repeat it), against a float64 CPU
// reference over the same stored values (rows rounded to fp16 for f16; queries rounded alike):
//  - GpuFlat f16 and f32, inner product and L2: k = 1, 10, every row, more than every row; rows
//    with equal scores (duplicated vectors: ties by the lower row); removed rows; a filter bitmap;
//    rows rewritten after a removal; the reference's k-th score must equal the GPU's, each returned
//    score must be within 1e-4 relative of the reference score of the row returned (fp32 sums of
//    up to 1024 products), and every row scoring strictly better than the GPU's last (by more than
//    that tolerance) must be returned;
//  - GpuIvf (inner product and L2) against a CPU IVF over the same centroids and lists: the same
//    cells probed (their scores compared as above), the same results.
// Then, with --bench (or after the checks when --json is given), on 1M x 1024 embedding-like data
// (bench/ann_data.h's generator, the benchmark's realistic set): flat f16 and f32 and IVF-flat
// (nlist 1024 from three rounds of k-means on the GPU, nprobe 8, 32) with batches of 1, 32 and 1024
// queries: QPS, latency per batch, recall@10 against the exact f32 top 10 (itself checked against
// the float64 CPU reference on 8 queries). --budget S stops the measurements after S seconds.
// Exit 0: all pass; 1: a check failed; 77: no GPU.
//
//   ./qrank_vector_check [seed] [--bench] [--json F] [--n N] [--budget S]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../bench/ann_data.h"
#include "cuda/check_main.h"
#include "cuda/vector_gpu.h"
#include "qrank/error.h"

using namespace qrank;
using namespace qrank::cuda;

namespace {

std::mt19937_64 rng;
int checks = 0, failures = 0;

void check(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

float rounded(float v, bool f16) { return f16 ? __half2float(__float2half_rn(v)) : v; }

// The float64 score of query q against row r, on the stored values.
double ref_score(const float* q, const float* x, size_t dim, bool f16, bool l2) {
  double s = 0;
  for (size_t j = 0; j < dim; ++j) {
    const double a = rounded(q[j], f16), b = rounded(x[j], f16);
    s += l2 ? (a - b) * (a - b) : a * b;
  }
  return s;
}

// Checks one query's results against every candidate's reference score.
void check_results(const std::string& what, const std::vector<double>& ref, const std::vector<bool>& candidate, const float* scores,
                   const int64_t* rows, size_t k, bool l2) {
  const auto better = [&](double a, double b) { return l2 ? a < b : a > b; };
  size_t expected = 0;
  for (bool c : candidate) expected += c;
  const size_t found = std::min(k, expected);
  bool ok = true;
  std::vector<bool> seen(ref.size(), false);
  for (size_t i = 0; i < k && ok; ++i) {
    if (i >= found) {
      ok = rows[i] == -1;
      continue;
    }
    const int64_t r = rows[i];
    ok = r >= 0 && static_cast<size_t>(r) < ref.size() && candidate[r] && !seen[r];
    if (!ok) break;
    seen[r] = true;
    const double tol = 1e-4 * std::max(1.0, std::fabs(ref[r]));
    ok = std::fabs(scores[i] - ref[r]) <= tol && (i == 0 || !better(scores[i], scores[i - 1]));
  }
  if (ok && found > 0) {
    const double last = scores[found - 1];
    const double tol = 1e-4 * std::max(1.0, std::fabs(last));
    for (size_t r = 0; r < ref.size() && ok; ++r) {
      if (candidate[r] && !seen[r] && better(ref[r], last) && std::fabs(ref[r] - last) > tol) ok = false;
    }
  }
  check(ok, what);
}

std::vector<float> random_rows(size_t n, size_t dim, bool ties) {
  std::normal_distribution<float> g;
  std::vector<float> x(n * dim);
  for (auto& v : x) v = g(rng);
  if (ties) {
    for (size_t r = 1; r < n; r += 3) std::copy(x.begin() + (r - 1) * dim, x.begin() + r * dim, x.begin() + r * dim);
  }
  return x;
}

void check_flat(bool f16, bool l2) {
  const std::string name = std::string("flat ") + (f16 ? "f16 " : "f32 ") + (l2 ? "l2" : "ip");
  for (const size_t n : {1, 7, 300, 5000}) {
    const size_t dim = n == 5000 ? 1024 : 64, nq = 5;
    std::vector<float> x = random_rows(n, dim, true);
    const std::vector<float> q = random_rows(nq, dim, false);
    GpuFlat gpu(static_cast<int32_t>(dim), f16, l2);
    gpu.write(0, x.data(), n / 2);
    gpu.write(n / 2, x.data() + (n / 2) * dim, n - n / 2);
    std::vector<bool> alive(n, true);
    std::vector<uint32_t> dead;
    for (size_t r = 0; r < n; r += 5) dead.push_back(static_cast<uint32_t>(r));
    gpu.set_alive(dead.data(), dead.size(), false);
    for (uint32_t r : dead) alive[r] = false;
    if (n > 2) {  // a removed row written again with another vector
      const std::vector<float> y = random_rows(1, dim, false);
      std::copy(y.begin(), y.end(), x.begin());
      gpu.write(0, y.data(), 1);
      alive[0] = true;
    }
    std::vector<uint64_t> allow((n + 63) / 64, 0);
    std::vector<bool> allowed(n, false);
    for (size_t r = 0; r < n; ++r) {
      if (rng() % 3 == 0) {
        allow[r / 64] |= uint64_t{1} << (r % 64);
        allowed[r] = alive[r];
      }
    }
    for (const size_t k : {size_t{1}, size_t{10}, n, n + 5}) {
      for (int filtered = 0; filtered < 2; ++filtered) {
        std::vector<float> scores(nq * k);
        std::vector<int64_t> rows(nq * k);
        gpu.search(q.data(), nq, k, filtered ? allow.data() : nullptr, scores.data(), rows.data());
        for (size_t qi = 0; qi < nq; ++qi) {
          std::vector<double> ref(n);
          for (size_t r = 0; r < n; ++r) ref[r] = ref_score(q.data() + qi * dim, x.data() + r * dim, dim, f16, l2);
          check_results(name + " n " + std::to_string(n) + " k " + std::to_string(k) + (filtered ? " filtered" : "") + " query " +
                            std::to_string(qi),
                        ref, filtered ? allowed : alive, scores.data() + qi * k, rows.data() + qi * k, k, l2);
        }
      }
    }
  }
}

void check_ivf(bool l2) {
  const std::string name = std::string("ivf ") + (l2 ? "l2" : "ip");
  const size_t n = 4000, dim = 96, nlist = 37, nq = 6;
  const std::vector<float> x = random_rows(n, dim, true), centroids = random_rows(nlist, dim, false), q = random_rows(nq, dim, false);
  std::vector<std::vector<size_t>> members(nlist);
  for (size_t r = 0; r < n; ++r) members[r % nlist].push_back(r);
  members[5].clear();  // an empty cell
  GpuIvf gpu(static_cast<int32_t>(dim), l2, centroids.data(), nlist);
  for (size_t c = 0; c < nlist; ++c) {
    std::vector<float> list;
    for (size_t r : members[c]) list.insert(list.end(), x.begin() + r * dim, x.begin() + (r + 1) * dim);
    gpu.set_list(c, list.data(), members[c].size());
  }
  for (const size_t nprobe : {size_t{1}, size_t{4}, nlist + 3}) {
    for (const size_t k : {size_t{1}, size_t{10}, size_t{500}}) {
      std::vector<float> scores(nq * k);
      std::vector<int64_t> entries(nq * k);
      gpu.search(q.data(), nq, nprobe, k, scores.data(), entries.data());
      for (size_t qi = 0; qi < nq; ++qi) {
        // the reference's cells: the nprobe best centroids (a tie at the boundary would be either)
        std::vector<std::pair<double, size_t>> cells;
        for (size_t c = 0; c < nlist; ++c) {
          const double s = ref_score(q.data() + qi * dim, centroids.data() + c * dim, dim, false, l2);
          cells.emplace_back(l2 ? s : -s, c);
        }
        std::sort(cells.begin(), cells.end());
        std::vector<bool> candidate(n, false);
        for (size_t p = 0; p < std::min(nprobe, nlist); ++p) {
          for (size_t r : members[cells[p].second]) candidate[r] = true;
        }
        std::vector<double> ref(n);
        for (size_t r = 0; r < n; ++r) ref[r] = ref_score(q.data() + qi * dim, x.data() + r * dim, dim, false, l2);
        std::vector<int64_t> rows(k);
        for (size_t i = 0; i < k; ++i) {
          const int64_t e = entries[qi * k + i];
          rows[i] = e < 0 ? -1 : static_cast<int64_t>(members[static_cast<size_t>(e >> 32)][static_cast<size_t>(e & 0xffffffff)]);
        }
        check_results(name + " nprobe " + std::to_string(nprobe) + " k " + std::to_string(k) + " query " + std::to_string(qi), ref, candidate,
                      scores.data() + qi * k, rows.data(), k, l2);
      }
    }
  }
}

// --- measurements ----------------------------------------------------------------------------------

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename Fn>
void parallel(size_t n, Fn&& fn) {
  const size_t threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) pool.emplace_back([&, t] { fn(n * t / threads, n * (t + 1) / threads); });
  for (auto& th : pool) th.join();
}

double recall_at_10(const std::vector<int64_t>& got, size_t k, const std::vector<int64_t>& truth, size_t nq) {
  size_t hit = 0;
  for (size_t q = 0; q < nq; ++q) {
    for (size_t i = 0; i < 10; ++i) {
      for (size_t j = 0; j < std::min<size_t>(k, 10); ++j) hit += got[q * k + j] == truth[q * 10 + i];
    }
  }
  return static_cast<double>(hit) / (10.0 * nq);
}

struct Json {
  std::string s = "{";
  void field(const std::string& k, double v) { s += (s.size() > 1 && s.back() != '{' && s.back() != '[' ? "," : "") + ("\"" + k + "\":" + std::to_string(v)); }
  void raw(const std::string& k, const std::string& v) { s += (s.size() > 1 && s.back() != '{' && s.back() != '[' ? "," : "") + ("\"" + k + "\":" + v); }
};

int bench(size_t n, double budget, const char* json_path) {
  const double t0 = now();
  annbench::DataSpec spec;
  spec.n = n;
  spec.queries = 1024;
  const size_t dim = spec.dim, nq = spec.queries;
  annbench::Generator gen(spec);
  std::vector<float> x(n * dim), q(nq * dim);
  parallel(n, [&](size_t b, size_t e) { gen.base(b, e - b, x.data() + b * dim); });
  gen.queries(q.data());
  std::printf("data: %zu x %zu realistic in %.1f s\n", n, dim, now() - t0);
  std::string runs = "[";
  auto record = [&](const std::string& index, size_t batch, double seconds, size_t queries, double recall, size_t bytes) {
    Json j;
    j.raw("index", "\"" + index + "\"");
    j.field("batch", static_cast<double>(batch));
    j.field("qps", queries / seconds);
    j.field("ms_per_batch", 1e3 * seconds / (queries / batch));
    j.field("recall_at_10", recall);
    j.field("device_bytes", static_cast<double>(bytes));
    runs += (runs.size() > 1 ? "," : "") + j.s + "}";
    std::printf("%-16s batch %4zu: %9.0f QPS, %8.3f ms per batch, recall@10 %.4f\n", index.c_str(), batch, queries / seconds,
                1e3 * seconds / (queries / batch), recall);
  };

  // the exact top 10: flat f32 on the GPU, itself held to float64 on 8 queries
  std::vector<int64_t> truth(nq * 10);
  std::vector<float> truth_scores(nq * 10);
  {
    GpuFlat exact(static_cast<int32_t>(dim), false, false);
    exact.write(0, x.data(), n);
    double s = now();
    exact.search(q.data(), nq, 10, nullptr, truth_scores.data(), truth.data());
    std::printf("exact f32 top 10 of %zu queries in %.3f s\n", nq, now() - s);
    std::vector<bool> all(n, true);
    for (size_t qi = 0; qi < 8; ++qi) {
      std::vector<double> ref(n);
      parallel(n, [&](size_t b, size_t e) {
        for (size_t r = b; r < e; ++r) ref[r] = ref_score(q.data() + qi * dim, x.data() + r * dim, dim, false, false);
      });
      check_results("1M exact f32 against float64, query " + std::to_string(qi), ref, all, truth_scores.data() + qi * 10, truth.data() + qi * 10,
                    10, false);
    }
  }
  const size_t batches[] = {1, 32, 1024};
  for (int f16 = 1; f16 >= 0; --f16) {
    if (now() - t0 > budget) break;
    GpuFlat flat(static_cast<int32_t>(dim), f16 != 0, false);
    double s = now();
    flat.write(0, x.data(), n);
    std::printf("flat %s: %zu rows uploaded in %.2f s\n", f16 ? "f16" : "f32", n, now() - s);
    for (size_t b : batches) {
      if (now() - t0 > budget) break;
      const size_t runs_n = b == 1 ? 64 : b == 32 ? 8 : 1;
      std::vector<float> scores(b * 10);
      std::vector<int64_t> rows(b * 10), got(nq * 10, -1);
      flat.search(q.data(), b, 10, nullptr, scores.data(), rows.data());  // warm: plans, buffers
      s = now();
      for (size_t r = 0; r < runs_n; ++r) {
        const size_t first = (r * b) % nq;
        flat.search(q.data() + first * dim, b, 10, nullptr, scores.data(), rows.data());
        std::copy(rows.begin(), rows.end(), got.begin() + first * 10);
      }
      const double took = now() - s;
      const size_t covered = std::min(nq, runs_n * b);
      record(std::string("flat-") + (f16 ? "f16" : "f32"), b, took, runs_n * b, recall_at_10(got, 10, truth, covered), flat.device_bytes());
    }
  }
  // IVF-flat: k-means on the GPU (assignments by GpuFlat), then nprobe 8 and 32
  if (now() - t0 < budget) {
    const size_t nlist = 1024;
    std::vector<float> centroids(nlist * dim);
    for (size_t c = 0; c < nlist; ++c) std::copy(x.begin() + (c * (n / nlist)) * dim, x.begin() + (c * (n / nlist) + 1) * dim, centroids.begin() + c * dim);
    std::vector<int64_t> assign(n);
    std::vector<float> best(n);
    double s = now();
    for (int round = 0; round < 3; ++round) {
      GpuFlat cells(static_cast<int32_t>(dim), false, true);
      cells.write(0, centroids.data(), nlist);
      for (size_t b = 0; b < n; b += 65536) cells.search(x.data() + b * dim, std::min<size_t>(65536, n - b), 1, nullptr, best.data() + b, assign.data() + b);
      std::vector<double> sum(nlist * dim, 0.0);
      std::vector<size_t> count(nlist, 0);
      for (size_t r = 0; r < n; ++r) {
        const size_t c = static_cast<size_t>(assign[r]);
        ++count[c];
        for (size_t j = 0; j < dim; ++j) sum[c * dim + j] += x[r * dim + j];
      }
      for (size_t c = 0; c < nlist; ++c) {
        if (count[c] == 0) continue;
        for (size_t j = 0; j < dim; ++j) centroids[c * dim + j] = static_cast<float>(sum[c * dim + j] / count[c]);
      }
    }
    std::printf("ivf: k-means (%zu cells, 3 rounds) in %.1f s\n", nlist, now() - s);
    GpuIvf ivf(static_cast<int32_t>(dim), false, centroids.data(), nlist);
    std::vector<std::vector<size_t>> members(nlist);
    for (size_t r = 0; r < n; ++r) members[static_cast<size_t>(assign[r])].push_back(r);
    for (size_t c = 0; c < nlist; ++c) {
      std::vector<float> list(members[c].size() * dim);
      for (size_t i = 0; i < members[c].size(); ++i) std::copy(x.begin() + members[c][i] * dim, x.begin() + (members[c][i] + 1) * dim, list.begin() + i * dim);
      ivf.set_list(c, list.data(), members[c].size());
    }
    for (const size_t nprobe : {size_t{8}, size_t{32}}) {
      for (size_t b : batches) {
        if (now() - t0 > budget) break;
        const size_t runs_n = b == 1 ? 64 : b == 32 ? 8 : 1;
        std::vector<float> scores(b * 10);
        std::vector<int64_t> entries(b * 10), got(nq * 10, -1);
        ivf.search(q.data(), b, nprobe, 10, scores.data(), entries.data());
        s = now();
        for (size_t r = 0; r < runs_n; ++r) {
          const size_t first = (r * b) % nq;
          ivf.search(q.data() + first * dim, b, nprobe, 10, scores.data(), entries.data());
          for (size_t i = 0; i < b * 10; ++i) {
            const int64_t e = entries[i];
            got[first * 10 + i] = e < 0 ? -1 : static_cast<int64_t>(members[static_cast<size_t>(e >> 32)][static_cast<size_t>(e & 0xffffffff)]);
          }
        }
        const double took = now() - s;
        record("ivf-nprobe" + std::to_string(nprobe), b, took, runs_n * b, recall_at_10(got, 10, truth, std::min(nq, runs_n * b)), ivf.device_bytes());
      }
    }
  }
  runs += "]";
  if (json_path) {
    FILE* f = std::fopen(json_path, "w");
    if (f) {
      std::fprintf(f, "{\"vectors\":%zu,\"dim\":%zu,\"queries\":%zu,\"seconds\":%.1f,\"checks\":%d,\"failures\":%d,\"runs\":%s}\n", n, dim, nq, now() - t0,
                   checks, failures, runs.c_str());
      std::fclose(f);
    }
  }
  return failures > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 1000000;
  double budget = 80;
  gpu_check::Options options;
  const std::vector<gpu_check::Flag> own = {
      {"--n", true, [&](const char* v) { n = std::strtoull(v, nullptr, 10); }},
      {"--budget", true, [&](const char* v) { budget = std::strtod(v, nullptr); }},
  };
  if (!gpu_check::parse(argc, argv, own, options)) return 2;
  if (!gpu_check::have_device()) return 77;
  const unsigned long long seed = options.seed;
  const bool timing = options.bench || options.json != nullptr;  // --json implies the benchmark
  const char* json_path = options.json;
  rng.seed(seed);
  std::printf("qrank_vector_check: seed %llu\n", seed);
  try {
    for (int f16 = 0; f16 < 2; ++f16) {
      for (int l2 = 0; l2 < 2; ++l2) check_flat(f16 != 0, l2 != 0);
    }
    check_ivf(false);
    check_ivf(true);
    std::printf("%s: %d of %d checks\n", failures ? "FAIL" : "PASS", checks - failures, checks);
    if (timing) {
      const int rc = bench(n, budget, json_path);
      if (rc != 0) return rc;
    }
  } catch (const Error& e) {
    std::printf("FAIL: qrank::Error %d: %s\n", static_cast<int>(e.code()), e.what());
    return 1;
  }
  return failures > 0 ? 1 : 0;
}
