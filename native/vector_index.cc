#include "qrank/vector_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include "qrank/error.h"

namespace qrank {
namespace {

using idx_t = faiss::Index::idx_t;
constexpr char kMagic[8] = {'Q', 'R', 'A', 'N', 'K', 'I', 'X', '1'};
constexpr uint32_t kFormatVersion = 1;

faiss::MetricType faiss_metric(Metric m) { return m == Metric::kL2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT; }

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::kInvalidInput, message); }

// FAISS reports misuse with exceptions of its own; they become engine errors with FAISS's text.
template <typename Fn>
auto faiss_call(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorCode::kEngineFailure, std::string("FAISS: ") + e.what());
  }
}

void check_finite(const float* x, size_t count, size_t dim, const char* what) {
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(x[i])) invalid(std::string(what) + " " + std::to_string(i / dim) + " has a NaN or infinite value");
  }
}

// Selects FAISS positions that are alive (HNSW tombstones) and, when a filter is given, allowed.
struct PositionSelector final : faiss::IDSelector {
  const std::vector<uint8_t>* dead = nullptr;
  std::vector<uint8_t> allowed;  // by position; empty = no filter
  bool is_member(idx_t i) const override {
    if (dead && static_cast<size_t>(i) < dead->size() && (*dead)[i]) return false;
    return allowed.empty() || (static_cast<size_t>(i) < allowed.size() && allowed[i]);
  }
};

// Exact top-k over a few positions of a flat storage: what a selective filter needs, since a graph
// walk only meets allowed vectors that happen to lie near the query.
void exact_subset(const float* xb, int32_t dim, Metric metric, const float* queries, size_t nq, int32_t k,
                  const std::vector<idx_t>& positions, float* scores, idx_t* labels) {
  std::vector<std::pair<float, idx_t>> scored(positions.size());
  for (size_t q = 0; q < nq; ++q) {
    const float* x = queries + q * dim;
    for (size_t i = 0; i < positions.size(); ++i) {
      const float* y = xb + positions[i] * dim;
      float s = 0.0f;
      if (metric == Metric::kL2) {
        for (int32_t j = 0; j < dim; ++j) s += (x[j] - y[j]) * (x[j] - y[j]);
      } else {
        for (int32_t j = 0; j < dim; ++j) s += x[j] * y[j];
      }
      scored[i] = {metric == Metric::kL2 ? s : -s, positions[i]};  // ascending = best first
    }
    const size_t take = std::min<size_t>(k, scored.size());
    std::partial_sort(scored.begin(), scored.begin() + take, scored.end());
    for (size_t i = 0; i < take; ++i) {
      scores[q * k + i] = metric == Metric::kL2 ? scored[i].first : -scored[i].first;
      labels[q * k + i] = scored[i].second;
    }
  }
}

// Below this many allowed vectors a filtered HNSW search scans them exactly (a few MFLOP at most).
constexpr size_t kExactFilterLimit = 20000;

// FNV-1a 64: enough to tell a damaged file from a good one.
uint64_t fnv1a(const uint8_t* p, size_t n, uint64_t h = 1469598103934665603ULL) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

class ByteWriter {
 public:
  template <typename T>
  void put(const T& v) { bytes(&v, sizeof v); }
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    data.insert(data.end(), b, b + n);
  }
  std::vector<uint8_t> data;
};

