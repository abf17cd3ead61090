// IvfBackend: the IVF and IVF-PQ kinds over FAISS (the system's libfaiss), and the reader of qrank's
// first file format, whose flat and HNSW indexes were FAISS's too.
//
// FAISS keeps external ids inside the inverted lists (a hashtable direct map, so remove is by id);
// a set beside it answers "known?" without a scan. FAISS's IVF search takes nprobe and the filter
// per call (SearchParametersIVF), so searches share the index; add and remove change the lists and
// hold it alone.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <shared_mutex>
#include <unordered_set>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include "vector_backend.h"

namespace qrank {
namespace {

using idx_t = faiss::Index::idx_t;

faiss::MetricType faiss_metric(Metric m) { return m == Metric::kL2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT; }

// FAISS reports misuse with exceptions of its own; they become engine errors with FAISS's text.
template <typename Fn>
auto faiss_call(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorCode::kEngineFailure, std::string("FAISS: ") + e.what());
  }
}

std::unique_ptr<faiss::Index> read_faiss(const uint8_t* blob, size_t n, const std::string& path) {
  faiss::VectorIOReader reader;
  reader.data.assign(blob, blob + n);
  try {
    return std::unique_ptr<faiss::Index>(faiss::read_index(&reader));
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorCode::kBadIndex, path + ": " + e.what());
  }
}

// FAISS's inverted lists of an IVF-flat index as IvfCells: codes are the f32 vectors themselves.
class Cells final : public IvfCells {
 public:
  Cells(const faiss::IndexIVFFlat& index, const faiss::IndexFlat& quantizer) : index_(index), quantizer_(quantizer) {}
  size_t nlist() const override { return index_.nlist; }
  const float* centroids() const override { return quantizer_.get_xb(); }
  size_t size(size_t cell) const override { return index_.invlists->list_size(cell); }
  const int64_t* ids(size_t cell) const override { return index_.invlists->get_ids(cell); }
  const float* vectors(size_t cell) const override { return reinterpret_cast<const float*>(index_.invlists->get_codes(cell)); }

 private:
  const faiss::IndexIVFFlat& index_;
  const faiss::IndexFlat& quantizer_;
};

class IvfBackend final : public VectorBackend {
 public:
  explicit IvfBackend(const IndexSpec& spec) : spec_(spec) {}

  IvfBackend(const IndexSpec& spec, std::unique_ptr<faiss::Index> index, const std::string& path) : spec_(spec) {
    auto* ivf = dynamic_cast<faiss::IndexIVF*>(index.get());
    if (!ivf || ivf->d != spec.dim) throw Error(ErrorCode::kBadIndex, path + ": unexpected index type");
    index_.reset(static_cast<faiss::IndexIVF*>(index.release()));
    for (const auto& [id, entry] : index_->direct_map.hashtable) ids_.insert(id);
    count_ = ids_.size();
    trained_ = index_->is_trained;
  }

