// VectorIndex: qrank's vector store over FAISS (the system's libfaiss). One small interface for
// every kind (exact flat, HNSW graph, IVF and IVF-PQ), FAISS-style: train / add / search / remove,
// filtered search through id selectors, atomic save and load. Searches run concurrently with each
// other; writes are exclusive. External ids are 64-bit and non-negative.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace faiss {
struct Index;
}

namespace qrank {

enum class Metric { kInnerProduct = 0, kL2 = 1 };
enum class IndexKind { kFlat = 0, kHnsw = 1, kIvf = 2, kIvfPq = 3 };

struct IndexSpec {
  int32_t dim = 0;
  Metric metric = Metric::kInnerProduct;
  IndexKind kind = IndexKind::kFlat;
  int32_t hnsw_m = 32;           // graph degree
  int32_t ef_construction = 200;
  int32_t ef_search = 64;        // default for searches
  int32_t nlist = 0;             // IVF cells; 0 = about 4 sqrt(n) of the training set
  int32_t nprobe = 8;            // default cells probed per search
  int32_t pq_m = 0;              // IVF-PQ sub-quantizers; 0 = dim / 4 (must divide dim)
  int32_t pq_bits = 8;
};

struct SearchOptions {
  int32_t k = 10;
  int32_t ef_search = 0;                  // 0: the index default
  int32_t nprobe = 0;                     // 0: the index default
  const std::vector<int64_t>* allow = nullptr;  // only these ids (the filter), when set
};

// nq x k rows; missing results have id -1. Scores are inner products (higher is closer) or squared
// L2 distances (lower is closer), as FAISS returns them.
struct SearchHits {
  std::vector<int64_t> ids;
  std::vector<float> scores;
};

class VectorIndex {
 public:
  static std::unique_ptr<VectorIndex> create(const IndexSpec& spec);
  static std::unique_ptr<VectorIndex> load(const std::string& path);
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  const IndexSpec& spec() const { return spec_; }
  size_t size() const;
  bool trained() const;

  // IVF kinds: learns the cells (and codebooks) from n vectors. Other kinds need no training.
  void train(const float* vectors, size_t n);
  // Adds n vectors; an untrained IVF index trains on them first. Nothing is added when any id is
  // negative or already present, or any vector is not finite.
  void add(const int64_t* ids, const float* vectors, size_t n);
  // Removes the ids; nothing is removed when any of them is unknown.
  void remove(const int64_t* ids, size_t n);
  SearchHits search(const float* queries, size_t nq, const SearchOptions& options) const;
  // Every id the index holds (order unspecified): what a store reconciles against after a crash.
  std::vector<int64_t> ids() const;
  // Writes a temporary file beside `path`, fsyncs it and renames it over `path`: a crash leaves
  // either the old file or the new one, never a torn one.
  void save(const std::string& path) const;

 private:
  explicit VectorIndex(const IndexSpec& spec);
  void train_locked(const float* vectors, size_t n);
  bool maps_ids() const { return spec_.kind == IndexKind::kFlat || spec_.kind == IndexKind::kHnsw; }
  bool contains(int64_t id) const;

  IndexSpec spec_;
  std::unique_ptr<faiss::Index> index_;
  // flat and HNSW: FAISS positions <-> external ids (this FAISS's IndexIDMap takes no search
  // parameters, so no filters); HNSW cannot delete, so removed positions become tombstones.
  std::vector<int64_t> labels_;
  std::unordered_map<int64_t, int64_t> positions_;
  std::vector<uint8_t> dead_;
  // IVF kinds keep external ids inside FAISS; this set answers "known?" without a scan.
  std::unordered_set<int64_t> ids_;
  mutable std::shared_mutex mutex_;
};

}  // namespace qrank
