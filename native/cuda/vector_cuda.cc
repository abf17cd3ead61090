// CudaBackend: VectorIndex's `device: 'cuda'` (native/vector_backend.h), flat (f32, f16) and ivf.
//
// A device mirror of a CPU backend of the same spec (a GraphStore or an IvfBackend), which keeps the
// ids and the vectors on the host, answers size / contains / ids, and writes the file: a cuda index
// saves exactly what the CPU index of its spec saves, and any file loads on either device. What the
// GPU holds (native/cuda/vector_gpu.h): flat, every row in the index's storage (f16 or f32) with an
// alive bit; ivf, the centroids and every cell's list (f32), refreshed after each write for the
// cells whose size changed.
//
// Writes go to the host first (it checks them), then to the mirror under the mirror's lock held
// alone; a mirror that fails (out of device memory) undoes the host's part, so the two never
// differ. Searches run on the GPU one batch at a time: concurrent calls wait in a SearchBatcher
// (native/cuda/host/vector_batch.h) and run together as one GPU search (the mirror's lock shared);
// a filtered flat search runs alone with its allow-list as a bitmap of rows. Filtered ivf searches
// run on the CPU backend: FAISS's IVF search takes the filter per call, and a device filter for
// inverted lists would need a bitmap per list. Results are ids, so a row reused by a later add is
// answered under the id it held when the batch ran.
#include <algorithm>
#include <shared_mutex>
#include <unordered_map>

#include "cuda/host/vector_batch.h"
#include "cuda/vector_gpu.h"
#include "vector_backend.h"

namespace qrank {
namespace {

using cuda::BatchCall;

constexpr size_t kMaxBatchQueries = 4096;

class CudaBackend : public VectorBackend {
 public:
  explicit CudaBackend(std::unique_ptr<VectorBackend> host)
      : host_(std::move(host)),
        batcher_(kMaxBatchQueries, kMaxSearchResults, [this](const std::vector<BatchCall*>& batch) { run_batch(batch); }) {}

  IndexSpec spec() const override {
    IndexSpec s = host_->spec();
    s.device = IndexDevice::kCuda;
    return s;
  }
  size_t size() const override { return host_->size(); }
  bool trained() const override { return host_->trained(); }
  bool contains(int64_t id) const override { return host_->contains(id); }
  std::vector<int64_t> ids() const override { return host_->ids(); }
  void save(FileWriter& out) const override { host_->save(out); }
  size_t memory_bytes() const override {
    std::shared_lock<std::shared_mutex> lock(mirror_mutex_);
    return host_->memory_bytes() + mirror_bytes();
  }

  void train(const float* vectors, size_t n) override {
    host_->train(vectors, n);
    std::unique_lock<std::shared_mutex> lock(mirror_mutex_);
    refresh();
  }

  void add(const int64_t* ids, const float* vectors, size_t n) override {
    host_->add(ids, vectors, n);
    std::unique_lock<std::shared_mutex> lock(mirror_mutex_);
    try {
      mirror_add(ids, vectors, n);
    } catch (...) {
      host_->remove(ids, n);
      undo_add(ids, n);
      throw;
    }
  }

  void remove(const int64_t* ids, size_t n) override {
    host_->remove(ids, n);
    std::unique_lock<std::shared_mutex> lock(mirror_mutex_);
    mirror_remove(ids, n);
  }

  SearchHits search(const float* queries, size_t nq, const SearchOptions& o) const override {
    if (on_host(o)) return host_->search(queries, nq, o);
    SearchHits hits;
    BatchCall call;
    call.queries = queries;
    call.nq = nq;
    call.k = static_cast<size_t>(o.k);
    call.nprobe = o.nprobe > 0 ? o.nprobe : host_->spec().nprobe;
    call.allow = o.allow;
    call.scores = &hits.scores;
    call.ids = &hits.ids;
    batcher_.run(call);
    return hits;
  }

 protected:
  // The mirror's own parts, under mirror_mutex_ (alone for the writes, shared for searches).
  virtual void refresh() = 0;                                           // after train, load
  virtual void mirror_add(const int64_t* ids, const float* vectors, size_t n) = 0;
  virtual void undo_add(const int64_t* ids, size_t n) = 0;              // the host removed them again
  virtual void mirror_remove(const int64_t* ids, size_t n) = 0;
  virtual bool on_host(const SearchOptions& o) const = 0;               // searched by the CPU backend
  // One GPU search of nq queries; ids and scores nq x k.
  virtual void gpu_search(const float* queries, size_t nq, size_t k, int32_t nprobe, const std::vector<int64_t>* allow,
                          std::vector<float>& scores, std::vector<int64_t>& ids) const = 0;
  virtual size_t mirror_bytes() const = 0;

