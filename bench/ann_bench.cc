// ann_bench: the vector-recall benchmark behind bench/ann-bench.mjs (which runs it and writes
// bench/results/ann-*.json and the chart). One source, built once per engine:
//   ann_bench                    qrank's VectorIndex (USearch flat / HNSW, f32 / f16 / i8)
//   ann_bench_faiss_<variant>    FAISS 1.7.3 directly (IndexFlat, IndexHNSWFlat, IndexHNSWSQ fp16 / 8bit,
//                                IndexScalarQuantizer), linked with Debian's libfaiss or with a build of
//                                scripts/build-faiss.mjs (QRANK_ANN_FAISS)
//
//   ann_bench prepare --cache DIR [data flags]   base vectors, queries, exact neighbours (top 100, and
//                                                top 10 per filter selectivity), statistics: once per data set
//   ann_bench run --cache DIR [data flags] --index flat|hnsw --storage f32|f16|i8 [--m 16]
//                 [--ef-construction 128] [--ef-search 16,32,64,128,256] [--concurrent 8]
//                 [--latency-queries N] [--filters 0.001,0.01,0.1] [--ingest 1,2,8]
//   data flags: --data realistic|uniform --n N --queries Q --dim D --latent R --clusters C --seed S
//               --decay A --spread S --offset O --noise E (bench/ann_data.h)
// `run` prints one JSON object: build vectors/s, memory (RSS growth and the index's own count, per
// vector), and per efSearch: single-query p50/p99 (one thread), QPS batched (one call, all cores) and
// concurrent (N threads, one query per call), recall@10 against the exact top 10. --filters (qrank):
// recall and latency of filtered searches per selectivity, exact scan vs graph walk vs the index's
// rule. --ingest (qrank): QPS of 1, 2, 8 concurrent searchers while an add runs beside them.
// Inner product on unit vectors throughout (the ranking of L2).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <cblas.h>

#include "ann_data.h"

#if QRANK_ANN_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexScalarQuantizer.h>
#include <omp.h>
#else
#include "qrank/vector_index.h"
#endif

extern "C" void ssyev_(const char* jobz, const char* uplo, const int* n, float* a, const int* lda, float* w, float* work, const int* lwork,
                       int* info);

namespace {

using namespace annbench;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// --- flags -------------------------------------------------------------------------------------------

struct Flags {
  std::map<std::string, std::string> values;
  std::string get(const std::string& k, const std::string& fallback) const {
    auto it = values.find(k);
    return it == values.end() ? fallback : it->second;
  }
  long num(const std::string& k, long fallback) const { return std::stol(get(k, std::to_string(fallback))); }
  std::vector<double> list(const std::string& k, const std::string& fallback) const {
    std::vector<double> out;
    std::stringstream ss(get(k, fallback));
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) out.push_back(std::stod(item));
    return out;
  }
};

DataSpec data_spec(const Flags& f) {
  DataSpec s;
  s.kind = f.get("data", s.kind);
  s.n = f.num("n", s.n);
  s.queries = f.num("queries", s.queries);
  s.dim = f.num("dim", s.dim);
  s.latent = f.num("latent", s.latent);
  s.clusters = f.num("clusters", s.clusters);
  if (f.values.count("decay")) s.decay = std::stod(f.get("decay", ""));
  if (f.values.count("noise")) s.noise = std::stod(f.get("noise", ""));
  if (f.values.count("offset")) s.offset = std::stod(f.get("offset", ""));
  if (f.values.count("spread")) s.spread = std::stod(f.get("spread", ""));
  s.seed = f.num("seed", s.seed);
  return s;
}

// --- JSON --------------------------------------------------------------------------------------------

class Json {
 public:
  Json& key(const std::string& k) {
    sep();
    out_ << '"' << k << "\":";
    fresh_ = true;
    return *this;
  }
  Json& num(double v) {
    sep();
    if (std::isfinite(v)) out_ << v; else out_ << "null";
    return *this;
  }
  Json& str(const std::string& v) {
    sep();
    out_ << '"' << v << '"';
    return *this;
  }
  Json& open(char c) {
    sep();
    out_ << c;
    fresh_ = true;
    return *this;
  }
  Json& close(char c) {
    out_ << c;
    fresh_ = false;
    return *this;
  }
  template <typename T>
  Json& field(const std::string& k, T v) {
    key(k);
    if constexpr (std::is_arithmetic_v<T>) return num(static_cast<double>(v)); else return str(v);
  }
  std::string text() const { return out_.str(); }