class ByteReader {
 public:
  ByteReader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  template <typename T>
  T get() {
    T v;
    bytes(&v, sizeof v);
    return v;
  }
  void bytes(void* out, size_t n) {
    if (n > n_ - at_) throw Error(ErrorCode::kBadIndex, "index file is truncated");
    std::memcpy(out, p_ + at_, n);
    at_ += n;
  }
  const uint8_t* here() const { return p_ + at_; }
  size_t left() const { return n_ - at_; }
  void skip(size_t n) {
    if (n > left()) throw Error(ErrorCode::kBadIndex, "index file is truncated");
    at_ += n;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t at_ = 0;
};

void write_all(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) throw Error(ErrorCode::kIoError, "cannot write " + path + ": " + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void fsync_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

VectorIndex::VectorIndex(const IndexSpec& spec) : spec_(spec) {}
VectorIndex::~VectorIndex() = default;

std::unique_ptr<VectorIndex> VectorIndex::create(const IndexSpec& spec) {
  if (spec.dim <= 0 || spec.dim > 65536) invalid("dim must be between 1 and 65536");
  if (spec.hnsw_m < 2 || spec.ef_construction < 1 || spec.ef_search < 1 || spec.nprobe < 1 || spec.nlist < 0) {
    invalid("hnsw m must be >= 2; efConstruction, efSearch and nprobe >= 1; nlist >= 0");
  }
  IndexSpec s = spec;
  if (s.kind == IndexKind::kIvfPq) {
    if (s.pq_m == 0) s.pq_m = std::max(1, s.dim / 4);
    if (s.dim % s.pq_m != 0) invalid("pqM (" + std::to_string(s.pq_m) + ") must divide dim (" + std::to_string(s.dim) + ")");
    if (s.pq_bits < 1 || s.pq_bits > 16) invalid("pqBits must be between 1 and 16");
  }
  std::unique_ptr<VectorIndex> ix(new VectorIndex(s));
  faiss_call([&] {
    if (s.kind == IndexKind::kFlat) {
      ix->index_ = std::make_unique<faiss::IndexFlat>(s.dim, faiss_metric(s.metric));
    } else if (s.kind == IndexKind::kHnsw) {
      auto h = std::make_unique<faiss::IndexHNSWFlat>(s.dim, s.hnsw_m, faiss_metric(s.metric));
      h->hnsw.efConstruction = s.ef_construction;
      h->hnsw.efSearch = s.ef_search;
      ix->index_ = std::move(h);
    }
    return 0;
  });
  return ix;  // IVF kinds are built when they train: the number of cells can depend on the data
}

size_t VectorIndex::size() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return maps_ids() ? positions_.size() : ids_.size();
}

bool VectorIndex::trained() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return index_ && index_->is_trained;
}

bool VectorIndex::contains(int64_t id) const { return maps_ids() ? positions_.count(id) > 0 : ids_.count(id) > 0; }

void VectorIndex::train(const float* vectors, size_t n) {
  std::unique_lock<std::shared_mutex> lock(mutex_);
  if (!maps_ids() && index_ && index_->ntotal > 0) invalid("the index already holds vectors; train it before adding");
  check_finite(vectors, n * spec_.dim, spec_.dim, "training vector");
  train_locked(vectors, n);
}

void VectorIndex::train_locked(const float* vectors, size_t n) {
  if (maps_ids()) return;  // flat and HNSW learn nothing
  int32_t nlist = spec_.nlist > 0 ? spec_.nlist : std::max(1, static_cast<int32_t>(4 * std::sqrt(static_cast<double>(n))));
  nlist = std::min<int64_t>(nlist, static_cast<int64_t>(n));
  const size_t needed = std::max<size_t>(nlist, spec_.kind == IndexKind::kIvfPq ? (size_t{1} << spec_.pq_bits) : 1);
  if (n < needed) {
    invalid("training needs at least " + std::to_string(needed) + " vectors for this index (got " + std::to_string(n) + ")");
  }
  faiss_call([&] {
    auto quantizer = new faiss::IndexFlat(spec_.dim, faiss_metric(spec_.metric));
    std::unique_ptr<faiss::IndexIVF> ivf;
    if (spec_.kind == IndexKind::kIvf) {
      ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer, spec_.dim, nlist, faiss_metric(spec_.metric));
    } else {
      ivf = std::make_unique<faiss::IndexIVFPQ>(quantizer, spec_.dim, nlist, spec_.pq_m, spec_.pq_bits, faiss_metric(spec_.metric));
    }
    ivf->own_fields = true;
    ivf->cp.verbose = false;
    ivf->train(static_cast<idx_t>(n), vectors);
    ivf->set_direct_map_type(faiss::DirectMap::Hashtable);  // remove by id
    ivf->nprobe = spec_.nprobe;
    index_ = std::move(ivf);
    return 0;
  });
  spec_.nlist = nlist;
}

