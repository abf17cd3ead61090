// GpuFlat and GpuIvf (native/cuda/vector_gpu.h): resident rows, cuBLASLt products, radix k-selection.
#include "cuda/vector_gpu.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cub/cub.cuh>

#include "cuda/cuda_util.h"
#include "cuda/gemm.h"
#include "cuda/host/vector_batch.h"

namespace qrank::cuda {
namespace {

constexpr int kSelectThreads = 256;
constexpr size_t kScoreBytes = size_t{1} << 30;  // one chunk's query-by-row scores at most
constexpr size_t kAlign = DeviceBuffer::kAlignment;
constexpr uint64_t kNoNorms = ~uint64_t{0};

size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// One row of a k-selection: n scores at `scores` (elements into the score buffer), their rows'
// squared norms at `norms` (L2; kNoNorms for inner products), the k best written at `out`.
struct SelectRow {
  uint64_t scores;
  uint64_t norms;
  uint64_t out;
  uint32_t n;
  uint32_t k;
};

__device__ inline uint32_t device_key(float v) {
  if (v != v) return 0;
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The key of element i of a row: 0 when the row is dead or filtered out. L2 ranks by 2 q.x - |x|^2
// (|q|^2 is the same for the whole row and is added back on the host).
struct RowKeys {
  const float* scores;
  const float* norms;
  const uint64_t* alive;
  const uint64_t* allow;
  __device__ uint32_t operator()(uint32_t i) const {
    if (alive && !(alive[i / 64] >> (i % 64) & 1)) return 0;
    if (allow && !(allow[i / 64] >> (i % 64) & 1)) return 0;
    return device_key(norms ? 2.0f * scores[i] - norms[i] : scores[i]);
  }
};

// One block per row: the row's k best (key, index) into keys/index at row.out, in index order
// (the sort after puts them best first), then key 0 / index UINT32_MAX up to k.
__global__ void select_kernel(const float* base, const float* norm_base, const SelectRow* rows, const uint64_t* alive,
                              const uint64_t* allow, uint32_t* keys_out, uint32_t* index_out) {
  using Reduce = cub::BlockReduce<uint32_t, kSelectThreads>;
  using Scan = cub::BlockScan<uint32_t, kSelectThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } temp;
  __shared__ uint32_t hist[256];
  __shared__ uint32_t s_valid, s_prefix, s_remaining, s_gt_base, s_eq_base;

  const SelectRow row = rows[blockIdx.x];
  const RowKeys key{base + row.scores, row.norms == kNoNorms ? nullptr : norm_base + row.norms, alive, allow};
  const uint32_t n = row.n, tid = threadIdx.x;
  uint32_t* keys = keys_out + row.out;
  uint32_t* index = index_out + row.out;

  uint32_t mine = 0;
  for (uint32_t i = tid; i < n; i += kSelectThreads) mine += key(i) != 0;
  const uint32_t valid = Reduce(temp.reduce).Sum(mine);
  if (tid == 0) s_valid = valid;
  __syncthreads();
  const uint32_t want = min(row.k, s_valid);
  const bool take_all = want == s_valid;  // every valid element, no threshold

  if (!take_all) {
    if (tid == 0) {
      s_prefix = 0;
      s_remaining = want;
    }
    uint32_t mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (uint32_t b = tid; b < 256; b += kSelectThreads) hist[b] = 0;
      __syncthreads();
      const uint32_t prefix = s_prefix;
      for (uint32_t i = tid; i < n; i += kSelectThreads) {
        const uint32_t k = key(i);
        if (k != 0 && (k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (tid == 0) {
        uint32_t above = 0, b = 255;
        while (above + hist[b] < s_remaining) above += hist[b--];
        s_remaining -= above;
        s_prefix = prefix | (b << shift);
      }
      mask |= 255u << shift;
      __syncthreads();
    }
  }
  // take_all: every key > 0; else the keys above the threshold, then the first s_remaining equal to it
  const uint32_t threshold = take_all ? 0 : s_prefix;
  const uint32_t ties = take_all ? 0 : s_remaining;
  const uint32_t greater = want - ties;
  if (tid == 0) s_gt_base = s_eq_base = 0;
  __syncthreads();
  for (uint32_t first = 0; first < n; first += kSelectThreads) {
    const uint32_t i = first + tid;
    const uint32_t k = i < n ? key(i) : 0;
    const uint32_t gt = k != 0 && k > threshold, eq = !take_all && k != 0 && k == threshold;
    uint32_t gt_at, eq_at, gt_total, eq_total;
    Scan(temp.scan).ExclusiveSum(gt, gt_at, gt_total);
    __syncthreads();
    Scan(temp.scan).ExclusiveSum(eq, eq_at, eq_total);
    if (gt) {
      keys[s_gt_base + gt_at] = k;
      index[s_gt_base + gt_at] = i;
    }
    if (eq && s_eq_base + eq_at < ties) {
      keys[greater + s_eq_base + eq_at] = k;
      index[greater + s_eq_base + eq_at] = i;
    }
    __syncthreads();
    if (tid == 0) {
      s_gt_base += gt_total;
      s_eq_base += eq_total;
    }
    __syncthreads();
  }
  for (uint32_t i = want + tid; i < row.k; i += kSelectThreads) {
    keys[i] = 0;
    index[i] = UINT32_MAX;
  }
}

void to_storage(const float* x, size_t count, bool f16, void* out) {
  if (!f16) {
    std::memcpy(out, x, count * sizeof(float));
    return;
  }
  auto* h = static_cast<__half*>(out);
  for (size_t i = 0; i < count; ++i) h[i] = __float2half_rn(x[i]);
}

// Squared norms of n rows as stored (after the rounding to fp16).
void stored_norms(const float* x, size_t n, size_t dim, bool f16, float* out) {
  for (size_t r = 0; r < n; ++r) {
    float s = 0;
    for (size_t j = 0; j < dim; ++j) {
      const float v = f16 ? __half2float(__float2half_rn(x[r * dim + j])) : x[r * dim + j];
      s += v * v;
    }
    out[r] = s;
  }
}

// A device buffer that only grows (its contents are not kept).
class Scratch {
 public:
  void* need(size_t bytes, cudaStream_t stream) {
    if (buffer_.bytes() < bytes) {
      buffer_.reset();
      buffer_ = DeviceBuffer(std::max(bytes, buffer_.bytes() + buffer_.bytes() / 2), stream);
    }
    return buffer_.at();
  }
  size_t bytes() const { return buffer_.bytes(); }

 private:
  DeviceBuffer buffer_;
};

// A device buffer that grows keeping its contents.
class Grower {
 public:
  void reserve(size_t bytes, cudaStream_t stream) {
    if (bytes <= buffer_.bytes()) return;
    DeviceBuffer next(std::max(bytes, buffer_.bytes() + buffer_.bytes() / 2), stream);
    if (buffer_.bytes() > 0) check_cuda(cudaMemcpyAsync(next.at(), buffer_.at(), buffer_.bytes(), cudaMemcpyDeviceToDevice, stream), "grow");
    buffer_ = std::move(next);
  }
  template <typename T = void>
  T* at(size_t offset = 0) const { return buffer_.at<T>(offset); }
  size_t bytes() const { return buffer_.bytes(); }

 private:
  DeviceBuffer buffer_;
};

// What every search needs: a stream, the GEMM, the k-selection and the sort, and their buffers.
class Selector {
 public:
  Selector() : gemm_(stream_.get()) {}
  cudaStream_t stream() const { return stream_.get(); }
  Gemm& gemm() { return gemm_; }
  void* scratch(int which, size_t bytes) { return scratch_[which].need(bytes, stream_.get()); }

  // rows' k best as (key, index), best first: rows' out offsets partition [0, total) into segments.
  void select(const float* base, const float* norm_base, const std::vector<SelectRow>& rows, const uint64_t* alive,
              const uint64_t* allow, size_t total, std::vector<uint32_t>& keys, std::vector<uint32_t>& index) {
    keys.assign(total, 0);
    index.assign(total, UINT32_MAX);
    if (rows.empty() || total == 0) return;
    const cudaStream_t s = stream_.get();
    std::vector<int64_t> begins(rows.size()), ends(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) {
      begins[r] = static_cast<int64_t>(rows[r].out);
      ends[r] = static_cast<int64_t>(rows[r].out + rows[r].k);
    }
    const size_t row_bytes = align_up(rows.size() * sizeof(SelectRow)), offs_bytes = align_up(rows.size() * sizeof(int64_t));
    const size_t item_bytes = align_up(total * sizeof(uint32_t));
    size_t sort_bytes = 0;
    check_cuda(cub::DeviceSegmentedSort::StableSortPairsDescending(nullptr, sort_bytes, static_cast<const uint32_t*>(nullptr),
                                                                   static_cast<uint32_t*>(nullptr), static_cast<const uint32_t*>(nullptr),
                                                                   static_cast<uint32_t*>(nullptr), static_cast<int64_t>(total),
                                                                   static_cast<int64_t>(rows.size()), static_cast<const int64_t*>(nullptr),
                                                                   static_cast<const int64_t*>(nullptr), s),
               "segmented sort (size)");
    auto* p = static_cast<uint8_t*>(scratch(2, row_bytes + 2 * offs_bytes + 4 * item_bytes + align_up(sort_bytes)));
    auto* d_rows = reinterpret_cast<SelectRow*>(p);
    auto* d_begins = reinterpret_cast<int64_t*>(p + row_bytes);
    auto* d_ends = reinterpret_cast<int64_t*>(p + row_bytes + offs_bytes);
    uint8_t* items = p + row_bytes + 2 * offs_bytes;
    auto* k_in = reinterpret_cast<uint32_t*>(items);
    auto* i_in = reinterpret_cast<uint32_t*>(items + item_bytes);
    auto* k_out = reinterpret_cast<uint32_t*>(items + 2 * item_bytes);
    auto* i_out = reinterpret_cast<uint32_t*>(items + 3 * item_bytes);
    void* sort_temp = items + 4 * item_bytes;
    staging_.reserve(row_bytes + 2 * offs_bytes);
    std::memcpy(staging_.data(), rows.data(), rows.size() * sizeof(SelectRow));
    std::memcpy(staging_.data() + row_bytes, begins.data(), rows.size() * sizeof(int64_t));
    std::memcpy(staging_.data() + row_bytes + offs_bytes, ends.data(), rows.size() * sizeof(int64_t));
    check_cuda(cudaMemcpyAsync(p, staging_.data(), row_bytes + 2 * offs_bytes, cudaMemcpyHostToDevice, s), "upload rows");
    // gaps between segments (a list shorter than k) stay key 0 through the sort
    check_cuda(cudaMemsetAsync(k_in, 0, item_bytes, s), "clear keys");
    check_cuda(cudaMemsetAsync(k_out, 0, item_bytes, s), "clear keys");
    select_kernel<<<static_cast<unsigned>(rows.size()), kSelectThreads, 0, s>>>(base, norm_base, d_rows, alive, allow, k_in, i_in);
    check_cuda(cudaGetLastError(), "select kernel");
    check_cuda(cub::DeviceSegmentedSort::StableSortPairsDescending(sort_temp, sort_bytes, k_in, k_out, i_in, i_out, static_cast<int64_t>(total),
                                                                   static_cast<int64_t>(rows.size()), static_cast<const int64_t*>(d_begins),
                                                                   static_cast<const int64_t*>(d_ends), s),
               "segmented sort");
    check_cuda(cudaMemcpyAsync(keys.data(), k_out, total * sizeof(uint32_t), cudaMemcpyDeviceToHost, s), "download keys");
    check_cuda(cudaMemcpyAsync(index.data(), i_out, total * sizeof(uint32_t), cudaMemcpyDeviceToHost, s), "download rows");
    stream_.synchronize();
  }

  size_t device_bytes() const {
    size_t b = gemm_.workspace_bytes();
    for (const Scratch& s : scratch_) b += s.bytes();
    return b;
  }

 private:
  Stream stream_;
  Gemm gemm_;
  Scratch scratch_[4];  // 0: queries, 1: scores, 2: selection, 3: the filter
  std::vector<uint8_t> staging_;
};

// Queries rounded to the storage type, on the device; their squared norms as stored (L2).
struct Queries {
  const void* device;
  std::vector<float> norms;
};

Queries upload_queries(Selector& sel, const float* q, size_t nq, size_t dim, bool f16, bool l2) {
  const size_t elem = f16 ? 2 : 4;
  std::vector<uint8_t> host(nq * dim * elem);
  to_storage(q, nq * dim, f16, host.data());
  void* d = sel.scratch(0, host.size());
  check_cuda(cudaMemcpyAsync(d, host.data(), host.size(), cudaMemcpyHostToDevice, sel.stream()), "upload queries");
  Queries out{d, {}};
  if (l2) {
    out.norms.resize(nq);
    stored_norms(q, nq, dim, f16, out.norms.data());
  }
  check_cuda(cudaStreamSynchronize(sel.stream()), "upload queries");  // `host` is freed on return
  return out;
}

// A selected key as the caller's score: the inner product, or |q|^2 - (2 q.x - |x|^2) for L2.
float score_of(uint32_t key, bool l2, float query_norm) {
  const float v = key_value(key);
  return l2 ? std::max(0.0f, query_norm - v) : v;
}

}  // namespace

std::string gpu_vectors_unavailable() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("no CUDA device (") + cudaGetErrorString(e) + ")";
  }
  return devices > 0 ? "" : "no CUDA device";
}

// --- GpuFlat ---------------------------------------------------------------------------------------

struct GpuFlat::Impl {
  int32_t dim;
  bool f16, l2;
  Selector sel;
  Grower rows_buf, norms_buf, alive_buf;
  std::vector<uint64_t> alive;  // the host's copy of the alive bits, uploaded when they change
  size_t rows = 0;

