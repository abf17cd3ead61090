// The inside of qrank::VectorIndex: one backend per family of kinds, and the file I/O they share.
//
// VectorIndex (native/vector_index.cc) checks every input (ids, dimensions, finite values, known
// ids), serialises writes (add, remove, train and save run one at a time under its lock) and frames
// the file (magic, version, spec, checksum). A backend gets only checked input and must itself make
// searches safe beside one write in flight:
//   GraphStore (native/vector_store.cc)  flat and HNSW over USearch, f32 / f16 / i8
//   IvfBackend (native/vector_ivf.cc)    IVF and IVF-PQ over FAISS
//   CudaBackend (native/cuda/vector_cuda.cc, the CUDA build)  flat and IVF-flat searched on the GPU:
//                                        a device mirror of a GraphStore or IvfBackend, which keeps
//                                        the ids, answers the host-side calls and writes the file
//
// File layout (format version 2), all little-endian:
//   "QRANKIX1" | u32 version | IndexSpec | backend payload | u64 checksum of everything before it
// The checksum is FNV-1a over 64-bit words (the tail zero-padded, then the length): a damaged file
// is told from a good one at several GB/s.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qrank/error.h"
#include "qrank/vector_index.h"

namespace qrank {

class Checksum {
 public:
  void update(const void* data, size_t n);
  uint64_t value() const;

 private:
  uint64_t h_ = 1469598103934665603ULL;
  uint64_t length_ = 0;
  uint8_t tail_[8] = {};
  size_t tail_size_ = 0;
};

// Streams into a temporary file beside `path`; commit() appends the checksum, fsyncs and renames it
// over `path`. Destroyed uncommitted, it removes the temporary file.
class FileWriter {
 public:
  explicit FileWriter(const std::string& path);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  void bytes(const void* data, size_t n);
  template <typename T>
  void put(const T& v) { bytes(&v, sizeof v); }
  void commit();

 private:
  void flush();

  std::string path_, tmp_;
  int fd_ = -1;
  std::vector<uint8_t> buffer_;
  Checksum checksum_;
  bool committed_ = false;
};

// A whole index file mapped read-only, its checksum verified, read front to back.
class FileReader {
 public:
  explicit FileReader(const std::string& path);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  template <typename T>
  T get() {
    T v;
    bytes(&v, sizeof v);
    return v;
  }
  void bytes(void* out, size_t n) {
    need(n);
    std::memcpy(out, data_ + at_, n);
    at_ += n;
  }
  const uint8_t* take(size_t n) {  // n bytes in place, valid while the reader lives
    need(n);
    at_ += n;
    return data_ + at_ - n;
  }
  size_t left() const { return size_ - at_; }
  const std::string& path() const { return path_; }
  [[noreturn]] void bad(const std::string& why) const { throw Error(ErrorCode::kBadIndex, path_ + ": " + why); }

 private:
  void need(size_t n) const {
    if (n > size_ - at_) bad("the file is truncated");
  }

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;  // without the checksum
  size_t mapped_ = 0;
  size_t at_ = 0;
};

using VectorSink = std::function<void(const int64_t* ids, const float* vectors, size_t n)>;

// An IVF-flat index's cells as a device mirror reads them (valid during the read_cells call).
class IvfCells {
 public:
  virtual ~IvfCells() = default;
  virtual size_t nlist() const = 0;
  virtual const float* centroids() const = 0;  // nlist x dim
  virtual size_t size(size_t cell) const = 0;
  virtual const int64_t* ids(size_t cell) const = 0;
  virtual const float* vectors(size_t cell) const = 0;  // size(cell) x dim
};

class VectorBackend {
 public:
  virtual ~VectorBackend() = default;
  virtual IndexSpec spec() const = 0;
  virtual size_t size() const = 0;
  virtual bool trained() const = 0;
  virtual size_t memory_bytes() const = 0;
  virtual bool contains(int64_t id) const = 0;
  virtual void train(const float* vectors, size_t n) = 0;
  virtual void add(const int64_t* ids, const float* vectors, size_t n) = 0;
  virtual void remove(const int64_t* ids, size_t n) = 0;
  virtual SearchHits search(const float* queries, size_t nq, const SearchOptions& options) const = 0;
  virtual std::vector<int64_t> ids() const = 0;
  virtual void save(FileWriter& out) const = 0;  // the payload only
  // For a device mirror: every vector held (as f32) with its id, in chunks (flat and hnsw); an
  // IVF-flat index's cells, nothing before it is trained (ivf).
  virtual void read_vectors(const VectorSink&) const { throw Error(ErrorCode::kUnsupported, "this kind of index has no device mirror"); }
  virtual void read_cells(const std::function<void(const IvfCells&)>&) const {
    throw Error(ErrorCode::kUnsupported, "this kind of index has no device mirror");
  }
};

std::unique_ptr<VectorBackend> make_graph_store(const IndexSpec& spec);
// The device mirror of `host` (a backend of the same spec on the CPU): the CUDA build's
// (native/cuda/vector_cuda.cc); elsewhere (native/no_cuda.cc) kUnsupported with the reason.
std::unique_ptr<VectorBackend> make_cuda_vector_backend(const IndexSpec& spec, std::unique_ptr<VectorBackend> host);
std::unique_ptr<VectorBackend> load_graph_store(const IndexSpec& spec, FileReader& in);
std::unique_ptr<VectorBackend> make_ivf_backend(const IndexSpec& spec);
std::unique_ptr<VectorBackend> load_ivf_backend(const IndexSpec& spec, FileReader& in);
// An IVF backend over a FAISS index blob (nullptr: not trained yet), as both formats store it.
std::unique_ptr<VectorBackend> ivf_from_faiss_blob(const IndexSpec& spec, const uint8_t* blob, size_t n, const std::string& path);
// qrank's first format (FAISS flat and HNSW files): their vectors, ids and tombstones.
struct LegacyVectors {
  std::vector<int64_t> ids;
  std::vector<float> vectors;
};
LegacyVectors read_legacy_faiss(const uint8_t* blob, size_t n, const std::vector<int64_t>& labels,
                                const std::vector<uint8_t>& dead, const std::string& path);

[[noreturn]] inline void invalid_input(const std::string& message) { throw Error(ErrorCode::kInvalidInput, message); }

}  // namespace qrank
