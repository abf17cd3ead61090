// VectorIndex: input checks, one write at a time, the file framing and the first format's migration.
// The kinds themselves are backends (native/vector_backend.h).
#include "qrank/vector_index.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <random>
#include <unordered_set>

#include "vector_backend.h"

namespace qrank {
namespace {

constexpr char kMagic[8] = {'Q', 'R', 'A', 'N', 'K', 'I', 'X', '1'};
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kLegacyVersion = 1;  // FAISS for every kind; byte-wise FNV-1a

uint64_t fnv1a_bytes(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
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

bool graph_kind(const IndexSpec& spec) { return spec.kind == IndexKind::kFlat || spec.kind == IndexKind::kHnsw; }

// The CPU backend of the spec, mirrored on the GPU when the spec asks for it.
std::unique_ptr<VectorBackend> on_device(const IndexSpec& spec, std::unique_ptr<VectorBackend> host) {
  return spec.device == IndexDevice::kCuda ? make_cuda_vector_backend(spec, std::move(host)) : std::move(host);
}

std::unique_ptr<VectorBackend> make_backend(const IndexSpec& spec) {
  IndexSpec cpu = spec;
  cpu.device = IndexDevice::kCpu;
  return on_device(spec, graph_kind(spec) ? make_graph_store(cpu) : make_ivf_backend(cpu));
}

void check_spec(const IndexSpec& s) {
  if (s.dim <= 0 || s.dim > 65536) invalid_input("dim must be between 1 and 65536");
  if (s.hnsw_m < 2 || s.hnsw_m > 512 || s.ef_construction < 1 || s.ef_search < 1 || s.nprobe < 1 || s.nlist < 0) {
    invalid_input("hnsw m must be between 2 and 512; efConstruction, efSearch and nprobe >= 1; nlist >= 0");
  }
  const bool ivf = s.kind == IndexKind::kIvf || s.kind == IndexKind::kIvfPq;
  if (ivf && s.storage != Storage::kF32) invalid_input("ivf and ivfpq store f32 vectors (storage 'f16' and 'i8' are for flat and hnsw)");
  if (!(s.i8_range >= 0.0f) || !std::isfinite(s.i8_range)) invalid_input("i8 range must be finite and >= 0");
  if (s.device != IndexDevice::kCpu && s.device != IndexDevice::kCuda) invalid_input("device must be 'cpu' or 'cuda'");
}

// The first format's spec: the fields before `storage`.
struct LegacySpec {
  int32_t dim, metric, kind, hnsw_m, ef_construction, ef_search, nlist, nprobe, pq_m, pq_bits;
};

}  // namespace

// --- Checksum, FileWriter, FileReader ----------------------------------------------------------------

void Checksum::update(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  length_ += n;
  while (n > 0 && tail_size_ > 0 && tail_size_ < 8) {
    tail_[tail_size_++] = *p++;
    --n;
  }
  if (tail_size_ == 8) {
    uint64_t w;
    std::memcpy(&w, tail_, 8);
    h_ = (h_ ^ w) * 1099511628211ULL;
    tail_size_ = 0;
  }
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h_ = (h_ ^ w) * 1099511628211ULL;
  }
  std::memcpy(tail_ + tail_size_, p, n);
  tail_size_ += n;
}

uint64_t Checksum::value() const {
  uint64_t h = h_;
  if (tail_size_ > 0) {
    uint64_t w = 0;
    std::memcpy(&w, tail_, tail_size_);
    h = (h ^ w) * 1099511628211ULL;
  }
  return (h ^ length_) * 1099511628211ULL;
}

FileWriter::FileWriter(const std::string& path) : path_(path) {
  std::random_device rd;
  tmp_ = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(ErrorCode::kIoError, "cannot create " + tmp_ + ": " + std::strerror(errno));
  buffer_.reserve(size_t{1} << 20);
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void FileWriter::bytes(const void* data, size_t n) {
  checksum_.update(data, n);
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const size_t take = std::min(n, buffer_.capacity() - buffer_.size());
    buffer_.insert(buffer_.end(), p, p + take);
    p += take;
    n -= take;
    if (buffer_.size() == buffer_.capacity()) flush();
  }
}

void FileWriter::flush() {
  const uint8_t* p = buffer_.data();
  size_t n = buffer_.size();
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw Error(ErrorCode::kIoError, "cannot write " + tmp_ + ": " + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
  buffer_.clear();
}

void FileWriter::commit() {
  const uint64_t sum = checksum_.value();
  bytes(&sum, sizeof sum);
  flush();
  if (::fsync(fd_) != 0) throw Error(ErrorCode::kIoError, "cannot fsync " + tmp_ + ": " + std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    throw Error(ErrorCode::kIoError, "cannot rename " + tmp_ + " to " + path_ + ": " + std::strerror(errno));
  }
  committed_ = true;
  fsync_dir(path_);
}

FileReader::FileReader(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) ::close(fd);
    throw Error(ErrorCode::kIndexNotFound, "no index file at " + path);
  }
  mapped_ = static_cast<size_t>(st.st_size);
  if (mapped_ < sizeof kMagic + sizeof(uint32_t) + sizeof(uint64_t)) {
    ::close(fd);
    throw Error(ErrorCode::kBadIndex, path + " is not a qrank index file");
  }
  void* p = ::mmap(nullptr, mapped_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw Error(ErrorCode::kIoError, "cannot read " + path + ": " + std::strerror(errno));
  data_ = static_cast<const uint8_t*>(p);
  size_ = mapped_ - sizeof(uint64_t);
  if (std::memcmp(data_, kMagic, sizeof kMagic) != 0) {
    ::munmap(p, mapped_);
    throw Error(ErrorCode::kBadIndex, path + " is not a qrank index file");
  }
  uint32_t version;
  std::memcpy(&version, data_ + sizeof kMagic, sizeof version);
  uint64_t stored;
  std::memcpy(&stored, data_ + size_, sizeof stored);
  uint64_t actual = 0;
  if (version == kLegacyVersion) {
    actual = fnv1a_bytes(data_, size_);
  } else {
    Checksum c;
    c.update(data_, size_);
    actual = c.value();
  }
  if (actual != stored) {
    ::munmap(p, mapped_);
    throw Error(ErrorCode::kBadIndex, path + " is damaged (checksum mismatch)");
  }
  ::madvise(p, mapped_, MADV_SEQUENTIAL);
}

FileReader::~FileReader() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), mapped_);
}