 private:
  void sep() {
    if (!fresh_) out_ << ',';
    fresh_ = false;
  }
  std::ostringstream out_;
  bool fresh_ = true;
};

// --- files of the cache ------------------------------------------------------------------------------

struct Files {
  std::string base, queries, truth, filtered, stats;
  Files(const std::string& dir, const DataSpec& s) {
    const std::string p = dir + "/" + s.id();
    base = p + ".base.f32";
    queries = p + ".queries.f32";
    truth = p + ".truth";
    filtered = p + ".filtered";
    stats = p + ".stats.json";
  }
};

void write_file(const std::string& path, const void* p, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
  if (!f) throw std::runtime_error("cannot write " + path);
}

template <typename T>
std::vector<T> read_file(const std::string& path, size_t count, size_t offset = 0) {
  std::ifstream f(path, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset * sizeof(T)));
  std::vector<T> v(count);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (!f) throw std::runtime_error("cannot read " + path + " (run `ann_bench prepare` first)");
  return v;
}

constexpr size_t kTruthK = 100;
constexpr size_t kFilterK = 10;
const std::vector<double> kSelectivities = {0.001, 0.01, 0.1};

size_t threads() { return std::max(1u, std::thread::hardware_concurrency()); }

template <typename Fn>
void parallel(size_t n, Fn&& fn) {
  const size_t t = std::min(threads(), n);
  std::vector<std::thread> pool;
  for (size_t i = 1; i < t; ++i) pool.emplace_back([&, i] { fn(n * i / t, n * (i + 1) / t); });
  fn(0, n / t);
  for (auto& th : pool) th.join();
}

// Top-k by score (higher first), as a min-heap of the k best.
struct Best {
  size_t k;
  std::vector<std::pair<float, int64_t>> h;
  void offer(float s, int64_t id) {
    if (h.size() < k) {
      h.emplace_back(s, id);
      std::push_heap(h.begin(), h.end(), std::greater<>());
    } else if (s > h.front().first) {
      std::pop_heap(h.begin(), h.end(), std::greater<>());
      h.back() = {s, id};
      std::push_heap(h.begin(), h.end(), std::greater<>());
    }
  }
  std::vector<std::pair<float, int64_t>> sorted() const {
    auto v = h;
    std::sort(v.begin(), v.end(), std::greater<>());
    return v;
  }
};

// --- prepare -----------------------------------------------------------------------------------------