  size_t elem() const { return f16 ? 2 : 4; }
  void upload_alive() {
    alive_buf.reserve(alive.size() * sizeof(uint64_t), sel.stream());
    check_cuda(cudaMemcpyAsync(alive_buf.at(), alive.data(), alive.size() * sizeof(uint64_t), cudaMemcpyHostToDevice, sel.stream()), "alive");
    check_cuda(cudaStreamSynchronize(sel.stream()), "alive");
  }
};

GpuFlat::GpuFlat(int32_t dim, bool f16, bool l2) : impl_(new Impl{dim, f16, l2, {}, {}, {}, {}, {}, 0}) {}
GpuFlat::~GpuFlat() = default;
size_t GpuFlat::rows() const { return impl_->rows; }
size_t GpuFlat::device_bytes() const {
  return impl_->rows_buf.bytes() + impl_->norms_buf.bytes() + impl_->alive_buf.bytes() + impl_->sel.device_bytes();
}

void GpuFlat::write(size_t first, const float* x, size_t n) {
  Impl& m = *impl_;
  if (n == 0) return;
  const size_t end = first + n, row_bytes = m.dim * m.elem();
  const cudaStream_t s = m.sel.stream();
  m.rows_buf.reserve(end * row_bytes, s);
  m.norms_buf.reserve(end * sizeof(float), s);
  std::vector<uint8_t> stored(n * row_bytes);
  to_storage(x, n * m.dim, m.f16, stored.data());
  std::vector<float> norms(n);
  stored_norms(x, n, m.dim, m.f16, norms.data());
  check_cuda(cudaMemcpyAsync(m.rows_buf.at(first * row_bytes), stored.data(), stored.size(), cudaMemcpyHostToDevice, s), "upload rows");
  check_cuda(cudaMemcpyAsync(m.norms_buf.at(first * sizeof(float)), norms.data(), n * sizeof(float), cudaMemcpyHostToDevice, s), "upload norms");
  m.rows = std::max(m.rows, end);
  m.alive.resize((m.rows + 63) / 64, 0);
  for (size_t r = first; r < end; ++r) m.alive[r / 64] |= uint64_t{1} << (r % 64);
  m.upload_alive();  // also waits for the uploads above (their host buffers end here)
}

void GpuFlat::set_alive(const uint32_t* rows, size_t n, bool alive) {
  Impl& m = *impl_;
  for (size_t i = 0; i < n; ++i) {
    if (rows[i] >= m.rows) continue;
    const uint64_t bit = uint64_t{1} << (rows[i] % 64);
    m.alive[rows[i] / 64] = alive ? (m.alive[rows[i] / 64] | bit) : (m.alive[rows[i] / 64] & ~bit);
  }
  if (n > 0) m.upload_alive();
}

void GpuFlat::search(const float* queries, size_t nq, size_t k, const uint64_t* allow, float* scores, int64_t* rows_out) {
  Impl& m = *impl_;
  std::fill(rows_out, rows_out + nq * k, -1);
  std::fill(scores, scores + nq * k, m.l2 ? INFINITY : -INFINITY);
  const size_t n = m.rows;
  if (nq == 0 || n == 0) return;
  const cudaStream_t s = m.sel.stream();
  const Queries q = upload_queries(m.sel, queries, nq, m.dim, m.f16, m.l2);
  const uint64_t* d_allow = nullptr;
  if (allow) {
    const size_t bytes = (n + 63) / 64 * sizeof(uint64_t);
    void* d = m.sel.scratch(3, bytes);
    check_cuda(cudaMemcpyAsync(d, allow, bytes, cudaMemcpyHostToDevice, s), "upload filter");
    check_cuda(cudaStreamSynchronize(s), "upload filter");
    d_allow = static_cast<const uint64_t*>(d);
  }
  const auto* d_queries = static_cast<const uint8_t*>(q.device);
  const size_t kk = std::min(k, n);
  // queries per chunk: their scores within kScoreBytes, a multiple of 128 (256-byte aligned offsets)
  size_t chunk = std::max<size_t>(1, kScoreBytes / (n * sizeof(float)));
  if (chunk < nq) chunk = std::max<size_t>(128, chunk / 128 * 128);
  chunk = std::min(chunk, nq);
  std::vector<uint32_t> keys, index;
  for (size_t q0 = 0; q0 < nq; q0 += chunk) {
    const size_t c = std::min(chunk, nq - q0);
    auto* y = static_cast<float*>(m.sel.scratch(1, c * n * sizeof(float)));
    m.sel.gemm().products(d_queries + q0 * m.dim * m.elem(), m.rows_buf.at(), y, static_cast<int64_t>(c),
                          static_cast<int64_t>(n), m.dim, m.f16);
    std::vector<SelectRow> rows(c);
    for (size_t r = 0; r < c; ++r) rows[r] = SelectRow{r * n, m.l2 ? 0 : kNoNorms, r * kk, static_cast<uint32_t>(n), static_cast<uint32_t>(kk)};
    m.sel.select(y, m.norms_buf.at<float>(), rows, m.alive_buf.at<uint64_t>(), d_allow, c * kk, keys, index);
    for (size_t r = 0; r < c; ++r) {
      for (size_t i = 0; i < kk; ++i) {
        const uint32_t key = keys[r * kk + i];
        if (key == 0) break;
        rows_out[(q0 + r) * k + i] = index[r * kk + i];
        scores[(q0 + r) * k + i] = score_of(key, m.l2, m.l2 ? q.norms[q0 + r] : 0.0f);
      }
    }
  }
}

// --- GpuIvf ----------------------------------------------------------------------------------------

struct GpuIvf::Impl {
  int32_t dim;
  bool l2;
  size_t nlist;
  Selector sel;
  DeviceBuffer centroids, centroid_norms;
  std::vector<DeviceBuffer> lists, list_norms;
  std::vector<size_t> sizes;
};

GpuIvf::GpuIvf(int32_t dim, bool l2, const float* centroids, size_t nlist) : impl_(new Impl{dim, l2, nlist, {}, {}, {}, {}, {}, {}}) {
  Impl& m = *impl_;
  const cudaStream_t s = m.sel.stream();
  m.centroids = DeviceBuffer(nlist * dim * sizeof(float), s);
  m.centroid_norms = DeviceBuffer(nlist * sizeof(float), s);
  std::vector<float> norms(nlist);
  stored_norms(centroids, nlist, dim, false, norms.data());
  check_cuda(cudaMemcpyAsync(m.centroids.at(), centroids, nlist * dim * sizeof(float), cudaMemcpyHostToDevice, s), "upload centroids");
  check_cuda(cudaMemcpyAsync(m.centroid_norms.at(), norms.data(), nlist * sizeof(float), cudaMemcpyHostToDevice, s), "upload norms");
  m.lists.resize(nlist);
  m.list_norms.resize(nlist);
  m.sizes.assign(nlist, 0);
  check_cuda(cudaStreamSynchronize(s), "upload centroids");
}

GpuIvf::~GpuIvf() = default;
size_t GpuIvf::nlist() const { return impl_->nlist; }
size_t GpuIvf::list_size(size_t cell) const { return impl_->sizes[cell]; }
size_t GpuIvf::device_bytes() const {
  size_t b = impl_->centroids.bytes() + impl_->centroid_norms.bytes() + impl_->sel.device_bytes();
  for (size_t c = 0; c < impl_->nlist; ++c) b += impl_->lists[c].bytes() + impl_->list_norms[c].bytes();
  return b;
}

void GpuIvf::set_list(size_t cell, const float* x, size_t n) {
  Impl& m = *impl_;
  const cudaStream_t s = m.sel.stream();
  const size_t bytes = n * m.dim * sizeof(float);
  if (m.lists[cell].bytes() < bytes || m.lists[cell].bytes() > 4 * bytes + 4096) {
    m.lists[cell] = n ? DeviceBuffer(bytes + bytes / 4, s) : DeviceBuffer();
    m.list_norms[cell] = n ? DeviceBuffer((n + n / 4) * sizeof(float), s) : DeviceBuffer();
  }
  std::vector<float> norms(n);
  stored_norms(x, n, m.dim, false, norms.data());
  if (n) {
    check_cuda(cudaMemcpyAsync(m.lists[cell].at(), x, bytes, cudaMemcpyHostToDevice, s), "upload list");
    check_cuda(cudaMemcpyAsync(m.list_norms[cell].at(), norms.data(), n * sizeof(float), cudaMemcpyHostToDevice, s), "upload norms");
  }
  check_cuda(cudaStreamSynchronize(s), "upload list");
  m.sizes[cell] = n;
}

void GpuIvf::search(const float* queries, size_t nq, size_t nprobe, size_t k, float* scores, int64_t* entries) {
  Impl& m = *impl_;
  std::fill(entries, entries + nq * k, -1);
  std::fill(scores, scores + nq * k, m.l2 ? INFINITY : -INFINITY);
  nprobe = std::min(nprobe, m.nlist);
  if (nq == 0 || nprobe == 0) return;
  const cudaStream_t s = m.sel.stream();
  const size_t row_bytes = m.dim * sizeof(float);
  const Queries q = upload_queries(m.sel, queries, nq, m.dim, false, m.l2);

  // the cells: every query against every centroid, its nprobe best
  auto* yc = static_cast<float*>(m.sel.scratch(1, nq * m.nlist * sizeof(float)));
  m.sel.gemm().products(q.device, m.centroids.at(), yc, static_cast<int64_t>(nq), static_cast<int64_t>(m.nlist), m.dim, false);
  std::vector<SelectRow> rows(nq);
  for (size_t r = 0; r < nq; ++r) {
    rows[r] = SelectRow{r * m.nlist, m.l2 ? 0 : kNoNorms, r * nprobe, static_cast<uint32_t>(m.nlist), static_cast<uint32_t>(nprobe)};
  }
  std::vector<uint32_t> keys, index;
  m.sel.select(yc, m.centroid_norms.at<float>(), rows, nullptr, nullptr, nq * nprobe, keys, index);
  std::vector<int32_t> probes(nq * nprobe);
  for (size_t e = 0; e < probes.size(); ++e) probes[e] = keys[e] ? static_cast<int32_t>(index[e]) : -1;
  const CellGroups groups = group_by_cell(probes.data(), nq, nprobe, m.nlist);

  // each probed cell's queries side by side (256-byte aligned), then one GEMM per cell
  std::vector<size_t> q_at(groups.cells.size()), y_at(groups.cells.size());
  size_t q_bytes = 0, y_elems = 0;
  for (size_t g = 0; g < groups.cells.size(); ++g) {
    const size_t count = groups.offsets[g + 1] - groups.offsets[g];
    q_at[g] = q_bytes;
    q_bytes += align_up(count * row_bytes);
    y_at[g] = y_elems;
    y_elems += align_up(count * m.sizes[groups.cells[g]] * sizeof(float)) / sizeof(float);
  }
  std::vector<uint8_t> grouped(q_bytes);
  for (size_t g = 0; g < groups.cells.size(); ++g) {
    for (size_t j = groups.offsets[g]; j < groups.offsets[g + 1]; ++j) {
      const size_t query = groups.entries[j] / nprobe;
      std::memcpy(grouped.data() + q_at[g] + (j - groups.offsets[g]) * row_bytes, queries + query * m.dim, row_bytes);
    }
  }
  // scratch 0 holds the queries of the coarse step, no longer needed; 1 the coarse scores
  auto* dq = static_cast<uint8_t*>(m.sel.scratch(0, std::max<size_t>(q_bytes, 1)));
  check_cuda(cudaMemcpyAsync(dq, grouped.data(), q_bytes, cudaMemcpyHostToDevice, s), "upload grouped queries");
  auto* y = static_cast<float*>(m.sel.scratch(1, std::max<size_t>(y_elems, 1) * sizeof(float)));
  // per-list norms live in separate buffers: select rows point into one norms array, so copy them together
  std::vector<size_t> n_at(groups.cells.size());
  size_t n_elems = 0;
  for (size_t g = 0; g < groups.cells.size(); ++g) {
    n_at[g] = n_elems;
    n_elems += m.sizes[groups.cells[g]];
  }
  DeviceBuffer norms(std::max<size_t>(n_elems, 1) * sizeof(float), s);
  std::vector<SelectRow> cell_rows;
  // each (query, cell) list holds up to k entries, and no more than the longest probed list has:
  // what the partial lists take stays within the data's size whatever k is
  size_t longest = 0;
  for (int32_t cell : groups.cells) longest = std::max(longest, m.sizes[cell]);
  const size_t per = std::max<size_t>(1, std::min(k, longest));
  for (size_t g = 0; g < groups.cells.size(); ++g) {
    const int32_t cell = groups.cells[g];
    const size_t len = m.sizes[cell], count = groups.offsets[g + 1] - groups.offsets[g];
    if (len == 0) continue;
    m.sel.gemm().products(dq + q_at[g], m.lists[cell].at(), y + y_at[g], static_cast<int64_t>(count), static_cast<int64_t>(len), m.dim, false);
    if (m.l2) {
      check_cuda(cudaMemcpyAsync(norms.at<float>() + n_at[g], m.list_norms[cell].at(), len * sizeof(float), cudaMemcpyDeviceToDevice, s), "norms");
    }
    for (size_t j = 0; j < count; ++j) {
      const size_t entry = groups.entries[groups.offsets[g] + j];
      cell_rows.push_back(SelectRow{y_at[g] + j * len, m.l2 ? n_at[g] : kNoNorms, entry * per, static_cast<uint32_t>(len),
                                    static_cast<uint32_t>(std::min(per, len))});
    }
  }
  m.sel.select(y, norms.at<float>(), cell_rows, nullptr, nullptr, nq * nprobe * per, keys, index);

  // each query's nprobe partial lists, merged
  std::vector<float> part_keys(nq * nprobe * per, 0.0f);
  std::vector<int64_t> part_tags(nq * nprobe * per, -1);
  for (size_t e = 0; e < nq * nprobe; ++e) {
    if (probes[e] < 0) continue;
    for (size_t i = 0; i < per; ++i) {
      const uint32_t key = keys[e * per + i];
      if (key == 0) break;
      part_keys[e * per + i] = key_value(key);
      part_tags[e * per + i] = (static_cast<int64_t>(probes[e]) << 32) | index[e * per + i];
    }
  }
  std::vector<float> best(nq * k);
  merge_top_k(part_keys.data(), part_tags.data(), nq, nprobe, per, k, best.data(), entries);
  for (size_t qi = 0; qi < nq; ++qi) {
    for (size_t i = 0; i < k && entries[qi * k + i] >= 0; ++i) {
      scores[qi * k + i] = m.l2 ? std::max(0.0f, q.norms[qi] - best[qi * k + i]) : best[qi * k + i];
    }
  }
}

}  // namespace qrank::cuda