// --- VectorIndex ---------------------------------------------------------------------------------------

VectorIndex::VectorIndex(std::unique_ptr<VectorBackend> backend) : dim_(backend->spec().dim), backend_(std::move(backend)) {}
VectorIndex::~VectorIndex() = default;

std::unique_ptr<VectorIndex> VectorIndex::create(const IndexSpec& spec) {
  check_spec(spec);
  IndexSpec s = spec;
  if (s.kind == IndexKind::kIvfPq) {
    if (s.pq_m == 0) s.pq_m = std::max(1, s.dim / 4);
    if (s.pq_m < 0 || s.dim % s.pq_m != 0) invalid_input("pqM (" + std::to_string(s.pq_m) + ") must divide dim (" + std::to_string(s.dim) + ")");
    if (s.pq_bits < 1 || s.pq_bits > 16) invalid_input("pqBits must be between 1 and 16");
  }
  return std::unique_ptr<VectorIndex>(new VectorIndex(make_backend(s)));
}

IndexSpec VectorIndex::spec() const { return backend_->spec(); }
size_t VectorIndex::size() const { return backend_->size(); }
bool VectorIndex::trained() const { return backend_->trained(); }
size_t VectorIndex::memory_bytes() const { return backend_->memory_bytes(); }

static void check_finite(const float* x, size_t count, size_t dim, const char* what) {
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(x[i])) invalid_input(std::string(what) + " " + std::to_string(i / dim) + " has a NaN or infinite value");
  }
}

void VectorIndex::train(const float* vectors, size_t n) {
  std::lock_guard<std::mutex> lock(writes_);
  check_finite(vectors, n * dim_, dim_, "training vector");
  backend_->train(vectors, n);
}

void VectorIndex::add(const int64_t* ids, const float* vectors, size_t n) {
  std::lock_guard<std::mutex> lock(writes_);
  std::unordered_set<int64_t> batch;
  batch.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0) invalid_input("ids must be >= 0 (id " + std::to_string(ids[i]) + " at " + std::to_string(i) + ")");
    if (backend_->contains(ids[i]) || !batch.insert(ids[i]).second) invalid_input("duplicate id " + std::to_string(ids[i]));
  }
  check_finite(vectors, n * dim_, dim_, "vector");
  if (n > 0) backend_->add(ids, vectors, n);
}

void VectorIndex::remove(const int64_t* ids, size_t n) {
  std::lock_guard<std::mutex> lock(writes_);
  std::vector<int64_t> unknown;
  std::unordered_set<int64_t> unique;
  for (size_t i = 0; i < n; ++i) {
    if (!backend_->contains(ids[i])) unknown.push_back(ids[i]);
    unique.insert(ids[i]);
  }
  if (!unknown.empty()) {
    std::string list;
    for (size_t i = 0; i < unknown.size() && i < 5; ++i) list += (i ? ", " : "") + std::to_string(unknown[i]);
    invalid_input("unknown id" + std::string(unknown.size() > 1 ? "s " : " ") + list + (unknown.size() > 5 ? ", ..." : ""));
  }
  const std::vector<int64_t> once(unique.begin(), unique.end());
  if (!once.empty()) backend_->remove(once.data(), once.size());
}