std::string statistics(const Generator& gen, const std::vector<float>& queries, const std::vector<float>& truth_scores) {
  const DataSpec& s = gen.spec();
  const size_t d = s.dim, nq = s.queries;
  Json j;
  j.open('{');
  // PCA spectrum of up to 20 000 base vectors
  const size_t m = std::min<size_t>(s.n, 20000);
  std::vector<float> x(m * d);
  gen.base(0, m, x.data());
  std::vector<double> mean(d, 0);
  for (size_t i = 0; i < m; ++i)
    for (size_t t = 0; t < d; ++t) mean[t] += x[i * d + t];
  for (size_t i = 0; i < m; ++i)
    for (size_t t = 0; t < d; ++t) x[i * d + t] -= static_cast<float>(mean[t] / m);
  std::vector<float> cov(d * d);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(d), static_cast<int>(m), 1.0f / m, x.data(), static_cast<int>(d), 0.0f,
              cov.data(), static_cast<int>(d));
  std::vector<float> eig(d);
  int n = static_cast<int>(d), lwork = -1, info = 0;
  float wq;
  ssyev_("N", "L", &n, cov.data(), &n, eig.data(), &wq, &lwork, &info);
  lwork = static_cast<int>(wq);
  std::vector<float> work(lwork);
  ssyev_("N", "L", &n, cov.data(), &n, eig.data(), work.data(), &lwork, &info);
  std::sort(eig.begin(), eig.end(), std::greater<>());
  double total = 0;
  for (float e : eig) total += std::max(0.0f, e);
  j.key("pca").open('{').field("sample", m);
  j.key("variance_in_top").open('{');
  double acc = 0;
  size_t next = 1;
  std::vector<size_t> for_share(3, 0);
  const double shares[3] = {0.5, 0.9, 0.95};
  for (size_t i = 0; i < d; ++i) {
    acc += std::max(0.0f, eig[i]);
    for (int q = 0; q < 3; ++q)
      if (!for_share[q] && acc >= shares[q] * total) for_share[q] = i + 1;
    if (i + 1 == next) {
      j.field(std::to_string(next), acc / total);
      next *= 2;
    }
  }
  j.close('}');
  j.field("components_for_50pct", for_share[0]).field("components_for_90pct", for_share[1]).field("components_for_95pct", for_share[2]);
  j.close('}');
  // local intrinsic dimension (MLE, Levina-Bickel) from each query's 20 nearest base vectors
  auto dist = [](float ip) { return std::sqrt(std::max(1e-12f, 2.0f - 2.0f * ip)); };
  std::vector<double> lid;
  for (size_t q = 0; q < nq; ++q) {
    const float* t = truth_scores.data() + q * kTruthK;
    const size_t k = 20;
    double sum = 0;
    for (size_t i = 0; i < k - 1; ++i) sum += std::log(dist(t[k - 1]) / dist(t[i]));
    if (sum > 0) lid.push_back((k - 1) / sum);
  }
  std::sort(lid.begin(), lid.end());
  double lid_mean = 0;
  for (double v : lid) lid_mean += v;
  j.key("lid_mle_k20").open('{').field("mean", lid_mean / lid.size()).field("median", lid[lid.size() / 2]).field("p10", lid[lid.size() / 10]).field("p90", lid[lid.size() * 9 / 10]).close('}');
  // distance concentration: cosine of random pairs, of the nearest neighbours; relative contrast
  Rng rng(7);
  std::vector<float> sample(1000 * d);
  std::vector<size_t> picks(1000);
  for (auto& p : picks) p = rng.next() % s.n;
  for (size_t i = 0; i < picks.size(); ++i) gen.base(picks[i], 1, sample.data() + i * d);
  double cos_sum = 0, cos_sq = 0, dist_mean = 0, rc = 0, nn1 = 0, nn10 = 0;
  size_t pairs = 0;
  const size_t nqs = std::min<size_t>(nq, 200);
  for (size_t q = 0; q < nqs; ++q) {
    double mean_d = 0;
    for (size_t i = 0; i < picks.size(); ++i) {
      float ip = cblas_sdot(static_cast<int>(d), queries.data() + q * d, 1, sample.data() + i * d, 1);
      cos_sum += ip, cos_sq += ip * ip, ++pairs;
      mean_d += dist(ip);
    }
    mean_d /= picks.size();
    dist_mean += mean_d;
    rc += mean_d / dist(truth_scores[q * kTruthK]);
    nn1 += truth_scores[q * kTruthK];
    nn10 += truth_scores[q * kTruthK + 9];
  }
  const double cm = cos_sum / pairs;
  j.key("concentration").open('{')
      .field("random_pair_cosine_mean", cm)
      .field("random_pair_cosine_sd", std::sqrt(std::max(0.0, cos_sq / pairs - cm * cm)))
      .field("nn1_cosine_mean", nn1 / nqs)
      .field("nn10_cosine_mean", nn10 / nqs)
      .field("relative_contrast_mean", rc / nqs)
      .close('}');
  j.close('}');
  return j.text();
}

