// The host side of qrank's GPU vector search (native/cuda/vector_gpu.cu, native/cuda/vector_cuda.cc):
// pure C++, built in every build, checked by host_test.cc without a GPU.
//
//   SearchBatcher   concurrent search calls become batches for one GPU search at a time. A call that
//                   arrives while a batch runs waits; when the batch ends, the oldest waiting call and
//                   every later one with the same key (k, nprobe) form the next batch, up to
//                   max_queries queries and kMaxSearchResults results (a call larger than that runs
//                   alone, as does a call that must run alone: a filtered one). Calls are served in
//                   the order they came; no thread of its own (the calling threads take turns running
//                   batches). A batch that throws answers each of its calls with the error.
//   group_by_cell   (query, probed cell) pairs grouped by cell, in query order within a cell: each
//                   cell's queries, for one GEMM per probed cell.
//   merge_top_k     per query, the k best entries of its partial lists (one per probed cell), best
//                   first, ties by the smaller tag; what was not found stays tag -1.
//   ranking_key     a float as an unsigned key whose order is the float's (0: excluded or NaN), the
//                   order the device's k-selection works in (the kernels have their own copy).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <vector>

namespace qrank::cuda {

// One search call's part of a batch: its queries in, its rows of results out (nq x k).
struct BatchCall {
  const float* queries = nullptr;
  size_t nq = 0;
  size_t k = 0;
  int32_t nprobe = 0;
  const std::vector<int64_t>* allow = nullptr;  // a filter: the call runs alone
  std::vector<float>* scores = nullptr;
  std::vector<int64_t>* ids = nullptr;
  // the batcher's own
  std::exception_ptr error;
  bool done = false;
};

class SearchBatcher {
 public:
  // Runs one batch: fills every call's scores and ids (or throws). Called by one thread at a time.
  using Runner = std::function<void(const std::vector<BatchCall*>& batch)>;

  SearchBatcher(size_t max_queries, size_t max_results, Runner runner)
      : max_queries_(max_queries), max_results_(max_results), runner_(std::move(runner)) {}
  SearchBatcher(const SearchBatcher&) = delete;
  SearchBatcher& operator=(const SearchBatcher&) = delete;

  // Returns when `call` is answered; rethrows the error of its batch.
  void run(BatchCall& call);

  size_t batches() const;          // batches run so far
  size_t largest_batch() const;    // calls in the largest of them
  size_t waiting() const;          // calls not yet taken into a batch

 private:
  std::vector<BatchCall*> take_batch();  // under mutex_

  const size_t max_queries_, max_results_;
  const Runner runner_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<BatchCall*> waiting_;
  bool running_ = false;
  size_t batches_ = 0, largest_ = 0;
};

struct CellGroups {
  std::vector<int32_t> cells;    // the probed cells, ascending
  std::vector<size_t> offsets;   // cells.size() + 1: entries of cell i are [offsets[i], offsets[i + 1])
  std::vector<uint32_t> entries; // q * nprobe + p for each (query q, probe p), grouped by cell
};
// probes: nq x nprobe cells (-1: none); cells outside [0, nlist) are skipped.
CellGroups group_by_cell(const int32_t* probes, size_t nq, size_t nprobe, size_t nlist);

// keys, tags: nq x lists x per_list (tag -1: empty); out: nq x k, best (largest key) first.
void merge_top_k(const float* keys, const int64_t* tags, size_t nq, size_t lists, size_t per_list, size_t k, float* out_keys,
                 int64_t* out_tags);

inline uint32_t ranking_key(float v) {
  if (v != v) return 0;
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // 0 only for a NaN's bits
}
inline float key_value(uint32_t key) {
  const uint32_t u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

}  // namespace qrank::cuda