  std::unique_ptr<VectorBackend> host_;
  mutable std::shared_mutex mirror_mutex_;

 private:
  void run_batch(const std::vector<BatchCall*>& batch) const {
    const BatchCall& first = *batch.front();
    const int32_t dim = host_->spec().dim;
    size_t nq = 0;
    for (const BatchCall* c : batch) nq += c->nq;
    std::vector<float> joined;
    const float* queries = first.queries;
    if (batch.size() > 1) {
      joined.resize(nq * dim);
      size_t at = 0;
      for (const BatchCall* c : batch) {
        std::copy(c->queries, c->queries + c->nq * dim, joined.begin() + at * dim);
        at += c->nq;
      }
      queries = joined.data();
    }
    std::vector<float> scores;
    std::vector<int64_t> ids;
    {
      std::shared_lock<std::shared_mutex> lock(mirror_mutex_);
      gpu_search(queries, nq, first.k, first.nprobe, first.allow, scores, ids);
    }
    size_t at = 0;
    for (BatchCall* c : batch) {
      c->scores->assign(scores.begin() + at * first.k, scores.begin() + (at + c->nq) * first.k);
      c->ids->assign(ids.begin() + at * first.k, ids.begin() + (at + c->nq) * first.k);
      at += c->nq;
    }
  }

  mutable cuda::SearchBatcher batcher_;
};

// flat: rows on the device, reused after removals.
class CudaFlat final : public CudaBackend {
 public:
  CudaFlat(const IndexSpec& spec, std::unique_ptr<VectorBackend> host)
      : CudaBackend(std::move(host)), gpu_(spec.dim, spec.storage == Storage::kF16, spec.metric == Metric::kL2) {
    std::unique_lock<std::shared_mutex> lock(mirror_mutex_);
    refresh();
  }

 protected:
  void refresh() override {
    if (!row_ids_.empty()) return;  // the mirror is filled once, from the host; writes keep it after
    host_->read_vectors([&](const int64_t* ids, const float* x, size_t n) { mirror_add(ids, x, n); });
  }

  void mirror_add(const int64_t* ids, const float* vectors, size_t n) override {
    std::vector<uint32_t> rows(n);
    const size_t reuse = std::min(n, free_.size());
    std::copy(free_.end() - reuse, free_.end(), rows.begin());
    for (size_t i = reuse; i < n; ++i) rows[i] = static_cast<uint32_t>(gpu_.rows() + (i - reuse));
    const size_t old_rows = gpu_.rows();
    try {
      // reused rows one by one (they are scattered), new rows in one write
      for (size_t i = 0; i < reuse; ++i) gpu_.write(rows[i], vectors + i * dim(), 1);
      gpu_.write(old_rows, vectors + reuse * dim(), n - reuse);
    } catch (...) {
      // none of them may be found: the rows written are dead and free (the reused ones still are)
      for (size_t r = old_rows; r < gpu_.rows(); ++r) free_.push_back(static_cast<uint32_t>(r));
      row_ids_.resize(gpu_.rows(), -1);
      try {
        gpu_.set_alive(rows.data(), reuse, false);
        gpu_.set_alive(free_.data() + free_.size() - (gpu_.rows() - old_rows), gpu_.rows() - old_rows, false);
      } catch (...) {  // the device itself failed: the error below says so
      }
      throw;
    }
    free_.resize(free_.size() - reuse);
    row_ids_.resize(gpu_.rows(), -1);
    for (size_t i = 0; i < n; ++i) {
      row_ids_[rows[i]] = ids[i];
      row_of_[ids[i]] = rows[i];
    }
  }

  void undo_add(const int64_t* ids, size_t n) override {
    std::vector<int64_t> mirrored;
    for (size_t i = 0; i < n; ++i) {
      if (row_of_.count(ids[i])) mirrored.push_back(ids[i]);
    }
    mirror_remove(mirrored.data(), mirrored.size());
  }

  void mirror_remove(const int64_t* ids, size_t n) override {
    std::vector<uint32_t> rows;
    for (size_t i = 0; i < n; ++i) {
      auto it = row_of_.find(ids[i]);
      if (it == row_of_.end()) continue;
      rows.push_back(it->second);
      row_ids_[it->second] = -1;
      row_of_.erase(it);
    }
    gpu_.set_alive(rows.data(), rows.size(), false);
    free_.insert(free_.end(), rows.begin(), rows.end());
  }