int prepare(const Flags& f) {
  const DataSpec s = data_spec(f);
  const std::string dir = f.get("cache", "/tmp/qrank-ann");
  const Files files(dir, s);
  if (std::ifstream(files.stats).good()) {
    std::fprintf(stderr, "ann_bench: %s is ready\n", s.id().c_str());
    return 0;
  }
  const Generator gen(s);
  const size_t d = s.dim, nq = s.queries;
  std::vector<float> q(nq * d);
  gen.queries(q.data());
  write_file(files.queries, q.data(), q.size() * sizeof(float));
  std::vector<Best> top(nq, Best{kTruthK, {}});
  std::vector<std::vector<Best>> ftop(kSelectivities.size(), std::vector<Best>(nq, Best{kFilterK, {}}));
  std::ofstream base(files.base, std::ios::binary);
  const size_t chunk = 8192;
  std::vector<float> x(chunk * d), scores(nq * chunk);
  const auto t0 = Clock::now();
  for (size_t first = 0; first < s.n; first += chunk) {
    const size_t m = std::min(chunk, s.n - first);
    parallel(m, [&](size_t b, size_t e) { gen.base(first + b, e - b, x.data() + b * d); });
    base.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(m * d * sizeof(float)));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq), static_cast<int>(m), static_cast<int>(d), 1.0f, q.data(),
                static_cast<int>(d), x.data(), static_cast<int>(d), 0.0f, scores.data(), static_cast<int>(m));
    std::vector<uint8_t> pass(kSelectivities.size() * m);
    for (size_t f2 = 0; f2 < kSelectivities.size(); ++f2)
      for (size_t i = 0; i < m; ++i) pass[f2 * m + i] = allowed(static_cast<int64_t>(first + i), kSelectivities[f2]);
    parallel(nq, [&](size_t b, size_t e) {
      for (size_t qi = b; qi < e; ++qi) {
        const float* row = scores.data() + qi * m;
        for (size_t i = 0; i < m; ++i) {
          top[qi].offer(row[i], static_cast<int64_t>(first + i));
          for (size_t f2 = 0; f2 < kSelectivities.size(); ++f2)
            if (pass[f2 * m + i]) ftop[f2][qi].offer(row[i], static_cast<int64_t>(first + i));
        }
      }
    });
    if ((first / chunk) % 16 == 0) std::fprintf(stderr, "ann_bench: prepared %zu/%zu after %.0f s\n", first + m, s.n, seconds_since(t0));
  }
  if (!base) throw std::runtime_error("cannot write " + files.base);
  std::vector<int64_t> ids(nq * kTruthK, -1);
  std::vector<float> ts(nq * kTruthK, 0);
  for (size_t qi = 0; qi < nq; ++qi) {
    const auto v = top[qi].sorted();
    for (size_t i = 0; i < v.size(); ++i) ts[qi * kTruthK + i] = v[i].first, ids[qi * kTruthK + i] = v[i].second;
  }
  std::vector<int64_t> fids(kSelectivities.size() * nq * kFilterK, -1);
  for (size_t f2 = 0; f2 < kSelectivities.size(); ++f2)
    for (size_t qi = 0; qi < nq; ++qi) {
      const auto v = ftop[f2][qi].sorted();
      for (size_t i = 0; i < v.size(); ++i) fids[(f2 * nq + qi) * kFilterK + i] = v[i].second;
    }
  std::vector<uint8_t> truth(ids.size() * sizeof(int64_t) + ts.size() * sizeof(float));
  std::memcpy(truth.data(), ids.data(), ids.size() * sizeof(int64_t));
  std::memcpy(truth.data() + ids.size() * sizeof(int64_t), ts.data(), ts.size() * sizeof(float));
  write_file(files.truth, truth.data(), truth.size());
  write_file(files.filtered, fids.data(), fids.size() * sizeof(int64_t));
  const std::string stats = statistics(gen, q, ts);
  write_file(files.stats, stats.data(), stats.size());
  std::fprintf(stderr, "ann_bench: %s prepared in %.0f s\n", s.id().c_str(), seconds_since(t0));
  return 0;
}

// --- engines -----------------------------------------------------------------------------------------

struct Engine {
  virtual ~Engine() = default;
  virtual void add(const int64_t* ids, const float* x, size_t n) = 0;
  // nq queries at once (the engine may use every core); ids out nq x k
  virtual void search(const float* q, size_t nq, int k, int ef, int64_t* out, const std::vector<int64_t>* allow = nullptr,
                      int64_t exact_limit = -1) = 0;
  virtual void single_thread(bool) {}  // FAISS: OpenMP teams off for one-query calls
  virtual size_t memory_bytes() = 0;
  virtual bool concurrent_writes() const { return false; }
};