  IndexSpec spec() const override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return spec_;
  }
  size_t size() const override { return count_.load(); }
  bool trained() const override { return trained_.load(); }
  size_t memory_bytes() const override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    if (!index_) return 0;
    return index_->invlists->compute_ntotal() * (index_->code_size + sizeof(idx_t)) +
           static_cast<size_t>(index_->nlist) * spec_.dim * sizeof(float);
  }
  bool contains(int64_t id) const override { return ids_.count(id) > 0; }  // under VectorIndex's write lock

  void train(const float* vectors, size_t n) override {
    if (index_ && index_->ntotal > 0) invalid_input("the index already holds vectors; train it before adding");
    train_on(vectors, n);
  }

  void add(const int64_t* ids, const float* vectors, size_t n) override {
    if (!index_) train_on(vectors, n);
    std::unique_lock<std::shared_mutex> lock(mutex_);
    std::vector<idx_t> xids(ids, ids + n);
    faiss_call([&] { index_->add_with_ids(static_cast<idx_t>(n), vectors, xids.data()); return 0; });
    ids_.insert(ids, ids + n);
    count_ = ids_.size();
  }

  void remove(const int64_t* ids, size_t n) override {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    std::vector<idx_t> xids(ids, ids + n);
    std::sort(xids.begin(), xids.end());
    faiss::IDSelectorArray sel(xids.size(), xids.data());  // what a hashtable direct map accepts
    faiss_call([&] { return index_->remove_ids(sel); });
    for (idx_t id : xids) ids_.erase(id);
    count_ = ids_.size();
  }

  SearchHits search(const float* queries, size_t nq, const SearchOptions& o) const override {
    SearchHits hits;
    hits.ids.assign(nq * o.k, -1);
    const float missing = spec_.metric == Metric::kL2 ? INFINITY : -INFINITY;
    hits.scores.assign(nq * o.k, missing);
    std::shared_lock<std::shared_mutex> lock(mutex_);
    if (!index_ || index_->ntotal == 0 || nq == 0) return hits;
    faiss::SearchParametersIVF p;
    p.nprobe = o.nprobe > 0 ? o.nprobe : spec_.nprobe;
    std::unique_ptr<faiss::IDSelectorBatch> sel;
    if (o.allow) {
      if (o.allow->empty()) return hits;
      sel = std::make_unique<faiss::IDSelectorBatch>(o.allow->size(), reinterpret_cast<const idx_t*>(o.allow->data()));
      p.sel = sel.get();
    }
    std::vector<idx_t> labels(nq * o.k, -1);
    faiss_call([&] {
      index_->search(static_cast<idx_t>(nq), queries, o.k, hits.scores.data(), labels.data(), &p);
      return 0;
    });
    for (size_t i = 0; i < labels.size(); ++i) {
      hits.ids[i] = labels[i];
      if (labels[i] < 0) hits.scores[i] = missing;
    }
    return hits;
  }

  std::vector<int64_t> ids() const override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return std::vector<int64_t>(ids_.begin(), ids_.end());
  }

  void read_cells(const std::function<void(const IvfCells&)>& fn) const override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    if (!index_) return;
    const auto* flat = dynamic_cast<const faiss::IndexIVFFlat*>(index_.get());
    const auto* quantizer = dynamic_cast<const faiss::IndexFlat*>(index_->quantizer);
    if (!flat || !quantizer) throw Error(ErrorCode::kUnsupported, "only ivf (IVF-flat) indexes have a device mirror");
    fn(Cells(*flat, *quantizer));
  }

  void save(FileWriter& out) const override {
    faiss::VectorIOWriter blob;
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      if (index_) faiss_call([&] { faiss::write_index(index_.get(), &blob); return 0; });
    }
    out.put(static_cast<uint8_t>(index_ ? 1 : 0));
    out.put(static_cast<uint64_t>(blob.data.size()));
    out.bytes(blob.data.data(), blob.data.size());
  }

 private:
  void train_on(const float* vectors, size_t n) {
    int32_t nlist = spec_.nlist > 0 ? spec_.nlist : std::max(1, static_cast<int32_t>(4 * std::sqrt(static_cast<double>(n))));
    nlist = static_cast<int32_t>(std::min<int64_t>(nlist, static_cast<int64_t>(n)));
    const size_t needed = std::max<size_t>(nlist, spec_.kind == IndexKind::kIvfPq ? (size_t{1} << spec_.pq_bits) : 1);
    if (n < needed) {
      invalid_input("training needs at least " + std::to_string(needed) + " vectors for this index (got " + std::to_string(n) + ")");
    }
    std::unique_ptr<faiss::IndexIVF> ivf;
    faiss_call([&] {
      auto quantizer = new faiss::IndexFlat(spec_.dim, faiss_metric(spec_.metric));
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
      return 0;
    });
    std::unique_lock<std::shared_mutex> lock(mutex_);
    index_ = std::move(ivf);
    spec_.nlist = nlist;
    trained_ = true;
  }

  IndexSpec spec_;
  std::unique_ptr<faiss::IndexIVF> index_;  // built when it trains: the number of cells can depend on the data
  std::unordered_set<int64_t> ids_;
  std::atomic<size_t> count_{0};
  std::atomic<bool> trained_{false};
  mutable std::shared_mutex mutex_;
};

}  // namespace

std::unique_ptr<VectorBackend> make_ivf_backend(const IndexSpec& spec) { return std::make_unique<IvfBackend>(spec); }

std::unique_ptr<VectorBackend> ivf_from_faiss_blob(const IndexSpec& spec, const uint8_t* blob, size_t n, const std::string& path) {
  if (!blob) return std::make_unique<IvfBackend>(spec);
  return std::make_unique<IvfBackend>(spec, read_faiss(blob, n, path), path);
}

std::unique_ptr<VectorBackend> load_ivf_backend(const IndexSpec& spec, FileReader& in) {
  const bool has_index = in.get<uint8_t>() != 0;
  const uint64_t n = in.get<uint64_t>();
  if (n > in.left()) in.bad("the file is truncated");
  const uint8_t* blob = in.take(n);
  return ivf_from_faiss_blob(spec, has_index ? blob : nullptr, n, in.path());
}

LegacyVectors read_legacy_faiss(const uint8_t* blob, size_t n, const std::vector<int64_t>& labels,
                                const std::vector<uint8_t>& dead, const std::string& path) {
  std::unique_ptr<faiss::Index> index = read_faiss(blob, n, path);
  const faiss::IndexFlat* flat = dynamic_cast<const faiss::IndexFlat*>(index.get());
  if (auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(index.get())) flat = dynamic_cast<const faiss::IndexFlat*>(hnsw->storage);
  if (!flat || static_cast<size_t>(flat->ntotal) != labels.size()) throw Error(ErrorCode::kBadIndex, path + ": unexpected index type");
  LegacyVectors out;
  const float* xb = flat->get_xb();
  for (size_t p = 0; p < labels.size(); ++p) {
    if (p < dead.size() && dead[p]) continue;
    out.ids.push_back(labels[p]);
    out.vectors.insert(out.vectors.end(), xb + p * flat->d, xb + (p + 1) * flat->d);
  }
  return out;
}

}  // namespace qrank