void VectorIndex::add(const int64_t* ids, const float* vectors, size_t n) {
  std::unique_lock<std::shared_mutex> lock(mutex_);
  std::unordered_set<int64_t> batch;
  batch.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0) invalid("ids must be >= 0 (id " + std::to_string(ids[i]) + " at " + std::to_string(i) + ")");
    if (contains(ids[i]) || !batch.insert(ids[i]).second) invalid("duplicate id " + std::to_string(ids[i]));
  }
  check_finite(vectors, n * spec_.dim, spec_.dim, "vector");
  if (n == 0) return;
  if (!index_ || !index_->is_trained) train_locked(vectors, n);
  faiss_call([&] {
    if (maps_ids()) {
      const int64_t base = index_->ntotal;
      index_->add(static_cast<idx_t>(n), vectors);
      for (size_t i = 0; i < n; ++i) {
        labels_.push_back(ids[i]);
        positions_[ids[i]] = base + static_cast<int64_t>(i);
      }
      if (spec_.kind == IndexKind::kHnsw) dead_.resize(labels_.size(), 0);
    } else {
      std::vector<idx_t> xids(ids, ids + n);
      index_->add_with_ids(static_cast<idx_t>(n), vectors, xids.data());
      ids_.insert(ids, ids + n);
    }
    return 0;
  });
}

void VectorIndex::remove(const int64_t* ids, size_t n) {
  std::unique_lock<std::shared_mutex> lock(mutex_);
  std::vector<int64_t> unknown;
  for (size_t i = 0; i < n; ++i) {
    if (!contains(ids[i])) unknown.push_back(ids[i]);
  }
  if (!unknown.empty()) {
    std::string list;
    for (size_t i = 0; i < unknown.size() && i < 5; ++i) list += (i ? ", " : "") + std::to_string(unknown[i]);
    invalid("unknown id" + std::string(unknown.size() > 1 ? "s " : " ") + list + (unknown.size() > 5 ? ", ..." : ""));
  }
  faiss_call([&] {
    if (spec_.kind == IndexKind::kHnsw) {
      for (size_t i = 0; i < n; ++i) {
        auto it = positions_.find(ids[i]);
        if (it == positions_.end()) continue;  // listed twice
        dead_[it->second] = 1;
        positions_.erase(it);
      }
    } else if (spec_.kind == IndexKind::kFlat) {
      // FAISS compacts the flat storage in order; the labels follow the same compaction.
      std::vector<idx_t> pos;
      for (size_t i = 0; i < n; ++i) {
        auto it = positions_.find(ids[i]);
        if (it != positions_.end()) pos.push_back(it->second), positions_.erase(it);
      }
      faiss::IDSelectorBatch sel(pos.size(), pos.data());
      index_->remove_ids(sel);
      std::vector<uint8_t> gone(labels_.size(), 0);
      for (idx_t p : pos) gone[p] = 1;
      size_t w = 0;
      for (size_t r = 0; r < labels_.size(); ++r) {
        if (gone[r]) continue;
        labels_[w] = labels_[r];
        positions_[labels_[w]] = static_cast<int64_t>(w);
        ++w;
      }
      labels_.resize(w);
    } else {
      std::vector<idx_t> xids(ids, ids + n);
      std::sort(xids.begin(), xids.end());
      xids.erase(std::unique(xids.begin(), xids.end()), xids.end());
      faiss::IDSelectorArray sel(xids.size(), xids.data());  // what a hashtable direct map accepts
      index_->remove_ids(sel);
      for (idx_t id : xids) ids_.erase(id);
    }
    return 0;
  });
}