#if QRANK_ANN_FAISS
struct FaissEngine final : Engine {
  std::unique_ptr<faiss::Index> index;
  faiss::IndexHNSW* hnsw = nullptr;
  bool needs_training = false;
  FaissEngine(const std::string& kind, const std::string& storage, size_t d, int m, int efc) {
    const auto metric = faiss::METRIC_INNER_PRODUCT;
    const auto qt = storage == "f16" ? faiss::ScalarQuantizer::QT_fp16 : faiss::ScalarQuantizer::QT_8bit;
    if (kind == "hnsw") {
      if (storage == "f32") index = std::make_unique<faiss::IndexHNSWFlat>(d, m, metric);
      else index = std::make_unique<faiss::IndexHNSWSQ>(d, qt, m, metric);
      hnsw = static_cast<faiss::IndexHNSW*>(index.get());
      hnsw->hnsw.efConstruction = efc;
    } else {
      if (storage == "f32") index = std::make_unique<faiss::IndexFlatIP>(d);
      else index = std::make_unique<faiss::IndexScalarQuantizer>(d, qt, metric);
    }
    needs_training = !index->is_trained;
  }
  void add(const int64_t* ids, const float* x, size_t n) override {
    if (needs_training) index->train(static_cast<faiss::Index::idx_t>(n), x), needs_training = false;
    (void)ids;  // ids are 0..n-1 in order: FAISS positions
    index->add(static_cast<faiss::Index::idx_t>(n), x);
  }
  void search(const float* q, size_t nq, int k, int ef, int64_t* out, const std::vector<int64_t>*, int64_t) override {
    if (hnsw) hnsw->hnsw.efSearch = ef;  // set before each phase, never during concurrent calls
    std::vector<float> dist(nq * k);
    index->search(static_cast<faiss::Index::idx_t>(nq), q, k, dist.data(), out);
  }
  void single_thread(bool on) override { omp_set_num_threads(on ? 1 : static_cast<int>(threads())); }
  size_t memory_bytes() override {
    size_t code = index->ntotal * (hnsw ? dynamic_cast<faiss::IndexFlatCodes*>(hnsw->storage)->code_size
                                        : dynamic_cast<faiss::IndexFlatCodes*>(index.get())->code_size);
    if (hnsw) code += hnsw->hnsw.neighbors.size() * sizeof(int32_t) + hnsw->hnsw.offsets.size() * sizeof(size_t) + hnsw->hnsw.levels.size() * sizeof(int);
    return code;
  }
};
#else
struct QrankEngine final : Engine {
  std::unique_ptr<qrank::VectorIndex> index;
  QrankEngine(const std::string& kind, const std::string& storage, size_t d, int m, int efc) {
    qrank::IndexSpec s;
    s.dim = static_cast<int32_t>(d);
    s.kind = kind == "hnsw" ? qrank::IndexKind::kHnsw : qrank::IndexKind::kFlat;
    s.storage = storage == "f16" ? qrank::Storage::kF16 : storage == "i8" ? qrank::Storage::kI8 : qrank::Storage::kF32;
    s.hnsw_m = m;
    s.ef_construction = efc;
    index = qrank::VectorIndex::create(s);
  }
  void add(const int64_t* ids, const float* x, size_t n) override { index->add(ids, x, n); }
  void search(const float* q, size_t nq, int k, int ef, int64_t* out, const std::vector<int64_t>* allow, int64_t exact_limit) override {
    qrank::SearchOptions o;
    o.k = k;
    o.ef_search = ef;
    o.allow = allow;
    o.exact_filter_limit = exact_limit;
    const auto hits = index->search(q, nq, o);
    std::copy(hits.ids.begin(), hits.ids.end(), out);
  }
  size_t memory_bytes() override { return index->memory_bytes(); }
  bool concurrent_writes() const override { return true; }
};
#endif

size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

size_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<size_t>(u.ru_maxrss) * 1024;
}

