// Exact vector search on the GPU, over rows resident in device memory: the device half of qrank's
// GPU recall (native/cuda/vector_cuda.cc is the VectorIndex backend on top; qrank_vector_check
// holds both kinds to a CPU reference on the GPU machine). No CUDA types in this header.
//
//   GpuFlat  rows in fp16 or fp32, an alive bit per row. A search uploads its queries, scores a
//            chunk of queries against every row with one cuBLASLt GEMM (Gemm::products: fp16 or fp32
//            in, fp32 accumulation and out), then selects each query's k best rows with a radix
//            k-selection kernel (one block per query: four 8-bit histogram passes find the k-th best
//            key, a fifth collects the rows above it and the first rows equal to it, in row order)
//            and a stable segmented sort (CUB). Exact for any k (k > rows: every alive row), ties by
//            the lower row. A filter is a bitmap of allowed rows, uploaded with the search.
//   GpuIvf   IVF-flat: centroids and each cell's list (fp32) on the device. A search scores the
//            queries against the centroids (one GEMM) and selects each query's nprobe cells with
//            the same kernel, groups the (query, cell) pairs by cell on the host, runs one GEMM per
//            probed cell over that cell's queries, selects the k best of every (query, cell) in one
//            launch, and merges each query's partial lists on the host (host/vector_batch.h).
//
// Scores: inner products (higher is closer) or squared L2 distances (lower), computed in fp32 from
// the stored rows and the queries rounded to the storage type. Missing results have row -1.
// Each object owns one stream; its methods must not run concurrently with each other (the
// backend's batcher and write lock see to that). Errors: qrank::Error (kOutOfMemory when device
// memory does not fit, the object stays usable; kEngineFailure otherwise).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qrank::cuda {

// Whether a CUDA device is there to run on, or why not ("" when it is).
std::string gpu_vectors_unavailable();

class GpuFlat {
 public:
  GpuFlat(int32_t dim, bool f16, bool l2);
  ~GpuFlat();
  GpuFlat(const GpuFlat&) = delete;
  GpuFlat& operator=(const GpuFlat&) = delete;

  size_t rows() const;            // rows written so far (alive or not)
  size_t device_bytes() const;
  // Writes rows [first, first + n) (first <= rows()) and marks them alive; the device grows as needed.
  void write(size_t first, const float* x, size_t n);
  void set_alive(const uint32_t* rows, size_t n, bool alive);
  // nq x k results; allow: nullptr or a bitmap of rows() bits (row r allowed when bit r % 64 of word r / 64 is set).
  void search(const float* queries, size_t nq, size_t k, const uint64_t* allow, float* scores, int64_t* rows_out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class GpuIvf {
 public:
  GpuIvf(int32_t dim, bool l2, const float* centroids, size_t nlist);
  ~GpuIvf();
  GpuIvf(const GpuIvf&) = delete;
  GpuIvf& operator=(const GpuIvf&) = delete;

  size_t nlist() const;
  size_t list_size(size_t cell) const;
  size_t device_bytes() const;
  void set_list(size_t cell, const float* x, size_t n);  // replaces the cell's vectors
  // nq x k results as (cell << 32 | position in the cell's list).
  void search(const float* queries, size_t nq, size_t nprobe, size_t k, float* scores, int64_t* entries);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qrank::cuda