SearchHits VectorIndex::search(const float* queries, size_t nq, const SearchOptions& o) const {
  if (o.k < 1) invalid("k must be >= 1");
  check_finite(queries, nq * spec_.dim, spec_.dim, "query");
  // This FAISS (1.7.3) ignores SearchParametersHNSW::efSearch and reads the index's own field, so a
  // search with another breadth sets that field and must hold the index alone; searches at the
  // default breadth share it.
  const int32_t ef = std::max(o.ef_search > 0 ? o.ef_search : spec_.ef_search, o.k);
  const bool own_breadth = spec_.kind == IndexKind::kHnsw && ef != spec_.ef_search;
  std::shared_lock<std::shared_mutex> shared(mutex_, std::defer_lock);
  std::unique_lock<std::shared_mutex> exclusive(mutex_, std::defer_lock);
  if (own_breadth) exclusive.lock(); else shared.lock();
  SearchHits hits;
  hits.ids.assign(nq * o.k, -1);
  hits.scores.assign(nq * o.k, spec_.metric == Metric::kL2 ? INFINITY : -INFINITY);
  if (!index_ || index_->ntotal == 0 || nq == 0) return hits;
  std::vector<idx_t> labels(nq * o.k, -1);
  faiss_call([&] {
    if (maps_ids()) {
      PositionSelector sel;
      sel.dead = spec_.kind == IndexKind::kHnsw ? &dead_ : nullptr;
      std::vector<idx_t> allowed_positions;
      if (o.allow) {
        sel.allowed.assign(labels_.size(), 0);
        for (int64_t id : *o.allow) {
          auto it = positions_.find(id);
          if (it != positions_.end() && !sel.allowed[it->second]) {
            sel.allowed[it->second] = 1;
            allowed_positions.push_back(it->second);
          }
        }
        if (allowed_positions.empty()) return 0;  // nothing allowed
      }
      if (spec_.kind == IndexKind::kHnsw && o.allow && allowed_positions.size() <= kExactFilterLimit) {
        auto* storage = dynamic_cast<faiss::IndexFlat*>(static_cast<faiss::IndexHNSW*>(index_.get())->storage);
        exact_subset(storage->get_xb(), spec_.dim, spec_.metric, queries, nq, o.k, allowed_positions, hits.scores.data(), labels.data());
        for (size_t i = 0; i < labels.size(); ++i) hits.ids[i] = labels[i] >= 0 ? labels_[labels[i]] : -1;
        return 0;
      }
      const bool filtered = o.allow || (sel.dead && std::find(dead_.begin(), dead_.end(), 1) != dead_.end());
      if (spec_.kind == IndexKind::kHnsw) {
        auto* hnsw = static_cast<faiss::IndexHNSW*>(index_.get());
        faiss::SearchParametersHNSW p;
        p.efSearch = ef;
        p.sel = filtered ? &sel : nullptr;
        struct Breadth {  // restores the default even if FAISS throws
          faiss::IndexHNSW* index;
          int32_t base;
          ~Breadth() { index->hnsw.efSearch = base; }
        } restore{hnsw, spec_.ef_search};
        hnsw->hnsw.efSearch = ef;
        index_->search(static_cast<idx_t>(nq), queries, o.k, hits.scores.data(), labels.data(), &p);
      } else {
        faiss::SearchParameters p;
        p.sel = filtered ? &sel : nullptr;
        index_->search(static_cast<idx_t>(nq), queries, o.k, hits.scores.data(), labels.data(), filtered ? &p : nullptr);
      }
      for (size_t i = 0; i < labels.size(); ++i) hits.ids[i] = labels[i] >= 0 ? labels_[labels[i]] : -1;
    } else {
      faiss::SearchParametersIVF p;
      p.nprobe = o.nprobe > 0 ? o.nprobe : spec_.nprobe;
      std::unique_ptr<faiss::IDSelectorBatch> sel;
      if (o.allow) {
        sel = std::make_unique<faiss::IDSelectorBatch>(o.allow->size(), reinterpret_cast<const idx_t*>(o.allow->data()));
        p.sel = sel.get();
      }
      index_->search(static_cast<idx_t>(nq), queries, o.k, hits.scores.data(), labels.data(), &p);
      std::copy(labels.begin(), labels.end(), hits.ids.begin());
    }
    return 0;
  });
  for (size_t i = 0; i < hits.ids.size(); ++i) {
    if (hits.ids[i] < 0) hits.scores[i] = spec_.metric == Metric::kL2 ? INFINITY : -INFINITY;
  }
  return hits;
}

std::vector<int64_t> VectorIndex::ids() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  std::vector<int64_t> out;
  if (maps_ids()) {
    out.reserve(positions_.size());
    for (const auto& [id, position] : positions_) out.push_back(id);
  } else {
    out.assign(ids_.begin(), ids_.end());
  }
  return out;
}

