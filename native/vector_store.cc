// GraphStore: the flat and HNSW kinds over USearch (deps/usearch, scripts/fetch-usearch.mjs).
//
// What USearch gives: the HNSW graph (index_gt, which keeps only the links and never the vectors:
// "storing values externally" is its documented low-level use) and NumKong's distance kernels for
// f32, f16 and i8 with the best SIMD of the running CPU (metric_punned_t). What qrank keeps:
// - Slots: the vectors in their storage type, by slot, in fixed blocks that never move (growing
//   adds a block; nothing is copied), with each slot's id and an alive flag. The graph, exact scans
//   and save all read this one copy.
// - ids -> slots (filters, remove), a free list of removed slots (reused by later adds, which relink
//   them through index_gt::update), live and used counts as atomics.
// Concurrency: every graph operation holds one of kContexts per-thread contexts of index_gt (leased
// from a pool) and the store's growth lock shared; only growing the capacity (index_gt reserves
// its node table, the block table grows) takes that lock alone, for a moment. Searches and one add
// (the VectorIndex lets one write run at a time) share the graph: index_gt locks the nodes it links.
// A slot's vector and id are written before the graph can reach it, and its alive flag (set last,
// cleared first) decides whether a search may return it.
// i8: x -> round(x * 127 / range), clipped; one range for the index (its first vectors' largest
// magnitude), so inner products and distances between stored vectors stay comparable. Queries are
// scaled to their own largest magnitude for inner products (a ranking does not depend on the
// query's scale), to the index's for L2.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-variable"
#endif
#include <usearch/index.hpp>
#include <usearch/index_plugins.hpp>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "vector_backend.h"
#include "vector_kernels.h"