  bool on_host(const SearchOptions&) const override { return false; }

  void gpu_search(const float* queries, size_t nq, size_t k, int32_t, const std::vector<int64_t>* allow, std::vector<float>& scores,
                  std::vector<int64_t>& ids) const override {
    std::vector<uint64_t> bits;
    if (allow) {
      bits.assign((gpu_.rows() + 63) / 64, 0);
      for (int64_t id : *allow) {
        auto it = row_of_.find(id);
        if (it != row_of_.end()) bits[it->second / 64] |= uint64_t{1} << (it->second % 64);
      }
    }
    scores.resize(nq * k);
    ids.resize(nq * k);
    gpu_.search(queries, nq, k, allow ? bits.data() : nullptr, scores.data(), ids.data());
    for (int64_t& r : ids) r = r >= 0 ? row_ids_[static_cast<size_t>(r)] : -1;
  }

  size_t mirror_bytes() const override { return gpu_.device_bytes(); }

 private:
  size_t dim() const { return static_cast<size_t>(host_->spec().dim); }

  mutable cuda::GpuFlat gpu_;
  std::vector<int64_t> row_ids_;  // -1: a free row
  std::unordered_map<int64_t, uint32_t> row_of_;
  std::vector<uint32_t> free_;
};

// ivf: the cells on the device, from the host's FAISS lists; their ids kept here (a search maps
// (cell, position) to an id with the lists the GPU searched, whatever the host has since).
class CudaIvf final : public CudaBackend {
 public:
  CudaIvf(std::unique_ptr<VectorBackend> host) : CudaBackend(std::move(host)) {
    std::unique_lock<std::shared_mutex> lock(mirror_mutex_);
    refresh();
  }

 protected:
  void refresh() override {
    const IndexSpec spec = host_->spec();
    host_->read_cells([&](const IvfCells& cells) {
      if (!gpu_) {
        gpu_ = std::make_unique<cuda::GpuIvf>(spec.dim, spec.metric == Metric::kL2, cells.centroids(), cells.nlist());
        cell_ids_.assign(cells.nlist(), {});
      }
      for (size_t c = 0; c < cells.nlist(); ++c) {
        if (cells.size(c) == cell_ids_[c].size()) continue;
        gpu_->set_list(c, cells.vectors(c), cells.size(c));
        cell_ids_[c].assign(cells.ids(c), cells.ids(c) + cells.size(c));
      }
    });
  }
  void mirror_add(const int64_t*, const float*, size_t) override { refresh(); }
  void undo_add(const int64_t*, size_t) override { refresh(); }
  void mirror_remove(const int64_t*, size_t) override { refresh(); }

  bool on_host(const SearchOptions& o) const override {
    std::shared_lock<std::shared_mutex> lock(mirror_mutex_);
    return o.allow != nullptr || !gpu_;  // filters (see the top), and an index not trained yet
  }

  void gpu_search(const float* queries, size_t nq, size_t k, int32_t nprobe, const std::vector<int64_t>*, std::vector<float>& scores,
                  std::vector<int64_t>& ids) const override {
    scores.resize(nq * k);
    ids.resize(nq * k);
    gpu_->search(queries, nq, static_cast<size_t>(nprobe), k, scores.data(), ids.data());
    for (int64_t& e : ids) {
      if (e >= 0) e = cell_ids_[static_cast<size_t>(e >> 32)][static_cast<size_t>(e & 0xffffffff)];
    }
  }

  size_t mirror_bytes() const override { return gpu_ ? gpu_->device_bytes() : 0; }

 private:
  std::unique_ptr<cuda::GpuIvf> gpu_;  // made when the host index is trained
  std::vector<std::vector<int64_t>> cell_ids_;
};

}  // namespace

std::unique_ptr<VectorBackend> make_cuda_vector_backend(const IndexSpec& spec, std::unique_ptr<VectorBackend> host) {
  const bool flat = spec.kind == IndexKind::kFlat && spec.storage != Storage::kI8;
  if (!flat && spec.kind != IndexKind::kIvf) {
    throw Error(ErrorCode::kUnsupported, "device 'cuda' serves kind 'flat' (storage 'f32' or 'f16') and kind 'ivf'");
  }
  const std::string why = cuda::gpu_vectors_unavailable();
  if (!why.empty()) throw Error(ErrorCode::kUnsupported, "device 'cuda': " + why);
  if (flat) return std::make_unique<CudaFlat>(spec, std::move(host));
  return std::make_unique<CudaIvf>(std::move(host));
}

}  // namespace qrank