void VectorIndex::save(const std::string& path) const {
  ByteWriter w;
  {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    w.bytes(kMagic, sizeof kMagic);
    w.put(kFormatVersion);
    w.put(spec_);
    w.put(static_cast<uint8_t>(index_ ? 1 : 0));
    w.put(static_cast<uint64_t>(labels_.size()));
    w.bytes(labels_.data(), labels_.size() * sizeof(int64_t));
    w.put(static_cast<uint64_t>(dead_.size()));
    w.bytes(dead_.data(), dead_.size());
    faiss::VectorIOWriter blob;
    if (index_) faiss_call([&] { faiss::write_index(index_.get(), &blob); return 0; });
    w.put(static_cast<uint64_t>(blob.data.size()));
    w.bytes(blob.data.data(), blob.data.size());
  }
  w.put(fnv1a(w.data.data(), w.data.size()));

  std::random_device rd;
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(ErrorCode::kIoError, "cannot create " + tmp + ": " + std::strerror(errno));
  try {
    write_all(fd, w.data.data(), w.data.size(), tmp);
    if (::fsync(fd) != 0) throw Error(ErrorCode::kIoError, "cannot fsync " + tmp + ": " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error(ErrorCode::kIoError, "cannot rename " + tmp + " to " + path + ": " + why);
  }
  fsync_dir(path);
}

std::unique_ptr<VectorIndex> VectorIndex::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  struct stat st {};
  if (!f || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw Error(ErrorCode::kIndexNotFound, "no index file at " + path);
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  if (!f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size()))) {
    throw Error(ErrorCode::kIoError, "cannot read " + path);
  }
  if (data.size() < sizeof kMagic + sizeof(uint64_t) || std::memcmp(data.data(), kMagic, sizeof kMagic) != 0) {
    throw Error(ErrorCode::kBadIndex, path + " is not a qrank index file");
  }
  uint64_t stored;
  std::memcpy(&stored, data.data() + data.size() - sizeof stored, sizeof stored);
  if (fnv1a(data.data(), data.size() - sizeof stored) != stored) throw Error(ErrorCode::kBadIndex, path + " is damaged (checksum mismatch)");

  ByteReader r(data.data(), data.size() - sizeof stored);
  r.skip(sizeof kMagic);
  if (r.get<uint32_t>() != kFormatVersion) throw Error(ErrorCode::kBadIndex, path + " was written by another qrank version");
  const IndexSpec spec = r.get<IndexSpec>();
  std::unique_ptr<VectorIndex> ix(new VectorIndex(spec));
  const bool has_index = r.get<uint8_t>() != 0;
  ix->labels_.resize(r.get<uint64_t>());
  r.bytes(ix->labels_.data(), ix->labels_.size() * sizeof(int64_t));
  ix->dead_.resize(r.get<uint64_t>());
  r.bytes(ix->dead_.data(), ix->dead_.size());
  const uint64_t blob_size = r.get<uint64_t>();
  if (blob_size > r.left()) throw Error(ErrorCode::kBadIndex, path + " is truncated");
  if (has_index) {
    faiss::VectorIOReader blob;
    blob.data.assign(r.here(), r.here() + blob_size);
    try {
      ix->index_.reset(faiss::read_index(&blob));
    } catch (const faiss::FaissException& e) {
      throw Error(ErrorCode::kBadIndex, path + ": " + e.what());
    }
  }
  for (size_t p = 0; p < ix->labels_.size(); ++p) {
    if (ix->dead_.empty() || !ix->dead_[p]) ix->positions_[ix->labels_[p]] = static_cast<int64_t>(p);
  }
  if (!ix->maps_ids() && ix->index_) {
    auto* ivf = dynamic_cast<faiss::IndexIVF*>(ix->index_.get());
    if (!ivf) throw Error(ErrorCode::kBadIndex, path + ": unexpected index type");
    for (const auto& [id, entry] : ivf->direct_map.hashtable) ix->ids_.insert(id);
  }
  return ix;
}

}  // namespace qrank