namespace qrank {
namespace {

namespace us = unum::usearch;
using Graph = us::index_gt<float, uint64_t, uint32_t>;

constexpr size_t kContexts = 32;          // graph operations in flight on one index at most
constexpr size_t kBlockSlots = size_t{1} << 14;
constexpr size_t kMaxSlots = size_t{1} << 32;  // index_gt's 32-bit slots
// hnsw with a filter of m allowed vectors out of n: an exact scan costs m distances, a filtered
// graph walk about c * efSearch / selectivity (it expands nodes until efSearch allowed ones are
// found), so the scan wins while m^2 <= c * efSearch * n. c = 9 puts the switch where the two
// measured costs cross (bench/RESULTS.md, "Filters": at 100k, between 1% and 10% allowed).
constexpr double kWalkCost = 9.0;

size_t hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

// fn(begin, end) over [0, n) in `threads` parts, the calling thread taking the first; the first
// exception is rethrown after every part has ended.
template <typename Fn>
void parallel_for(size_t n, size_t threads, Fn&& fn) {
  threads = std::max<size_t>(1, std::min(threads, n));
  if (threads == 1) return fn(size_t{0}, n);
  std::exception_ptr error;
  std::mutex error_mutex;
  auto part = [&](size_t t) {
    try {
      fn(n * t / threads, n * (t + 1) / threads);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(part, t);
  part(0);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

// index_gt's per-thread contexts, leased one per operation in flight.
class ContextPool {
 public:
  ContextPool() {
    for (size_t i = 0; i < kContexts; ++i) free_.push_back(kContexts - 1 - i);
  }
  class Lease {
   public:
    Lease(ContextPool& pool) : pool_(pool) {
      std::unique_lock<std::mutex> lock(pool.mutex_);
      pool.ready_.wait(lock, [&] { return !pool.free_.empty(); });
      id_ = pool.free_.back();
      pool.free_.pop_back();
    }
    ~Lease() {
      {
        std::lock_guard<std::mutex> lock(pool_.mutex_);
        pool_.free_.push_back(id_);
      }
      pool_.ready_.notify_one();
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    size_t id() const { return id_; }

   private:
    ContextPool& pool_;
    size_t id_;
  };

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<size_t> free_;
};

inline void* align_down(void* p) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~(page - 1));
}

// Vectors (in their storage type), ids and alive flags by slot, in blocks that never move.
class Slots {
 public:
  explicit Slots(size_t vector_bytes) : vector_bytes_(vector_bytes) {}
  size_t capacity() const { return blocks_.size() * kBlockSlots; }
  void reserve(size_t n) {  // the caller holds the growth lock alone
    while (capacity() < n) {
      Block b;
      // not touched: pages come as they are written; huge pages where the kernel gives them on
      // request, since graph walks read vectors at random (a TLB miss per vector with 4 KiB pages)
      b.vectors.reset(new uint8_t[kBlockSlots * vector_bytes_]);
      ::madvise(align_down(b.vectors.get()), kBlockSlots * vector_bytes_, MADV_HUGEPAGE);
      b.keys.reset(new int64_t[kBlockSlots]);
      b.alive.reset(new std::atomic<uint8_t>[kBlockSlots]());
      blocks_.push_back(std::move(b));
    }
  }
  uint8_t* vector(size_t s) const { return blocks_[s / kBlockSlots].vectors.get() + (s % kBlockSlots) * vector_bytes_; }
  int64_t& key(size_t s) const { return blocks_[s / kBlockSlots].keys[s % kBlockSlots]; }
  bool alive(size_t s) const { return blocks_[s / kBlockSlots].alive[s % kBlockSlots].load(std::memory_order_acquire) != 0; }
  void set_alive(size_t s, bool v) const { blocks_[s / kBlockSlots].alive[s % kBlockSlots].store(v ? 1 : 0, std::memory_order_release); }
  size_t vector_bytes() const { return vector_bytes_; }

 private:
  struct Block {
    std::unique_ptr<uint8_t[]> vectors;
    std::unique_ptr<int64_t[]> keys;
    std::unique_ptr<std::atomic<uint8_t>[]> alive;
  };
  size_t vector_bytes_;
  std::vector<Block> blocks_;
};

us::scalar_kind_t scalar_kind(Storage s) {
  return s == Storage::kF16 ? us::scalar_kind_t::f16_k : s == Storage::kI8 ? us::scalar_kind_t::i8_k : us::scalar_kind_t::f32_k;
}

// NumKong's kernel, or for f32 and f16 qrank's (native/vector_kernels.cc), through the same interface.
us::metric_punned_t make_kernel(const IndexSpec& spec) {
  const auto metric = spec.metric == Metric::kL2 ? us::metric_kind_t::l2sq_k : us::metric_kind_t::ip_k;
  if (spec.storage != Storage::kI8) {
    if (DistanceKernel k = fast_kernel(spec.storage == Storage::kF16, spec.metric == Metric::kL2)) {
      return us::metric_punned_t::stateless(spec.dim, reinterpret_cast<std::uintptr_t>(k), us::metric_punned_signature_t::array_array_size_k,
                                            metric, scalar_kind(spec.storage));
    }
  }
  return us::metric_punned_t::builtin(spec.dim, metric, scalar_kind(spec.storage));
}

size_t storage_bytes(Storage s, size_t dim) { return s == Storage::kF16 ? 2 * dim : s == Storage::kI8 ? dim : 4 * dim; }

void encode_i8(const float* x, size_t dim, float scale, uint8_t* out) {
  auto* o = reinterpret_cast<int8_t*>(out);
  for (size_t j = 0; j < dim; ++j) o[j] = static_cast<int8_t>(std::clamp(std::lrint(x[j] * scale), -127L, 127L));
}

float max_magnitude(const float* x, size_t count) {
  float m = 0.0f;
  for (size_t i = 0; i < count; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// Distances for index_gt: between a query (its encoded bytes) and a slot, or between two slots.
struct SlotMetric {
  const Slots* slots;
  const us::metric_punned_t* kernel;
  const uint8_t* bytes(const uint8_t* p) const { return p; }
  const uint8_t* bytes(uint8_t* p) const { return p; }
  template <typename Entry>
  const uint8_t* bytes(const Entry& e) const { return slots->vector(get_slot(e)); }
  template <typename A, typename B>
  float operator()(const A& a, const B& b) const {
    return (*kernel)(reinterpret_cast<const us::byte_t*>(bytes(a)), reinterpret_cast<const us::byte_t*>(bytes(b)));
  }
};

// Bounded max-heap of (distance, slot): the k smallest distances seen.
class TopK {
 public:
  explicit TopK(size_t k) : k_(k) { items_.reserve(std::min<size_t>(k, 1 << 16)); }
  void offer(float d, uint32_t slot) {
    if (items_.size() < k_) {
      items_.emplace_back(d, slot);
      std::push_heap(items_.begin(), items_.end());
    } else if (d < items_.front().first) {
      std::pop_heap(items_.begin(), items_.end());
      items_.back() = {d, slot};
      std::push_heap(items_.begin(), items_.end());
    }
  }
  void merge(const TopK& other) {
    for (const auto& [d, s] : other.items_) offer(d, s);
  }
  std::vector<std::pair<float, uint32_t>> sorted() && {
    std::sort_heap(items_.begin(), items_.end());
    return std::move(items_);
  }

 private:
  size_t k_;
  std::vector<std::pair<float, uint32_t>> items_;
};

class GraphStore final : public VectorBackend {
 public:
  explicit GraphStore(const IndexSpec& spec)
      : spec_(spec),
        slots_(storage_bytes(spec.storage, spec.dim)),
        kernel_(make_kernel(spec)) {
    if (!kernel_) throw Error(ErrorCode::kEngineFailure, "USearch has no distance kernel for this metric and storage");
    if (spec.storage == Storage::kI8 && spec.i8_range > 0) scale_ = 127.0f / spec.i8_range;
    if (spec.kind == IndexKind::kHnsw) {
      us::index_config_t config(static_cast<size_t>(spec.hnsw_m), 2 * static_cast<size_t>(spec.hnsw_m));
      if (config.validate()) invalid_input(std::string("hnsw: ") + config.validate().what());
      graph_ = std::make_unique<Graph>(config);
    }
  }

  IndexSpec spec() const override {
    std::lock_guard<std::mutex> lock(spec_mutex_);
    return spec_;
  }
  size_t size() const override { return count_.load(); }
  bool trained() const override { return spec_.storage != Storage::kI8 || scale_.load() > 0; }
  bool contains(int64_t id) const override {
    std::shared_lock<std::shared_mutex> lock(map_mutex_);
    return slot_of_.count(id) > 0;
  }

  size_t memory_bytes() const override {
    std::shared_lock<std::shared_mutex> grow(grow_mutex_);
    const size_t used = used_.load();
    size_t bytes = used * (slots_.vector_bytes() + sizeof(int64_t) + 1);
    if (graph_) bytes += graph_->memory_usage();
    std::shared_lock<std::shared_mutex> lock(map_mutex_);
    return bytes + slot_of_.size() * (sizeof(int64_t) + sizeof(uint32_t) + 2 * sizeof(void*));  // the id map, roughly
  }

  void train(const float* vectors, size_t n) override {
    if (spec_.storage == Storage::kI8 && n > 0) learn_range(vectors, n);
  }

  void add(const int64_t* ids, const float* vectors, size_t n) override {
    if (spec_.storage == Storage::kI8 && scale_.load() == 0) learn_range(vectors, n);
    const size_t reuse = std::min(free_.size(), n);
    if (used_.load() + (n - reuse) > kMaxSlots) invalid_input("an index holds at most 2^32 vectors");
    const size_t base = used_.load();
    grow(base + (n - reuse));
    constexpr uint32_t kNone = UINT32_MAX;
    std::vector<uint32_t> slots(n, kNone);
    std::copy(free_.end() - reuse, free_.end(), slots.begin());
    free_.resize(free_.size() - reuse);
    try {
      std::shared_lock<std::shared_mutex> grow(grow_mutex_);
      if (graph_) {
        insert_graph(ids, vectors, n, reuse, slots.data());
      } else {
        for (size_t i = reuse; i < n; ++i) slots[i] = static_cast<uint32_t>(base + (i - reuse));
        for (size_t i = 0; i < n; ++i) store(slots[i], ids[i], vectors + i * spec_.dim);
        used_.store(base + (n - reuse), std::memory_order_release);
      }
    } catch (...) {
      // an add that fails midway (out of memory) leaves none of its vectors: their slots are free
      for (size_t i = 0; i < n; ++i) {
        if (slots[i] == kNone || (i >= reuse && !slots_.alive(slots[i]))) continue;
        slots_.set_alive(slots[i], false);
        free_.push_back(slots[i]);
      }
      throw;
    }
    std::unique_lock<std::shared_mutex> lock(map_mutex_);
    for (size_t i = 0; i < n; ++i) slot_of_[ids[i]] = slots[i];
    count_ += n;
  }

  void remove(const int64_t* ids, size_t n) override {
    std::unique_lock<std::shared_mutex> lock(map_mutex_);
    for (size_t i = 0; i < n; ++i) {
      auto it = slot_of_.find(ids[i]);
      slots_.set_alive(it->second, false);
      free_.push_back(it->second);
      slot_of_.erase(it);
    }
    count_ -= n;
  }

  SearchHits search(const float* queries, size_t nq, const SearchOptions& o) const override {
    SearchHits hits;
    const size_t k = static_cast<size_t>(o.k);
    hits.ids.assign(nq * k, -1);
    hits.scores.assign(nq * k, spec_.metric == Metric::kL2 ? INFINITY : -INFINITY);
    if (nq == 0 || count_.load() == 0) return hits;
    std::shared_lock<std::shared_mutex> grow(grow_mutex_);
    const size_t used = used_.load(std::memory_order_acquire);

    std::vector<uint32_t> allowed;
    std::vector<uint64_t> bits;
    if (o.allow) {
      bits.assign((used + 63) / 64, 0);
      std::shared_lock<std::shared_mutex> lock(map_mutex_);
      for (int64_t id : *o.allow) {
        auto it = slot_of_.find(id);
        if (it == slot_of_.end() || it->second >= used || (bits[it->second / 64] >> (it->second % 64) & 1)) continue;
        bits[it->second / 64] |= uint64_t{1} << (it->second % 64);
        allowed.push_back(it->second);
      }
      if (allowed.empty()) return hits;
    }
    const size_t ef = std::max<size_t>(o.ef_search > 0 ? o.ef_search : spec_.ef_search, k);
    const size_t vb = slots_.vector_bytes();
    std::vector<uint8_t> encoded(nq * vb);
    std::vector<float> factor(nq);
    for (size_t q = 0; q < nq; ++q) factor[q] = encode_query(queries + q * spec_.dim, encoded.data() + q * vb);
    const SlotMetric metric{&slots_, &kernel_};

    const bool exact = scans_exactly(ef, o.allow ? &allowed : nullptr, o.exact_filter_limit);
    std::vector<std::vector<std::pair<float, uint32_t>>> found(nq);
    if (exact) {
      scan(encoded.data(), nq, k, o.allow ? &allowed : nullptr, used, metric, found);
    } else {
      parallel_for(nq, nq >= 4 ? hardware_threads() : 1, [&](size_t begin, size_t end) {
        ContextPool::Lease ctx(contexts_);
        us::index_search_config_t config;
        config.expansion = ef;
        config.thread = ctx.id();
        auto allow = [&](const Graph::member_cref_t& m) {
          // slots past `used` come from an add in flight: never in the filter
          return slots_.alive(m.slot) && (bits.empty() || (m.slot < used && (bits[m.slot / 64] >> (m.slot % 64) & 1)));
        };
        for (size_t q = begin; q < end; ++q) {
          auto r = graph_->search(encoded.data() + q * vb, k, metric, config, allow);
          if (!r) throw Error(ErrorCode::kOutOfMemory, std::string("hnsw search: ") + r.error.what());
          for (size_t i = 0; i < r.count; ++i) {
            const auto m = r[i];
            found[q].emplace_back(m.distance, static_cast<uint32_t>(m.member.slot));
          }
        }
      });
    }
    for (size_t q = 0; q < nq; ++q) {
      for (size_t i = 0; i < found[q].size() && i < k; ++i) {
        const auto [d, slot] = found[q][i];
        hits.ids[q * k + i] = slots_.key(slot);
        hits.scores[q * k + i] = score(d, factor[q]);
      }
    }
    return hits;
  }

  std::vector<int64_t> ids() const override {
    std::shared_lock<std::shared_mutex> lock(map_mutex_);
    std::vector<int64_t> out;
    out.reserve(slot_of_.size());
    for (const auto& [id, slot] : slot_of_) out.push_back(id);
    return out;
  }

  void save(FileWriter& out) const override {
    std::shared_lock<std::shared_mutex> grow(grow_mutex_);
    const size_t used = used_.load();
    out.put(static_cast<uint64_t>(used));
    for_each_block(used, [&](size_t first, size_t n) { out.bytes(&slots_.key(first), n * sizeof(int64_t)); });
    for (size_t s = 0; s < used; ++s) out.put(static_cast<uint8_t>(slots_.alive(s)));
    for_each_block(used, [&](size_t first, size_t n) { out.bytes(slots_.vector(first), n * slots_.vector_bytes()); });
    out.put(static_cast<uint8_t>(graph_ ? 1 : 0));
    if (graph_) {
      const auto r = graph_->save_to_stream([&](const void* p, size_t n) {
        out.bytes(p, n);
        return true;
      });
      if (!r) throw Error(ErrorCode::kEngineFailure, std::string("hnsw save: ") + r.error.what());
    }
  }

  void read_vectors(const VectorSink& sink) const override {
    std::shared_lock<std::shared_mutex> grow(grow_mutex_);
    const size_t used = used_.load(), dim = spec_.dim;
    constexpr size_t kChunk = 4096;
    std::vector<int64_t> ids;
    std::vector<float> x;
    for (size_t s = 0; s < used; ++s) {
      if (!slots_.alive(s)) continue;
      ids.push_back(slots_.key(s));
      x.resize(ids.size() * dim);
      decode(slots_.vector(s), x.data() + (ids.size() - 1) * dim);
      if (ids.size() == kChunk) {
        sink(ids.data(), x.data(), ids.size());
        ids.clear();
      }
    }
    if (!ids.empty()) sink(ids.data(), x.data(), ids.size());
  }

  void load(FileReader& in) {
    const uint64_t used = in.get<uint64_t>();
    if (used > kMaxSlots || used > in.left() / (sizeof(int64_t) + 1 + slots_.vector_bytes())) in.bad("the file is truncated");
    grow(used);
    for_each_block(used, [&](size_t first, size_t n) { in.bytes(&slots_.key(first), n * sizeof(int64_t)); });
    for (size_t s = 0; s < used; ++s) {
      const bool alive = in.get<uint8_t>() != 0;
      slots_.set_alive(s, alive);
      if (!alive) {
        free_.push_back(static_cast<uint32_t>(s));
      } else if (slots_.key(s) < 0 || !slot_of_.emplace(slots_.key(s), static_cast<uint32_t>(s)).second) {
        in.bad("an id is negative or held twice");
      }
    }
    for_each_block(used, [&](size_t first, size_t n) { in.bytes(slots_.vector(first), n * slots_.vector_bytes()); });
    const bool has_graph = in.get<uint8_t>() != 0;
    if (has_graph != (graph_ != nullptr)) in.bad("the graph does not match the index kind");
    if (graph_) {
      const auto r = graph_->load_from_stream([&](void* p, size_t n) {
        if (n > in.left()) return false;
        in.bytes(p, n);
        return true;
      });
      if (!r) in.bad(std::string("hnsw graph: ") + r.error.what());
      if (graph_->size() != used) in.bad("the graph does not match the vectors");
      if (!graph_->try_reserve(us::index_limits_t(slots_.capacity(), kContexts))) throw Error(ErrorCode::kOutOfMemory, "out of memory");
    }
    used_ = used;
    count_ = slot_of_.size();
  }

 private:
  // Capacity for n slots; a moment with the growth lock alone, and only when n passes the capacity.
  void grow(size_t n) {
    if (n <= slots_.capacity() && (!graph_ || n <= graph_->capacity())) return;
    std::unique_lock<std::shared_mutex> lock(grow_mutex_);
    const size_t target = std::max(n, slots_.capacity() + slots_.capacity() / 2);
    slots_.reserve(target);
    if (graph_ && !graph_->try_reserve(us::index_limits_t(slots_.capacity(), kContexts))) {
      throw Error(ErrorCode::kOutOfMemory, "out of memory growing the hnsw graph");
    }
  }

  // Whether a search scans the candidates exactly instead of walking the graph: always for flat;
  // for hnsw when ef covers every vector (a walk that must visit them all costs more than the scan,
  // and may miss nodes the graph cannot reach), or with a filter of m allowed vectors while
  // m^2 <= kWalkCost ef n (or m <= the caller's limit).
  bool scans_exactly(size_t ef, const std::vector<uint32_t>* allowed, int64_t exact_filter_limit) const {
    const size_t n = count_.load();
    if (!graph_ || ef >= n) return true;
    if (!allowed) return false;
    const double m = static_cast<double>(allowed->size());
    return exact_filter_limit >= 0 ? m <= static_cast<double>(exact_filter_limit)
                                   : m * m <= kWalkCost * static_cast<double>(ef) * static_cast<double>(n);
  }

  void learn_range(const float* vectors, size_t n) {
    float range = max_magnitude(vectors, n * spec_.dim);
    if (range == 0.0f) range = 1.0f;
    {
      std::lock_guard<std::mutex> lock(spec_mutex_);
      spec_.i8_range = range;
    }
    scale_ = 127.0f / range;
  }

  void encode(const float* x, uint8_t* out) const {
    switch (spec_.storage) {
      case Storage::kF32: std::memcpy(out, x, spec_.dim * sizeof(float)); break;
      case Storage::kF16:
        us::cast_gt<us::f32_t, us::f16_t>::try_(reinterpret_cast<const us::byte_t*>(x), spec_.dim, reinterpret_cast<us::byte_t*>(out));
        break;
      case Storage::kI8: encode_i8(x, spec_.dim, scale_.load(), out); break;
    }
  }

  void decode(const uint8_t* v, float* out) const {
    switch (spec_.storage) {
      case Storage::kF32: std::memcpy(out, v, spec_.dim * sizeof(float)); break;
      case Storage::kF16:
        us::cast_gt<us::f16_t, us::f32_t>::try_(reinterpret_cast<const us::byte_t*>(v), spec_.dim, reinterpret_cast<us::byte_t*>(out));
        break;
      case Storage::kI8: {
        const float unit = 1.0f / scale_.load();
        for (int32_t j = 0; j < spec_.dim; ++j) out[j] = static_cast<float>(reinterpret_cast<const int8_t*>(v)[j]) * unit;
        break;
      }
    }
  }

  // The query in storage form; returns what turns its kernel products back into true ones.
  float encode_query(const float* q, uint8_t* out) const {
    if (spec_.storage != Storage::kI8) return encode(q, out), 1.0f;
    const float db = scale_.load();
    if (spec_.metric == Metric::kL2) return encode_i8(q, spec_.dim, db, out), 1.0f / (db * db);
    const float m = max_magnitude(q, spec_.dim);
    const float qs = m > 0 ? 127.0f / m : 1.0f;
    encode_i8(q, spec_.dim, qs, out);
    return 1.0f / (qs * db);
  }

  // USearch's inner-product distance is 1 - dot.
  float score(float distance, float factor) const {
    return spec_.metric == Metric::kL2 ? distance * factor : (1.0f - distance) * factor;
  }

  void store(uint32_t slot, int64_t id, const float* x) const {
    encode(x, slots_.vector(slot));
    slots_.key(slot) = id;
    slots_.set_alive(slot, true);
  }

  // Vectors into the graph: reused slots are written first and relinked (update), new ones are
  // written by add()'s callback, before the graph links them.
  void insert_graph(const int64_t* ids, const float* vectors, size_t n, size_t reuse, uint32_t* slots) {
    const SlotMetric metric{&slots_, &kernel_};
    parallel_for(n, n >= 64 ? hardware_threads() : 1, [&](size_t begin, size_t end) {
      ContextPool::Lease ctx(contexts_);
      us::index_update_config_t config;
      config.expansion = static_cast<size_t>(spec_.ef_construction);
      config.thread = ctx.id();
      std::vector<uint8_t> value(slots_.vector_bytes());
      for (size_t i = begin; i < end; ++i) {
        const float* x = vectors + i * spec_.dim;
        if (i < reuse) {
          const uint32_t s = slots[i];
          encode(x, slots_.vector(s));
          slots_.key(s) = ids[i];
          const auto r = graph_->update(graph_->iterator_at(s), static_cast<uint64_t>(ids[i]), slots_.vector(s), metric, config);
          if (!r) throw Error(ErrorCode::kOutOfMemory, std::string("hnsw: ") + r.error.what());
          slots_.set_alive(s, true);
        } else {
          encode(x, value.data());
          const auto r = graph_->add(static_cast<uint64_t>(ids[i]), value.data(), metric, config, [&](const Graph::member_ref_t& m) {
            std::memcpy(slots_.vector(m.slot), value.data(), value.size());
            slots_.key(m.slot) = ids[i];
            slots_.set_alive(m.slot, true);
          });
          if (!r) throw Error(ErrorCode::kOutOfMemory, std::string("hnsw: ") + r.error.what());
          slots[i] = r.slot;
        }
      }
    });
    used_.store(graph_->size(), std::memory_order_release);
  }

  // Exact top-k of each query over the alive slots (all of them, or `allowed`): queries split across
  // threads when there are several, slots when there is one and enough of them.
  void scan(const uint8_t* encoded, size_t nq, size_t k, const std::vector<uint32_t>* allowed, size_t used, const SlotMetric& metric,
            std::vector<std::vector<std::pair<float, uint32_t>>>& found) const {
    const size_t n = allowed ? allowed->size() : used;
    const size_t vb = slots_.vector_bytes();
    auto run = [&](size_t q0, size_t q1, size_t s0, size_t s1, std::vector<TopK>& tops) {
      constexpr size_t kTile = 64;  // slots whose vectors stay in cache across the queries
      for (size_t t = s0; t < s1; t += kTile) {
        const size_t t1 = std::min(s1, t + kTile);
        for (size_t q = q0; q < q1; ++q) {
          const uint8_t* qv = encoded + q * vb;
          TopK& top = tops[q - q0];
          for (size_t i = t; i < t1; ++i) {
            const uint32_t s = allowed ? (*allowed)[i] : static_cast<uint32_t>(i);
            if (!slots_.alive(s)) continue;
            top.offer(metric(qv, slots_.vector(s)), s);
          }
        }
      }
    };
    auto unpack = [&](size_t q, TopK&& top) { found[q] = std::move(top).sorted(); };
    const size_t threads = hardware_threads();
    if (nq >= threads || n * nq < 65536) {
      parallel_for(nq, n * nq < 65536 ? 1 : threads, [&](size_t q0, size_t q1) {
        std::vector<TopK> tops(q1 - q0, TopK(k));
        run(q0, q1, 0, n, tops);
        for (size_t q = q0; q < q1; ++q) unpack(q, std::move(tops[q - q0]));
      });
      return;
    }
    std::vector<std::vector<TopK>> parts(threads, std::vector<TopK>(nq, TopK(k)));
    parallel_for(threads, threads, [&](size_t p0, size_t p1) {
      for (size_t p = p0; p < p1; ++p) run(0, nq, n * p / threads, n * (p + 1) / threads, parts[p]);
    });
    for (size_t q = 0; q < nq; ++q) {
      for (size_t p = 1; p < threads; ++p) parts[0][q].merge(parts[p][q]);
      unpack(q, std::move(parts[0][q]));
    }
  }

  template <typename Fn>
  void for_each_block(size_t used, Fn&& fn) const {
    for (size_t first = 0; first < used; first += kBlockSlots) fn(first, std::min(kBlockSlots, used - first));
  }

  IndexSpec spec_;  // fixed but for i8_range, learned once (under spec_mutex_)
  mutable std::mutex spec_mutex_;
  Slots slots_;
  us::metric_punned_t kernel_;
  std::unique_ptr<Graph> graph_;  // hnsw only
  std::atomic<float> scale_{0.0f};
  std::atomic<size_t> used_{0};   // slots handed out: every slot below holds a vector (alive or not)
  std::atomic<size_t> count_{0};  // alive vectors
  std::vector<uint32_t> free_;    // removed slots, reused by adds (written by the one write in flight)
  std::unordered_map<int64_t, uint32_t> slot_of_;
  mutable std::shared_mutex map_mutex_;
  mutable std::shared_mutex grow_mutex_;
  mutable ContextPool contexts_;
};

}  // namespace

std::unique_ptr<VectorBackend> make_graph_store(const IndexSpec& spec) { return std::make_unique<GraphStore>(spec); }

std::unique_ptr<VectorBackend> load_graph_store(const IndexSpec& spec, FileReader& in) {
  auto store = std::make_unique<GraphStore>(spec);
  store->load(in);
  return store;
}

}  // namespace qrank