double recall(const std::vector<int64_t>& got, size_t k, const int64_t* truth, size_t truth_stride, size_t nq) {
  size_t found = 0, wanted = 0;
  for (size_t q = 0; q < nq; ++q) {
    const int64_t* t = truth + q * truth_stride;
    for (size_t i = 0; i < k; ++i) {
      if (t[i] < 0) continue;
      ++wanted;
      for (size_t j = 0; j < k; ++j)
        if (got[q * k + j] == t[i]) {
          ++found;
          break;
        }
    }
  }
  return wanted ? static_cast<double>(found) / wanted : 1.0;
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

int run(const Flags& f) {
  const DataSpec s = data_spec(f);
  const Files files(f.get("cache", "/tmp/qrank-ann"), s);
  const size_t d = s.dim, nq = s.queries;
  const std::string kind = f.get("index", "hnsw"), storage = f.get("storage", "f32");
  const int m = static_cast<int>(f.num("m", 16)), efc = static_cast<int>(f.num("ef-construction", 128));
  const std::vector<float> queries = read_file<float>(files.queries, nq * d);
  const std::vector<int64_t> truth = read_file<int64_t>(files.truth, nq * kTruthK);
#if QRANK_ANN_FAISS
  const std::string engine_name = "faiss";
  FaissEngine impl(kind, storage, d, m, efc);
#else
  const std::string engine_name = "qrank";
  QrankEngine impl(kind, storage, d, m, efc);
#endif
  Engine& engine = impl;
  const std::vector<double> ingest = f.list("ingest", "");
  const size_t ingest_each = ingest.empty() ? 0 : std::min<size_t>(s.n / 20, 20000);
  const size_t built = s.n - ingest_each * ingest.size();

  Json j;
  j.open('{').field("engine", engine_name).field("variant", f.get("variant", engine_name)).field("index", kind).field("storage", storage);
  j.field("data", s.kind).field("vectors", s.n).field("dim", d).field("queries", nq).field("threads", threads());
  if (kind == "hnsw") j.field("m", m).field("ef_construction", efc);

  // build: the vectors stream from the cache file; only add() is timed
  const size_t rss0 = rss_bytes();
  const size_t chunk = 10000;
  double add_seconds = 0;
  auto add_range = [&](size_t first, size_t count) {
    for (size_t at = first; at < first + count; at += chunk) {
      const size_t c = std::min(chunk, first + count - at);
      const std::vector<float> x = read_file<float>(files.base, c * d, at * d);
      std::vector<int64_t> ids(c);
      std::iota(ids.begin(), ids.end(), static_cast<int64_t>(at));
      const auto t = Clock::now();
      engine.add(ids.data(), x.data(), c);
      add_seconds += seconds_since(t);
    }
  };
  const auto tb = Clock::now();
  add_range(0, built);
  std::fprintf(stderr, "ann_bench: %s %s %s built %zu in %.1f s\n", engine_name.c_str(), kind.c_str(), storage.c_str(), built, seconds_since(tb));
  j.key("build").open('{').field("vectors", built).field("seconds", add_seconds).field("vectors_per_s", built / add_seconds).close('}');

  // searches beside an add in flight (qrank): each level adds `ingest_each` vectors while N searchers run
  if (!ingest.empty() && engine.concurrent_writes()) {
    j.key("during_ingest").open('[');
    size_t at = built;
    for (double level : ingest) {
      const size_t searchers = static_cast<size_t>(level);
      std::atomic<bool> done{false};
      std::atomic<size_t> searches{0};
      std::vector<std::thread> pool;
      const auto t = Clock::now();
      for (size_t i = 0; i < searchers; ++i)
        pool.emplace_back([&, i] {
          std::vector<int64_t> out(10);
          for (size_t q = i; !done.load(); q = (q + searchers) % nq) {
            engine.search(queries.data() + q * d, 1, 10, 64, out.data());
            searches++;
          }
        });
      const double before = add_seconds;
      add_range(at, ingest_each);
      at += ingest_each;
      const double wall = seconds_since(t);
      done = true;
      for (auto& th : pool) th.join();
      j.open('{').field("searchers", searchers).field("search_qps", searches.load() / wall).field("add_vectors_per_s", ingest_each / (add_seconds - before)).close('}');
    }
    j.close(']');
  }
  const size_t index_bytes = engine.memory_bytes();
  const size_t rss_growth = rss_bytes() > rss0 ? rss_bytes() - rss0 : 0;
  j.key("memory").open('{')
      .field("index_bytes_per_vector", static_cast<double>(index_bytes) / s.n)
      .field("rss_growth_bytes_per_vector", static_cast<double>(rss_growth) / s.n)
      .field("raw_f32_bytes_per_vector", d * 4.0)
      .close('}');

  // efSearch sweep
  const std::vector<double> efs = kind == "hnsw" ? f.list("ef-search", "16,32,64,128,256") : std::vector<double>{0};
  const size_t lat_q = std::min<size_t>(nq, f.num("latency-queries", static_cast<long>(nq)));
  const size_t conc = f.num("concurrent", 8);
  j.key("sweep").open('[');
  for (double efd : efs) {
    const int ef = static_cast<int>(efd);
    std::vector<int64_t> out(nq * 10), one(10);
    engine.single_thread(true);
    for (size_t q = 0; q < std::min<size_t>(20, lat_q); ++q) engine.search(queries.data() + q * d, 1, 10, ef, one.data());  // warm-up
    std::vector<double> lat;
    for (size_t q = 0; q < lat_q; ++q) {
      const auto t = Clock::now();
      engine.search(queries.data() + q * d, 1, 10, ef, out.data() + q * 10);
      lat.push_back(seconds_since(t) * 1e3);
    }
    const double rec = recall(std::vector<int64_t>(out.begin(), out.begin() + lat_q * 10), 10, truth.data(), kTruthK, lat_q);
    // concurrent: `conc` threads, one query per call
    const size_t cq = lat_q;
    std::atomic<size_t> next{0};
    auto t = Clock::now();
    {
      std::vector<std::thread> pool;
      for (size_t i = 0; i < conc; ++i)
        pool.emplace_back([&] {
          std::vector<int64_t> o(10);
          for (size_t q; (q = next++) < cq;) engine.search(queries.data() + q * d, 1, 10, ef, o.data());
        });
      for (auto& th : pool) th.join();
    }
    const double conc_qps = cq / seconds_since(t);
    engine.single_thread(false);
    t = Clock::now();
    engine.search(queries.data(), lat_q, 10, ef, out.data());
    const double batch_qps = lat_q / seconds_since(t);
    j.open('{').field("ef_search", ef).field("recall_at_10", rec).field("p50_ms", pct(lat, 0.5)).field("p99_ms", pct(lat, 0.99))
        .field("qps_single_thread", 1e3 * lat.size() / std::accumulate(lat.begin(), lat.end(), 0.0))
        .field("qps_concurrent", conc_qps).field("concurrent_threads", conc).field("qps_batched", batch_qps).close('}');
    std::fprintf(stderr, "ann_bench:   ef %d recall %.4f p50 %.3f ms\n", ef, rec, pct(lat, 0.5));
  }
  j.close(']');

  // filtered searches (qrank): exact scan, graph walk, and the index's own rule
  const std::vector<double> sel = f.list("filters", "");
  if (!sel.empty() && engine.concurrent_writes()) {
    const std::vector<int64_t> ftruth = read_file<int64_t>(files.filtered, kSelectivities.size() * nq * kFilterK);
    j.key("filters").open('[');
    for (double sv : sel) {
      const size_t fi = std::find(kSelectivities.begin(), kSelectivities.end(), sv) - kSelectivities.begin();
      if (fi == kSelectivities.size()) continue;
      std::vector<int64_t> allow;
      for (size_t i = 0; i < s.n; ++i)
        if (allowed(static_cast<int64_t>(i), sv)) allow.push_back(static_cast<int64_t>(i));
      j.open('{').field("selectivity", sv).field("allowed", allow.size());
      const std::vector<std::pair<std::string, int64_t>> modes =
          kind == "hnsw" ? std::vector<std::pair<std::string, int64_t>>{{"exact", INT64_MAX}, {"graph", 0}, {"auto", -1}}
                         : std::vector<std::pair<std::string, int64_t>>{{"exact", -1}};
      const size_t fq = std::min<size_t>(lat_q, 200);
      for (const auto& [mode, limit] : modes) {
        std::vector<int64_t> out(fq * 10);
        std::vector<double> lat;
        for (size_t q = 0; q < fq; ++q) {
          const auto t = Clock::now();
          engine.search(queries.data() + q * d, 1, 10, 64, out.data() + q * 10, &allow, limit);
          lat.push_back(seconds_since(t) * 1e3);
        }
        const double rec = recall(out, 10, ftruth.data() + fi * nq * kFilterK, kFilterK, fq);
        j.key(mode).open('{').field("recall_at_10", rec).field("p50_ms", pct(lat, 0.5)).field("p99_ms", pct(lat, 0.99)).close('}');
        std::fprintf(stderr, "ann_bench:   filter %.3f %s recall %.4f p50 %.3f ms\n", sv, mode.c_str(), rec, pct(lat, 0.5));
      }
      j.close('}');
    }
    j.close(']');
  }
  j.field("peak_rss_bytes", peak_rss_bytes()).field("peak_rss_bytes_per_vector", static_cast<double>(peak_rss_bytes()) / s.n);
  j.close('}');
  std::printf("%s\n", j.text().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ann_bench prepare|run [--flag value ...] (see bench/ann_bench.cc)\n");
    return 2;
  }
  Flags f;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) {
      std::fprintf(stderr, "ann_bench: expected --flag value, got %s\n", argv[i]);
      return 2;
    }
    f.values[k.substr(2)] = argv[i + 1];
  }
  try {
    const std::string mode = argv[1];
    if (mode == "prepare") return prepare(f);
    if (mode == "run") return run(f);
    std::fprintf(stderr, "ann_bench: unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ann_bench: %s\n", e.what());
    return 1;
  }
}