SearchHits VectorIndex::search(const float* queries, size_t nq, const SearchOptions& o) const {
  if (o.k < 1) invalid_input("k must be >= 1");
  if (o.ef_search < 0 || o.nprobe < 0) invalid_input("efSearch and nprobe must be >= 1 when given");
  if (nq * static_cast<size_t>(o.k) > kMaxSearchResults) {
    invalid_input("a search returns at most " + std::to_string(kMaxSearchResults) + " results (queries x k); got " +
                  std::to_string(nq) + " x " + std::to_string(o.k));
  }
  check_finite(queries, nq * dim_, dim_, "query");
  return backend_->search(queries, nq, o);
}

std::vector<int64_t> VectorIndex::ids() const { return backend_->ids(); }

void VectorIndex::save(const std::string& path) const {
  std::lock_guard<std::mutex> lock(writes_);
  FileWriter out(path);
  out.bytes(kMagic, sizeof kMagic);
  out.put(kFormatVersion);
  IndexSpec spec = backend_->spec();
  spec.device = IndexDevice::kCpu;  // the same file on every device: the loader chooses its own
  out.put(spec);
  backend_->save(out);
  out.commit();
}

std::unique_ptr<VectorIndex> VectorIndex::load(const std::string& path, IndexDevice device) {
  FileReader in(path);
  in.take(sizeof kMagic);
  const uint32_t version = in.get<uint32_t>();
  if (version == kFormatVersion) {
    IndexSpec spec = in.get<IndexSpec>();
    try {
      check_spec(spec);
    } catch (const Error& e) {
      in.bad(std::string("invalid spec: ") + e.what());
    }
    spec.device = IndexDevice::kCpu;
    auto backend = graph_kind(spec) ? load_graph_store(spec, in) : load_ivf_backend(spec, in);
    if (in.left() != 0) in.bad("unexpected bytes after the index");
    spec.device = device;
    return std::unique_ptr<VectorIndex>(new VectorIndex(on_device(spec, std::move(backend))));
  }
  if (version != kLegacyVersion) in.bad("was written by another qrank version (format " + std::to_string(version) + ")");

  // qrank's first format: FAISS for every kind. IVF files keep their FAISS index; flat and HNSW
  // files give their vectors to a new index of the same parameters.
  const LegacySpec old = in.get<LegacySpec>();
  IndexSpec spec;
  spec.dim = old.dim;
  spec.metric = static_cast<Metric>(old.metric);
  spec.kind = static_cast<IndexKind>(old.kind);
  spec.hnsw_m = old.hnsw_m;
  spec.ef_construction = old.ef_construction;
  spec.ef_search = old.ef_search;
  spec.nlist = old.nlist;
  spec.nprobe = old.nprobe;
  spec.pq_m = old.pq_m;
  spec.pq_bits = old.pq_bits;
  if (old.kind < 0 || old.kind > 3 || old.metric < 0 || old.metric > 1) in.bad("invalid spec");
  try {
    check_spec(spec);
  } catch (const Error& e) {
    in.bad(std::string("invalid spec: ") + e.what());
  }
  const bool has_index = in.get<uint8_t>() != 0;
  const uint64_t nlabels = in.get<uint64_t>();
  if (nlabels > in.left() / sizeof(int64_t)) in.bad("the file is truncated");
  std::vector<int64_t> labels(nlabels);
  in.bytes(labels.data(), nlabels * sizeof(int64_t));
  const uint64_t ndead = in.get<uint64_t>();
  if (ndead > in.left()) in.bad("the file is truncated");
  std::vector<uint8_t> dead(ndead);
  in.bytes(dead.data(), ndead);
  const uint64_t blob_size = in.get<uint64_t>();
  if (blob_size != in.left()) in.bad("the file is truncated");
  const uint8_t* blob = in.take(blob_size);
  if (spec.kind == IndexKind::kIvf || spec.kind == IndexKind::kIvfPq) {
    auto backend = ivf_from_faiss_blob(spec, has_index ? blob : nullptr, blob_size, in.path());
    spec.device = device;
    return std::unique_ptr<VectorIndex>(new VectorIndex(on_device(spec, std::move(backend))));
  }
  spec.device = device;
  std::unique_ptr<VectorIndex> ix(new VectorIndex(make_backend(spec)));
  if (has_index) {
    const LegacyVectors v = read_legacy_faiss(blob, blob_size, labels, dead, path);
    ix->add(v.ids.data(), v.vectors.data(), v.ids.size());
  }
  return ix;
}

}  // namespace qrank
