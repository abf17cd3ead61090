// VectorIndex: qrank's vector store. One small interface for every kind, FAISS-style: train / add /
// search / remove, filtered search by id, atomic save and load.
//
// Kinds and where they live:
//   flat, hnsw   USearch (native/vector_store.cc): its HNSW graph (index_gt) and NumKong's SIMD
//                distance kernels, chosen at run time for the CPU; the vectors are stored once, by
//                slot, in the storage type asked for (f32, f16 or i8), and serve the graph, exact
//                scans and save alike.
//   ivf, ivfpq   FAISS (the system's libfaiss, native/vector_ivf.cc), f32 only.
//   device cuda  flat (f32, f16) and ivf searched on the GPU (native/cuda/vector_cuda.cc, the CUDA
//                build): a device copy beside the CPU index, which keeps the ids and writes the file.
//
// Contract:
// - Ids are 64-bit and non-negative; an id is held at most once. add() adds nothing when any id is
//   negative, repeated or already held, or any value is not finite; remove() removes nothing when
//   any id is unknown.
// - Searches run concurrently with each other and with add(): a search sees any subset of the
//   vectors of an add() in flight. Per-search parameters (efSearch, nprobe, the filter) live in the
//   call, never in shared state. add(), remove(), train() and save() run one at a time. size(),
//   trained() and spec() never wait for a write in flight; ids() waits at most for the short step
//   in which a write publishes its ids.
// - A filtered search returns the k best allowed vectors (fewer only when fewer are allowed), exactly
//   for flat and, for hnsw, exactly below a number of allowed vectors and by a filtered graph walk
//   above it. An hnsw search whose k or efSearch covers every vector is an exact scan: it returns
//   every allowed vector (a graph walk may miss nodes the graph cannot reach).
// - Scores: inner products (higher is closer) or squared L2 distances (lower is closer), computed
//   on the stored vectors (so approximate for f16 and i8 storage).
// - save() writes a temporary file beside the path, fsyncs it and renames it over the path: a crash
//   leaves the old file or the new one. load() refuses damaged or foreign files (kBadIndex) and
//   reads the format of earlier qrank versions (FAISS flat/HNSW files: the vectors are re-indexed).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace qrank {

enum class Metric : int32_t { kInnerProduct = 0, kL2 = 1 };
enum class IndexKind : int32_t { kFlat = 0, kHnsw = 1, kIvf = 2, kIvfPq = 3 };
// How flat and HNSW indexes hold their vectors: f16 halves the memory of f32, i8 quarters it (one
// symmetric scale for the whole index, learned from the first vectors added or trained on).
enum class Storage : int32_t { kF32 = 0, kF16 = 1, kI8 = 2 };
enum class IndexDevice : int32_t { kCpu = 0, kCuda = 1 };

// Written into index files as it is: fields are only ever appended, and the file's format version
// changes with them.
struct IndexSpec {
  int32_t dim = 0;
  Metric metric = Metric::kInnerProduct;
  IndexKind kind = IndexKind::kFlat;
  int32_t hnsw_m = 16;           // graph degree (2 M on the base level)
  int32_t ef_construction = 128;
  int32_t ef_search = 64;        // default for searches
  int32_t nlist = 0;             // IVF cells; 0 = about 4 sqrt(n) of the training set
  int32_t nprobe = 8;            // default cells probed per search
  int32_t pq_m = 0;              // IVF-PQ sub-quantizers; 0 = dim / 4 (must divide dim)
  int32_t pq_bits = 8;
  Storage storage = Storage::kF32;
  float i8_range = 0.0f;         // i8: the magnitude stored as 127 (0 until learned)
  IndexDevice device = IndexDevice::kCpu;
};

struct SearchOptions {
  int32_t k = 10;
  int32_t ef_search = 0;                        // 0: the index default
  int32_t nprobe = 0;                           // 0: the index default
  const std::vector<int64_t>* allow = nullptr;  // only these ids (the filter), when set
  // hnsw with a filter: at most this many allowed vectors are scanned exactly instead of walking the
  // graph; -1: the index's own rule (bench/RESULTS.md says where it comes from)
  int64_t exact_filter_limit = -1;
};

// nq x k rows; missing results have id -1.
struct SearchHits {
  std::vector<int64_t> ids;
  std::vector<float> scores;
};

// At most this many results (nq x k) per search call: what one call may allocate for its answer.
constexpr size_t kMaxSearchResults = size_t{1} << 24;

class VectorBackend;

class VectorIndex {
 public:
  static std::unique_ptr<VectorIndex> create(const IndexSpec& spec);
  // The file is the same whatever the device it was saved from; `device` is where the loaded index runs.
  static std::unique_ptr<VectorIndex> load(const std::string& path, IndexDevice device = IndexDevice::kCpu);
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  IndexSpec spec() const;  // a copy: training fills in nlist and i8_range
  int32_t dim() const { return dim_; }
  size_t size() const;
  bool trained() const;
  // Bytes the index holds for its vectors and graph (what memory per vector is measured from).
  size_t memory_bytes() const;

  // IVF kinds: learns the cells (and codebooks); i8 storage: learns its range. Others: nothing.
  void train(const float* vectors, size_t n);
  void add(const int64_t* ids, const float* vectors, size_t n);
  void remove(const int64_t* ids, size_t n);
  SearchHits search(const float* queries, size_t nq, const SearchOptions& options) const;
  // Every id the index holds (order unspecified): what a store reconciles against after a crash.
  std::vector<int64_t> ids() const;
  void save(const std::string& path) const;

 private:
  explicit VectorIndex(std::unique_ptr<VectorBackend> backend);

  const int32_t dim_;
  std::unique_ptr<VectorBackend> backend_;
  mutable std::mutex writes_;  // add, remove, train and save, one at a time
};

}  // namespace qrank
